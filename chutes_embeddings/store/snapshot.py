"""The saved form of a collection's search index: one ``.npz`` file per collection beside the database.

A snapshot holds the ``VectorIndex`` arrays (rows, metadata columns, IVF centroids and each row's
list), a lexical leg's ``LexicalIndex`` arrays (``lex_*``) and a state: the format, the collection
version it reflects, the collection's ``created_at`` (so the file of a dropped namesake is never
loaded) and the dimension. It is a cache: SQLite holds
everything, so a missing, stale or unreadable snapshot costs a rebuild, never data. It is written
to a temporary file, fsync'd and renamed, and the rename is made durable before the caller prunes
the change log that the snapshot replaces.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from .names import NAMESPACE_SEPARATOR
from .vector_index import VectorIndex

SNAPSHOT_FORMAT = 2


def snapshot_path(directory: Path, name: str) -> Path:
    """Where the snapshot of collection ``name`` lives: a file directly in ``directory``.

    Names are checked (``store.names``), so a segment is a safe file name; a namespaced name's
    ``/`` becomes ``.``, which no segment holds, so two names never share a file.
    """
    return directory / f"{name.replace(NAMESPACE_SEPARATOR, '.')}.npz"


def read_snapshot(path: Path, name: str, dimension: int, version: int, created_at: float,
                  index_options: dict[str, Any]) -> tuple[VectorIndex, int, dict[str, np.ndarray]] | None:
    """The saved index, the collection version it reflects and the lexical index's arrays (``lex_*``,
    for ``LexicalIndex.restore``; empty if it has none), or ``None`` when none is usable.

    Args:
        path: the snapshot file.
        name: the collection (for the log).
        dimension: the collection's dimension.
        version: the collection's version now; a snapshot claiming a later one is not its own.
        created_at: when the collection was created; a snapshot of a dropped namesake differs.
        index_options: ``VectorIndex`` options (thresholds, ``nprobe``).
    """
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            state = json.loads(bytes(data["state"]).decode())
            if (state.get("format") != SNAPSHOT_FORMAT or state.get("created_at") != created_at
                    or not 0 <= state.get("version", -1) <= version or state.get("dimension") != dimension):
                return None
            vectors = VectorIndex.restore(dimension, data, **index_options)
            lexical = {key: data[key] for key in data.files if key.startswith("lex_")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("the saved index of collection {} is unreadable ({}); rebuilding it from SQLite",
                       name, type(exc).__name__)
        return None
    return vectors, state["version"], lexical


def write_snapshot(path: Path, arrays: dict[str, np.ndarray], version: int, created_at: float, dimension: int) -> None:
    """Save ``arrays`` (``VectorIndex.snapshot()``) as the snapshot of ``version``, durably.

    Raises:
        OSError: the file could not be written; the previous snapshot is left as it was.
    """
    state = {"format": SNAPSHOT_FORMAT, "version": version, "created_at": created_at, "dimension": dimension}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, state=np.frombuffer(json.dumps(state).encode(), dtype=np.uint8), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)  # the rename is durable before the log it replaces is pruned


def _fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
