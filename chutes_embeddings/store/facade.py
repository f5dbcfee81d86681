"""The door of a store: a collection name is checked here, once, and trusted behind it.

qdrant-client's ``QdrantClient`` forwards every call to a local or a remote client, and the local
one resolves the name once (``_get_collection``) to a per-collection object. ``StoreFacade`` does
the same at our scale: each verb checks the name (``InvalidInput``, 422) and forwards the call;
``EmbeddedStore`` and ``PgVectorStore`` resolve the name to their per-collection object
(``NotFound`` for an unknown one) and never check it again. Every verb that takes a name goes
through the check, ``drop`` and ``delete`` included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

from . import NO_LEGS, CollectionInfo, Hit, Legs, Record, SparseVector, VectorStore, check_collection_name
from .documents import check_batch

if TYPE_CHECKING:
    import numpy as np

    from .filters import Filter


class StoreFacade:
    """A ``VectorStore`` that checks collection names and forwards to ``implementation``.

    Args:
        implementation: the store behind the door; it trusts the names it is given.
    """

    def __init__(self, implementation: VectorStore) -> None:
        self.implementation = implementation
        self.kind = implementation.kind

    def describe(self, name: str) -> CollectionInfo:
        """The collection's state. Raises ``InvalidInput`` (bad name) or ``NotFound``."""
        return self.implementation.describe(check_collection_name(name))

    def ensure_collection(self, name: str, model: str, dimension: int, legs: Legs = NO_LEGS) -> None:
        """Create the collection (with ``legs``) or check its model and dimension. Raises ``InvalidInput``
        or ``Conflict``."""
        self.implementation.ensure_collection(check_collection_name(name), model, dimension, legs)

    def legs(self, name: str) -> Legs:
        """The collection's lexical and sparse legs. Raises ``InvalidInput`` or ``NotFound``."""
        return self.implementation.legs(check_collection_name(name))

    def model_of(self, name: str) -> tuple[str, int]:
        """The model and dimension the collection was built with. Raises ``InvalidInput`` or ``NotFound``."""
        return self.implementation.model_of(check_collection_name(name))

    def upsert(self, name: str, records: Sequence[Record], documents: Sequence[str] = ()) -> int:
        """Insert or replace records by id (and ``documents`` whole), durably; returns the collection
        size. Raises ``InvalidInput`` or ``Conflict`` (ids that collide: ``store.documents``)."""
        check_collection_name(name)
        check_batch(records)
        return self.implementation.upsert(name, records, documents)

    def search(self, name: str, queries: np.ndarray, top_k: int, where: Filter,
               threshold: float | None) -> list[list[Hit]]:
        """Best ``top_k`` hits per query row, best first. Raises ``InvalidInput`` or ``NotFound``."""
        return self.implementation.search(check_collection_name(name), queries, top_k, where, threshold)

    def search_lexical(self, name: str, terms: Sequence[str], top_k: int, where: Filter) -> list[Hit]:
        """Best ``top_k`` records by BM25 of ``terms``. Raises ``InvalidInput`` (also: no lexical leg)
        or ``NotFound``."""
        return self.implementation.search_lexical(check_collection_name(name), terms, top_k, where)

    def search_sparse(self, name: str, query: SparseVector, top_k: int, where: Filter) -> list[Hit]:
        """Best ``top_k`` records by sparse dot product with ``query``. Raises ``InvalidInput`` (also: no
        sparse leg) or ``NotFound``."""
        return self.implementation.search_sparse(check_collection_name(name), query, top_k, where)

    def get(self, name: str, ids: Sequence[str]) -> list[Record]:
        """The records with these ids that exist, in the order asked. Raises ``InvalidInput`` or ``NotFound``."""
        return self.implementation.get(check_collection_name(name), ids)

    def get_documents(self, name: str, document_ids: Sequence[str]) -> list[Record]:
        """Every chunk of these documents, by document then chunk. Raises ``InvalidInput`` or ``NotFound``."""
        return self.implementation.get_documents(check_collection_name(name), document_ids)

    def find(self, name: str, where: Filter, limit: int) -> list[Record]:
        """Up to ``limit`` records the filter matches, oldest first. Raises ``InvalidInput`` or ``NotFound``."""
        return self.implementation.find(check_collection_name(name), where, limit)

    def delete(self, name: str, ids: Sequence[str] | None, where: Filter | None,
               document_ids: Sequence[str] | None = None) -> int:
        """Delete by ids, by filter or by documents; returns how many records went. Raises
        ``InvalidInput`` or ``NotFound``."""
        return self.implementation.delete(check_collection_name(name), ids, where, document_ids)

    def drop(self, name: str) -> None:
        """Delete a collection and everything in it. Raises ``InvalidInput`` or ``NotFound``."""
        self.implementation.drop(check_collection_name(name))

    def collections(self) -> list[CollectionInfo]:
        """Every collection's state, by name."""
        return self.implementation.collections()

    def export(self, name: str) -> Iterator[Record]:
        """Every record of a collection with its vector. Raises ``InvalidInput`` at once (not on iteration)."""
        return self.implementation.export(check_collection_name(name))

    def close(self) -> None:
        """Close the store behind the door."""
        self.implementation.close()
