"""The embedded store's lexical leg: one SQLite FTS5 table per collection, ranked by FTS5's ``bm25()``.

- The table is named from a hash of the collection name (``lexical_table``), so BM25's N, average
  length and document frequencies are the collection's own. Its rowid is ``records.rid`` and its
  one column holds the record's analyzed terms (``lexical.analyzer``) joined by spaces; the
  ``ascii`` tokenizer splits only on those spaces (every other character is part of a term), so
  FTS5 indexes exactly the analyzer's terms.
- It is written, deleted and dropped in the transaction of the write that changes the records,
  so it never disagrees with them, after a crash included.
- A query is its distinct terms OR-ed, each quoted; ``bm25()`` (k1 = 1.2, b = 0.75, idf
  ``log((N - n + 0.5) / (n + 0.5))``, at least 1e-6) is negated so that higher is better.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any, Sequence

import numpy as np

from ..lexical.analyzer import analyzer
from .filters import Filter
from .sqlite_filters import sqlite_where

BACKFILL_CHUNK = 2_000
# best first; ties (to 1e-9, which absorbs the order of a float sum) to the record written first,
# as the Postgres leg orders them
_ORDER = "round(bm25({table}), 9), {table}.rowid"


def lexical_table(collection: str) -> str:
    """The FTS5 table of a collection (a hash of its name: any valid name is a safe identifier)."""
    return "lex_" + hashlib.sha256(collection.encode()).hexdigest()[:24]


def create(db: sqlite3.Connection, collection: str) -> None:
    """Create the collection's FTS5 table (inside the caller's transaction)."""
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {lexical_table(collection)} USING fts5(terms, tokenize='ascii')")


def drop(db: sqlite3.Connection, collection: str) -> None:
    """Drop the collection's FTS5 table, if it has one."""
    db.execute(f"DROP TABLE IF EXISTS {lexical_table(collection)}")


def term_texts(language: str, texts: Sequence[str]) -> list[str]:
    """Each text's analyzed terms joined by spaces: what the FTS5 column holds."""
    terms = analyzer(language)
    return [" ".join(terms.terms(text)) for text in texts]


def write(db: sqlite3.Connection, collection: str, rids: Sequence[int], texts: Sequence[str]) -> None:
    """Put these rows' terms in the index, replacing what it held for them (FTS5's REPLACE takes
    a replaced row's old terms out, counts included)."""
    db.executemany(f"INSERT OR REPLACE INTO {lexical_table(collection)} (rowid, terms) VALUES (?, ?)",
                   zip(rids, texts))


def remove(db: sqlite3.Connection, collection: str, rids: Sequence[int]) -> None:
    """Take these rows out of the index (rows it does not hold are ignored)."""
    table = lexical_table(collection)
    rids = list(rids)
    for start in range(0, len(rids), 500):
        chunk = rids[start : start + 500]
        db.execute(f"DELETE FROM {table} WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)


def backfill(db: sqlite3.Connection, collection: str, language: str) -> int:
    """Create the collection's index and fill it from its records (a migration); returns the rows."""
    create(db, collection)
    cursor = db.execute("SELECT rid, text FROM records WHERE collection = ?", (collection,))
    filled = 0
    while rows := cursor.fetchmany(BACKFILL_CHUNK):
        db.executemany(f"INSERT INTO {lexical_table(collection)} (rowid, terms) VALUES (?, ?)",
                       zip([r[0] for r in rows], term_texts(language, [r[1] for r in rows])))
        filled += len(rows)
    return filled


def search(db: sqlite3.Connection, collection: str, terms: Sequence[str], top_k: int, where: Filter,
           allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The best ``top_k`` ``(rid, score)`` by BM25 (higher is better) among the rows ``where`` allows.

    ``allowed``: the row ids ``where`` allows, where the in-memory metadata columns decided them;
    then the matches are read best first and the first ``top_k`` allowed ones kept, instead of
    evaluating the filter's JSON on every match in SQL."""
    distinct = list(dict.fromkeys(t for t in terms if t))
    if not distinct or top_k <= 0:
        return []
    table = lexical_table(collection)
    query = " OR ".join('"' + t.replace('"', '""') + '"' for t in distinct)
    sql = f"SELECT {table}.rowid, -bm25({table}) FROM {table}"
    params: list[Any] = [query]
    if allowed is not None:
        return _first_allowed(db.execute(f"{sql} WHERE {table} MATCH ? ORDER BY {_ORDER.format(table=table)}",
                                         params), allowed, top_k)
    if where:
        clause, args = sqlite_where(where)
        sql += f" JOIN records ON records.rid = {table}.rowid WHERE {table} MATCH ? AND {clause}"
        params += args
    else:
        sql += f" WHERE {table} MATCH ?"
    sql += f" ORDER BY {_ORDER.format(table=table)} LIMIT ?"
    return [(int(rid), float(score)) for rid, score in db.execute(sql, [*params, top_k])]


def _first_allowed(cursor: sqlite3.Cursor, allowed: np.ndarray, top_k: int) -> list[tuple[int, float]]:
    if not allowed.size:
        return []
    mask = np.zeros(int(allowed.max()) + 1, dtype=bool)
    mask[allowed] = True
    found: list[tuple[int, float]] = []
    while len(found) < top_k and (rows := cursor.fetchmany(1000)):
        rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        keep = np.flatnonzero((rids < len(mask)) & mask[np.minimum(rids, len(mask) - 1)])
        found += [(int(rids[i]), float(rows[i][1])) for i in keep[: top_k - len(found)]]
    return found
