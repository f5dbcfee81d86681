"""The store verbs: embed with the engine, keep in the vector store, answer with plain dicts."""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..engine.core import Engine
from ..errors import Conflict, InvalidInput
from . import CollectionInfo, Record, VectorStore, check_collection_name
from .filters import parse_filter
from .metadata import encode_metadata


EXTERNAL_MODEL = "external"  # what a collection of callers' vectors records when they name no model


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


def _info_dict(info: CollectionInfo) -> dict[str, Any]:
    return {"name": info.name, "size": info.size, "dimension": info.dimension, "model": info.model,
            "sample_texts": info.sample_texts}


class Collections:
    """Store cords' logic over an ``Engine`` and a ``VectorStore``."""

    def __init__(self, engine: Engine, store: VectorStore) -> None:
        self.engine = engine
        self.store = store
        self.observer: Callable[[str, bool, float], None] | None = None  # (operation, succeeded, seconds)

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
            vectors: Sequence[Sequence[float]] | None = None, vector_model: str | None = None) -> dict[str, Any]:
        """Upsert texts (ids default to a hash of the text); acknowledged after the store commits.

        With ``vectors`` (one per text) the caller's vectors are stored as given (normalised) and
        the collection is one of ``vector_model``'s (default ``external``) at their dimension;
        without, the server embeds the texts. A collection refuses vectors of another model or
        dimension (409).
        """
        check_collection_name(collection)
        if ids is not None and len(ids) != len(texts):
            raise InvalidInput(f"ids has {len(ids)} entries for {len(texts)} texts; send one id per text",
                               field="ids", limit=len(texts))
        if isinstance(metadata, (list, tuple)):
            if len(metadata) != len(texts):
                raise InvalidInput(f"metadata has {len(metadata)} entries for {len(texts)} texts; send one per text "
                                   "or one object for all", field="metadata", limit=len(texts))
            metas = [dict(m) for m in metadata]
            for i, meta in enumerate(metas):
                encode_metadata(meta, ("metadata", i))
        else:
            encode_metadata(metadata or {}, ("metadata",))
            metas = [dict(metadata or {}) for _ in texts]
        record_ids = list(ids) if ids is not None else [text_id(t) for t in texts]
        if vectors is not None:
            rows = _caller_vectors(vectors, len(texts))
            self.store.ensure_collection(collection, vector_model or EXTERNAL_MODEL, rows.shape[1])
        else:
            # fail fast on a model/dimension conflict, before spending a forward pass
            self.store.ensure_collection(collection, self.engine.model_id, self.engine.dimension)
            rows = self.engine.embed_vectors(texts, field="texts")
        records = [Record(i, t, m, v) for i, t, m, v in zip(record_ids, texts, metas, rows)]
        with self._operation("upsert"):
            total = self.store.upsert(collection, records)
        return {"collection": collection, "added_count": len(dict.fromkeys(record_ids)), "ids": record_ids,
                "total_in_collection": total}

    def search(self, collection: str, query: str | None, top_k: int, filter_metadata: dict[str, Any] | None,
               threshold: float | None, query_vector: Sequence[float] | None = None,
               rerank_candidates: int | None = None) -> dict[str, Any]:
        """The best matches of one query (a text the server embeds, or the caller's vector).

        With ``rerank_candidates`` (two-stage retrieval) that many are retrieved by vector and the
        engine's reranker reorders them (it reads ``query`` with each text); the best ``top_k`` are
        returned with both their vector ``score`` and their ``rerank_score``.
        """
        if rerank_candidates is not None and query is None:
            raise InvalidInput("rerank reads the query text with each candidate: send query, not query_vector",
                               field="rerank")
        where = parse_filter(filter_metadata)
        check_collection_name(collection)
        model, dimension = self.store.model_of(collection)  # NotFound (404) for an unknown collection
        if query_vector is not None:
            vector = _caller_vectors([query_vector], 1, "query_vector")
            if vector.shape[1] != dimension:
                raise InvalidInput(f"query_vector has {vector.shape[1]} dimensions; collection {collection!r} holds "
                                   f"{dimension}", field="query_vector", limit=dimension)
        else:
            if (model, dimension) != (self.engine.model_id, self.engine.dimension):
                raise Conflict(f"collection {collection!r} holds vectors of {model!r} ({dimension}); this server "
                               f"embeds with {self.engine.model_id!r}: send query_vector made by {model!r}",
                               field="query")
            vector = self.engine.embed_vectors([query], field="query")
        wanted = top_k if rerank_candidates is None else max(top_k, rerank_candidates)
        with self._operation("search"):
            hits = self.store.search(collection, vector, wanted, where, threshold)[0]
        results = [{"id": h.id, "text": h.text, "score": h.score, "rank": rank, "metadata": h.metadata}
                   for rank, h in enumerate(hits, start=1)]
        reranked: dict[str, Any] = {}
        if rerank_candidates is not None:
            results, reranked["reranker"] = self.engine.rerank_hits(query, results, top_k_=top_k)
        return {"collection": collection, "query": query, "results": results, "results_returned": len(results),
                "model": model, **reranked}

    def get(self, collection: str, ids: Sequence[str] | None, include_vectors: bool = False,
            filter_metadata: dict[str, Any] | None = None, limit: int | None = None) -> dict[str, Any]:
        """Records by id (in the order asked, with the ids not found), or up to ``limit`` that a filter
        matches (the request model supplies its default)."""
        if (ids is None) == (filter_metadata is None):
            raise InvalidInput("send either ids or filter_metadata (exactly one)", field="ids")
        check_collection_name(collection)
        with self._operation("get"):
            if ids is not None:
                records = self.store.get(collection, ids)
            elif limit is None or limit < 1:
                raise InvalidInput("a filtered get needs a limit of 1 or more", field="limit", limit=1)
            else:
                records = self.store.find(collection, parse_filter(filter_metadata), limit)
        found = [{"id": r.id, "text": r.text, "metadata": r.metadata,
                  **({"vector": r.vector.tolist()} if include_vectors and r.vector is not None else {})}
                 for r in records]
        present = {r.id for r in records}
        return {"collection": collection, "records": found,
                "missing_ids": [i for i in ids if i not in present] if ids is not None else []}

    def delete(self, collection: str, ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None) -> dict[str, Any]:
        if (ids is None) == (filter_metadata is None):
            raise InvalidInput("send either ids or filter_metadata (exactly one)", field="ids")
        where = parse_filter(filter_metadata) if filter_metadata is not None else None
        if where is not None and not where:
            raise InvalidInput("an empty filter would delete everything; use /store/drop", field="filter_metadata")
        self.store.describe(collection)
        with self._operation("delete"):
            deleted = self.store.delete(collection, ids, where)
        return {"collection": collection, "deleted_count": deleted,
                "total_in_collection": self.store.describe(collection).size}

    def drop(self, collection: str) -> dict[str, Any]:
        with self._operation("drop"):
            self.store.drop(collection)
        return {"collection": collection, "dropped": True}

    def collections(self) -> dict[str, Any]:
        infos = self.store.collections()
        return {"collections": [_info_dict(i) for i in infos], "total": len(infos), "store": self.store.kind}
