"""The embedded store's rows: reading them by id, a row's ``Record``, the legs' parts of a write."""

from __future__ import annotations

import sqlite3
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..lexical.analyzer import analyzer
from ..lexical.hashed import HashedWords, hash_words
from . import Legs, Record
from .filters import Filter
from .metadata import decode_metadata
from .sparse import arrays_of, check_records, from_blob, to_blob
from .sqlite_filters import sqlite_where

RECORD_COLUMNS = "id, text, metadata, vector, sparse"  # the columns ``record`` reads
# Hits by primary key: ``+collection`` keeps the planner off the (collection, id) index, which
# would walk the whole collection to find a handful of rids.
ROWS_BY_RID = "SELECT rid, id, text, metadata FROM records WHERE rid IN ({marks}) AND +collection = ?"


def rows_by_rid(db: sqlite3.Connection, name: str, rids: set[int],
                where: Filter | None = None) -> dict[int, tuple[str, str, dict[str, Any]]]:
    """``{rid: (id, text, metadata)}`` of the rows with these row ids that ``where`` allows."""
    if not rids:
        return {}
    sql, params = ROWS_BY_RID.format(marks=",".join("?" * len(rids))), [*rids, name]
    if where:
        clause, args = sqlite_where(where)
        sql, params = f"{sql} AND {clause}", [*params, *args]
    rows = db.execute(sql, params).fetchall()
    return {rid: (rec_id, text, decode_metadata(meta, name)) for rid, rec_id, text, meta in rows}


def by_ids(db: sqlite3.Connection, sql: str, name: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (with ``{marks}`` for the id list) for ids in chunks SQLite accepts."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        rows += db.execute(sql.format(marks=",".join("?" * len(chunk))), [name, *chunk]).fetchall()
    return rows


def record(row: tuple[Any, ...], name: str) -> Record:
    """A ``Record`` of a row of ``RECORD_COLUMNS``."""
    rec_id, text, meta, vec, sparse = row
    return Record(rec_id, text, decode_metadata(meta, name), np.frombuffer(vec, dtype=np.float32).copy(),
                  from_blob(sparse))


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


