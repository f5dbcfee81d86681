"""A search's hits grouped by document: the best chunk of each, and how many others matched.

Grouping runs after the first stage (one leg, or the legs fused per chunk) and after a rerank, so
each document is ranked by its best chunk under whatever ordered the chunks. A plain record is a
document of its own. ``top_k`` then counts documents; the search over-fetches chunks for it
(``candidates``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Hashable, Sequence

from ..engine.results import Hit

GROUP_FACTOR = 10  # chunks searched per document asked: a long document's chunks crowd the top
GROUP_MIN_CANDIDATES = 100


def candidates(top_k: int, most: int) -> int:
    """How many chunks a search grouped by document reads per leg for ``top_k`` documents (at most ``most``)."""
    return max(top_k, min(max(top_k * GROUP_FACTOR, GROUP_MIN_CANDIDATES), most))


def by_document(hits: Sequence[Hit], keys: Sequence[Hashable], top_k: int) -> tuple[list[Hit], list[int]]:
    """The best hit of each of the best ``top_k`` documents (re-ranked 1..), and the number of the
    document's other chunks among ``hits``.

    Args:
        hits: best first; ``Hit.index`` points into ``keys``.
        keys: each candidate's document (its document id, or its own id for a plain record).
        top_k: documents to keep.
    """
    best: dict[Hashable, Hit] = {}
    counts: dict[Hashable, int] = {}
    for hit in hits:
        key = keys[hit.index]
        counts[key] = counts.get(key, 0) + 1
        best.setdefault(key, hit)
    kept = list(best.items())[:top_k]
    return ([replace(hit, rank=rank) for rank, (_, hit) in enumerate(kept, start=1)],
            [counts[key] - 1 for key, _ in kept])
