"""The Postgres store: pgvector tables behind a psycopg connection pool, for many instances.

Each collection is a table (named from a hash of the collection name, so any valid name fits
Postgres' identifier limit) with an HNSW cosine index on the vector (its graph's ``m`` and
``ef_construction`` as configured when the collection is created: ``hnsw_index``) and a GIN index on the JSONB
metadata; ``embeddings_collections`` records name, table, model and dimension. Creating and
dropping collections takes a transaction-scoped advisory lock, so several server processes can
do it at once. Every write is one transaction, acknowledged after COMMIT. Searches set
``hnsw.ef_search`` (recall). With a filter (``pg_filters``): equality conditions that must all
hold are also written as ``metadata @> {...}``, which the GIN index answers and the column's
statistics estimate. The planner's estimate of the rows a filter allows picks the plan: at most
``filter_exact_rows``: an exact search over them (GIN bitmap or scan, then sort); more: the HNSW
scan with pgvector 0.8's iterative scan and more candidates the more selective the filter
(``hnsw.ef_search`` up to ``filter_ef_search``), so the filtered top ``top_k`` keeps its recall.

Legs (``Legs``, recorded in ``embeddings_collections``): a lexical leg is a ``tsvector`` column
with a GIN index ranked by BM25 in SQL (``pg_lexical``); a sparse leg is a pgvector ``sparsevec``
column (dimension ``sparse.MAX_SPARSE_INDEX``) beside its ids as an ``int4[]`` with a GIN index.
A sparse search is exact: the GIN index finds the rows that share an id with the query (no other
row scores above 0), the filter applies in the same statement, and ``<#>`` (negative inner
product) orders them. (pgvector's HNSW index for sparsevec takes at most 1,000 non-zeros a vector
and is approximate.) Collections made before the legs have neither leg.

Collection names come checked (``StoreFacade``); each verb resolves its name once, inside its
transaction, to a ``PgCollection`` (``NotFound`` for an unknown one).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import psycopg
from loguru import logger
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import BackendUnavailable, NotFound
from ..lexical.analyzer import analyzer
from . import (
    NO_LEGS,
    SAMPLE_TEXTS,
    CollectionInfo,
    Hit,
    Legs,
    Record,
    SparseVector,
    missing_leg,
    model_conflict,
    pg_lexical,
)
from .filters import All, Filter
from .metadata import decode_metadata, encode_metadata
from .pg_documents import CHUNK_COLUMNS, PgDocuments, chunk_of, chunk_values, lexical_hits, migrate_tables
from .pg_filters import must_equal, pg_where
from .pg_tables import PgCollection, hnsw_index, record_of, sparsevec, table_name
from .sparse import check_records, check_sparse


class PgVectorStore(PgDocuments):
    """PostgreSQL + pgvector (see module docstring).

    Args:
        url: a libpq connection URL.
        ef_search: HNSW candidate list size per search (recall against speed).
        pool_size: connections in the pool at most.
        filter_ef_search: HNSW candidates per filtered search (iterative scan).
        filter_exact_rows: at most this many rows allowed by a filter (the planner's estimate), search is exact.
        hnsw_m, hnsw_ef_construction: the HNSW graph of a new collection's index (``hnsw_index``).

    Raises:
        BackendUnavailable: Postgres cannot be reached.
    """

    kind = "postgres"

    def __init__(self, url: str, ef_search: int = 800, pool_size: int = 10, filter_ef_search: int = 1000,
                 filter_exact_rows: int = 20_000, hnsw_m: int = 32, hnsw_ef_construction: int = 128) -> None:
        self.ef_search = ef_search
        self.hnsw = hnsw_index(hnsw_m, hnsw_ef_construction)
        self.filter_ef_search = filter_ef_search
        self.filter_exact_rows = filter_exact_rows
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT pg_advisory_lock(4242)")
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS embeddings_collections "
                    "(name text PRIMARY KEY, tbl text NOT NULL UNIQUE, "
                    "model text NOT NULL, dimension int NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
                )
                conn.execute("ALTER TABLE embeddings_collections ADD COLUMN IF NOT EXISTS lexical text, "
                             "ADD COLUMN IF NOT EXISTS sparse_model text, "
                             "ADD COLUMN IF NOT EXISTS lex_docs bigint NOT NULL DEFAULT 0, "
                             "ADD COLUMN IF NOT EXISTS lex_terms bigint NOT NULL DEFAULT 0")
                migrate_tables(conn)
                conn.execute("SELECT pg_advisory_unlock(4242)")
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(f"cannot reach the Postgres store: {exc}".splitlines()[0]) from exc
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, configure=register_vector, open=True,
                                    timeout=30)

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            logger.warning("Postgres store unavailable: {}", exc)
            raise BackendUnavailable("the Postgres store is unavailable; retry shortly") from exc

    def _collection(self, conn: psycopg.Connection, name: str, lock: bool = False) -> PgCollection:
        """The collection called ``name``, as this transaction sees it (``lock``: its row locked until
        the transaction ends, as writers of its lexical counts and drop take it). Raises ``NotFound``."""
        row = conn.execute(
            "SELECT tbl, model, dimension, lexical, sparse_model, lex_docs, lex_terms FROM embeddings_collections "
            "WHERE name = %s" + (" FOR UPDATE" if lock else ""), (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"collection {name!r} does not exist", field="collection")
        return PgCollection(name, sql.Identifier(row[0]), *row[1:])

    # --- collections -------------------------------------------------------------------------
    def describe(self, name: str) -> CollectionInfo:
        """See ``VectorStore.describe``."""
        with self._tx() as conn:
            return self._describe(conn, name)

    def _describe(self, conn: psycopg.Connection, name: str) -> CollectionInfo:
        coll = self._collection(conn, name)
        size = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(coll.table)).fetchone()[0]
        samples = [r[0] for r in conn.execute(
            sql.SQL("SELECT text FROM {} ORDER BY updated_at, id LIMIT %s").format(coll.table), (SAMPLE_TEXTS,))]
        return CollectionInfo(name, size, coll.dimension, coll.model, samples, coll.legs)

    def collections(self) -> list[CollectionInfo]:
        """See ``VectorStore.collections``."""
        with self._tx() as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM embeddings_collections ORDER BY name")]
            return [self._describe(conn, n) for n in names]

    def ensure_collection(self, name: str, model: str, dimension: int, legs: Legs = NO_LEGS) -> None:
        """See ``VectorStore.ensure_collection``."""
        if legs.lexical:
            analyzer(legs.lexical)  # ValueError for a language the analyzer does not have
        tbl = table_name(name)
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"embeddings:{name}",))
            created = conn.execute(
                "INSERT INTO embeddings_collections (name, tbl, model, dimension, lexical, sparse_model) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                (name, tbl, model, dimension, legs.lexical or None, legs.sparse_model or None)).rowcount
            have = self._collection(conn, name)
            if (have.model, have.dimension) != (model, dimension):
                raise model_conflict(name, have.model, have.dimension, model, dimension)
            ident = sql.Identifier(tbl)
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, text text NOT NULL, metadata jsonb NOT NULL, "
                "embedding vector({}) NOT NULL, updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
                "lexical tsvector, lexical_len int, sparse sparsevec, sparse_ids int4[])"
            ).format(ident, sql.Literal(dimension)))
            migrate_tables(conn, [tbl])
            if created and legs.sparse_model:
                conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (sparse_ids)")
                             .format(sql.Identifier(tbl + "_sparse"), ident))
            if created and legs.lexical:
                conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (lexical)")
                             .format(sql.Identifier(tbl + "_lex"), ident))
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {}")
                         .format(sql.Identifier(tbl + "_hnsw"), ident, self.hnsw))
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (metadata jsonb_path_ops)")
                         .format(sql.Identifier(tbl + "_meta"), ident))

    def drop(self, name: str) -> None:
        """See ``VectorStore.drop``."""
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"embeddings:{name}",))
            # its row first, as writers lock it before the table: no lock-order cycle with them
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._collection(conn, name, lock=True).table))
            conn.execute("DELETE FROM embeddings_collections WHERE name = %s", (name,))

    # --- writes ------------------------------------------------------------------------------
    def upsert(self, name: str, records: Sequence[Record], documents: Sequence[str] = ()) -> int:
        """See ``VectorStore.upsert``."""
        records = list({r.id: r for r in records}.values())
        rows = [(r.id, r.text, encode_metadata(r.metadata), np.asarray(r.vector, dtype=np.float32), *chunk_values(r))
                for r in records]
        with self._tx() as conn:
            coll = self._collection(conn, name)
            if coll.lexical:
                coll = self._collection(conn, name, lock=True)  # see pg_lexical: the counts never race
            self._replace_chunks(conn, coll, records, documents)
            columns = ["id", "text", "metadata", "embedding", "document_id", "chunk", "span_start", "span_end"]
            if coll.sparse_model:
                check_records(records)
                columns += ["sparse", "sparse_ids"]
                rows = [(*row, sparsevec(r.sparse), list(r.sparse.indices))  # type: ignore[union-attr]
                        for row, r in zip(rows, records)]
            if coll.lexical:
                columns += ["lexical", "lexical_len"]
                rows = [(*row, *pg_lexical.document(coll.lexical, r.text)) for row, r in zip(rows, records)]
                self._count_terms(conn, coll, [r.id for r in records], sum(row[-1] for row in rows), len(rows))
            casts = {"metadata": "%s::jsonb", "lexical": "%s::tsvector"}
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}, "
                            "updated_at = clock_timestamp()").format(
                        coll.table, sql.SQL(", ").join(map(sql.Identifier, columns)),
                        sql.SQL(", ").join(sql.SQL(casts.get(c, "%s")) for c in columns),
                        sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c))
                                           for c in columns[1:])),
                    rows,
                )
            return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(coll.table)).fetchone()[0]

    def _count_terms(self, conn: psycopg.Connection, coll: PgCollection, ids: Sequence[str] | None, terms: int,
                     docs: int) -> None:
        """Add ``docs`` records of ``terms`` terms to the collection's counts, less the records with
        these ids that they replace (``ids`` None: nothing replaced)."""
        if ids:
            old_docs, old_terms = conn.execute(
                sql.SQL("SELECT count(*), coalesce(sum(lexical_len), 0) FROM {} WHERE id = ANY(%s)").format(coll.table),
                (list(ids),)).fetchone()
            docs, terms = docs - old_docs, terms - old_terms
        conn.execute("UPDATE embeddings_collections SET lex_docs = lex_docs + %s, lex_terms = lex_terms + %s "
                     "WHERE name = %s", (docs, terms, coll.name))

    def delete(self, name: str, ids: Sequence[str] | None, where: Filter | None,
               document_ids: Sequence[str] | None = None) -> int:
        """See ``VectorStore.delete``."""
        with self._tx() as conn:
            coll = self._collection(conn, name)
            if coll.lexical:
                coll = self._collection(conn, name, lock=True)  # see pg_lexical: the counts never race
            if ids is not None or document_ids is not None:
                key, keys = ("id", ids) if document_ids is None else ("document_id", document_ids)
                clause, params = sql.SQL(key + " = ANY(%s)"), [list(keys)]
            else:
                clause, params = pg_where(where or All())
            return self._delete_rows(conn, coll, clause, params)

    # --- reads -------------------------------------------------------------------------------
    def search(self, name: str, queries: np.ndarray, top_k: int, where: Filter,
               threshold: float | None) -> list[list[Hit]]:
        """See ``VectorStore.search``."""
        clause, params = pg_where(where)
        out: list[list[Hit]] = []
        with self._tx() as conn:
            tbl = self._collection(conn, name).table
            ef_search = max(self.ef_search, top_k)
            if where:
                ef_search = self._plan_filtered(conn, tbl, where, top_k)
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
            query = sql.SQL("SELECT id, text, metadata::text, 1 - (embedding <=> %s) AS score, " + CHUNK_COLUMNS
                            + " FROM {} WHERE {} ORDER BY embedding <=> %s LIMIT %s").format(tbl, clause)
            for q in np.asarray(queries, dtype=np.float32):
                rows = conn.execute(query, [q, *params, q, top_k]).fetchall()
                hits = [Hit(r[0], r[1], float(r[3]), decode_metadata(r[2], name), chunk_of(*r[4:])) for r in rows]
                hits.sort(key=lambda h: -h.score)  # relaxed_order may return near-ties out of order
                out.append([h for h in hits if threshold is None or h.score >= threshold])
        return out

    def search_lexical(self, name: str, terms: Sequence[str], top_k: int, where: Filter) -> list[Hit]:
        """See ``VectorStore.search_lexical`` (``pg_lexical``: BM25 as SQLite FTS5 scores it)."""
        with self._tx() as conn:
            coll = self._collection(conn, name)
            if not coll.lexical:
                raise missing_leg(name, "lexical", coll.legs)
            rows = pg_lexical.search(conn, coll.table, coll.lex_docs, coll.lex_terms, terms, top_k, where)
            return lexical_hits(conn, coll.table, rows, name)

    def search_sparse(self, name: str, query: SparseVector, top_k: int, where: Filter) -> list[Hit]:
        """See ``VectorStore.search_sparse``: exact, ``<#>`` over every row the filter allows."""
        clause, params = pg_where(where)
        with self._tx() as conn:
            coll = self._collection(conn, name)
            if not coll.sparse_model:
                raise missing_leg(name, "sparse", coll.legs)
            if not check_sparse(query, "the query").indices:
                return []
            q = sparsevec(query)
            # the GIN index on the ids, never a scan that tests every row's ids (each is detoasted):
            # 4x faster at 10k rows that share few ids with the query
            conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
            rows = conn.execute(sql.SQL(
                "SELECT id, text, metadata::text, -(sparse <#> %s) AS score, " + CHUNK_COLUMNS + " FROM {} "
                "WHERE sparse_ids && %s::int4[] AND {} ORDER BY sparse <#> %s, id LIMIT %s").format(coll.table, clause),
                [q, list(query.indices), *params, q, top_k]).fetchall()
        return [Hit(r[0], r[1], float(r[3]), decode_metadata(r[2], name), chunk_of(*r[4:])) for r in rows]

    def legs(self, name: str) -> Legs:
        """See ``VectorStore.legs``."""
        with self._tx() as conn:
            return self._collection(conn, name).legs

    def _plan_filtered(self, conn: psycopg.Connection, tbl: sql.Identifier, where: Filter, top_k: int) -> int:
        """Steer this transaction's plan for a filtered search by the rows the planner expects the
        filter to allow (see module docstring); returns the ``hnsw.ef_search`` to use.

        The estimate comes from the filter's ``@>`` part where it has one (the column statistics
        know it; the planner guesses at the exact clause and would multiply its guess in)."""
        # psycopg prepares a statement after 5 runs, and a cached plan ignores these settings: plan each time
        conn.execute("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")
        contained = must_equal(where)
        clause, params = (sql.SQL("metadata @> %s::jsonb"), [Jsonb(contained)]) if contained else pg_where(where)
        with psycopg.ClientCursor(conn) as cur:  # EXPLAIN takes no server-side parameters
            cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE {}").format(tbl, clause), params)
            allowed = float(cur.fetchone()[0][0]["Plan"]["Plan Rows"])
        if allowed <= self.filter_exact_rows:
            conn.execute("SELECT set_config('enable_indexscan', 'off', true)")  # no HNSW: exact over the rows
            return max(self.ef_search, top_k)
        total = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                             (tbl.as_string(conn),)).fetchone()[0]
        share = min(1.0, allowed / max(float(total), allowed, 1.0))
        # the HNSW index scan, with the filter: no plan that scans the rows and sorts them
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.execute("SELECT set_config(%s, 'off', true)", (setting,))
        conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        return max(self.ef_search, top_k, min(self.filter_ef_search, math.ceil(20 * top_k / share)))

    def get(self, name: str, ids: Sequence[str]) -> list[Record]:
        """See ``VectorStore.get``."""
        with self._tx() as conn:
            coll = self._collection(conn, name)
            rows = conn.execute(sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(coll.columns(), coll.table),
                                (list(ids),)).fetchall()
        found = {r[0]: record_of(r, name) for r in rows}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def find(self, name: str, where: Filter, limit: int) -> list[Record]:
        """See ``VectorStore.find``."""
        clause, params = pg_where(where)
        with self._tx() as conn:
            coll = self._collection(conn, name)
            rows = conn.execute(sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY updated_at, id LIMIT %s")
                                .format(coll.columns(), coll.table, clause), [*params, limit]).fetchall()
        return [record_of(r, name) for r in rows]

    def model_of(self, name: str) -> tuple[str, int]:
        """See ``VectorStore.model_of``."""
        with self._tx() as conn:
            coll = self._collection(conn, name)
        return coll.model, coll.dimension

    def export(self, name: str) -> Iterator[Record]:
        """See ``VectorStore.export``."""
        with self._pool.connection() as conn, conn.transaction():
            coll = self._collection(conn, name)
            with conn.cursor(name="embeddings_export") as cur:
                cur.execute(sql.SQL("SELECT {} FROM {} ORDER BY updated_at, id").format(coll.columns(), coll.table))
                for row in cur:
                    yield record_of(row, name)

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()
