"""Pure numpy scoring and ranking: dot/cosine scores and top-k selection."""

from __future__ import annotations

import numpy as np


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
