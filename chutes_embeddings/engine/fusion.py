"""Hybrid retrieval's fusion: several ranked legs (dense, lexical, sparse) into one ranking.

- ``rrf``: reciprocal rank fusion (Cormack et al. 2009; Elasticsearch's ``rrf`` retriever,
  Qdrant's ``Fusion.RRF``): a candidate scores ``sum(weight * 1 / (k + rank))`` over the legs that
  found it, ranks from 1. Scores of different scales never meet: only ranks count.
- ``relative_score``: Weaviate's ``relativeScoreFusion``: each leg's scores min-max normalised
  over that leg's candidates (best 1, worst 0; a leg whose candidates all score alike gives each
  1), then ``sum(weight * normalised)``; a leg that did not find a candidate adds 0.
- ``dbsf``: Qdrant's distribution-based score fusion: each leg's scores normalised by their mean
  +- 3 standard deviations (clipped to 0..1), then summed with the weights.

Weights come from ``alpha`` as Weaviate defines it (1: dense only, 0: the other legs only; the
other legs share ``1 - alpha`` equally); without ``alpha`` every leg weighs the same (1 in RRF, as
it is defined; ``1/legs`` in the score fusions, which keeps their fused score within 0..1). Ties keep
the order in which candidates were first met (legs in the order given, each best first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np

from .results import DEFAULT_RRF_K, DENSE, FUSIONS


@dataclass(frozen=True)
class LegScore:
    """A candidate's place in one leg: that leg's own score and its rank there (from 1)."""

    score: float
    rank: int


@dataclass(frozen=True)
class Fused:
    """One candidate after fusion: its key, fused score and its score and rank in each leg that found it."""

    key: Hashable
    score: float
    legs: dict[str, LegScore]


def leg_weights(legs: Sequence[str], alpha: float | None) -> dict[str, float]:
    """Each leg's weight: equal without ``alpha``; else ``alpha`` for the dense leg and ``1 - alpha``
    shared by the others (a leg set without the dense leg, or with it alone, weighs equally)."""
    if alpha is None or DENSE not in legs or len(legs) == 1:
        return {leg: 1.0 / len(legs) for leg in legs}
    others = [leg for leg in legs if leg != DENSE]
    return {leg: alpha if leg == DENSE else (1.0 - alpha) / len(others) for leg in legs}


def _normalised(scores: np.ndarray, method: str) -> np.ndarray:
    if method == "relative_score":
        low, high = float(scores.min()), float(scores.max())
        return np.ones_like(scores) if high == low else (scores - low) / (high - low)
    mean, std = float(scores.mean()), float(scores.std())
    if std == 0.0:
        return np.ones_like(scores)
    return np.clip((scores - (mean - 3 * std)) / (6 * std), 0.0, 1.0)


def fuse(legs: Mapping[str, Sequence[tuple[Hashable, float]]], method: str = "rrf",
         weights: Mapping[str, float] | None = None, rrf_k: int = DEFAULT_RRF_K) -> list[Fused]:
    """Fuse ranked legs into one ranking, best first (see module docstring).

    Args:
        legs: each leg's candidates as ``(key, score)``, best first (empty legs are allowed).
        method: one of ``FUSIONS``.
        weights: each leg's weight (default: 1 each for ``rrf``, as RRF is defined; ``1/len(legs)``
            each for the score fusions, so their fused score stays within 0..1).
        rrf_k: RRF's rank constant (>= 1).

    Raises:
        ValueError: an unknown method, or ``rrf_k`` < 1.
    """
    if method not in FUSIONS:
        raise ValueError(f"fusion {method!r}: expected one of {FUSIONS}")
    if rrf_k < 1:
        raise ValueError("rrf_k must be at least 1")
    if weights is None:  # RRF's own definition sums the plain reciprocal ranks; score fusions stay in 0..1
        weights = {leg: 1.0 for leg in legs} if method == "rrf" else leg_weights(list(legs), None)
    totals: dict[Hashable, float] = {}
    found: dict[Hashable, dict[str, LegScore]] = {}
    for leg, candidates in legs.items():
        if not candidates:
            continue
        raw = np.asarray([score for _, score in candidates], dtype=np.float64)
        contribution = (1.0 / (rrf_k + np.arange(1, len(candidates) + 1)) if method == "rrf"
                        else _normalised(raw, method))
        weight = weights.get(leg, 0.0)
        for rank, ((key, score), part) in enumerate(zip(candidates, contribution), start=1):
            found.setdefault(key, {})[leg] = LegScore(float(score), rank)
            totals[key] = totals.get(key, 0.0) + weight * float(part)
    keys = list(totals)
    order = sorted(range(len(keys)), key=lambda i: -totals[keys[i]])  # stable: ties keep first-met order
    return [Fused(keys[i], totals[keys[i]], found[keys[i]]) for i in order]
