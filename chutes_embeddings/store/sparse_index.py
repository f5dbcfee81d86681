"""In-memory dot-product search over one collection's learned-sparse vectors.

The vectors sit in segments: each a compressed-sparse-column matrix (rows: records, columns:
vocabulary ids) with the row id of each row and a live flag. A query multiplies only its own
columns of each segment (``matrix[:, ids] @ weights``), so its cost follows the postings of its
terms, not the collection size. Each write becomes a new segment (its records' old rows are
flagged dead); two neighbouring segments merge, dropping dead rows, whenever the newer is at
least half the size of the older, so there are about log2(n) segments and each row is copied
about log2(n) times over its life (a binary counter, as log-structured indexes merge).
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp

MERGE_RATIO = 0.5


class _Segment:
    """Rows of sparse vectors, their row ids and which of them are still live."""

    def __init__(self, matrix: sp.csc_matrix, rids: np.ndarray) -> None:
        self.matrix = matrix
        self.rids = rids
        self.live = np.ones(len(rids), dtype=bool)
        self.live_count = len(rids)

    @classmethod
    def of(cls, rids: np.ndarray, rows: list[tuple[np.ndarray, np.ndarray]]) -> _Segment:
        counts = np.fromiter((len(i) for i, _ in rows), dtype=np.int64, count=len(rows))
        indptr = np.concatenate(([0], np.cumsum(counts)))
        indices = np.concatenate([i for i, _ in rows]).astype(np.int32) if rows else np.empty(0, np.int32)
        values = np.concatenate([v for _, v in rows]).astype(np.float32) if rows else np.empty(0, np.float32)
        width = int(indices.max()) + 1 if indices.size else 1
        csr = sp.csr_matrix((values, indices, indptr), shape=(len(rows), width))
        return cls(csr.tocsc(), np.asarray(rids, dtype=np.int64))

    def kill(self, row: int) -> None:
        if self.live[row]:
            self.live[row] = False
            self.live_count -= 1


def _merge(older: _Segment, newer: _Segment) -> _Segment:
    width = max(older.matrix.shape[1], newer.matrix.shape[1])
    parts, rids = [], []
    for segment in (older, newer):
        rows = np.flatnonzero(segment.live)
        matrix = segment.matrix.tocsr()[rows]
        matrix.resize((len(rows), width))
        parts.append(matrix)
        rids.append(segment.rids[rows])
    return _Segment(sp.vstack(parts, format="csc"), np.concatenate(rids))


class SparseIndex:
    """A collection's sparse vectors by row id (see module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._segments: list[_Segment] = []
        self._where: dict[int, tuple[_Segment, int]] = {}  # rid -> its live row
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._where)

    def upsert(self, rids: np.ndarray, rows: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Insert or replace vectors (ids, weights) by row id."""
        if not len(rids):
            return
        segment = _Segment.of(np.asarray(rids, dtype=np.int64), rows)
        with self._lock:
            self._kill(segment.rids)
            for row, rid in enumerate(segment.rids.tolist()):
                self._where[rid] = (segment, row)
            self._segments.append(segment)
            while len(self._segments) > 1 and self._segments[-1].live_count >= MERGE_RATIO * max(
                    self._segments[-2].live_count, 1):
                newer = self._segments.pop()
                merged = _merge(self._segments.pop(), newer)
                for row, rid in enumerate(merged.rids.tolist()):
                    self._where[rid] = (merged, row)
                self._segments.append(merged)

    def remove(self, rids: np.ndarray) -> None:
        """Remove vectors by row id (unknown ids are ignored)."""
        with self._lock:
            self._kill(np.asarray(rids, dtype=np.int64))
            self._segments = [s for s in self._segments if s.live_count]

    def _kill(self, rids: np.ndarray) -> None:
        for rid in rids.tolist():
            found = self._where.pop(rid, None)
            if found is not None:
                found[0].kill(found[1])

    def search(self, indices: np.ndarray, values: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` (scores, rids) by dot product with the query, best first; only rows that
        share an id with the query (score > 0), and only ``allowed`` row ids when given."""
        indices = np.asarray(indices, dtype=np.int64)
        values = np.asarray(values, dtype=np.float32)
        mask = None
        if allowed is not None:  # by row id: one lookup per candidate (np.isin sorts both sides)
            allowed = np.asarray(allowed, dtype=np.int64)
            mask = np.zeros(int(allowed.max()) + 2 if allowed.size else 1, dtype=bool)
            mask[allowed] = True
        with self._lock:
            segments = list(self._segments)
            found_scores, found_rids = [], []
            for segment in segments:
                inside = indices < segment.matrix.shape[1]
                if not inside.any():
                    continue
                scores = segment.matrix[:, indices[inside]] @ values[inside]
                rows = np.flatnonzero((scores > 0) & segment.live)
                rids = segment.rids[rows]
                if mask is not None:
                    keep = mask[np.minimum(rids, len(mask) - 1)]  # the last slot is never allowed
                    rows, rids = rows[keep], rids[keep]
                found_scores.append(scores[rows])
                found_rids.append(rids)
        if not found_scores:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        scores, rids = np.concatenate(found_scores), np.concatenate(found_rids)
        if len(scores) > k:
            best = np.argpartition(-scores, k - 1)[:k]
            scores, rids = scores[best], rids[best]
        order = np.lexsort((rids, -scores))
        return scores[order], rids[order]
