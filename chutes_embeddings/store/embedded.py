"""The embedded store: SQLite (WAL) is the truth; a FAISS index per collection serves search.

- One SQLite file holds collections (name, model, dimension, a write version) and records (id,
  text, metadata JSON, float32 vector bytes). Every write is one transaction, committed with
  ``synchronous=FULL`` before it is acknowledged, so an acknowledged add survives a crash and an
  unacknowledged one is either whole or absent.
- Each collection's search index (``VectorIndex``: exact matrix search, plus a FAISS IVF index
  above ``ann_threshold`` vectors; keyed by the SQLite row id; metadata columns for filters)
  lives in memory and is updated after each commit.
- SQLite is also the index's change log: every record carries the collection version that last
  wrote it and deletions are logged with theirs. A snapshot of the index (rows, metadata columns,
  IVF centroids and each row's list) is saved beside the database, tagged with the version it
  reflects, only once the changes since the last one reach ``SAVE_FRACTION`` of the collection
  (or the IVF index was retrained), so a write costs no rewrite of the whole index. On open the
  snapshot is loaded (the IVF index comes back at once) and only the rows written and deleted
  after its version are replayed from SQLite; without a usable snapshot the index is rebuilt
  from SQLite, so the index can never disagree with the truth. Indexes load in a background
  thread as soon as the store opens.
- Hits are read by primary key (``ROWS_BY_RID``), never by scanning the collection.
- Filters run on the in-memory metadata columns (``metadata_index``) from
  ``filter_memory_min_rows`` records on, which choose exact search over the allowed rows or IVF
  search with an id bitmap by the filter's selectivity; below that, or where the columns cannot
  decide exactly, they run in SQLite (JSON functions) and the allowed rows are searched.
- One process at a time: a lock file refuses a second server on the same directory (use the
  Postgres store for several instances).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from loguru import logger

from ..errors import BackendUnavailable, InvalidInput, NotFound
from ..engine.vectors import normalize
from . import SAMPLE_TEXTS, CollectionInfo, Hit, Record, check_collection_name, model_conflict
from .filters import All, Condition, Filter, Not, json_type
from .metadata import decode_metadata, encode_metadata
from .metadata_index import Irregular, parse_stored
from .vector_index import VectorIndex

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY, model TEXT NOT NULL, dimension INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    rid INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, id TEXT NOT NULL, text TEXT NOT NULL,
    metadata TEXT NOT NULL, vector BLOB NOT NULL, version INTEGER NOT NULL DEFAULT 0, UNIQUE (collection, id));
CREATE TABLE IF NOT EXISTS deletions (collection TEXT NOT NULL, rid INTEGER NOT NULL, version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS deletions_by_version ON deletions (collection, version);
"""
_VERSION_INDEX = "CREATE INDEX IF NOT EXISTS records_by_version ON records (collection, version)"
# Hits by primary key: ``+collection`` keeps the planner off the (collection, id) index, which
# would walk the whole collection to find a handful of rids.
ROWS_BY_RID = "SELECT rid, id, text, metadata FROM records WHERE rid IN ({marks}) AND +collection = ?"
SNAPSHOT_FORMAT = 2
_SQLITE_TYPES = {"number": ("integer", "real"), "string": ("text",), "boolean": ("true", "false"), "null": ("null",)}
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
SAVE_INDEX_EVERY_S = 30.0
SAVE_FRACTION = 0.1  # a snapshot is rewritten once this share of the collection has changed
# A row whose metadata is not valid JSON (written before the metadata rules, or by hand) reads as
# {} in filters, instead of failing the whole statement with "malformed JSON".
_META = "(CASE WHEN json_valid(metadata) THEN metadata ELSE '{}' END)"


def sqlite_where(where: Filter) -> tuple[str, list[Any]]:
    """SQL (over column ``metadata``) and parameters for a filter tree; ``1`` when it is empty.

    The statement's size does not grow with ``$in`` lists (they are one ``json_each`` per JSON
    type) and long runs of conditions are joined as balanced trees, so filters at their
    documented limits stay within SQLite's expression-depth limit.
    """
    params: list[Any] = []

    def equals_any(key: str, values: Sequence[Any]) -> str:
        path = f'$."{key}"'
        by_type: dict[str, list[Any]] = {}
        for value in values:
            by_type.setdefault(json_type(value), []).append(value)
        options = []
        for kind, group in by_type.items():
            if kind in ("boolean", "null"):
                names = sorted({"null" if v is None else ("true" if v else "false") for v in group})
                params.append(path)
                options.append(f"json_type({_META}, ?) IN ({','.join(repr(n) for n in names)})")
                continue
            types = ",".join(f"'{t}'" for t in _SQLITE_TYPES[kind])
            params.extend([path, path, json.dumps(group) if len(group) > 1 else group[0]])
            match = "IN (SELECT value FROM json_each(?))" if len(group) > 1 else "= ?"
            options.append(f"(json_type({_META}, ?) IN ({types}) AND json_extract({_META}, ?) {match})")
        return "(" + " OR ".join(options) + ")"

    def condition(c: Condition) -> str:
        if c.op in ("$eq", "$ne", "$in", "$nin"):
            match = equals_any(c.key, c.value if c.op in ("$in", "$nin") else [c.value])
            return match if c.op in ("$eq", "$in") else f"NOT coalesce({match}, 0)"
        path = f'$."{c.key}"'
        types = ",".join(f"'{t}'" for t in _SQLITE_TYPES[json_type(c.value)])
        params.extend([path, path, c.value])
        return f"(json_type({_META}, ?) IN ({types}) AND json_extract({_META}, ?) {_COMPARE[c.op]} ?)"

    def render(node: Filter) -> str:  # always 0 or 1, never NULL
        if isinstance(node, Condition):
            return f"coalesce({condition(node)}, 0)"
        if isinstance(node, Not):
            return f"NOT {render(node.item)}"
        joiner, empty = (" AND ", "1") if isinstance(node, All) else (" OR ", "0")
        return _balanced([render(item) for item in node.items], joiner, empty)

    return render(where), params


def _stored_meta(text: str) -> dict[str, Any] | None:
    """A stored metadata text for the metadata columns (``None``: irregular, see ``metadata_index``)."""
    try:
        return parse_stored(text)
    except Irregular:
        return None


def _balanced(terms: list[str], joiner: str, empty: str) -> str:
    """``terms`` joined by ``joiner`` as a balanced tree (depth log2(n), not n)."""
    if not terms:
        return empty
    while len(terms) > 1:
        terms = [f"({a}{joiner}{b})" for a, b in zip(terms[::2], terms[1::2])] + (terms[-1:] if len(terms) % 2 else [])
    return terms[0]


def _fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Index:
    """A collection's vectors and the collection version they reflect."""

    def __init__(self, vectors: VectorIndex, version: int, created_at: float) -> None:
        self.vectors = vectors
        self.version = version
        self.created_at = created_at
        self.saved_version = -1
        self.saved_generation = -1
        self.changes = 0  # rows written or deleted since the last snapshot
        self.lock = threading.Lock()
        self.save_lock = threading.Lock()
        self.dead = False  # dropped or evicted: no longer the collection's index, never saved

    def save_due(self) -> bool:
        """Whether the snapshot on disk lags enough to be rewritten (see module docstring)."""
        if self.saved_version == self.version and self.saved_generation == self.vectors.ann_generation:
            return False
        return (self.saved_version < 0 or self.saved_generation != self.vectors.ann_generation
                or self.changes >= max(1, SAVE_FRACTION * len(self.vectors)))


class EmbeddedStore:
    """SQLite + FAISS under one directory (see module docstring)."""

    kind = "embedded"

    def __init__(self, directory: Path, ann_threshold: int = 100_000, nprobe: int = 32, retrain_growth: float = 2.0,
                 filter_exact_rows: int = 20_000, filter_memory_min_rows: int = 10_000) -> None:
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
        self._indexes: dict[str, _Index] = {}
        self._indexes_lock = threading.Lock()
        self._closed = threading.Event()
        db = self._db()
        db.executescript(_SCHEMA)
        if "version" not in {row[1] for row in db.execute("PRAGMA table_info(records)")}:
            db.execute("ALTER TABLE records ADD COLUMN version INTEGER NOT NULL DEFAULT 0")  # older stores
        db.execute(_VERSION_INDEX)
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

    @staticmethod
    def _by_ids(db: sqlite3.Connection, sql: str, name: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (with ``{marks}`` for the id list) for ids in chunks SQLite accepts."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows += db.execute(sql.format(marks=",".join("?" * len(chunk))), [name, *chunk]).fetchall()
        return rows

    def _bump_version(self, db: sqlite3.Connection, name: str) -> int:
        db.execute("UPDATE collections SET version = version + 1 WHERE name = ?", (name,))
        return self._row(name)[2]

    # --- collections -------------------------------------------------------------------------
    def _row(self, name: str) -> tuple[str, int, int, float]:
        row = self._db().execute("SELECT model, dimension, version, created_at FROM collections WHERE name = ?",
                                 (name,)).fetchone()
        if row is None:
            raise NotFound(f"collection {name!r} does not exist", field="collection")
        return row

    def describe(self, name: str) -> CollectionInfo:
        check_collection_name(name)
        model, dimension, _, _ = self._row(name)
        db = self._db()
        size = db.execute("SELECT count(*) FROM records WHERE collection = ?", (name,)).fetchone()[0]
        samples = [r[0] for r in db.execute("SELECT text FROM records WHERE collection = ? ORDER BY rid LIMIT ?",
                                            (name, SAMPLE_TEXTS))]
        return CollectionInfo(name, size, dimension, model, samples)

    def collections(self) -> list[CollectionInfo]:
        names = [r[0] for r in self._db().execute("SELECT name FROM collections ORDER BY name")]
        return [self.describe(n) for n in names]

    def ensure_collection(self, name: str, model: str, dimension: int) -> None:
        check_collection_name(name)
        with self._write_lock:
            db = self._db()
            db.execute("INSERT OR IGNORE INTO collections (name, model, dimension, created_at) VALUES (?, ?, ?, ?)",
                       (name, model, dimension, time.time()))
            have_model, have_dim, _, _ = self._row(name)
        if (have_model, have_dim) != (model, dimension):
            raise model_conflict(name, have_model, have_dim, model, dimension)

    # --- the FAISS side ----------------------------------------------------------------------
    def _index_path(self, name: str) -> Path:
        return self.directory / "indexes" / f"{name}.npz"

    def _index(self, name: str) -> _Index:
        with self._indexes_lock:
            index = self._indexes.get(name)
            if index is None:
                index = self._load_or_rebuild(name)
                self._indexes[name] = index
            return index

    def _load_or_rebuild(self, name: str) -> _Index:
        _, dimension, version, created_at = self._row(name)
        started = time.monotonic()
        loaded = self._load_snapshot(name, dimension, version, created_at)
        if loaded is not None:
            vectors, saved_version, generation = loaded
            replayed = self._replay(name, vectors, saved_version)
            index = _Index(vectors, version, created_at)
            index.saved_version, index.saved_generation, index.changes = saved_version, generation, replayed
            logger.info("loaded the index of collection {} ({} vectors, {} search, {} changes replayed) in {:.2f}s",
                        name, len(vectors), vectors.mode, replayed, time.monotonic() - started)
            return index
        vectors = VectorIndex(dimension, **self._index_options)
        self._replay(name, vectors, None)
        logger.info("rebuilt the index of collection {} ({} vectors) from SQLite in {:.2f}s",
                    name, len(vectors), time.monotonic() - started)
        return _Index(vectors, version, created_at)

    def _load_snapshot(self, name: str, dimension: int, version: int,
                       created_at: float) -> tuple[VectorIndex, int, int] | None:
        """The saved index with the version it reflects, or ``None`` when there is none usable."""
        path = self._index_path(name)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                state = json.loads(bytes(data["state"]).decode())
                if (state.get("format") != SNAPSHOT_FORMAT or state.get("created_at") != created_at
                        or not 0 <= state.get("version", -1) <= version or state.get("dimension") != dimension):
                    return None
                vectors = VectorIndex.restore(dimension, data, **self._index_options)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            logger.warning("the saved index of collection {} is unreadable ({}); rebuilding it from SQLite",
                           name, type(exc).__name__)
            return None
        return vectors, state["version"], vectors.ann_generation

    def _replay(self, name: str, vectors: VectorIndex, after: int | None) -> int:
        """Apply what SQLite holds beyond version ``after`` (everything when ``None``) to ``vectors``;
        returns how many rows that touched."""
        db = self._db()
        touched = 0
        if after is not None:
            gone = np.array([r[0] for r in db.execute("SELECT rid FROM deletions WHERE collection = ? AND version > ?",
                                                      (name, after))], dtype=np.int64)
            vectors.remove(gone)
            touched += len(gone)
            cursor = db.execute("SELECT rid, vector, metadata FROM records WHERE collection = ? AND version > ?",
                                (name, after))
        else:
            cursor = db.execute("SELECT rid, vector, metadata FROM records WHERE collection = ?", (name,))
        dimension = vectors.dimension
        while rows := cursor.fetchmany(10_000):
            rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dimension)
            vectors.upsert(rids, matrix, [_stored_meta(r[2]) for r in rows])
            touched += len(rows)
        return touched

    def _load_all(self) -> None:
        """Load every collection's index right after opening, so searches find it ready (a search
        that comes first waits for its collection's load, as it would without this)."""
        for (name,) in self._db().execute("SELECT name FROM collections ORDER BY name").fetchall():
            if self._closed.is_set():
                return
            try:
                self._index(name)
            except NotFound:  # dropped meanwhile
                continue
            except Exception as exc:  # it is loaded (or the error reported) on first use instead
                logger.opt(exception=exc).error("loading the index of collection {} failed", name)

    def _save(self, name: str, index: _Index) -> None:
        with index.save_lock:
            with index.lock:
                if index.dead or not index.save_due():  # dropped (or evicted): nothing of it is saved
                    return
                version, changes, generation = index.version, index.changes, index.vectors.ann_generation
                arrays = index.vectors.snapshot()
            state = {"format": SNAPSHOT_FORMAT, "version": version, "created_at": index.created_at,
                     "dimension": index.vectors.dimension}
            path = self._index_path(name)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                np.savez(f, state=np.frombuffer(json.dumps(state).encode(), dtype=np.uint8), **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_directory(path.parent)  # the rename is durable before the log it replaces is pruned
            with index.lock:
                index.saved_version, index.saved_generation = version, generation
                index.changes -= changes
            with self._write_lock, self._transaction() as db:  # the log before the snapshot is no longer needed
                db.execute("DELETE FROM deletions WHERE collection = ? AND version <= ? AND "
                           "(SELECT created_at FROM collections WHERE name = ?) = ?",
                           (name, version, name, index.created_at))  # never a re-created collection's log

    def _save_periodically(self) -> None:
        while not self._closed.wait(SAVE_INDEX_EVERY_S):
            try:
                self.flush()
            except Exception as exc:  # the snapshot is a cache: SQLite still holds everything
                logger.opt(exception=exc).error("saving a store index failed; it will be retried")

    def flush(self) -> None:
        """Write the snapshots that lag enough (also done every 30 s and on close)."""
        with self._indexes_lock:
            items = list(self._indexes.items())
        for name, index in items:
            self._save(name, index)

    # --- writes ------------------------------------------------------------------------------
    def upsert(self, name: str, records: Sequence[Record]) -> int:
        check_collection_name(name)
        records = list({r.id: r for r in records}.values())  # one id once: the last one wins
        encoded = [encode_metadata(r.metadata) for r in records]
        matrix = np.stack([np.asarray(r.vector, dtype=np.float32) for r in records])
        metas = [_stored_meta(meta) for meta in encoded]
        with self._write_lock:
            # resolved under the write lock, as drop and re-creation are: the index is this collection's
            index = self._index(name)
            if matrix.ndim != 2 or matrix.shape[1] != index.vectors.dimension:
                raise InvalidInput(f"vectors have {matrix.shape[-1]} dimensions; collection {name!r} holds "
                                   f"{index.vectors.dimension}", field="vectors", limit=index.vectors.dimension)
            with self._transaction() as db:
                version = self._bump_version(db, name)
                db.executemany(
                    "INSERT INTO records (collection, id, text, metadata, vector, version) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (collection, id) DO UPDATE SET text = excluded.text, metadata = excluded.metadata, "
                    "vector = excluded.vector, version = excluded.version",
                    [(name, r.id, r.text, meta, row.tobytes(), version) for r, meta, row in zip(records, encoded, matrix)],
                )
                found = dict(self._by_ids(db, "SELECT id, rid FROM records WHERE collection = ? AND id IN ({marks})",
                                          name, [r.id for r in records]))
            rids = np.fromiter((found[r.id] for r in records), dtype=np.int64, count=len(records))
            with self._evict_on_error(name, index), index.lock:
                index.vectors.upsert(rids, matrix, metas)
                index.version = version
                index.changes += len(records)
        return len(index.vectors)

    @contextmanager
    def _evict_on_error(self, name: str, index: _Index) -> Iterator[None]:
        """Committed rows must reach the index: if updating it fails, it is dropped from memory and
        rebuilt from SQLite (snapshot + replay) on next use, never saved with the gap."""
        try:
            yield
        except BaseException:
            with self._indexes_lock:
                if self._indexes.get(name) is index:
                    del self._indexes[name]
            index.dead = True
            logger.error("the index of collection {} missed a committed write; it is rebuilt on next use", name)
            raise

    def delete(self, name: str, ids: Sequence[str] | None, where: Filter | None) -> int:
        check_collection_name(name)
        with self._write_lock:
            index = self._index(name)  # under the write lock: see upsert
            with self._transaction() as db:
                if ids is not None:
                    rows = self._by_ids(db, "DELETE FROM records WHERE collection = ? AND id IN ({marks}) "
                                        "RETURNING rid", name, ids)
                else:
                    sql, params = sqlite_where(where or All())
                    rows = db.execute(f"DELETE FROM records WHERE collection = ? AND {sql} RETURNING rid",
                                      [name, *params]).fetchall()
                version = self._bump_version(db, name)
                db.executemany("INSERT INTO deletions (collection, rid, version) VALUES (?, ?, ?)",
                               [(name, r[0], version) for r in rows])
            with self._evict_on_error(name, index), index.lock:
                index.vectors.remove(np.array([r[0] for r in rows], dtype=np.int64))
                index.version = version
                index.changes += len(rows)
        return len(rows)

    def drop(self, name: str) -> None:
        check_collection_name(name)
        self._row(name)
        with self._write_lock:
            with self._transaction() as db:
                db.execute("DELETE FROM records WHERE collection = ?", (name,))
                db.execute("DELETE FROM deletions WHERE collection = ?", (name,))
                db.execute("DELETE FROM collections WHERE name = ?", (name,))
            with self._indexes_lock:
                old = self._indexes.pop(name, None)
        if old is not None:
            old.dead = True
            with old.save_lock:  # a save of it already under way finishes before its file goes
                pass
        self._index_path(name).unlink(missing_ok=True)  # a snapshot is a cache: at worst a rebuild

    # --- reads -------------------------------------------------------------------------------
    def search(self, name: str, queries: np.ndarray, top_k: int, where: Filter,
               threshold: float | None) -> list[list[Hit]]:
        check_collection_name(name)
        index = self._index(name)
        # cosine, as pgvector's <=> computes it, even for a query that is not unit length
        queries = normalize(np.asarray(queries, dtype=np.float32))
        found = None
        if where and len(index.vectors) >= self.filter_memory_min_rows:
            found = index.vectors.search_where(queries, top_k, where)
        if found is None and where:
            sql, args = sqlite_where(where)
            allowed = np.array([r[0] for r in self._db().execute(
                f"SELECT rid FROM records WHERE collection = ? AND {sql}", [name, *args])], dtype=np.int64)
            if allowed.size == 0:
                return [[] for _ in range(len(queries))]
            found = index.vectors.search(queries, top_k, allowed)
        scores, rids = found if found is not None else index.vectors.search(queries, top_k)
        # with a filter, read hits through it too: a row updated since the allowed rows were chosen
        # must not come back with metadata the filter excludes
        rows = self._rows_by_rid(name, {int(r) for r in rids.ravel() if r >= 0}, where or None)
        out: list[list[Hit]] = []
        for row_scores, row_rids in zip(scores, rids):
            hits = []
            for score, rid in zip(row_scores, row_rids):
                if rid < 0 or int(rid) not in rows or (threshold is not None and score < threshold):
                    continue
                rec_id, text, meta = rows[int(rid)]
                hits.append(Hit(rec_id, text, float(score), meta))
            out.append(hits)
        return out

    def _rows_by_rid(self, name: str, rids: set[int],
                     where: Filter | None = None) -> dict[int, tuple[str, str, dict[str, Any]]]:
        if not rids:
            return {}
        sql, params = ROWS_BY_RID.format(marks=",".join("?" * len(rids))), [*rids, name]
        if where:
            clause, args = sqlite_where(where)
            sql, params = f"{sql} AND {clause}", [*params, *args]
        rows = self._db().execute(sql, params).fetchall()
        return {rid: (rec_id, text, decode_metadata(meta, name)) for rid, rec_id, text, meta in rows}

    def get(self, name: str, ids: Sequence[str]) -> list[Record]:
        check_collection_name(name)
        self._row(name)  # NotFound for an unknown collection
        rows = self._by_ids(self._db(), "SELECT id, text, metadata, vector FROM records WHERE collection = ? "
                            "AND id IN ({marks})", name, ids)
        found = {rec_id: Record(rec_id, text, decode_metadata(meta, name), np.frombuffer(vec, dtype=np.float32).copy())
                 for rec_id, text, meta, vec in rows}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def find(self, name: str, where: Filter, limit: int) -> list[Record]:
        check_collection_name(name)
        self._row(name)  # NotFound for an unknown collection
        sql, params = sqlite_where(where)
        rows = self._db().execute(f"SELECT id, text, metadata, vector FROM records WHERE collection = ? AND {sql} "
                                  "ORDER BY rid LIMIT ?", [name, *params, limit]).fetchall()
        return [Record(rec_id, text, decode_metadata(meta, name), np.frombuffer(vec, dtype=np.float32).copy())
                for rec_id, text, meta, vec in rows]

    def model_of(self, name: str) -> tuple[str, int]:
        check_collection_name(name)
        model, dimension, _, _ = self._row(name)
        return model, dimension

    def export(self, name: str) -> Iterator[Record]:
        check_collection_name(name)
        self._row(name)
        cursor = self._db().execute("SELECT id, text, metadata, vector FROM records WHERE collection = ? ORDER BY rid",
                                    (name,))
        while rows := cursor.fetchmany(1000):
            for rec_id, text, meta, vec in rows:
                yield Record(rec_id, text, decode_metadata(meta, name), np.frombuffer(vec, dtype=np.float32).copy())

    def close(self) -> None:
        self._closed.set()
        self._loader.join()
        self.flush()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
