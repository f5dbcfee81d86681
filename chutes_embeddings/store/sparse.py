"""Learned-sparse vectors as the stores keep them: checked once, stored as bytes (embedded) or sparsevec.

A ``SparseVector`` is ascending distinct vocabulary ids with positive finite weights. Ids stay
below ``MAX_SPARSE_INDEX`` (pgvector's sparsevec dimension limit), so both stores take the same
vectors; Postgres stores them with that one dimension, so any two are comparable.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidInput
from . import Record, SparseVector
from .names import MAX_SPARSE_INDEX, MAX_SPARSE_NONZEROS


def check_sparse(vector: SparseVector | None, where: str) -> SparseVector:
    """Return ``vector`` if it is a valid sparse vector.

    Raises:
        InvalidInput: none given, or ids that are not ascending, distinct and in range, or weights
            that are not positive and finite (``field="sparse"``).
    """
    if vector is None:
        raise InvalidInput(f"{where} has no sparse vector; this collection has a sparse leg, so every record "
                           "needs one", field="sparse")
    indices, values = vector.indices, vector.values
    if len(indices) != len(values) or len(indices) > MAX_SPARSE_NONZEROS:
        raise InvalidInput(f"{where}: a sparse vector has as many weights as ids, at most {MAX_SPARSE_NONZEROS}",
                           field="sparse", limit=MAX_SPARSE_NONZEROS)
    previous = -1
    for index, value in zip(indices, values):
        if not isinstance(index, int) or not previous < index < MAX_SPARSE_INDEX:
            raise InvalidInput(f"{where}: sparse ids must be ascending, distinct integers in 0..{MAX_SPARSE_INDEX - 1}",
                               field="sparse", limit=MAX_SPARSE_INDEX - 1)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InvalidInput(f"{where}: sparse weights must be positive finite numbers", field="sparse")
        previous = index
    return vector


def check_records(records: list[Record]) -> None:
    """Every record of a write to a collection with a sparse leg has a valid sparse vector."""
    for record in records:
        check_sparse(record.sparse, f"record {record.id!r}")


def to_blob(vector: SparseVector) -> bytes:
    """The stored form: the ids as int32, then the weights as float32 (little-endian)."""
    return (np.asarray(vector.indices, dtype="<i4").tobytes()
            + np.asarray(vector.values, dtype="<f4").tobytes())


def arrays_of(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The ids (int32) and weights (float32) of a stored vector."""
    half = len(blob) // 2
    return np.frombuffer(blob[:half], dtype="<i4"), np.frombuffer(blob[half:], dtype="<f4")


def from_blob(blob: bytes | None) -> SparseVector | None:
    """The vector of a stored form (``None`` for none)."""
    if blob is None:
        return None
    indices, values = arrays_of(blob)
    return SparseVector(tuple(indices.tolist()), tuple(values.tolist()))
