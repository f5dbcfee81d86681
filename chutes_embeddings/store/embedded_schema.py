"""The embedded store's SQLite schema, and the migration of a store an older version wrote.

``collections`` records each collection's legs (``lexical``: the analyzer's language, or NULL;
``sparse_model``: the sparse encoder, or NULL) and ``records`` a record's sparse vector
(``sparse``: ``sparse.to_blob``, or NULL) and, for a document's chunk, its document
(``document_id``, ``chunk``, ``span_start``, ``span_end``; NULL for a plain record, indexed by
document). The lexical index lives in memory and in the snapshots, derived from the texts
(``lexical_index``), so SQLite holds no term lists.

An older store is migrated on open, in one transaction: a store from before the legs gets the
columns and every collection a lexical leg in the configured language; a store from before
documents gets the document columns (every record a plain one); the FTS5 tables (``lex_<hash>``)
that stores from before the in-memory lexical index kept are dropped. Either way each lexical
index is built from the texts when its collection is first loaded.
"""

from __future__ import annotations

import sqlite3

from loguru import logger

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY, model TEXT NOT NULL, dimension INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, lexical TEXT, sparse_model TEXT);
CREATE TABLE IF NOT EXISTS records (
    rid INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, id TEXT NOT NULL, text TEXT NOT NULL,
    metadata TEXT NOT NULL, vector BLOB NOT NULL, version INTEGER NOT NULL DEFAULT 0, sparse BLOB,
    document_id TEXT, chunk INTEGER, span_start INTEGER, span_end INTEGER,
    UNIQUE (collection, id));
CREATE TABLE IF NOT EXISTS deletions (collection TEXT NOT NULL, rid INTEGER NOT NULL, version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS deletions_by_version ON deletions (collection, version);
"""
_VERSION_INDEX = "CREATE INDEX IF NOT EXISTS records_by_version ON records (collection, version)"
# a partial index: a store of plain records pays nothing for it
_DOCUMENT_INDEX = ("CREATE INDEX IF NOT EXISTS records_by_document ON records (collection, document_id, chunk) "
                   "WHERE document_id IS NOT NULL")
_DOCUMENT_COLUMNS = ("document_id TEXT", "chunk INTEGER", "span_start INTEGER", "span_end INTEGER")


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def open_schema(db: sqlite3.Connection, lexical_language: str) -> None:
    """Create the schema, or bring an older store's up to date (see module docstring).

    Args:
        db: a connection in autocommit mode (``isolation_level=None``).
        lexical_language: the language of the lexical leg given to an older store's collections.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        records = _columns(db, "records")
        if "version" not in records:
            db.execute("ALTER TABLE records ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
        if "sparse" not in records:
            db.execute("ALTER TABLE records ADD COLUMN sparse BLOB")
        db.execute(_VERSION_INDEX)
        for column in _DOCUMENT_COLUMNS:  # a store from before documents: every record is a plain one
            if column.split()[0] not in records:
                db.execute(f"ALTER TABLE records ADD COLUMN {column}")
        db.execute(_DOCUMENT_INDEX)
        if "lexical" not in _columns(db, "collections"):
            _add_legs(db, lexical_language)
        _drop_fts5(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _add_legs(db: sqlite3.Connection, language: str) -> None:
    db.execute("ALTER TABLE collections ADD COLUMN lexical TEXT")
    db.execute("ALTER TABLE collections ADD COLUMN sparse_model TEXT")
    db.execute("UPDATE collections SET lexical = ?", (language,))
    for (name,) in db.execute("SELECT name FROM collections ORDER BY name").fetchall():
        logger.info("gave collection {} a lexical leg ({})", name, language)


def _drop_fts5(db: sqlite3.Connection) -> None:
    """Drop the FTS5 tables that held the lexical leg before ``LexicalIndex`` (their shadow tables go with them)."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'lex\\_%' "
                                       "ESCAPE '\\' AND sql LIKE 'CREATE VIRTUAL TABLE%fts5%'")]
    for table in tables:
        db.execute(f'DROP TABLE "{table}"')
    if tables:
        logger.info("dropped {} FTS5 tables of the former lexical leg (now held in memory)", len(tables))
