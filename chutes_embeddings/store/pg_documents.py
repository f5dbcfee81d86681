"""The Postgres store's documents: a collection table's chunk columns, and the verbs that read them.

A row of a document's chunk carries ``document_id``, ``chunk`` (its index) and its character span
(``span_start``, ``span_end``); NULL for a plain record (``store.documents``). A partial index on
``(document_id, chunk)`` serves get and delete by document and the checks of a write; a table from
before documents gets the columns (no rewrite: they are NULL) and an empty index on open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import psycopg
from psycopg import sql

from . import Chunk, Hit, Record, documents
from .documents import chunk_of, chunk_values
from .metadata import decode_metadata

__all__ = ["CHUNK_COLUMNS", "PgDocuments", "chunk_of", "chunk_values", "lexical_hits", "migrate_tables"]

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .pg_tables import PgCollection

CHUNK_COLUMNS = "document_id, chunk, span_start, span_end"
_ADD_CHUNK_COLUMNS = ("ALTER TABLE {} ADD COLUMN IF NOT EXISTS document_id text, ADD COLUMN IF NOT EXISTS chunk int, "
                      "ADD COLUMN IF NOT EXISTS span_start int, ADD COLUMN IF NOT EXISTS span_end int")
_DOCUMENT_INDEX = "CREATE INDEX IF NOT EXISTS {} ON {} (document_id, chunk) WHERE document_id IS NOT NULL"


def migrate_tables(conn: psycopg.Connection, tables: Sequence[str] | None = None) -> None:
    """Give these collection tables (None: every one, on open) the chunk columns and their
    partial index where they lack them."""
    if tables is None:
        tables = [r[0] for r in conn.execute("SELECT tbl FROM embeddings_collections").fetchall()]
    for tbl in tables:
        ident = sql.Identifier(tbl)
        conn.execute(sql.SQL(_ADD_CHUNK_COLUMNS).format(ident))
        conn.execute(sql.SQL(_DOCUMENT_INDEX).format(sql.Identifier(tbl + "_doc"), ident))


def lexical_hits(conn: psycopg.Connection, table: sql.Identifier, rows: list[Any], name: str) -> list[Hit]:
    """Hits of ``pg_lexical.search``'s rows (id, text, metadata, score), with the chunks among them
    read by primary key (``pg_lexical`` reads no chunk columns)."""
    found = conn.execute(sql.SQL("SELECT id, " + CHUNK_COLUMNS + " FROM {} WHERE id = ANY(%s) AND "
                                 "document_id IS NOT NULL").format(table), ([r[0] for r in rows],)).fetchall()
    chunks: dict[str, Chunk | None] = {r[0]: chunk_of(*r[1:]) for r in found}
    return [Hit(r[0], r[1], r[3], decode_metadata(r[2], name), chunks.get(r[0])) for r in rows]


class PgDocuments:
    """``get_documents`` and the document parts of writes of ``PgVectorStore`` (which provides the rest)."""

    if TYPE_CHECKING:
        def _tx(self) -> AbstractContextManager[psycopg.Connection]: ...
        def _collection(self, conn: psycopg.Connection, name: str, lock: bool = False) -> PgCollection: ...
        def _count_terms(self, conn: psycopg.Connection, coll: PgCollection, ids: Sequence[str] | None,
                         terms: int, docs: int) -> None: ...

    def get_documents(self, name: str, document_ids: Sequence[str]) -> list[Record]:
        """See ``VectorStore.get_documents``."""
        from .pg_tables import record_of  # the one reader of a row (pg_tables imports this module)

        with self._tx() as conn:
            coll = self._collection(conn, name)
            rows = conn.execute(sql.SQL("SELECT {} FROM {} WHERE document_id = ANY(%s)")
                                .format(coll.columns(), coll.table), (list(document_ids),)).fetchall()
        return documents.by_document([record_of(r, name) for r in rows], document_ids)

    def _replace_chunks(self, conn: psycopg.Connection, coll: PgCollection, records: Sequence[Record],
                        whole: Sequence[str]) -> None:
        """Check a write's ids against the stored rows (``documents.plan``, those rows locked until
        the transaction ends) and delete the stored chunks it replaces."""
        wanted = documents.probe(records, whole)
        stored = conn.execute(sql.SQL("SELECT id, document_id FROM {} WHERE id = ANY(%s) OR document_id = ANY(%s) "
                                      "FOR UPDATE").format(coll.table), (wanted.ids, wanted.document_ids)).fetchall()
        stale = documents.plan(records, whole, stored)
        if stale:
            self._delete_rows(conn, coll, sql.SQL("id = ANY(%s)"), [stale])

    def _delete_rows(self, conn: psycopg.Connection, coll: PgCollection, clause: sql.Composable,
                     params: list[Any]) -> int:
        """Delete the rows ``clause`` selects, keeping the lexical counts; returns how many went."""
        length = sql.SQL("coalesce(lexical_len, 0)" if coll.lexical else "0")  # older tables lack the column
        gone = conn.execute(sql.SQL("DELETE FROM {} WHERE {} RETURNING {}").format(coll.table, clause, length),
                            params).fetchall()
        if coll.lexical and gone:
            self._count_terms(conn, coll, None, -sum(r[0] for r in gone), -len(gone))
        return len(gone)
