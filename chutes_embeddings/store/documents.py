"""Documents in a store: the rules one write of records and document chunks must keep, for both stores.

A document is stored as its chunks: records whose ``Record.chunk`` names the document, each with
the id ``chunk_id(document_id, index)``. Ids stay unambiguous across plain records and documents:

- a plain record's id is neither a stored chunk's id nor a stored document's id;
- a document's id is not a stored plain record's id;
- a chunk's id is not a stored record's id unless that record is the same document's chunk.

Within one write the same holds among the records written (``check_batch``). A store reads the rows a write could
collide with (``probe``), and ``plan`` checks them and names the chunks the write replaces: those
of a document written whole (``documents``) that the write does not bring again.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

from ..errors import Conflict, InvalidInput
from . import Chunk, Record


class Probe(NamedTuple):
    """What a store looks up before a write: rows with one of ``ids`` as id or ``document_ids`` as document."""

    ids: list[str]
    document_ids: list[str]


def probe(records: Sequence[Record], documents: Sequence[str]) -> Probe:
    """The rows ``plan`` needs to see for this write: by id (the primary key) and by document (its
    index), so a write of plain records costs one indexed lookup."""
    plain = [r.id for r in records if r.chunk is None]
    chunks = [r for r in records if r.chunk is not None]
    doc_ids = list(dict.fromkeys([r.chunk.document_id for r in chunks if r.chunk] + list(documents)))
    ids = list(dict.fromkeys(plain + [r.id for r in chunks] + doc_ids))
    return Probe(ids, list(dict.fromkeys(doc_ids + plain)))


def check_batch(records: Sequence[Record]) -> None:
    """The rules among the records of one write, before a store keeps the last record of an id
    (``StoreFacade.upsert`` asks).

    Raises:
        InvalidInput: a plain record's id is a document's or a chunk's of the same write.
    """
    plain = {r.id for r in records if r.chunk is None}
    for r in records:
        if r.chunk is None:
            continue
        if r.chunk.document_id in plain:
            raise InvalidInput(f"document id {r.chunk.document_id!r} is also the id of a record in this request; "
                               "give documents and records distinct ids", field="documents",
                               limit="distinct ids")
        if r.id in plain:
            raise InvalidInput(f"record id {r.id!r} is also the id of chunk {r.chunk.index} of document "
                               f"{r.chunk.document_id!r} in this request", field="ids", limit="distinct ids")


def plan(records: Sequence[Record], documents: Sequence[str], stored: Iterable[tuple[str, str | None]]) -> list[str]:
    """Check a write against the stored rows it could collide with; return the ids of the stored
    chunks it replaces (see module docstring).

    Args:
        records: the records written (plain and chunks).
        documents: ids of the documents the write brings whole.
        stored: ``(id, document_id)`` of the stored rows ``probe`` named (``document_id`` None for
            a plain record).

    Raises:
        Conflict: a record collides with a stored one (``field``: ``ids`` or ``documents``).
    """
    plain = {r.id for r in records if r.chunk is None}
    chunk_doc = {r.id: r.chunk.document_id for r in records if r.chunk is not None}
    doc_ids = set(chunk_doc.values())
    whole = set(documents)
    stale: list[str] = []
    for row_id, row_doc in stored:
        if row_id in plain and row_doc is not None:
            raise Conflict(f"record id {row_id!r} is a chunk of document {row_doc!r}; delete the document "
                           "(document_ids) or use another id", field="ids")
        if row_doc is not None and row_doc in plain:
            raise Conflict(f"record id {row_doc!r} is the id of a stored document; use another id", field="ids")
        if row_doc is None and row_id in doc_ids:
            raise Conflict(f"document id {row_id!r} is the id of a stored record; use another document id "
                           "or delete the record", field="documents")
        if row_id in chunk_doc and row_doc != chunk_doc[row_id]:
            owner = "a stored record" if row_doc is None else f"a chunk of document {row_doc!r}"
            raise Conflict(f"chunk id {row_id!r} of document {chunk_doc[row_id]!r} is the id of {owner}",
                           field="documents")
        if row_doc in whole and row_id not in chunk_doc:
            stale.append(row_id)
    return stale


def chunk_of(document_id: str | None, index: int | None, start: int | None, end: int | None) -> Chunk | None:
    """The ``Chunk`` of a stored row's document columns (None for a plain record)."""
    return None if document_id is None else Chunk(document_id, int(index or 0), int(start or 0), int(end or 0))


def chunk_values(r: Record) -> tuple[str | None, int | None, int | None, int | None]:
    """A record's values for the document columns (document id, index, span start, span end)."""
    c = r.chunk
    return (None, None, None, None) if c is None else (c.document_id, c.index, c.start, c.end)


def by_document(records: list[Record], document_ids: Sequence[str]) -> list[Record]:
    """Chunks by document in the order of ``document_ids``, then by index."""
    order = {d: i for i, d in enumerate(dict.fromkeys(document_ids))}
    return sorted(records, key=lambda r: (order[r.chunk.document_id], r.chunk.index))  # type: ignore[union-attr]
