"""The saved form of a collection's search index: one file per collection beside the database.

A snapshot holds the ``VectorIndex`` arrays (rows, metadata columns, IVF centroids and each row's
list), a lexical leg's ``LexicalIndex`` arrays (``lex_*``) and a state: the format, the collection
version it reflects, the collection's ``created_at`` (so the file of a dropped namesake is never
loaded) and the dimension. It is a cache: SQLite holds
everything, so a missing, stale or unreadable snapshot costs a rebuild, never data. It is written
to a temporary file, fsync'd and renamed, and the rename is made durable before the caller prunes
the change log that the snapshot replaces.

The file (format 3) is the arrays' raw bytes, each at a 64-byte aligned offset after a JSON table
of contents, so a load maps it (copy-on-write) instead of reading it: nothing is read until used,
and on this sandbox faulting fresh memory for a 2 GB read was most of a restart at 1M records
(docs/benchmarks.md). A file of format 2 (``np.savez``'s zip, the same name) still loads. Since
a loaded index may map its file, a snapshot is only ever replaced by a rename, never rewritten in
place (a mapping of a file cut short faults with SIGBUS).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from loguru import logger

from .names import NAMESPACE_SEPARATOR
from .vector_index import VectorIndex

SNAPSHOT_FORMAT = 3
_ZIP_FORMAT = 2  # np.savez's archive, as written before format 3
_MAGIC = b"\x93CESNAP\x00"
_HEAD = len(_MAGIC) + 8  # the magic, then the table of contents' length (little-endian uint64)
_ALIGN = 64


def snapshot_path(directory: Path, name: str) -> Path:
    """Where the snapshot of collection ``name`` lives: a file directly in ``directory``.

    Names are checked (``store.names``), so a segment is a safe file name; a namespaced name's
    ``/`` becomes ``.``, which no segment holds, so two names never share a file.
    """
    # ``.npz`` as format 2 was named: a format 3 file replaces its predecessor in place
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
        state, data = _read(path)
        if (state.get("format") not in (SNAPSHOT_FORMAT, _ZIP_FORMAT) or state.get("created_at") != created_at
                or not 0 <= state.get("version", -1) <= version or state.get("dimension") != dimension):
            return None
        vectors = VectorIndex.restore(dimension, data, **index_options)
        lexical = {key: data[key] for key in data if key.startswith("lex_")}
    except (OSError, ValueError, KeyError, TypeError, struct.error, zipfile.BadZipFile) as exc:
        logger.warning("the saved index of collection {} is unreadable ({}); rebuilding it from SQLite",
                       name, type(exc).__name__)
        return None
    return vectors, state["version"], lexical


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The state and the arrays of a snapshot file: mapped (format 3) or read (a format 2 zip).

    Raises:
        ValueError, KeyError, TypeError, struct.error, zipfile.BadZipFile: not a whole snapshot.
    """
    with open(path, "rb") as f:
        magic = f.read(len(_MAGIC))
        if magic != _MAGIC:
            if not magic.startswith(b"PK\x03\x04"):
                raise ValueError("neither a format 3 snapshot nor a zip")
            f.seek(0)
            with np.load(f) as archive:  # format 2 (a zip): read whole, as it was
                arrays = {key: archive[key] for key in archive.files}
            return json.loads(bytes(arrays.pop("state")).decode()), arrays
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # private: writes never reach the file
    (length,) = struct.unpack_from("<Q", mapped, len(_MAGIC))
    contents = json.loads(mapped[_HEAD : _HEAD + length])
    start = _aligned(_HEAD + length)
    arrays = {}
    for name, descr, shape, offset in contents["arrays"]:
        dtype = np.lib.format.descr_to_dtype(descr)
        count = math.prod(shape)
        if start + offset + count * dtype.itemsize > len(mapped):
            raise ValueError(f"the snapshot is cut short inside array {name!r}")
        arrays[name] = (np.frombuffer(mapped, dtype, count, start + offset) if count
                        else np.empty(0, dtype)).reshape(shape)
    return contents["state"], arrays


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


def write_snapshot(path: Path, arrays: dict[str, np.ndarray], version: int, created_at: float, dimension: int) -> None:
    """Save ``arrays`` (``VectorIndex.snapshot()``) as the snapshot of ``version``, durably.

    Raises:
        OSError: the file could not be written; the previous snapshot is left as it was.
    """
    state = {"format": SNAPSHOT_FORMAT, "version": version, "created_at": created_at, "dimension": dimension}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        _write(f, state, arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)  # the rename is durable before the log it replaces is pruned


def _write(f: BinaryIO, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Format 3: the magic, the table of contents (state; each array's name, dtype, shape and offset
    after the table), then each array's bytes padded to ``_ALIGN``."""
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    table, offset = [], 0
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects; a snapshot holds plain arrays")
        table.append([name, np.lib.format.dtype_to_descr(a.dtype), list(a.shape), offset])
        offset += _aligned(a.nbytes)
    contents = json.dumps({"state": state, "arrays": table}).encode()
    f.write(_MAGIC + struct.pack("<Q", len(contents)) + contents
            + bytes(_aligned(_HEAD + len(contents)) - _HEAD - len(contents)))
    for a in arrays.values():
        f.write(a.reshape(-1).view(np.uint8).data)
        f.write(bytes(_aligned(a.nbytes) - a.nbytes))


def _fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
