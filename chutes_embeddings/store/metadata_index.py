"""Scalar metadata of a collection held as columns beside its vectors, so filters run in numpy.

``MetadataColumns`` keeps, for each filterable key (``filters._KEY``), one column aligned with the
rows of a ``VectorIndex``: the JSON kind of the value (missing, null, false, true, number, string,
other), the number as float64 and the string as a code into a per-key vocabulary. A filter tree
becomes a boolean mask over the rows in a few vectorised passes (about 1 ms per condition per
million rows), which gives both the allowed rows and the filter's exact selectivity.

The mask means exactly what ``sqlite_filters.sqlite_where`` means (and the contract suite checks both):
a missing key equals nothing; numbers compare with numbers, strings with strings (code point order
is UTF-8 byte order, SQLite's BINARY collation); ``$ne``/``$nin``/``$not`` are the complements.
Where float64 could disagree with SQLite (an integer beyond 2**53 in the filter or in a stored
value of the key the filter reads), or a row's stored metadata is irregular (NaN, Infinity,
integers beyond 64 bits, duplicate keys: only rows written by hand), or the collection uses more
than ``MAX_COLUMNS`` keys (each write and deletion touches every column), ``mask`` returns
``None`` and the store filters in SQLite instead.

Rows at or beyond the row count are always "missing" in every column (a vacated row is cleared),
so a new row only sets the keys it has.
"""

from __future__ import annotations

import json
import math
import operator
import re
from typing import Any, Iterable

import numpy as np

from .filters import All, AnyOf, Condition, Filter, Not, json_type

MISSING, NULL, FALSE, TRUE, NUMBER, STRING, OTHER = range(7)
_FILTER_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_COLUMNS = 256
_EXACT_INT = 2**53
_INT64 = 2**63


class Irregular(ValueError):
    """Stored metadata that SQLite and Python could read differently."""


def parse_stored(text: str | bytes) -> dict[str, Any]:
    """A stored metadata text as SQLite's filters see it: not JSON or not an object reads as {}.

    Raises:
        Irregular: NaN/Infinity, numbers beyond float or int64, or a key given twice.
    """

    def no_constant(name: str) -> None:
        raise Irregular(name)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):
            raise Irregular("duplicate key")
        return out

    try:
        value = json.loads(text, parse_constant=no_constant, object_pairs_hook=pairs)
    except Irregular:
        raise
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


class _Column:
    """One key's values over the rows (see module docstring)."""

    def __init__(self, capacity: int) -> None:
        self.kind = np.zeros(capacity, dtype=np.int8)
        self.num = np.full(capacity, np.nan, dtype=np.float64)
        self.code = np.full(capacity, -1, dtype=np.int32)
        self.vocab: dict[str, int] = {}
        self.big_ints = False

    def grow(self, capacity: int) -> None:
        n = len(self.kind)
        self.kind = np.concatenate([self.kind, np.zeros(capacity - n, dtype=np.int8)])
        self.num = np.concatenate([self.num, np.full(capacity - n, np.nan, dtype=np.float64)])
        self.code = np.concatenate([self.code, np.full(capacity - n, -1, dtype=np.int32)])

    def set(self, row: int, value: Any) -> None:
        if value is None:
            self.kind[row] = NULL
        elif isinstance(value, bool):
            self.kind[row] = TRUE if value else FALSE
        elif isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise Irregular("non-finite number")
            if isinstance(value, int) and not -_INT64 <= value < _INT64:
                raise Irregular("integer beyond 64 bits")
            if isinstance(value, int) and abs(value) > _EXACT_INT:
                self.big_ints = True
            self.kind[row], self.num[row] = NUMBER, float(value)
        elif isinstance(value, str):
            self.kind[row] = STRING
            self.code[row] = self.vocab.setdefault(value, len(self.vocab))
        else:
            self.kind[row] = OTHER

    def clear(self, row: int) -> None:
        self.kind[row], self.num[row], self.code[row] = MISSING, np.nan, -1

    def move(self, src: int, dst: int) -> None:
        self.kind[dst], self.num[dst], self.code[dst] = self.kind[src], self.num[src], self.code[src]


class MetadataColumns:
    """Filterable metadata of a collection's rows (row numbers are the ``VectorIndex``'s)."""

    def __init__(self) -> None:
        self._columns: dict[str, _Column] = {}
        self._capacity = 0
        self.irregular = False

    def reserve(self, capacity: int) -> None:
        """Make room for rows ``0 .. capacity-1``."""
        if capacity <= self._capacity:
            return
        for column in self._columns.values():
            column.grow(capacity)
        self._capacity = capacity

    def set_row(self, row: int, meta: dict[str, Any] | None) -> None:
        """Store the metadata of a new row (``None``: irregular, the collection then filters in SQLite)."""
        if meta is None:
            self.irregular = True
            return
        try:
            for key, value in meta.items():
                if not _FILTER_KEY.match(key):
                    continue
                column = self._columns.get(key)
                if column is None:
                    if len(self._columns) >= MAX_COLUMNS:
                        raise Irregular("too many keys")
                    column = self._columns[key] = _Column(self._capacity)
                column.set(row, value)
        except Irregular:
            self.irregular = True

    def move(self, src: int, dst: int) -> None:
        """Row ``src`` now lives at ``dst`` (a deletion filled its hole)."""
        for column in self._columns.values():
            column.move(src, dst)

    def clear(self, row: int) -> None:
        """Row ``row`` no longer holds anything."""
        for column in self._columns.values():
            column.clear(row)

    # --- filters -------------------------------------------------------------------------------
    def mask(self, where: Filter, n: int) -> np.ndarray | None:
        """Rows ``0 .. n-1`` that ``where`` allows, or ``None`` where SQLite must decide (see module)."""
        if self.irregular:
            return None
        try:
            return self._eval(where, n)
        except _Unsure:
            return None

    def _eval(self, node: Filter, n: int) -> np.ndarray:
        if isinstance(node, Condition):
            return self._condition(node, n)
        if isinstance(node, Not):
            return ~self._eval(node.item, n)
        if isinstance(node, All):
            out = np.ones(n, dtype=bool)
            for item in node.items:
                out &= self._eval(item, n)
            return out
        assert isinstance(node, AnyOf)
        out = np.zeros(n, dtype=bool)
        for item in node.items:
            out |= self._eval(item, n)
        return out

    def _condition(self, c: Condition, n: int) -> np.ndarray:
        column = self._columns.get(c.key)
        if c.op in ("$eq", "$ne", "$in", "$nin"):
            values = c.value if c.op in ("$in", "$nin") else (c.value,)
            hit = np.zeros(n, dtype=bool) if column is None else self._equals_any(column, values, n)
            return hit if c.op in ("$eq", "$in") else ~hit
        if column is None:
            return np.zeros(n, dtype=bool)
        if json_type(c.value) == "number":
            _check_exact(column, c.value)
            with np.errstate(invalid="ignore"):
                return (column.kind[:n] == NUMBER) & _COMPARISONS[c.op](column.num[:n], float(c.value))
        codes = [code for text, code in column.vocab.items() if _COMPARISONS[c.op](text, c.value)]
        return (column.kind[:n] == STRING) & np.isin(column.code[:n], np.asarray(codes, dtype=np.int32))

    @staticmethod
    def _equals_any(column: _Column, values: Iterable[Any], n: int) -> np.ndarray:
        kind = column.kind[:n]
        kinds: set[int] = set()
        numbers: list[float] = []
        codes: list[int] = []
        for value in values:
            kind_name = json_type(value)
            if kind_name == "null":
                kinds.add(NULL)
            elif kind_name == "boolean":
                kinds.add(TRUE if value else FALSE)
            elif kind_name == "number":
                _check_exact(column, value)
                numbers.append(float(value))
            elif value in column.vocab:
                codes.append(column.vocab[value])
        out = np.isin(kind, np.asarray(sorted(kinds), dtype=np.int8)) if kinds else np.zeros(n, dtype=bool)
        if numbers:
            out |= (kind == NUMBER) & np.isin(column.num[:n], np.asarray(numbers, dtype=np.float64))
        if codes:
            out |= (kind == STRING) & np.isin(column.code[:n], np.asarray(codes, dtype=np.int32))
        return out

    # --- persistence ---------------------------------------------------------------------------
    def to_arrays(self, n: int) -> dict[str, np.ndarray]:
        """Arrays (rows ``0 .. n-1``) that ``from_arrays`` turns back into these columns."""
        out: dict[str, np.ndarray] = {}
        header = {"irregular": self.irregular, "keys": []}
        for i, (key, column) in enumerate(self._columns.items()):
            header["keys"].append({"key": key, "vocab": list(column.vocab), "big_ints": column.big_ints})
            out[f"meta{i}_kind"], out[f"meta{i}_num"], out[f"meta{i}_code"] = (
                column.kind[:n], column.num[:n], column.code[:n])
        out["meta_header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        return out

    @classmethod
    def from_arrays(cls, arrays: Any, capacity: int) -> "MetadataColumns":
        """The columns ``to_arrays`` saved, with room for ``capacity`` rows."""
        header = json.loads(bytes(arrays["meta_header"]).decode())
        columns = cls()
        columns.irregular = header["irregular"]
        columns._capacity = capacity
        for i, entry in enumerate(header["keys"]):
            column = _Column(capacity)
            kind = arrays[f"meta{i}_kind"]
            column.kind[: len(kind)] = kind
            column.num[: len(kind)] = arrays[f"meta{i}_num"]
            column.code[: len(kind)] = arrays[f"meta{i}_code"]
            column.vocab = {text: code for code, text in enumerate(entry["vocab"])}
            column.big_ints = entry["big_ints"]
            columns._columns[entry["key"]] = column
        return columns


class _Unsure(Exception):
    """float64 cannot answer this condition exactly."""


def _check_exact(column: _Column, value: Any) -> None:
    if column.big_ints or (isinstance(value, int) and abs(value) > _EXACT_INT):
        raise _Unsure


# $gt/$gte/$lt/$lte as Python's comparisons: elementwise on number columns, plain on vocabulary strings
_COMPARISONS = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
