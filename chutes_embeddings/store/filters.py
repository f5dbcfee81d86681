"""Metadata filters: parsed and checked once, then run as SQL by either store.

A filter is a JSON object; every entry must hold (AND):

    {"lang": "en"}                      equality (shorthand for {"$eq": "en"})
    {"year": {"$gte": 2020, "$lt": 2024}}
    {"tag": {"$in": ["a", "b"]}}        also $nin, $ne, $gt, $lte
    {"$or": [{"lang": "en"}, {"year": {"$gt": 2020}}]}    any of the filters in the list
    {"$and": [{...}, {...}]}            all of them (as a list, e.g. two conditions on one key)
    {"$not": {"lang": "en"}}            the filter does not hold

Values are JSON scalars (string, number, boolean, null); comparisons ($gt, $gte, $lt, $lte) take
numbers or strings and only match stored values of the same type. A missing key never equals
anything, so ``$ne``, ``$nin`` and ``$not`` of an equality match records without it. Keys are
1..64 of [A-Za-z0-9_-]; a filter names at most ``MAX_FILTER_KEYS`` keys in all, nests ``$and`` /
``$or`` / ``$not`` at most ``MAX_FILTER_DEPTH`` deep, and ``$in``/``$nin`` take at most
``MAX_IN_VALUES`` values; numbers are finite and integers fit in 64 bits (what both stores can
compare).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

from ..errors import InvalidInput
from ..http.payload import check_values
from .names import FILTER_KEY_PATTERN, MAX_FILTER_DEPTH, MAX_FILTER_KEYS, MAX_IN_VALUES
from .names import FILTER_LOGICAL as LOGICAL
from .names import FILTER_OPERATORS as OPERATORS

_KEY = re.compile(FILTER_KEY_PATTERN)


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: Any


@dataclass(frozen=True)
class All:
    """Every item holds (no items: everything matches)."""

    items: tuple["Filter", ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass(frozen=True)
class AnyOf:
    """At least one item holds."""

    items: tuple["Filter", ...]


@dataclass(frozen=True)
class Not:
    """The item does not hold."""

    item: "Filter"


Filter = Union[Condition, All, AnyOf, Not]


def json_type(value: Any) -> str:
    """The JSON type of a scalar: 'boolean', 'number', 'string' or 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def parse_filter(raw: dict[str, Any] | None, field: str = "filter_metadata") -> All:
    """Check a filter object and turn it into a tree of conditions (empty: no filter).

    Raises:
        InvalidInput: naming the key or operator at fault and the limit broken.
    """
    if raw is None:
        return All()
    if not isinstance(raw, dict):
        raise InvalidInput(f"{field} must be an object", field=field)
    check_values(raw, (field,))
    keys = [0]
    tree = _parse_object(raw, field, 0, keys)
    return tree


def _parse_object(raw: dict[str, Any], where: str, depth: int, keys: list[int]) -> All:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidInput(f"{where}: $and/$or/$not nest deeper than {MAX_FILTER_DEPTH}", field=where,
                           limit=MAX_FILTER_DEPTH)
    items: list[Filter] = []
    for key, spec in raw.items():
        at = f"{where}.{key}"
        if key in LOGICAL:
            items.append(_parse_logical(key, spec, at, depth, keys))
            continue
        if not _KEY.match(key):
            raise InvalidInput(f"{at}: filter keys are 1..64 of A-Z a-z 0-9 _ -, or one of {', '.join(LOGICAL)}",
                               field=at, limit=_KEY.pattern)
        keys[0] += 1
        if keys[0] > MAX_FILTER_KEYS:
            raise InvalidInput(f"{at}: a filter names at most {MAX_FILTER_KEYS} keys", field=at, limit=MAX_FILTER_KEYS)
        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        if not ops:
            raise InvalidInput(f"{at}: empty condition", field=at)
        for op, value in ops.items():
            items.append(_condition(key, op, value, f"{at}.{op}" if isinstance(spec, dict) else at))
    return All(tuple(items))


def _parse_logical(op: str, spec: Any, where: str, depth: int, keys: list[int]) -> Filter:
    if op == "$not":
        if not isinstance(spec, dict) or not spec:
            raise InvalidInput(f"{where}: $not takes one non-empty filter object", field=where)
        return Not(_parse_object(spec, where, depth + 1, keys))
    if not isinstance(spec, list) or not spec or not all(isinstance(f, dict) and f for f in spec):
        raise InvalidInput(f"{where}: {op} takes a non-empty list of non-empty filter objects", field=where)
    parsed = tuple(_parse_object(f, f"{where}[{i}]", depth + 1, keys) for i, f in enumerate(spec))
    return All(parsed) if op == "$and" else AnyOf(parsed)


def _condition(key: str, op: str, value: Any, where: str) -> Condition:
    if op not in OPERATORS:
        raise InvalidInput(f"{where}: unknown operator; use one of {', '.join(OPERATORS)}", field=where,
                           limit=list(OPERATORS))
    if op in ("$in", "$nin"):
        if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
            raise InvalidInput(f"{where}: needs a list of 1..{MAX_IN_VALUES} values", field=where, limit=MAX_IN_VALUES)
        if any(json_type(v) == "other" for v in value):
            raise InvalidInput(f"{where}: values must be strings, numbers, booleans or null", field=where)
        return Condition(key, op, tuple(value))
    if op in ("$gt", "$gte", "$lt", "$lte") and json_type(value) not in ("number", "string"):
        raise InvalidInput(f"{where}: compares numbers or strings only", field=where)
    if json_type(value) == "other":
        raise InvalidInput(f"{where}: the value must be a string, number, boolean or null", field=where)
    return Condition(key, op, value)
