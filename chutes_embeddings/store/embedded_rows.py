"""The embedded store's rows: reading them by id, a row's ``Record``, the legs' parts of a write."""

from __future__ import annotations

import sqlite3
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..lexical.analyzer import analyzer
from ..lexical.hashed import HashedWords, hash_words
from . import Chunk, Legs, Record, documents
from .documents import chunk_of, chunk_values
from .filters import Filter
from .metadata import decode_metadata
from .sparse import arrays_of, check_records, from_blob, to_blob
from .sqlite_filters import sqlite_where

CHUNK_COLUMNS = "document_id, chunk, span_start, span_end"  # the columns ``chunk_of`` reads
RECORD_COLUMNS = f"id, text, metadata, vector, sparse, {CHUNK_COLUMNS}"  # the columns ``record`` reads
# Hits by primary key: ``+collection`` keeps the planner off the (collection, id) index, which
# would walk the whole collection to find a handful of rids.
ROWS_BY_RID = (f"SELECT rid, id, text, metadata, {CHUNK_COLUMNS} FROM records "
               "WHERE rid IN ({marks}) AND +collection = ?")

# An upsert's rows, ``upsert_row`` each: a record replaced by id keeps its row id (the index's key)
UPSERT = ("INSERT INTO records (collection, id, text, metadata, vector, version, sparse, document_id, chunk, "
          "span_start, span_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (collection, id) DO UPDATE "
          "SET text = excluded.text, metadata = excluded.metadata, vector = excluded.vector, "
          "version = excluded.version, sparse = excluded.sparse, document_id = excluded.document_id, "
          "chunk = excluded.chunk, span_start = excluded.span_start, span_end = excluded.span_end")


def upsert_row(name: str, r: Record, meta: str, vector: np.ndarray, version: int,
               sparse: bytes | None) -> tuple[Any, ...]:
    """The values of ``UPSERT`` for one record."""
    return (name, r.id, r.text, meta, vector.tobytes(), version, sparse, *chunk_values(r))


def rows_by_rid(db: sqlite3.Connection, name: str, rids: set[int],
                where: Filter | None = None) -> dict[int, tuple[str, str, dict[str, Any], Chunk | None]]:
    """``{rid: (id, text, metadata, chunk)}`` of the rows with these row ids that ``where`` allows."""
    if not rids:
        return {}
    sql, params = ROWS_BY_RID.format(marks=",".join("?" * len(rids))), [*rids, name]
    if where:
        clause, args = sqlite_where(where)
        sql, params = f"{sql} AND {clause}", [*params, *args]
    rows = db.execute(sql, params).fetchall()
    return {row[0]: (row[1], row[2], decode_metadata(row[3], name), chunk_of(*row[4:])) for row in rows}


def by_ids(db: sqlite3.Connection, sql: str, name: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (with ``{marks}`` for the id list) for ids in chunks SQLite accepts."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        rows += db.execute(sql.format(marks=",".join("?" * len(chunk))), [name, *chunk]).fetchall()
    return rows


def record(row: tuple[Any, ...], name: str) -> Record:
    """A ``Record`` of a row of ``RECORD_COLUMNS``."""
    rec_id, text, meta, vec, sparse = row[:5]
    return Record(rec_id, text, decode_metadata(meta, name), np.frombuffer(vec, dtype=np.float32).copy(),
                  from_blob(sparse), chunk_of(*row[5:]))


def delete_replaced(db: sqlite3.Connection, name: str, records: Sequence[Record], whole: Sequence[str],
                    version: int) -> np.ndarray:
    """Check a write's ids against the stored rows (``documents.plan``) and delete the stored chunks
    it replaces, in the caller's transaction (logged as deletions of ``version``); returns their row
    ids, for the in-memory indexes (``EmbeddedCollection.apply_delete``)."""
    wanted = documents.probe(records, whole)
    stored = by_ids(db, "SELECT id, document_id FROM records WHERE collection = ? AND id IN ({marks})", name,
                    wanted.ids)
    stored += by_ids(db, "SELECT id, document_id FROM records WHERE collection = ? AND document_id IN ({marks})",
                     name, wanted.document_ids)
    stale = documents.plan(records, whole, stored)
    rids = [r[0] for r in by_ids(db, "DELETE FROM records WHERE collection = ? AND id IN ({marks}) RETURNING rid",
                                 name, stale)]
    db.executemany("INSERT INTO deletions (collection, rid, version) VALUES (?, ?, ?)",
                   [(name, rid, version) for rid in rids])
    return np.array(rids, dtype=np.int64)


def documents_of(db: sqlite3.Connection, name: str, document_ids: Sequence[str]) -> list[Record]:
    """Every chunk of these documents (``VectorStore.get_documents``)."""
    rows = by_ids(db, f"SELECT {RECORD_COLUMNS} FROM records WHERE collection = ? AND document_id IN ({{marks}})",
                  name, document_ids)
    return documents.by_document([record(row, name) for row in rows], document_ids)


class Prepared(NamedTuple):
    """What an upsert writes besides the rows: its texts' words (``hash_words``, for the lexical
    index) and each record's sparse vector (or None)."""

    legs: Legs
    words: HashedWords | None
    sparse_blobs: list[bytes | None]
    sparse_rows: list[tuple[np.ndarray, np.ndarray]] | None


def prepare(legs: Legs, records: list[Record]) -> Prepared:
    """Analyze the texts for a lexical leg and check and encode the sparse vectors for a sparse one."""
    words = hash_words(analyzer(legs.lexical), [r.text for r in records]) if legs.lexical else None
    if not legs.sparse_model:
        return Prepared(legs, words, [None] * len(records), None)
    check_records(records)
    blobs: list[bytes | None] = [to_blob(r.sparse) for r in records]  # type: ignore[arg-type]
    return Prepared(legs, words, blobs, [arrays_of(b) for b in blobs])  # type: ignore[arg-type]


