"""Record metadata: what may be stored, and reading back what should not have been.

Metadata is a JSON object of at most ``MAX_METADATA_KEYS`` top-level keys whose canonical JSON is
at most ``MAX_METADATA_BYTES``; numbers are finite and integers fit in 64 bits (``payload``).
Every write path (HTTP, the copy/import CLI) goes through ``encode_metadata``, so both stores keep
only values that every reader and JSON encoder can handle.

Rows written before these rules (or by hand) may still hold ``NaN``, ``Infinity``, numbers that
overflow a float or 64 bits, lone UTF-16 surrogates (``"\ud800"``: no UTF-8 encoder writes one), or
text that is not JSON. ``decode_metadata`` reads them without failing: bad numbers become ``null``,
lone surrogates U+FFFD and unreadable text an empty object, and the first such row of each
collection is logged (without its content), so one bad row cannot turn every read into a 500.
"""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any

from loguru import logger

from ..errors import InvalidInput
from ..http.payload import INT64_MAX, INT64_MIN, check_values, field_path

MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_KEYS = 128
MAX_METADATA_KEY_CHARS = 256


def encode_metadata(meta: Any, field: tuple[Any, ...] = ("metadata",)) -> str:
    """The canonical JSON text of one record's metadata, after checking every rule above.

    Raises:
        InvalidInput: naming the field and the limit broken.
    """
    where = field_path(field)
    if not isinstance(meta, dict):
        raise InvalidInput(f"{where}: metadata must be a JSON object", field=where)
    if len(meta) > MAX_METADATA_KEYS:
        raise InvalidInput(f"{where}: {len(meta)} keys; at most {MAX_METADATA_KEYS} are kept per record",
                           field=where, limit=MAX_METADATA_KEYS)
    for key in meta:
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            raise InvalidInput(f"{where}: keys are strings of 1..{MAX_METADATA_KEY_CHARS} characters",
                               field=where, limit=MAX_METADATA_KEY_CHARS)
    check_values(meta, tuple(field))
    try:
        text = json.dumps(meta, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # a value that is not JSON (only reachable from Python callers)
        raise InvalidInput(f"{where}: metadata must hold JSON values only ({exc})", field=where) from None
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"{where}: {size} bytes of JSON; at most {MAX_METADATA_BYTES} are kept per record",
                           field=where, limit=MAX_METADATA_BYTES)
    return text


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(collection: str, problem: str) -> None:
    with _warned_lock:
        if collection in _warned:
            return
        _warned.add(collection)
    logger.warning("collection {}: a stored record has metadata that {}; it is read as repaired "
                   "(bad numbers as null). Re-add the record to store clean metadata.", collection, problem)


def decode_metadata(raw: str | bytes, collection: str) -> dict[str, Any]:
    """A stored metadata text as a dict that any JSON encoder can write (see module docstring)."""
    repaired: list[bool] = []

    def bad_constant(_: str) -> None:
        repaired.append(True)

    def finite_float(literal: str) -> float | None:
        value = float(literal)
        if math.isfinite(value):
            return value
        repaired.append(True)
        return None

    def int64(literal: str) -> int | None:
        value = int(literal)
        if INT64_MIN <= value <= INT64_MAX:
            return value
        repaired.append(True)
        return None

    try:
        value = json.loads(raw, parse_constant=bad_constant, parse_float=finite_float, parse_int=int64)
    except (ValueError, RecursionError):
        _warn_once(collection, "is not JSON")
        return {}
    if not isinstance(value, dict):
        _warn_once(collection, "is not a JSON object")
        return {}
    if repaired:
        _warn_once(collection, "holds NaN, Infinity or a number out of range")
    if _SURROGATE_ESCAPE.search(raw if isinstance(raw, str) else raw.decode("utf-8", "replace")):
        try:
            cleaned = _without_lone_surrogates(value)
        except RecursionError:  # nested deeper than the parser could go back up through
            _warn_once(collection, "nests too deep to read")
            return {}
        if cleaned != value:
            _warn_once(collection, "holds a lone UTF-16 surrogate")
        value = cleaned
    return value


# a \uD800-\uDFFF escape: the only way a JSON text in UTF-8 can carry a surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings and keys replaced by U+FFFD (a pair of
    escapes that makes one character was joined by the parser and is kept)."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value
