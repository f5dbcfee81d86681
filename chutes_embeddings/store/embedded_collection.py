"""One collection of the embedded store in memory: its search index, the version it reflects, its snapshot.

qdrant-client's ``LocalCollection`` idea at our scale: ``EmbeddedStore`` keeps the rows (SQLite),
the lock and the routing, and resolves a collection name to one of these.

- SQLite is the index's change log: every record carries the collection version that last wrote
  it and deletions are logged with theirs. A collection is loaded from its snapshot (the IVF index
  comes back at once) plus only the rows written and deleted after the snapshot's version; without
  a usable snapshot it is rebuilt from SQLite, so the index can never disagree with the truth.
- It takes each committed write in commit order (``apply_upsert``/``apply_delete``). If applying
  one fails it is marked dead: the store loads it again on next use, and it is never saved with
  the gap.
- A collection with a sparse leg also holds a ``SparseIndex`` of its records' sparse vectors. It
  is not in the snapshot: it is rebuilt from SQLite on every load, and then takes the same
  committed writes in the same order as the dense index.
- A collection with a lexical leg holds a ``LexicalIndex`` (BM25 over its texts' analyzed terms).
  It is derived from the texts, so SQLite keeps no term lists: it is saved in the snapshot beside
  the dense index (the same version) and on load the rows changed after it are analyzed again;
  without it in the snapshot it is rebuilt from every text. It takes the same committed writes.
- A snapshot is rewritten only once the changes since the last reach ``SAVE_FRACTION`` of the
  collection (or the IVF index was retrained), so a write costs no rewrite of the whole index.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from loguru import logger

from ..lexical.analyzer import analyzer
from ..lexical.hashed import HashedWords, hash_words
from .lexical_index import LexicalIndex
from .metadata_index import Irregular, parse_stored
from .snapshot import read_snapshot, write_snapshot
from .sparse import arrays_of
from .sparse_index import SparseIndex
from .vector_index import VectorIndex

SAVE_FRACTION = 0.1  # a snapshot is rewritten once this share of the collection has changed


def column_meta(text: str) -> dict[str, Any] | None:
    """A stored metadata text for the metadata columns (``None``: irregular, see ``metadata_index``)."""
    try:
        return parse_stored(text)
    except Irregular:
        return None


class EmbeddedCollection:
    """A collection's search index (keyed by SQLite row id) and the collection version it reflects.

    ``lock`` guards the index and the counters; ``save_lock`` lets one snapshot save run at a time.
    """

    def __init__(self, name: str, vectors: VectorIndex, version: int, created_at: float,
                 sparse: SparseIndex | None = None) -> None:
        self.name = name
        self.vectors = vectors
        self.sparse = sparse
        self.lexical: LexicalIndex | None = None
        self.version = version
        self.created_at = created_at
        self.saved_version = -1
        self.saved_generation = -1
        self.changes = 0  # rows written or deleted since the last snapshot
        self.lock = threading.Lock()
        self.save_lock = threading.Lock()
        self.dead = False  # dropped or missed a write: no longer the collection's index, never saved

    @classmethod
    def load(cls, db: sqlite3.Connection, name: str, dimension: int, version: int, created_at: float,
             snapshot_file: Path, index_options: dict[str, Any], sparse: bool = False,
             lexical: str | None = None) -> EmbeddedCollection:
        """The collection from its snapshot plus the change log after it, or rebuilt from SQLite.

        Args:
            db: a connection to the store's database.
            name: the collection.
            dimension: its dimension.
            version: its version now (the last write's).
            created_at: when it was created (a dropped namesake's snapshot is not its own).
            snapshot_file: where its snapshot is saved.
            index_options: ``VectorIndex`` options.
            sparse: whether it has a sparse leg (its ``SparseIndex`` is rebuilt from SQLite).
            lexical: the language of its lexical leg, if it has one.
        """
        collection, saved_lexical = cls._load_dense(db, name, dimension, version, created_at, snapshot_file,
                                                    index_options)
        if lexical:
            collection._load_lexical(db, lexical, saved_lexical)
        if sparse:
            started = time.monotonic()
            collection.sparse = SparseIndex()
            collection._replay_sparse(db)
            logger.info("rebuilt the sparse index of collection {} ({} vectors) in {:.2f}s",
                        name, len(collection.sparse), time.monotonic() - started)
        return collection

    @classmethod
    def _load_dense(cls, db: sqlite3.Connection, name: str, dimension: int, version: int, created_at: float,
                    snapshot_file: Path, index_options: dict[str, Any]) -> tuple[EmbeddedCollection,
                                                                                 dict[str, np.ndarray]]:
        started = time.monotonic()
        loaded = read_snapshot(snapshot_file, name, dimension, version, created_at, index_options)
        if loaded is not None:
            vectors, saved_version, lexical = loaded
            collection = cls(name, vectors, version, created_at)
            collection.saved_version, collection.saved_generation = saved_version, vectors.ann_generation
            replayed = collection._replay(db, saved_version)
            collection.changes = replayed
            logger.info("loaded the index of collection {} ({} vectors, {} search, {} changes replayed) in {:.2f}s",
                        name, len(vectors), vectors.mode, replayed, time.monotonic() - started)
            return collection, lexical
        collection = cls(name, VectorIndex(dimension, **index_options), version, created_at)
        collection._replay(db, None)
        logger.info("rebuilt the index of collection {} ({} vectors) from SQLite in {:.2f}s",
                    name, len(collection.vectors), time.monotonic() - started)
        return collection, {}

    def _load_lexical(self, db: sqlite3.Connection, language: str, arrays: dict[str, np.ndarray]) -> None:
        """The lexical index: the snapshot's (``arrays``) plus the rows changed after it (analyzed
        again), or (none saved) every row's text analyzed."""
        started = time.monotonic()
        saved = LexicalIndex.restore(analyzer(language), arrays)
        after = self.saved_version if saved is not None else None
        self.lexical = saved if saved is not None else LexicalIndex(analyzer(language))
        if after is not None:
            self.lexical.remove(np.array([r[0] for r in db.execute(
                "SELECT rid FROM deletions WHERE collection = ? AND version > ?", (self.name, after))],
                dtype=np.int64))
            cursor = db.execute("SELECT rid, text FROM records WHERE collection = ? AND version > ?",
                                (self.name, after))
        else:
            cursor = db.execute("SELECT rid, text FROM records WHERE collection = ?", (self.name,))
        analyzed = 0
        while rows := cursor.fetchmany(10_000):
            self.lexical.upsert(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                                hash_words(analyzer(language), [r[1] for r in rows]))
            analyzed += len(rows)
        logger.info("{} the lexical index of collection {} ({} texts, {} analyzed) in {:.2f}s",
                    "loaded" if saved is not None else "rebuilt", self.name, len(self.lexical), analyzed,
                    time.monotonic() - started)

    def _replay(self, db: sqlite3.Connection, after: int | None) -> int:
        """Apply what SQLite holds beyond version ``after`` (everything when ``None``) to the index;
        returns how many rows that touched."""
        touched = 0
        if after is not None:
            gone = np.array([r[0] for r in db.execute("SELECT rid FROM deletions WHERE collection = ? AND version > ?",
                                                      (self.name, after))], dtype=np.int64)
            self.vectors.remove(gone)
            touched += len(gone)
            cursor = db.execute("SELECT rid, vector, metadata FROM records WHERE collection = ? AND version > ?",
                                (self.name, after))
        else:
            cursor = db.execute("SELECT rid, vector, metadata FROM records WHERE collection = ?", (self.name,))
        dimension = self.vectors.dimension
        while rows := cursor.fetchmany(10_000):
            rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dimension)
            self.vectors.upsert(rids, matrix, [column_meta(r[2]) for r in rows])
            touched += len(rows)
        return touched

    def _replay_sparse(self, db: sqlite3.Connection) -> None:
        """Fill the sparse index with every sparse vector SQLite holds for the collection."""
        assert self.sparse is not None
        cursor = db.execute("SELECT rid, sparse FROM records WHERE collection = ? AND sparse IS NOT NULL",
                            (self.name,))
        while rows := cursor.fetchmany(10_000):
            self.sparse.upsert(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                               [arrays_of(r[1]) for r in rows])

    # --- committed writes, in commit order ---------------------------------------------------
    def apply_upsert(self, rids: np.ndarray, matrix: np.ndarray, metas: list[dict[str, Any] | None],
                     version: int, sparse_rows: list[tuple[np.ndarray, np.ndarray]] | None = None,
                     words: HashedWords | None = None) -> None:
        """Take rows that SQLite has committed at ``version`` (``sparse_rows``: their sparse vectors
        as ids and weights, in a collection with a sparse leg; ``words``: their texts' words
        (``hash_words``), in one with a lexical leg)."""
        with self._dead_on_error(), self.lock:
            self.vectors.upsert(rids, matrix, metas)
            if self.sparse is not None and sparse_rows is not None:
                self.sparse.upsert(rids, sparse_rows)
            if self.lexical is not None and words is not None:
                self.lexical.upsert(rids, words)
            self.version = version
            self.changes += len(rids)

    def apply_delete(self, rids: np.ndarray, version: int) -> None:
        """Drop rows whose deletion SQLite has committed at ``version``."""
        with self._dead_on_error(), self.lock:
            self.vectors.remove(rids)
            if self.sparse is not None:
                self.sparse.remove(rids)
            if self.lexical is not None:
                self.lexical.remove(rids)
            self.version = version
            self.changes += len(rids)

    @contextmanager
    def _dead_on_error(self) -> Iterator[None]:
        """Committed rows must reach the index: if updating it fails, it is marked dead, so the store
        loads the collection again (snapshot + replay) on next use and never saves it with the gap."""
        try:
            yield
        except BaseException:
            self.dead = True
            logger.error("the index of collection {} missed a committed write; it is rebuilt on next use", self.name)
            raise

    def retire(self) -> None:
        """Mark it no longer the collection's index (dropped) and wait for a save of it under way to end."""
        self.dead = True
        with self.save_lock:  # a save already under way finishes before the caller removes its file
            pass

    # --- snapshots ---------------------------------------------------------------------------
    def save_due(self, every_change: bool = False) -> bool:
        """Whether the snapshot on disk lags enough to be rewritten (see module docstring), or with
        ``every_change`` (a clean close) whether it lags at all."""
        if self.saved_version == self.version and self.saved_generation == self.vectors.ann_generation:
            return False
        return (every_change or self.saved_version < 0 or self.saved_generation != self.vectors.ann_generation
                or self.changes >= max(1, SAVE_FRACTION * len(self.vectors)))

    def save(self, snapshot_file: Path, prune_log: Callable[[int], None], every_change: bool = False) -> None:
        """Write a snapshot if one is due (``save_due``), then call ``prune_log(version)`` (still under
        the save lock) to drop the change log up to the version it reflects. A dead collection is
        never saved.

        Raises:
            OSError: the snapshot could not be written (the log is kept; a later save retries).
        """
        with self.save_lock:
            with self.lock:
                if self.dead or not self.save_due(every_change):  # dropped (or evicted): nothing of it is saved
                    return
                version, changes, generation = self.version, self.changes, self.vectors.ann_generation
                arrays = self.vectors.snapshot()
                lexical = self.lexical.capture() if self.lexical is not None else None
            if lexical is not None:  # merged outside the lock: writes and searches go on meanwhile
                arrays.update(lexical.arrays())
            write_snapshot(snapshot_file, arrays, version, self.created_at, self.vectors.dimension)
            with self.lock:
                self.saved_version, self.saved_generation = version, generation
                self.changes -= changes
            prune_log(version)
