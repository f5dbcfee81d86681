"""In-memory search over one collection: exact below a size threshold, FAISS IVF above it.

- Exact: the vectors sit in one float32 matrix; all queries of a request are scored with one
  matrix product (on this kind of CPU a numpy product beats FAISS's flat index: 94 vs 134 ms for
  one query over 1M x 384). Deletion swaps the last row into the hole.
- Approximate: above ``ann_threshold`` vectors an ``IndexIVFFlat`` (inner product = cosine on
  unit vectors) answers searches, probing ``nprobe`` of ~sqrt(n) lists. It is trained and filled
  in a background thread, never on the request path; meanwhile exact search serves. Writes made
  during the build are journaled and replayed before it is switched in, and after that every
  write updates it (IVF takes incremental adds and removals). It is retrained in the background
  when the collection has grown ``retrain_growth`` times since training.
- The list each row went to is kept beside it, so a saved index (``snapshot``/``restore``: rows,
  centroids, list numbers, metadata columns) comes back without re-assigning a single vector.
- Metadata filters: ``MetadataColumns`` (aligned with the rows) turns a filter into a row mask.
  Few allowed rows (``filter_exact_rows``) are searched exactly (gathered from the matrix); more
  go through the IVF index with an id bitmap, probing more lists the more selective the filter
  is, and queries that come back short are widened (4x the lists, then exact) until ``k`` is
  filled or every allowed row was seen.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import faiss
import numpy as np
from loguru import logger
from threadpoolctl import ThreadpoolController

from .filters import Filter
from .metadata_index import MetadataColumns

TRAIN_POINTS_PER_LIST = 64
_ADD_CHUNK = 100_000
FEW_QUERIES = 4
_blas = ThreadpoolController()
_blas_lock = threading.Lock()


def _scores(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``queries @ matrix.T``. A few queries run on one BLAS thread: waking OpenBLAS's other threads
    costs more than they save there (in a server process 2-3x more: 15.8 vs 7.6 ms p50 for one
    query over 20,000 vectors on 2 cores). Only holders of ``_blas_lock`` change the limit, so
    overlapping searches cannot leave it set."""
    if len(queries) > FEW_QUERIES:
        return queries @ matrix.T
    with _blas_lock, _blas.limit(limits=1, user_api="blas"):
        return queries @ matrix.T


class VectorIndex:
    """Vectors of one collection keyed by int64 row ids (see module docstring)."""

    def __init__(self, dimension: int, *, ann_threshold: int = 100_000, nprobe: int = 32,
                 retrain_growth: float = 2.0, filter_exact_rows: int = 20_000, background: bool = True) -> None:
        self.dimension = dimension
        self.ann_threshold = ann_threshold
        self.nprobe = nprobe
        self.retrain_growth = retrain_growth
        self.filter_exact_rows = filter_exact_rows
        self.background = background
        self._matrix = np.empty((0, dimension), dtype=np.float32)
        self._rids = np.empty(0, dtype=np.int64)
        self._assign = np.empty(0, dtype=np.int64)
        self._pos: dict[int, int] = {}
        self._n = 0
        self._max_rid = -1
        self.columns = MetadataColumns()
        self._lock = threading.RLock()
        self._ann: faiss.IndexIVFFlat | None = None
        self._ann_trained_at = 0
        self.ann_generation = 0  # bumped whenever another IVF index is switched in
        self._journal: list[tuple[str, np.ndarray, np.ndarray | None]] | None = None
        self._builder: threading.Thread | None = None
        self.last_build_s: float | None = None

    def __len__(self) -> int:
        return self._n

    @property
    def mode(self) -> str:
        """'ann' when searches go through the IVF index, else 'exact'."""
        return "ann" if self._ann is not None else "exact"

    # --- writes ------------------------------------------------------------------------------
    def upsert(self, rids: np.ndarray, vectors: np.ndarray, metas: list[dict[str, Any] | None] | None = None) -> None:
        """Insert or replace vectors by row id, with their metadata (``None`` entries: irregular;
        ``metas`` left out: no metadata)."""
        rids = np.asarray(rids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock:
            self._remove_rows(rids)
            start, end = self._n, self._n + len(rids)
            self._grow(end)
            self._matrix[start:end] = vectors
            self._rids[start:end] = rids
            self._assign[start:end] = -1
            for offset, rid in enumerate(rids.tolist()):
                self._pos[rid] = start + offset
                self.columns.set_row(start + offset, metas[offset] if metas is not None else {})
            self._n = end
            if len(rids):
                self._max_rid = max(self._max_rid, int(rids.max()))
            if self._ann is not None:
                self._ann.remove_ids(rids)
                self._assign[start:end] = _add(self._ann, vectors, rids)
            if self._journal is not None:
                self._journal.append(("upsert", rids, vectors))
        self._maybe_build()

    def remove(self, rids: np.ndarray) -> None:
        """Remove vectors by row id (unknown ids are ignored)."""
        rids = np.asarray(rids, dtype=np.int64)
        with self._lock:
            self._remove_rows(rids)
            if self._ann is not None:
                self._ann.remove_ids(rids)
            if self._journal is not None:
                self._journal.append(("remove", rids, None))

    def _grow(self, size: int) -> None:
        if size <= self._matrix.shape[0]:
            return
        capacity = max(size, int(self._matrix.shape[0] * 1.5), 1024)
        matrix = np.empty((capacity, self.dimension), dtype=np.float32)
        matrix[: self._n] = self._matrix[: self._n]
        rids = np.empty(capacity, dtype=np.int64)
        rids[: self._n] = self._rids[: self._n]
        assign = np.full(capacity, -1, dtype=np.int64)
        assign[: self._n] = self._assign[: self._n]
        self._matrix, self._rids, self._assign = matrix, rids, assign
        self.columns.reserve(capacity)

    def _remove_rows(self, rids: np.ndarray) -> None:
        for rid in rids.tolist():
            row = self._pos.pop(rid, None)
            if row is None:
                continue
            last = self._n - 1
            if row != last:
                moved = int(self._rids[last])
                self._matrix[row] = self._matrix[last]
                self._rids[row] = moved
                self._assign[row] = self._assign[last]
                self.columns.move(last, row)
                self._pos[moved] = row
            self.columns.clear(last)
            self._n -= 1

    # --- the approximate index ---------------------------------------------------------------
    def _maybe_build(self) -> None:
        with self._lock:
            due = self._n >= self.ann_threshold and (
                self._ann is None or self._n >= self.retrain_growth * self._ann_trained_at)
            if not due or self._builder is not None:
                return
            self._journal = []
            snapshot_rids = self._rids[: self._n].copy()
            snapshot = self._matrix[: self._n].copy()
            self._builder = threading.Thread(target=self._build, args=(snapshot_rids, snapshot), daemon=True,
                                             name="ivf-build")
        if self.background:
            self._builder.start()
        else:
            self._builder.run()

    def _build(self, rids: np.ndarray, vectors: np.ndarray) -> None:
        started = time.monotonic()
        try:
            n = len(rids)
            nlist = max(16, int(math.sqrt(n)))
            ann = _empty_ivf(self.dimension, nlist)
            sample = vectors[np.random.default_rng(0).choice(n, min(n, TRAIN_POINTS_PER_LIST * nlist), replace=False)]
            ann.train(sample)
            assign = np.concatenate([_add(ann, vectors[s : s + _ADD_CHUNK], rids[s : s + _ADD_CHUNK])
                                     for s in range(0, n, _ADD_CHUNK)]) if n else np.empty(0, dtype=np.int64)
            ann.nprobe = self.nprobe
            with self._lock:
                by_rid = dict(zip(rids.tolist(), assign.tolist()))
                for op, op_rids, op_vectors in self._journal or []:
                    ann.remove_ids(op_rids)
                    for rid in op_rids.tolist():
                        by_rid.pop(rid, None)
                    if op == "upsert":
                        by_rid.update(zip(op_rids.tolist(), _add(ann, op_vectors, op_rids).tolist()))
                self._assign[: self._n] = np.fromiter((by_rid[r] for r in self._rids[: self._n].tolist()),
                                                      dtype=np.int64, count=self._n)
                self._ann, self._ann_trained_at = ann, n
                self.ann_generation += 1
            self.last_build_s = time.monotonic() - started
            logger.info("IVF index over {} vectors ({} lists) built in {:.1f}s", n, nlist, self.last_build_s)
        except Exception as exc:  # exact search keeps serving; the next write retries
            logger.opt(exception=exc).error("building the IVF index failed; exact search continues")
        finally:
            with self._lock:
                self._journal = None
                self._builder = None

    def wait_for_build(self, timeout_s: float | None = None) -> None:
        """Block until a running background build has finished (tests and benchmarks)."""
        builder = self._builder
        if builder is not None and builder.is_alive():
            builder.join(timeout_s)

    # --- search ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, rids) per query row, best first; rid -1 pads short rows.

        Args:
            queries: (q, dim) unit vectors.
            k: results per query.
            allowed: restrict to these row ids (a metadata filter decided elsewhere).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:
            if allowed is None:
                if self._ann is not None:
                    return self._ann.search(queries, k)
                return _top_k(_scores(queries, self._matrix[: self._n]), self._rids[: self._n], k)
            mask = np.zeros(self._n, dtype=bool)
            rows = [self._pos[r] for r in np.asarray(allowed).tolist() if r in self._pos]
            mask[np.asarray(rows, dtype=np.int64)] = True
            return self._search_mask(queries, k, mask)

    def search_where(self, queries: np.ndarray, k: int, where: Filter) -> tuple[np.ndarray, np.ndarray] | None:
        """Like ``search`` restricted to the rows ``where`` allows, decided on the metadata columns;
        ``None`` where the columns cannot decide (``MetadataColumns.mask``): filter in SQL then."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:
            mask = self.columns.mask(where, self._n)
            if mask is None:
                return None
            return self._search_mask(queries, k, mask)

    def allowed_rids(self, where: Filter) -> np.ndarray | None:
        """The row ids ``where`` allows, decided on the metadata columns; ``None`` where they cannot
        decide (``MetadataColumns.mask``)."""
        with self._lock:
            mask = self.columns.mask(where, self._n)
            return None if mask is None else self._rids[: self._n][mask]

    def _search_mask(self, queries: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        allowed = int(mask.sum())
        if allowed == 0 or self._ann is None or allowed <= max(k, self.filter_exact_rows):
            rows = np.flatnonzero(mask)
            return _top_k(_scores(queries, self._matrix[rows]), self._rids[rows], k)
        bits = np.zeros(self._max_rid + 1, dtype=bool)
        bits[self._rids[: self._n][mask]] = True
        bitmap = np.packbits(bits, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bitmap))
        nlist = self._ann.nlist
        share = allowed / max(self._n, 1)
        nprobe = min(nlist, max(self.nprobe, math.ceil(self.nprobe * 0.1 / share)))
        scores, rids = self._ann.search(queries, k, params=faiss.SearchParametersIVF(sel=selector, nprobe=nprobe))
        want = min(k, allowed)
        short = np.flatnonzero((rids >= 0).sum(axis=1) < want)
        while short.size and nprobe < nlist:
            nprobe = min(nlist, nprobe * 4)
            s, r = self._ann.search(queries[short], k, params=faiss.SearchParametersIVF(sel=selector, nprobe=nprobe))
            scores[short], rids[short] = s, r
            short = short[(r >= 0).sum(axis=1) < want]
        del bitmap  # the selector points into it until here
        return scores, rids

    # --- persistence -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of everything ``restore`` needs: rows, metadata columns and (once trained) the IVF
        centroids with the list of every row."""
        with self._lock:
            out = {"rids": self._rids[: self._n].copy(), "vectors": self._matrix[: self._n].copy(),
                   **{k: v.copy() for k, v in self.columns.to_arrays(self._n).items()}}
            if self._ann is not None:
                out["assign"] = self._assign[: self._n].copy()
                out["centroids"] = self._ann.quantizer.reconstruct_n(0, self._ann.nlist)
                out["trained_at"] = np.array([self._ann_trained_at], dtype=np.int64)
        return out

    @classmethod
    def restore(cls, dimension: int, arrays: Any, **options: Any) -> "VectorIndex":
        """The index ``snapshot`` saved (``arrays``: a mapping such as an open ``.npz``); an IVF
        index comes back at once, its vectors put in their saved lists without a search."""
        index = cls(dimension, **options)
        rids = np.require(arrays["rids"], np.int64, ["C", "W"])
        n = len(rids)
        # the arrays as read from the file, without a second copy: on this sandbox's page faults
        # a fresh 1.5 GB matrix cost more than the read (docs/benchmarks.md); the first write grows them
        index._matrix = np.require(arrays["vectors"], np.float32, ["C", "W"]).reshape(n, dimension)
        index._rids = rids
        index._assign = np.full(n, -1, dtype=np.int64)
        index._pos = dict(zip(rids.tolist(), range(n)))
        index._n = n
        index._max_rid = int(rids.max()) if n else -1
        index.columns = MetadataColumns.from_arrays(arrays, index._matrix.shape[0])
        if "centroids" in arrays:
            centroids = np.ascontiguousarray(arrays["centroids"], dtype=np.float32)
            ann = _empty_ivf(dimension, len(centroids))
            ann.quantizer.add(centroids)
            ann.is_trained = True
            ann.nprobe = index.nprobe
            assign = np.asarray(arrays["assign"], dtype=np.int64)
            for s in range(0, n, _ADD_CHUNK):
                _add(ann, index._matrix[s : s + _ADD_CHUNK], rids[s : s + _ADD_CHUNK], assign[s : s + _ADD_CHUNK])
            index._assign[:n] = assign
            index._ann, index._ann_trained_at = ann, int(arrays["trained_at"][0])
        index._maybe_build()
        return index


def _empty_ivf(dimension: int, nlist: int) -> faiss.IndexIVFFlat:
    quantizer = faiss.IndexFlatIP(dimension)
    ann = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
    ann.set_direct_map_type(faiss.DirectMap.Hashtable)  # removals by id without scanning every list
    return ann  # the Python wrapper keeps the quantizer alive with the index


def _add(ann: faiss.IndexIVFFlat, vectors: np.ndarray, rids: np.ndarray,
         assign: np.ndarray | None = None) -> np.ndarray:
    """Add vectors to their lists (assigned here unless given); returns the list of each."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rids = np.ascontiguousarray(rids, dtype=np.int64)
    if assign is None:
        _, found = ann.quantizer.search(vectors, 1)
        assign = found.ravel()
    assign = np.ascontiguousarray(assign, dtype=np.int64)
    if len(rids):
        ann.add_core(len(rids), faiss.swig_ptr(vectors), faiss.swig_ptr(rids), faiss.swig_ptr(assign))
    return assign


def _top_k(scores: np.ndarray, rids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q, n = scores.shape
    out_scores = np.full((q, k), -np.inf, dtype=np.float32)
    out_rids = np.full((q, k), -1, dtype=np.int64)
    if n == 0:
        return out_scores, out_rids
    kk = min(k, n)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (q, 1))
    top = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    out_scores[:, :kk] = np.take_along_axis(top, order, axis=1)
    out_rids[:, :kk] = rids[np.take_along_axis(part, order, axis=1)]
    return out_scores, out_rids
