"""Embedding types: float vectors as Cohere's ``embedding_types`` and sentence-transformers'
``quantize_embeddings`` define the others, for every dialect that offers them.

``int8`` and ``uint8`` follow ``quantize_embeddings(..., ranges=int8_ranges(d))``: each value is
cut into 256 equal steps of a range, ``floor``-ed and clipped (``int8`` = that bucket - 128). The
range is fixed, not calibrated on texts: for a unit vector of ``d`` dimensions the RMS of its
components is exactly ``1/sqrt(d)``, and the range is five of those either side of zero,
``[-5/sqrt(d), 5/sqrt(d)]`` (capped at [-1, 1]). It holds all but about one in a million
components of the bundled model's vectors (the largest over 4,200 texts is 5.06 RMS), needs no
start-up pass, is the same on every replica and backend (TEI or local), and follows
``output_dimension`` (a re-normalised prefix has larger components). Measured by
``scripts/quantization_recall.py`` (all-MiniLM-L6-v2; 2,000 documents and 100 queries per text
set; the raw int8 dot product against the float cosine's top 10): recall@10 0.993-0.995 at 384
dimensions (0.96-0.98 at 128 and 64), where per-dimension min/max ranges calibrated on 500 other
texts give 0.81-0.86 (scaling each dimension differently distorts the dot product) and [-1, 1]
0.97. So ``int8`` and ``uint8`` need unit vectors (``normalize``); ``binary`` does not.

``binary`` and ``ubinary`` pack the signs, 8 dimensions a byte (``np.packbits(v > 0)``, the
first dimension in the high bit; ``binary`` = ``ubinary - 128`` as int8), ``ceil(d/8)`` values;
raw Hamming recall@10 on the set above is 0.68 (binary is for a first pass, rescored by float).
``base64`` is the float32 vector's little-endian bytes (what Cohere and the OpenAI SDK decode).
"""

from __future__ import annotations

import base64 as b64
import math
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInput

FLOAT, INT8, UINT8, BINARY, UBINARY, BASE64 = "float", "int8", "uint8", "binary", "ubinary", "base64"
EMBEDDING_TYPES = (FLOAT, INT8, UINT8, BINARY, UBINARY, BASE64)
UNIT_ONLY = (INT8, UINT8)  # their range assumes unit vectors
RANGE_RMS = 5.0  # the int8/uint8 range, in RMS components of a unit vector either side of zero


def int8_range(dimension: int) -> float:
    """The half-width of the int8/uint8 range for unit vectors of ``dimension`` dimensions."""
    return min(1.0, RANGE_RMS / math.sqrt(dimension))


def int8_ranges(dimension: int) -> np.ndarray:
    """The (2, dimension) min/max rows that sentence-transformers' ``quantize_embeddings`` takes
    as ``ranges`` to give the same int8/uint8 values."""
    half = np.float32(int8_range(dimension))
    return np.stack([np.full(dimension, -half, np.float32), np.full(dimension, half, np.float32)])


def check_types(kinds: Sequence[str], *, normalized: bool, field: str = "embedding_types") -> None:
    """Refuse an unknown type, or int8/uint8 of vectors that are not unit vectors."""
    for i, kind in enumerate(kinds):
        if kind not in EMBEDDING_TYPES:
            raise InvalidInput(f"{field}[{i}]: {kind!r} is not one of {list(EMBEDDING_TYPES)}", field=f"{field}[{i}]",
                               limit=list(EMBEDDING_TYPES))
        if kind in UNIT_ONLY and not normalized:
            raise InvalidInput(f"{field}[{i}]: {kind} is quantised over the range of unit vectors; send normalize=true "
                               "(binary and ubinary work either way)", field=f"{field}[{i}]", limit=[True])


def quantize(vectors: np.ndarray, kind: str) -> np.ndarray:
    """``vectors`` (n, d) float32 as ``kind`` (float, int8, uint8, binary, ubinary), as
    ``quantize_embeddings`` gives them with ``int8_ranges(d)``."""
    if kind == FLOAT:
        return vectors.astype(np.float32, copy=False)
    if kind in (INT8, UINT8):
        half = np.float32(int8_range(vectors.shape[1]))
        step = (2 * half) / np.float32(255)
        buckets = np.clip(np.floor((vectors.astype(np.float32, copy=False) + half) / step), 0, 255)
        return buckets.astype(np.uint8) if kind == UINT8 else (buckets - 128).astype(np.int8)
    if kind in (BINARY, UBINARY):
        packed = np.packbits(vectors > 0, axis=-1)
        return packed if kind == UBINARY else (packed.astype(np.int16) - 128).astype(np.int8)
    raise ValueError(f"no array form for {kind!r}; this is a bug: types are checked upstream")


def to_base64(vectors: np.ndarray) -> list[str]:
    """Each vector's little-endian float32 bytes, base64-encoded."""
    return [b64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in vectors]


def by_type(vectors: np.ndarray, kinds: Sequence[str]) -> dict[str, list[Any]]:
    """Plain lists per requested type, in the order asked (duplicates once): what answers carry."""
    out: dict[str, list[Any]] = {}
    for kind in kinds:
        if kind not in out:
            out[kind] = to_base64(vectors) if kind == BASE64 else quantize(vectors, kind).tolist()
    return out
