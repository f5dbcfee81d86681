"""The vector store: one interface, two implementations chosen by ``EMBEDDINGS_STORE_URL``.

- empty (default): ``EmbeddedStore``, SQLite (WAL) as the truth plus a FAISS index per
  collection, under ``EMBEDDINGS_DATA_DIR/store``; for one process.
- ``postgresql://...``: ``PgVectorStore``, PostgreSQL with pgvector (HNSW, cosine) through a
  connection pool; safe for many server processes at once.

Both take and return the types below, raise the service's errors (``NotFound``, ``Conflict``,
``InvalidInput``, ``BackendUnavailable``) and pass the same contract tests.

``open_store`` returns a ``StoreFacade`` over the implementation. As qdrant-client resolves a name
once (``_get_collection``), the facade checks each collection name once, at the door, and the
implementations trust the names they are given and resolve them to their per-collection object.

Importing this package is light (no numpy), so ``schemas.py`` in the chute file (SDK only) can take
``names.COLLECTION_NAME_PATTERN`` from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol, Sequence

from ..errors import Conflict, InvalidInput
from .names import COLLECTION_NAME, COLLECTION_NAME_PATTERN

if TYPE_CHECKING:
    import numpy as np

    from .filters import Filter

__all__ = ["COLLECTION_NAME_PATTERN", "NO_LEGS", "Chunk", "CollectionInfo", "Hit", "Legs", "Record", "SparseVector",
           "VectorStore", "batched", "check_collection_name", "chunk_id", "missing_leg", "model_conflict", "open_store"]

SAMPLE_TEXTS = 3


@dataclass(frozen=True)
class SparseVector:
    """A learned-sparse vector: vocabulary ids (ascending, distinct) and their weights (> 0)."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Chunk:
    """Where a record sits in a document: the document's id, the chunk's index in it (from 0) and
    its character span ``[start, end)`` in the document's text."""

    document_id: str
    index: int
    start: int
    end: int


def chunk_id(document_id: str, index: int) -> str:
    """The record id of a document's chunk: ``{document_id}#{index}`` (one id per pair: the index
    is the digits after the last ``#``)."""
    return f"{document_id}#{index}"


@dataclass(frozen=True)
class Record:
    """One stored text (``sparse``: its learned-sparse vector, in a collection with a sparse leg;
    ``chunk``: where it sits in a document, for a document's chunk, else None)."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None
    sparse: SparseVector | None = None
    chunk: Chunk | None = None


@dataclass(frozen=True)
class Hit:
    """One search result (score: the leg's own: cosine similarity, BM25, or a sparse dot product;
    ``chunk``: where it sits in its document, for a document's chunk)."""

    id: str
    text: str
    score: float
    metadata: dict[str, Any]
    chunk: Chunk | None = None


@dataclass(frozen=True)
class Legs:
    """What a collection can be searched by besides its dense vectors, fixed when it is created.

    ``lexical``: the analyzer (``lexical.analyzer``, by language) of its BM25 index; ``sparse_model``:
    the sparse encoder its records' sparse vectors come from, or None (no sparse leg).
    """

    lexical: str | None = None
    sparse_model: str | None = None


NO_LEGS = Legs()


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's state (``describe``): its size, what built it and a few of its texts."""

    name: str
    size: int
    dimension: int
    model: str
    sample_texts: list[str]
    legs: Legs = field(default_factory=Legs)


def missing_leg(name: str, mode: str, legs: Legs) -> InvalidInput:
    """The 422 for a search by a leg (``mode``: ``lexical`` or ``sparse``) the collection lacks."""
    have = ["dense", *(["lexical"] if legs.lexical else []), *(["sparse"] if legs.sparse_model else [])]
    return InvalidInput(f"collection {name!r} has no {mode} leg; it can be searched by: {', '.join(have)} "
                        "(legs are fixed when a collection is created)", field="mode", limit=have)


def check_collection_name(name: str) -> str:
    """Return ``name`` if it is 1..64 of [A-Za-z0-9_-], or two such segments joined by ``/``
    (``namespace/collection``, see ``names``); it never becomes a path or SQL otherwise.

    Raises:
        InvalidInput: any other name (422, ``field="collection"``).
    """
    if not isinstance(name, str) or not COLLECTION_NAME.match(name):
        raise InvalidInput(f"collection name {name!r} must be 1..64 characters of A-Z a-z 0-9 _ - "
                           "(namespace/collection: two such names)",
                           field="collection", limit=COLLECTION_NAME_PATTERN)
    return name


def model_conflict(name: str, have_model: str, have_dim: int, model: str, dimension: int) -> Conflict:
    """The 409 for vectors of another model or dimension than a collection holds."""
    return Conflict(f"collection {name!r} holds {have_dim}-dimensional vectors of {have_model!r}; this request "
                    f"brings {model!r} ({dimension}). Use another collection or drop this one.", field="collection")


class VectorStore(Protocol):
    """What both stores (and the facade over them) offer. Vectors are unit-length float32 rows.

    Behind the facade every ``name`` is a valid collection name: the facade raises ``InvalidInput``
    for any other, once, before an implementation sees it.
    """

    kind: str

    def describe(self, name: str) -> CollectionInfo:
        """The collection's state. Raises ``NotFound``."""
        ...

    def ensure_collection(self, name: str, model: str, dimension: int, legs: Legs = NO_LEGS) -> None:
        """Create the collection (with ``legs``), or check it was built with this model and dimension
        (``Conflict``). An existing collection keeps the legs it was created with."""
        ...

    def legs(self, name: str) -> Legs:
        """The collection's lexical and sparse legs (cheap). Raises ``NotFound``."""
        ...

    def model_of(self, name: str) -> tuple[str, int]:
        """The model and dimension the collection was built with (cheap). Raises ``NotFound``."""
        ...

    def upsert(self, name: str, records: Sequence[Record], documents: Sequence[str] = ()) -> int:
        """Insert or replace records by id, atomically and durably; returns the collection size.

        ``documents``: ids of documents whose chunks ``records`` bring whole: their chunks not
        among ``records`` are deleted in the same transaction (a document that shrank leaves no
        orphans). A record's id may not be a chunk's id or a document's id, nor a document's id
        a plain record's id, nor a chunk's id another document's chunk's (``store.documents``):
        ``Conflict`` with the stored ones, ``InvalidInput`` within ``records``.
        """
        ...

    def search(self, name: str, queries: np.ndarray, top_k: int, where: Filter,
               threshold: float | None) -> list[list[Hit]]:
        """Best ``top_k`` hits per query row, best first. Raises ``NotFound``."""
        ...

    def search_lexical(self, name: str, terms: Sequence[str], top_k: int, where: Filter) -> list[Hit]:
        """Best ``top_k`` records by BM25 of the query's analyzed ``terms`` (``Hit.score``: the BM25
        score, higher is better), among those ``where`` allows. Raises ``NotFound``, and
        ``InvalidInput`` for a collection without a lexical leg."""
        ...

    def search_sparse(self, name: str, query: SparseVector, top_k: int, where: Filter) -> list[Hit]:
        """Best ``top_k`` records by the dot product of their sparse vector with ``query``, among
        those ``where`` allows. Raises ``NotFound``, and ``InvalidInput`` without a sparse leg."""
        ...

    def get(self, name: str, ids: Sequence[str]) -> list[Record]:
        """The records with these ids that exist, in the order asked (vectors included)."""
        ...

    def get_documents(self, name: str, document_ids: Sequence[str]) -> list[Record]:
        """Every chunk of these documents, by document in the order asked, then by chunk index."""
        ...

    def find(self, name: str, where: Filter, limit: int) -> list[Record]:
        """Up to ``limit`` records the filter matches, oldest first (vectors included). Raises ``NotFound``."""
        ...

    def delete(self, name: str, ids: Sequence[str] | None, where: Filter | None,
               document_ids: Sequence[str] | None = None) -> int:
        """Delete by ids, by filter, or (``document_ids``) every chunk of these documents, in one
        transaction; returns how many records went."""
        ...

    def drop(self, name: str) -> None:
        """Delete a collection and everything in it. Raises ``NotFound``."""
        ...

    def collections(self) -> list[CollectionInfo]:
        """Every collection's state, by name."""
        ...

    def export(self, name: str) -> Iterator[Record]:
        """Every record of a collection with its vector (for moving collections between stores)."""
        ...

    def close(self) -> None:
        """Release the store (the embedded store saves its index snapshots first)."""
        ...


def open_store(url: str, data_dir: Path, **options: Any) -> VectorStore:
    """The store for ``EMBEDDINGS_STORE_URL`` behind its facade (see module docstring).

    Args:
        url: empty for the embedded store, or ``postgresql://...``.
        data_dir: ``EMBEDDINGS_DATA_DIR``; the embedded store lives in its ``store`` folder.
        options: the implementation's tuning options (``Settings.store_options``).

    Raises:
        ValueError: an unsupported URL scheme.
    """
    from .facade import StoreFacade

    if not url:
        from .embedded import EmbeddedStore

        return StoreFacade(EmbeddedStore(data_dir / "store", **options))
    if url.startswith(("postgresql://", "postgres://")):
        from .pgvector import PgVectorStore

        return StoreFacade(PgVectorStore(url, **options))
    raise ValueError(f"EMBEDDINGS_STORE_URL={url!r}: expected empty (embedded store) or postgresql://...")


def batched(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Lists of at most ``size`` records."""
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
