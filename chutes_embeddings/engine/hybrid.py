"""Hybrid retrieval's one procedure, for a corpus sent with a request and a store collection alike.

``legs_for`` turns a retrieval ``mode`` into the legs to run from those the corpus or collection
has; ``candidates_by_leg`` runs them (a lexical leg given a query with no searchable terms is
refused in ``lexical`` mode and skipped, with the reason, in ``hybrid``) side by side, so a
hybrid search costs about its slowest leg rather than the sum; ``first_stage`` fuses
them (or takes the one leg as it is) into hits over the candidates; ``two_stage`` reranks.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable, Mapping, Sequence

from ..errors import InvalidInput
from .fusion import LegScore, fuse, leg_weights
from .results import DENSE, HYBRID, LEXICAL, Hit, Retrieval

NO_TERMS = "the query has no searchable terms (only stop words, punctuation or unknown words)"

# A leg's candidates, best first, as (key, score); the key identifies a candidate across legs.
Candidates = list[tuple[str, float]]

# The legs after the first run here (numpy, faiss and onnxruntime release the GIL); the first runs
# in the caller's thread, so a busy pool delays the other legs, never a whole search, and no leg
# waits on another (no deadlock whatever the load).
_LEGS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="search-leg")


def legs_for(mode: str, available: Sequence[str], where: str) -> list[str]:
    """The legs a search in ``mode`` runs, given the legs ``where`` (a collection, a corpus) has.

    Raises:
        InvalidInput: a single-leg mode whose leg ``where`` lacks (``field="mode"``).
    """
    if mode == HYBRID:
        return list(available)
    if mode not in available:
        raise InvalidInput(f"mode {mode!r}: {where} has no {mode} leg (it has: {', '.join(available)})",
                           field="mode", limit=list(available))
    return [mode]


def candidates_by_leg(mode: str, legs: Sequence[str], run: Mapping[str, Callable[[], Candidates | None]]
                      ) -> tuple[dict[str, Candidates], dict[str, str]]:
    """Run each leg (``run[leg]()``; None: the query gives that leg nothing to search with).

    Returns each leg's candidates and, for hybrid, the legs skipped with the reason.

    Raises:
        InvalidInput: the query gives the only leg asked for nothing to search with (``field="query"``).
    """
    outcomes = _run_side_by_side([run[leg] for leg in legs])
    found: dict[str, Candidates] = {}
    skipped: dict[str, str] = {}
    for leg, outcome in zip(legs, outcomes):
        candidates = outcome.result()  # a leg's error, as it raised it (the first leg's first)
        if candidates is None:
            if mode != HYBRID or len(legs) == 1:
                raise InvalidInput(f"query: {NO_TERMS}; try mode 'dense' or 'hybrid'", field="query")
            skipped[leg] = NO_TERMS if leg == LEXICAL else "the sparse model gives the query no terms"
            continue
        found[leg] = candidates
    return found, skipped


def _run_side_by_side(calls: Sequence[Callable[[], Candidates | None]]) -> list[Future[Candidates | None]]:
    """Each call's outcome: the first in this thread, the others in ``_LEGS`` (each in a copy of
    this context: the caller's scope, ``engine.caller``, goes with its work), all finished when
    this returns."""
    others = [_LEGS.submit(contextvars.copy_context().run, call) for call in calls[1:]]
    first: Future[Candidates | None] = Future()
    try:
        first.set_result(calls[0]())
    except Exception as exc:  # kept, and raised in leg order once the others are done
        first.set_exception(exc)
    wait(others)
    return [first, *others]


def first_stage(mode: str, found: Mapping[str, Candidates], retrieval: Retrieval,
                keep: int) -> tuple[list[str], list[Hit]]:
    """The best ``keep`` candidates: one leg's own order and score, or the legs fused.

    Returns the candidates' keys and hits whose ``index`` points into them; ``legs`` on each hit
    except in ``dense`` mode (its answer stays as it was before hybrid search).
    """
    if mode != HYBRID:
        (leg, candidates), = found.items()
        keys = [key for key, _ in candidates[:keep]]
        hits = [Hit(i, score, i + 1, legs=None if mode == DENSE else {leg: LegScore(score, i + 1)})
                for i, (_, score) in enumerate(candidates[:keep])]
        return keys, hits
    weights = leg_weights(list(found), retrieval.alpha) if retrieval.alpha is not None else None
    fused = fuse(found, retrieval.fusion, weights, retrieval.rrf_k)[:keep]
    return [f.key for f in fused], [Hit(i, f.score, i + 1, legs=f.legs) for i, f in enumerate(fused)]


def dense_first(legs: Sequence[str]) -> list[str]:
    """Legs in the order fusion meets them (dense, lexical, sparse): ties keep the dense order."""
    return sorted(legs, key=lambda leg: (leg != DENSE, leg != LEXICAL))
