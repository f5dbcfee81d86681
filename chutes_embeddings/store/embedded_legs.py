"""The embedded store's searches by its lexical and sparse legs (``LegSearch``, a part of ``EmbeddedStore``).

Both search an in-memory index of the collection (``LexicalIndex``, ``SparseIndex``) and apply the
filter inside the leg: on the in-memory metadata columns from ``filter_memory_min_rows`` records on
where they can decide it, else in SQLite; and both read their hits by primary key through the
filter, as dense search does.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import Hit, Legs, SparseVector, missing_leg
from .embedded_rows import rows_by_rid
from .filters import Filter
from .sparse import check_sparse
from .sqlite_filters import sqlite_where

if TYPE_CHECKING:
    from .embedded_collection import EmbeddedCollection


class LegSearch:
    """``search_lexical`` and ``search_sparse`` of ``EmbeddedStore`` (which provides the rest)."""

    filter_memory_min_rows: int

    if TYPE_CHECKING:
        def _db(self) -> sqlite3.Connection: ...
        def _collection(self, name: str) -> EmbeddedCollection: ...
        def legs(self, name: str) -> Legs: ...

    def search_lexical(self, name: str, terms: Sequence[str], top_k: int, where: Filter) -> list[Hit]:
        """See ``VectorStore.search_lexical``: the collection's ``LexicalIndex`` (BM25 as FTS5's
        ``bm25()``), exact."""
        collection = self._collection(name)
        if collection.lexical is None:
            raise missing_leg(name, "lexical", self.legs(name))
        found = collection.lexical.search(terms, top_k, self._allowed(name, collection, where))
        return self._hits(name, found, where)

    def search_sparse(self, name: str, query: SparseVector, top_k: int, where: Filter) -> list[Hit]:
        """See ``VectorStore.search_sparse``: the collection's ``SparseIndex``, exact."""
        collection = self._collection(name)
        if collection.sparse is None:
            raise missing_leg(name, "sparse", self.legs(name))
        check_sparse(query, "the query")
        allowed = self._allowed(name, collection, where)
        scores, rids = collection.sparse.search(np.asarray(query.indices), np.asarray(query.values), top_k, allowed)
        return self._hits(name, list(zip(rids.tolist(), scores.tolist())), where)

    def _allowed(self, name: str, collection: EmbeddedCollection, where: Filter) -> np.ndarray | None:
        """The row ids ``where`` allows (None: no filter): from the metadata columns where they can
        decide it, else from SQLite."""
        if not where:
            return None
        allowed = None
        if len(collection.vectors) >= self.filter_memory_min_rows:
            allowed = collection.vectors.allowed_rids(where)
        if allowed is None:
            sql, args = sqlite_where(where)
            allowed = np.array([r[0] for r in self._db().execute(
                f"SELECT rid FROM records WHERE collection = ? AND {sql}", [name, *args])], dtype=np.int64)
        return allowed

    def _hits(self, name: str, found: list[tuple[int, float]], where: Filter) -> list[Hit]:
        """Hits of ``(rid, score)`` pairs, in their order, read through ``where`` (see ``search``)."""
        rows = rows_by_rid(self._db(), name, {rid for rid, _ in found}, where or None)
        return [Hit(*rows[rid][:2], float(score), *rows[rid][2:]) for rid, score in found if rid in rows]
