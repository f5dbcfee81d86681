"""The store verbs: embed with the engine, keep in the vector store, answer with plain dicts."""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from .engine import Engine
from .errors import InvalidInput
from .store import CollectionInfo, Record, VectorStore, check_collection_name
from .store.filters import parse_filter
from .store.metadata import encode_metadata


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
            metadata: dict[str, Any] | Sequence[dict[str, Any]] | None) -> dict[str, Any]:
        """Upsert texts (ids default to a hash of the text); acknowledged after the store commits."""
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
        # fail fast on a model/dimension conflict, before spending a forward pass
        self.store.ensure_collection(collection, self.engine.model_id, self.engine.dimension)
        vectors = self.engine.embed_vectors(texts, field="texts")
        records = [Record(i, t, m, v) for i, t, m, v in zip(record_ids, texts, metas, vectors)]
        with self._operation("upsert"):
            total = self.store.upsert(collection, records)
        return {"collection": collection, "added_count": len(dict.fromkeys(record_ids)), "ids": record_ids,
                "total_in_collection": total}

    def search(self, collection: str, query: str, top_k: int, filter_metadata: dict[str, Any] | None,
               threshold: float | None) -> dict[str, Any]:
        """The best matches of one query in a stored collection."""
        where = parse_filter(filter_metadata)
        check_collection_name(collection)
        vector = self.engine.embed_vectors([query], field="query")  # the store answers NotFound (404)
        with self._operation("search"):
            hits = self.store.search(collection, vector, top_k, where, threshold)[0]
        results = [{"id": h.id, "text": h.text, "score": h.score, "rank": rank, "metadata": h.metadata}
                   for rank, h in enumerate(hits, start=1)]
        return {"collection": collection, "query": query, "results": results, "results_returned": len(results),
                "model": self.engine.model_id}

    def get(self, collection: str, ids: Sequence[str], include_vectors: bool) -> dict[str, Any]:
        with self._operation("get"):
            records = self.store.get(collection, ids)
        found = [{"id": r.id, "text": r.text, "metadata": r.metadata,
                  **({"vector": r.vector.tolist()} if include_vectors and r.vector is not None else {})}
                 for r in records]
        present = {r.id for r in records}
        return {"collection": collection, "records": found, "missing_ids": [i for i in ids if i not in present]}

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
