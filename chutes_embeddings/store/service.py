"""The store verbs: embed with the engine, keep in the vector store, answer with typed data.

``StoreService`` is what the store cords call: it checks what the store cannot (ids and metadata
per text, callers' vectors, the collection's model against the engine's), embeds through the
engine, runs two-stage retrieval through the engine's one ``two_stage``, and times each store
operation for the metrics. The native dialect shapes its results.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..engine.core import EMBEDDER, RERANKER, Engine, two_stage
from ..engine.results import Hit, Ranking
from ..errors import Conflict, InvalidInput, naming
from . import CollectionInfo, Record, VectorStore
from .filters import parse_filter
from .metadata import encode_metadata

EXTERNAL_MODEL = "external"  # what a collection of callers' vectors records when they name no model


@dataclass(frozen=True)
class Added:
    """What an upsert did: the distinct records written, their ids in input order, the new size."""

    added: int
    ids: list[str]
    total: int


@dataclass(frozen=True)
class Found:
    """A search's hits (``Hit.index`` points into ``records``), and the collection's model."""

    ranking: Ranking
    records: list[Record]
    model: str


@dataclass(frozen=True)
class Got:
    """Records fetched, and the asked ids that were not there."""

    records: list[Record]
    missing_ids: list[str]


@dataclass(frozen=True)
class Deleted:
    """How many records went, and how many are left."""

    deleted: int
    total: int


def _caller_vectors(vectors: Sequence[Sequence[float]], expected: int, field: str = "vectors") -> np.ndarray:
    """Callers' vectors as unit-length float32 rows (cosine search), checked.

    Raises:
        InvalidInput: not one per text, of unequal lengths, or a zero vector.
    """
    if len(vectors) != expected:
        raise InvalidInput(f"{field} has {len(vectors)} entries for {expected} texts; send one per text",
                           field=field, limit=expected)
    if len({len(v) for v in vectors}) != 1:
        raise InvalidInput(f"{field}: every vector must have the same length", field=field)
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        bad = int(np.argmin(np.where(np.isfinite(norms), norms, 0)))
        where = field if field == "query_vector" else f"{field}[{bad}]"
        raise InvalidInput(f"{where}: a zero (or overflowing) vector has no direction to search by", field=where)
    return rows / norms[:, None]


def text_id(text: str) -> str:
    """The default id of a text: a stable hash of it, so adding a text twice replaces it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _metadata_per_text(metadata: dict[str, Any] | Sequence[dict[str, Any]] | None, n: int) -> list[dict[str, Any]]:
    """One metadata object per text (one for all is copied), each checked."""
    if isinstance(metadata, (list, tuple)):
        if len(metadata) != n:
            raise InvalidInput(f"metadata has {len(metadata)} entries for {n} texts; send one per text "
                               "or one object for all", field="metadata", limit=n)
        metas = [dict(m) for m in metadata]
        for i, meta in enumerate(metas):
            encode_metadata(meta, ("metadata", i))
        return metas
    encode_metadata(metadata or {}, ("metadata",))
    return [dict(metadata or {}) for _ in range(n)]


def _exactly_one(ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None) -> None:
    if (ids is None) == (filter_metadata is None):
        raise InvalidInput("send either ids or filter_metadata (exactly one)", field="ids")


class StoreService:
    """Store cords' logic over an ``Engine`` and a ``VectorStore`` (see module docstring)."""

    def __init__(self, engine: Engine, store: VectorStore) -> None:
        self.engine = engine
        self.store = store
        self.observer: Callable[[str, bool, float], None] | None = None  # (operation, succeeded, seconds)

    @property
    def kind(self) -> str:
        """Which store keeps the collections (``embedded`` or ``postgres``)."""
        return self.store.kind

    def close(self) -> None:
        """Close the store (the engine is closed by its owner)."""
        self.store.close()

    @contextmanager
    def _operation(self, op: str) -> Iterator[None]:
        """Time a store operation for the observer (metrics)."""
        started, ok = time.perf_counter(), False
        try:
            yield
            ok = True
        finally:
            if self.observer is not None:
                self.observer(op, ok, time.perf_counter() - started)

    def add(self, collection: str, texts: Sequence[str], ids: Sequence[str] | None,
            metadata: dict[str, Any] | Sequence[dict[str, Any]] | None,
            vectors: Sequence[Sequence[float]] | None = None, vector_model: str | None = None) -> Added:
        """Upsert texts (ids default to a hash of the text); returns after the store commits.

        With ``vectors`` (one per text) the caller's vectors are stored as given (normalised) and
        the collection is one of ``vector_model``'s (default ``external``) at their dimension;
        without, the server embeds the texts. A collection refuses vectors of another model or
        dimension (409).
        """
        if ids is not None and len(ids) != len(texts):
            raise InvalidInput(f"ids has {len(ids)} entries for {len(texts)} texts; send one id per text",
                               field="ids", limit=len(texts))
        metas = _metadata_per_text(metadata, len(texts))
        record_ids = list(ids) if ids is not None else [text_id(t) for t in texts]
        if vectors is not None:
            rows = _caller_vectors(vectors, len(texts))
            self.store.ensure_collection(collection, vector_model or EXTERNAL_MODEL, rows.shape[1])
        else:
            # fail fast on a model/dimension conflict, before spending a forward pass
            self.store.ensure_collection(collection, self.engine.model_id, self.engine.dimension)
            with naming("texts"):
                rows = self.engine.embed(texts).vectors
        records = [Record(i, t, m, v) for i, t, m, v in zip(record_ids, texts, metas, rows)]
        with self._operation("upsert"):
            total = self.store.upsert(collection, records)
        return Added(len(dict.fromkeys(record_ids)), record_ids, total)

    def search(self, collection: str, query: str | None, top_k: int, filter_metadata: dict[str, Any] | None,
               threshold: float | None, query_vector: Sequence[float] | None = None, *, rerank: bool = False,
               rerank_candidates: int = 50) -> Found:
        """The best matches of one query (a text the server embeds, or the caller's vector).

        With ``rerank`` (two-stage retrieval) the best ``rerank_candidates`` are retrieved by
        vector and the engine's reranker reorders them (it reads ``query`` with each text); the
        best ``top_k`` come back with both their vector ``score`` and their ``rerank_score``.

        Raises:
            InvalidInput: rerank without a query text, a bad filter or query vector.
            NotFound: no such collection.
            Conflict: the collection holds another model's vectors and no ``query_vector`` came.
            Overloaded: a model queue the search needs is full (asked before any work).
        """
        if rerank and query is None:
            raise InvalidInput("rerank reads the query text with each candidate: send query, not query_vector",
                               field="rerank")
        where = parse_filter(filter_metadata)
        model, dimension = self.store.model_of(collection)  # NotFound (404) for an unknown collection
        if query_vector is not None:  # no model is used (rerank needs the query text: refused above)
            vector = _caller_vectors([query_vector], 1, "query_vector")
            if vector.shape[1] != dimension:
                raise InvalidInput(f"query_vector has {vector.shape[1]} dimensions; collection {collection!r} holds "
                                   f"{dimension}", field="query_vector", limit=dimension)
        else:
            if (model, dimension) != (self.engine.model_id, self.engine.dimension):
                raise Conflict(f"collection {collection!r} holds vectors of {model!r} ({dimension}); this server "
                               f"embeds with {self.engine.model_id!r}: send query_vector made by {model!r}",
                               field="query")
            self.engine.check_admission([EMBEDDER, RERANKER] if rerank else [EMBEDDER])
            vector = self.engine.embed([query]).vectors
        wanted = max(top_k, rerank_candidates) if rerank else top_k
        with self._operation("search"):
            hits = self.store.search(collection, vector, wanted, where, threshold)[0]
        records = [Record(h.id, h.text, h.metadata, None) for h in hits]
        if rerank:
            scores = np.asarray([h.score for h in hits], dtype=np.float64)  # as the store gave them
            ranking = two_stage(self.engine.reranker, query or "", [h.text for h in hits], scores, top_k)
        else:
            ranking = Ranking([Hit(index=i, score=h.score, rank=i + 1) for i, h in enumerate(hits)])
        return Found(ranking, records, model)

    def get(self, collection: str, ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None = None,
            limit: int | None = None) -> Got:
        """Records by id (in the order asked, with the ids not found), or up to ``limit`` that a
        filter matches (the request model supplies its default)."""
        _exactly_one(ids, filter_metadata)
        with self._operation("get"):
            if ids is not None:
                records = self.store.get(collection, ids)
            elif limit is None or limit < 1:
                raise InvalidInput("a filtered get needs a limit of 1 or more", field="limit", limit=1)
            else:
                records = self.store.find(collection, parse_filter(filter_metadata), limit)
        present = {r.id for r in records}
        return Got(records, [i for i in ids if i not in present] if ids is not None else [])

    def delete(self, collection: str, ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None) -> Deleted:
        """Records by id or by a (non-empty) metadata filter; ``NotFound`` for an unknown collection."""
        _exactly_one(ids, filter_metadata)
        where = parse_filter(filter_metadata) if filter_metadata is not None else None
        if where is not None and not where:
            raise InvalidInput("an empty filter would delete everything; use /store/drop", field="filter_metadata")
        self.store.describe(collection)
        with self._operation("delete"):
            deleted = self.store.delete(collection, ids, where)
        return Deleted(deleted, self.store.describe(collection).size)

    def drop(self, collection: str) -> None:
        """A collection and everything in it."""
        with self._operation("drop"):
            self.store.drop(collection)

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection with its size, dimension, model and a few sample texts."""
        return self.store.collections()
