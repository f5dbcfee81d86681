"""Pure numpy scoring and ranking: dot/cosine scores (dense and sparse) and top-k selection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..store import SparseVector


def scores(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Dot products of each query row with each matrix row: (q, n). Cosine when rows are unit length."""
    return np.asarray(queries, dtype=np.float32) @ np.asarray(matrix, dtype=np.float32).T


def top_k(row_scores: np.ndarray, k: int | None = None, threshold: float | None = None) -> list[int]:
    """Indices of the best ``k`` scores (all when None), best first; ties keep input order.

    Args:
        row_scores: (n,) scores.
        k: how many to keep at most.
        threshold: drop scores below this value.
    """
    n = row_scores.shape[0]
    k = n if k is None else min(k, n)
    if k < n:
        candidates = np.argpartition(-row_scores, k - 1)[:k]
    else:
        candidates = np.arange(n)
    # stable sort on (-score, index) so equal scores come out in input order
    order = candidates[np.lexsort((candidates, -row_scores[candidates]))]
    if threshold is not None:
        order = order[row_scores[order] >= threshold]
    return order.tolist()


def sparse_scores(query: SparseVector, documents: Sequence[SparseVector]) -> np.ndarray:
    """Dot products of a sparse query with each sparse document: (n,) float32 (0 without a shared index)."""
    weights = dict(zip(query.indices, query.values))
    return np.asarray([sum(weights.get(i, 0.0) * v for i, v in zip(d.indices, d.values)) for d in documents],
                      dtype=np.float32)
