"""The Postgres store's tables: a collection's table name and catalogue row, its HNSW index's
definition, and how a row reads back as a ``Record``."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
from pgvector import SparseVector as PgSparseVector
from psycopg import sql

from . import Legs, Record, SparseVector
from .metadata import decode_metadata
from .pg_documents import CHUNK_COLUMNS, chunk_of
from .sparse import MAX_SPARSE_INDEX


def table_name(collection: str) -> str:
    """The table of a collection: a hash of its name, so any valid name fits Postgres' identifier limit."""
    return "emb_" + hashlib.sha256(collection.encode()).hexdigest()[:24]


class PgCollection(NamedTuple):
    """A collection as ``embeddings_collections`` records it, resolved once per transaction."""

    name: str
    table: sql.Identifier
    model: str
    dimension: int
    lexical: str | None = None
    sparse_model: str | None = None
    lex_docs: int = 0
    lex_terms: int = 0

    @property
    def legs(self) -> Legs:
        """The collection's lexical and sparse legs."""
        return Legs(self.lexical, self.sparse_model)

    def columns(self) -> sql.Composable:
        """The columns a ``Record`` is read from (``record_of``)."""
        return sql.SQL("id, text, metadata::text, embedding, {}, " + CHUNK_COLUMNS).format(
            sql.SQL("sparse" if self.sparse_model else "NULL"))


def hnsw_index(m: int, ef_construction: int) -> sql.Composable:
    """The HNSW index's method and definition, as ``CREATE INDEX ... USING`` takes it."""
    return sql.SQL("hnsw (embedding vector_cosine_ops) WITH (m = {}, ef_construction = {})").format(
        sql.Literal(m), sql.Literal(ef_construction))


def record_of(row: tuple, name: str) -> Record:
    """A ``Record`` of a row of ``PgCollection.columns``."""
    rec_id, text, meta, vec, sparse = row[:5]
    return Record(rec_id, text, decode_metadata(meta, name), vec.to_numpy().astype(np.float32),
                  None if sparse is None else SparseVector(
                      tuple(int(i) for i in sparse.indices()),
                      # float32 weights, read back from their shortest decimal text: the very floats written
                      tuple(np.asarray(sparse.values(), dtype=np.float32).tolist())), chunk_of(*row[5:]))


def sparsevec(vector: SparseVector) -> PgSparseVector:
    """A sparse vector as pgvector's ``sparsevec`` of the sparse leg's dimension."""
    return PgSparseVector(dict(zip(vector.indices, vector.values)), MAX_SPARSE_INDEX)
