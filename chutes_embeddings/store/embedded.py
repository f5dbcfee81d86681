"""The embedded store: SQLite (WAL) is the truth; a FAISS index per collection serves search.

- One SQLite file holds collections (name, model, dimension, a write version) and records (id,
  text, metadata JSON, float32 vector bytes). Every write is one transaction, committed with
  ``synchronous=FULL`` before it is acknowledged, so an acknowledged add survives a crash and an
  unacknowledged one is either whole or absent.
- A collection name resolves to an ``EmbeddedCollection`` (``embedded_collection``): its search
  index (``VectorIndex``: exact matrix search, plus a FAISS IVF index above ``ann_threshold``
  vectors; keyed by the SQLite row id; metadata columns for filters) in memory, updated after each
  commit. SQLite is also its change log, and a snapshot of it (``snapshot``) is saved beside the
  database, so on open it comes back from the snapshot plus the changes after it. Indexes load in
  a background thread as soon as the store opens.
- Hits are read by primary key (``embedded_rows.ROWS_BY_RID``), never by scanning the collection.
- Filters run on the in-memory metadata columns (``metadata_index``) from
  ``filter_memory_min_rows`` records on, which choose exact search over the allowed rows or IVF
  search with an id bitmap by the filter's selectivity; below that, or where the columns cannot
  decide exactly, they run in SQLite (``sqlite_filters``) and the allowed rows are searched.
- Legs (``Legs``, recorded per collection; ``embedded_schema``): a lexical leg is an in-memory
  ``LexicalIndex`` (BM25) of the texts' analyzed terms, derived from the texts and saved in the
  snapshot; a sparse leg is a ``sparse`` column plus an in-memory ``SparseIndex``; both beside the
  vector index (``embedded_collection``).
- One process at a time: a lock file refuses a second server on the same directory (use the
  Postgres store for several instances).
- Collection names come checked (``StoreFacade``); the store trusts them as file names and keys.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np
from loguru import logger

from ..engine.vectors import normalize
from ..errors import BackendUnavailable, InvalidInput, NotFound
from ..lexical.analyzer import analyzer
from . import (
    NO_LEGS,
    SAMPLE_TEXTS,
    CollectionInfo,
    Hit,
    Legs,
    Record,
    embedded_rows,
    model_conflict,
)
from .embedded_collection import EmbeddedCollection, column_meta
from .embedded_legs import LegSearch
from .embedded_rows import RECORD_COLUMNS, by_ids, prepare, record, rows_by_rid
from .embedded_schema import open_schema
from .filters import All, Filter
from .metadata import encode_metadata
from .snapshot import snapshot_path
from .sqlite_filters import sqlite_where

SAVE_INDEX_EVERY_S = 30.0
class CollectionRow(NamedTuple):
    """A row of the ``collections`` table."""

    model: str
    dimension: int
    version: int
    created_at: float
    lexical: str | None
    sparse_model: str | None

    @property
    def legs(self) -> Legs:
        """The collection's lexical and sparse legs."""
        return Legs(self.lexical, self.sparse_model)


class EmbeddedStore(LegSearch):
    """SQLite + FAISS under one directory (see module docstring).

    Args:
        directory: where the database, the lock file and the index snapshots live.
        ann_threshold: vectors in a collection from which a FAISS IVF index serves search.
        nprobe: IVF lists probed per query (recall against speed).
        retrain_growth: how many times a collection grows before its IVF index is retrained.
        filter_exact_rows: at most this many allowed rows, a filtered search is exact.
        filter_memory_min_rows: from this many records on, filters run on the metadata columns.
        lexical_language: the lexical leg's language for the collections of an older store (migration).

    Raises:
        BackendUnavailable: another process holds the directory.
    """

    kind = "embedded"

    def __init__(self, directory: Path, ann_threshold: int = 100_000, nprobe: int = 32, retrain_growth: float = 2.0,
                 filter_exact_rows: int = 20_000, filter_memory_min_rows: int = 10_000,
                 lexical_language: str = "english") -> None:
        self.directory = Path(directory)
        self._index_options = {"ann_threshold": ann_threshold, "nprobe": nprobe, "retrain_growth": retrain_growth,
                               "filter_exact_rows": filter_exact_rows}
        self.filter_memory_min_rows = filter_memory_min_rows
        (self.directory / "indexes").mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.directory / "store.lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackendUnavailable(
                f"the embedded store in {self.directory} is in use by another process; "
                "use EMBEDDINGS_STORE_URL=postgresql://... for several instances"
            ) from None
        self._db_path = self.directory / "store.sqlite3"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._collections: dict[str, EmbeddedCollection] = {}  # loaded, by name
        self._collections_lock = threading.Lock()
        self._closed = threading.Event()
        analyzer(lexical_language)  # ValueError for a language the analyzer does not have
        open_schema(self._db(), lexical_language)
        self._saver = threading.Thread(target=self._save_periodically, name="store-index-saver", daemon=True)
        self._saver.start()
        self._loader = threading.Thread(target=self._load_all, name="store-index-loader", daemon=True)
        self._loader.start()

    # --- connections -------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._db_path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed (durably) on success, rolled back on error. Callers hold
        ``_write_lock`` across it and the index update that follows, so the index takes writes in
        commit order and only after they are committed."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _bump_version(self, db: sqlite3.Connection, name: str) -> int:
        db.execute("UPDATE collections SET version = version + 1 WHERE name = ?", (name,))
        return self._row(name).version

    # --- collections -------------------------------------------------------------------------
    def _row(self, name: str) -> CollectionRow:
        """The collection's row. Raises ``NotFound``."""
        row = self._db().execute("SELECT model, dimension, version, created_at, lexical, sparse_model "
                                 "FROM collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"collection {name!r} does not exist", field="collection")
        return CollectionRow(*row)

    def describe(self, name: str) -> CollectionInfo:
        """See ``VectorStore.describe``."""
        row = self._row(name)
        db = self._db()
        size = db.execute("SELECT count(*) FROM records WHERE collection = ?", (name,)).fetchone()[0]
        samples = [r[0] for r in db.execute("SELECT text FROM records WHERE collection = ? ORDER BY rid LIMIT ?",
                                            (name, SAMPLE_TEXTS))]
        return CollectionInfo(name, size, row.dimension, row.model, samples, row.legs)

    def collections(self) -> list[CollectionInfo]:
        """See ``VectorStore.collections``."""
        names = [r[0] for r in self._db().execute("SELECT name FROM collections ORDER BY name")]
        return [self.describe(n) for n in names]

    def ensure_collection(self, name: str, model: str, dimension: int, legs: Legs = NO_LEGS) -> None:
        """See ``VectorStore.ensure_collection``."""
        if legs.lexical:
            analyzer(legs.lexical)  # ValueError for a language the analyzer does not have
        with self._write_lock:
            with self._transaction() as db:
                db.execute(
                    "INSERT OR IGNORE INTO collections (name, model, dimension, created_at, lexical, sparse_model) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, model, dimension, time.time(), legs.lexical or None, legs.sparse_model or None))
            have = self._row(name)
        if (have.model, have.dimension) != (model, dimension):
            raise model_conflict(name, have.model, have.dimension, model, dimension)

    def legs(self, name: str) -> Legs:
        """See ``VectorStore.legs``."""
        return self._row(name).legs

    # --- the per-collection objects ----------------------------------------------------------
    def _collection(self, name: str) -> EmbeddedCollection:
        """The loaded collection called ``name``, loaded now if it is not (or it is dead). Raises ``NotFound``."""
        with self._collections_lock:
            collection = self._collections.get(name)
            if collection is None or collection.dead:
                row = self._row(name)
                collection = EmbeddedCollection.load(self._db(), name, row.dimension, row.version, row.created_at,
                                                     self._snapshot_file(name), self._index_options,
                                                     sparse=bool(row.sparse_model), lexical=row.lexical)
                self._collections[name] = collection
            return collection

    def _snapshot_file(self, name: str) -> Path:
        return snapshot_path(self.directory / "indexes", name)

    def _load_all(self) -> None:
        """Load every collection's index right after opening, so searches find it ready (a search
        that comes first waits for its collection's load, as it would without this)."""
        for (name,) in self._db().execute("SELECT name FROM collections ORDER BY name").fetchall():
            if self._closed.is_set():
                return
            try:
                self._collection(name)
            except NotFound:  # dropped meanwhile
                continue
            except Exception as exc:  # it is loaded (or the error reported) on first use instead
                logger.opt(exception=exc).error("loading the index of collection {} failed", name)

    def _save(self, collection: EmbeddedCollection, every_change: bool = False) -> None:
        collection.save(self._snapshot_file(collection.name), lambda version: self._prune_log(collection, version),
                        every_change)

    def _prune_log(self, collection: EmbeddedCollection, version: int) -> None:
        """Forget the deletions that a durable snapshot of ``version`` reflects; never those of a
        re-created collection of the same name (its ``created_at`` differs)."""
        with self._write_lock, self._transaction() as db:
            db.execute("DELETE FROM deletions WHERE collection = ? AND version <= ? AND "
                       "(SELECT created_at FROM collections WHERE name = ?) = ?",
                       (collection.name, version, collection.name, collection.created_at))

    def _save_periodically(self) -> None:
        while not self._closed.wait(SAVE_INDEX_EVERY_S):
            try:
                self.flush()
            except Exception as exc:  # the snapshot is a cache: SQLite still holds everything
                logger.opt(exception=exc).error("saving a store index failed; it will be retried")

    def flush(self, every_change: bool = False) -> None:
        """Write the snapshots that lag enough (every 30 s), or (``every_change``: on close) that lag
        at all, so a clean restart reads its snapshots and replays nothing."""
        with self._collections_lock:
            loaded = list(self._collections.values())
        for collection in loaded:
            self._save(collection, every_change)

    # --- writes ------------------------------------------------------------------------------
    def upsert(self, name: str, records: Sequence[Record], documents: Sequence[str] = ()) -> int:
        """See ``VectorStore.upsert``. Raises ``InvalidInput`` for vectors of another dimension, and for
        a record without a valid sparse vector in a collection with a sparse leg."""
        records = list({r.id: r for r in records}.values())  # one id once: the last one wins
        encoded = [encode_metadata(r.metadata) for r in records]
        matrix = np.stack([np.asarray(r.vector, dtype=np.float32) for r in records])
        metas = [column_meta(meta) for meta in encoded]
        prepared = prepare(self._row(name).legs, records)  # the analysis outside the write lock
        with self._write_lock:
            # resolved under the write lock, as drop and re-creation are: the index is this collection's
            collection = self._collection(name)
            legs = self._row(name).legs
            if legs != prepared.legs:  # dropped and re-created with other legs meanwhile
                prepared = prepare(legs, records)
            dimension = collection.vectors.dimension
            if matrix.ndim != 2 or matrix.shape[1] != dimension:
                raise InvalidInput(f"vectors have {matrix.shape[-1]} dimensions; collection {name!r} holds "
                                   f"{dimension}", field="vectors", limit=dimension)
            with self._transaction() as db:
                version = self._bump_version(db, name)
                # a re-added document's chunks it no longer has go in this transaction
                stale = embedded_rows.delete_replaced(db, name, records, documents, version)
                db.executemany(embedded_rows.UPSERT, [embedded_rows.upsert_row(name, *row) for row in zip(
                    records, encoded, matrix, [version] * len(records), prepared.sparse_blobs)])
                found = dict(by_ids(db, "SELECT id, rid FROM records WHERE collection = ? AND id IN ({marks})",
                                          name, [r.id for r in records]))
                rids = np.fromiter((found[r.id] for r in records), dtype=np.int64, count=len(records))
            if stale.size:
                collection.apply_delete(stale, version)
            collection.apply_upsert(rids, matrix, metas, version, prepared.sparse_rows, prepared.words)
        return len(collection.vectors)

    def delete(self, name: str, ids: Sequence[str] | None, where: Filter | None,
               document_ids: Sequence[str] | None = None) -> int:
        """See ``VectorStore.delete``."""
        with self._write_lock:
            collection = self._collection(name)  # under the write lock: see upsert
            with self._transaction() as db:
                if ids is not None or document_ids is not None:
                    column, keys = ("id", ids) if document_ids is None else ("document_id", document_ids)
                    rows = by_ids(db, f"DELETE FROM records WHERE collection = ? AND {column} IN ({{marks}}) "
                                      "RETURNING rid", name, keys)
                else:
                    sql, params = sqlite_where(where or All())
                    rows = db.execute(f"DELETE FROM records WHERE collection = ? AND {sql} RETURNING rid",
                                      [name, *params]).fetchall()
                version = self._bump_version(db, name)
                db.executemany("INSERT INTO deletions (collection, rid, version) VALUES (?, ?, ?)",
                               [(name, r[0], version) for r in rows])
            collection.apply_delete(np.array([r[0] for r in rows], dtype=np.int64), version)
        return len(rows)

    def drop(self, name: str) -> None:
        """See ``VectorStore.drop``."""
        self._row(name)
        with self._write_lock:
            with self._transaction() as db:
                db.execute("DELETE FROM records WHERE collection = ?", (name,))
                db.execute("DELETE FROM deletions WHERE collection = ?", (name,))
                db.execute("DELETE FROM collections WHERE name = ?", (name,))
            with self._collections_lock:
                old = self._collections.pop(name, None)
        if old is not None:
            old.retire()  # a save of it already under way finishes before its file goes
        self._snapshot_file(name).unlink(missing_ok=True)  # a snapshot is a cache: at worst a rebuild

    # --- reads -------------------------------------------------------------------------------
    def search(self, name: str, queries: np.ndarray, top_k: int, where: Filter,
               threshold: float | None) -> list[list[Hit]]:
        """See ``VectorStore.search``."""
        vectors = self._collection(name).vectors
        # cosine, as pgvector's <=> computes it, even for a query that is not unit length
        queries = normalize(np.asarray(queries, dtype=np.float32))
        found = None
        if where and len(vectors) >= self.filter_memory_min_rows:
            found = vectors.search_where(queries, top_k, where)
        if found is None and where:
            sql, args = sqlite_where(where)
            allowed = np.array([r[0] for r in self._db().execute(
                f"SELECT rid FROM records WHERE collection = ? AND {sql}", [name, *args])], dtype=np.int64)
            if allowed.size == 0:
                return [[] for _ in range(len(queries))]
            found = vectors.search(queries, top_k, allowed)
        scores, rids = found if found is not None else vectors.search(queries, top_k)
        # with a filter, read hits through it too: a row updated since the allowed rows were chosen
        # must not come back with metadata the filter excludes
        rows = rows_by_rid(self._db(), name, {int(r) for r in rids.ravel() if r >= 0}, where or None)
        out: list[list[Hit]] = []
        for row_scores, row_rids in zip(scores, rids):
            hits = []
            for score, rid in zip(row_scores, row_rids):
                if rid < 0 or int(rid) not in rows or (threshold is not None and score < threshold):
                    continue
                rec_id, text, meta, chunk = rows[int(rid)]
                hits.append(Hit(rec_id, text, float(score), meta, chunk))
            out.append(hits)
        return out

    def get(self, name: str, ids: Sequence[str]) -> list[Record]:
        """See ``VectorStore.get``."""
        self._row(name)  # NotFound for an unknown collection
        rows = by_ids(self._db(), f"SELECT {RECORD_COLUMNS} FROM records WHERE collection = ? "
                            "AND id IN ({marks})", name, ids)
        found = {row[0]: record(row, name) for row in rows}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def get_documents(self, name: str, document_ids: Sequence[str]) -> list[Record]:
        """See ``VectorStore.get_documents``."""
        self._row(name)  # NotFound for an unknown collection
        return embedded_rows.documents_of(self._db(), name, document_ids)

    def find(self, name: str, where: Filter, limit: int) -> list[Record]:
        """See ``VectorStore.find``."""
        self._row(name)  # NotFound for an unknown collection
        sql, params = sqlite_where(where)
        rows = self._db().execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE collection = ? AND {sql} "
                                  "ORDER BY rid LIMIT ?", [name, *params, limit]).fetchall()
        return [record(row, name) for row in rows]

    def model_of(self, name: str) -> tuple[str, int]:
        """See ``VectorStore.model_of``."""
        row = self._row(name)
        return row.model, row.dimension

    def export(self, name: str) -> Iterator[Record]:
        """See ``VectorStore.export``."""
        self._row(name)
        cursor = self._db().execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE collection = ? ORDER BY rid", (name,))
        while rows := cursor.fetchmany(1000):
            for row in rows:
                yield record(row, name)

    def close(self) -> None:
        """Stop the background threads, save every snapshot that lags and release the directory."""
        self._closed.set()
        self._loader.join()
        self.flush(every_change=True)
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
