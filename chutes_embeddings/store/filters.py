"""Metadata filters: parsed and checked once, then run as SQL by either store.

A filter is a JSON object; every key must hold (AND):

    {"lang": "en"}                      equality (shorthand for {"$eq": "en"})
    {"year": {"$gte": 2020, "$lt": 2024}}
    {"tag": {"$in": ["a", "b"]}}        also $nin, $ne, $gt, $lte

Values are JSON scalars (string, number, boolean, null); comparisons ($gt, $gte, $lt, $lte) take
numbers or strings and only match stored values of the same type. A missing key never equals
anything, so ``$ne`` and ``$nin`` match records without it. Keys are 1..64 of [A-Za-z0-9_-];
a filter has at most ``MAX_FILTER_KEYS`` keys and ``$in``/``$nin`` at most ``MAX_IN_VALUES``
values; numbers are finite and integers fit in 64 bits (what both stores can compare).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from ..payload import check_values

OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte")
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_IN_VALUES = 1000
MAX_FILTER_KEYS = 64


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: Any


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


def parse_filter(raw: dict[str, Any] | None, field: str = "filter_metadata") -> list[Condition]:
    """Check a filter object and turn it into conditions (all must hold).

    Raises:
        InvalidInput: naming the key or operator at fault.
    """
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise InvalidInput(f"{field} must be an object", field=field)
    if len(raw) > MAX_FILTER_KEYS:
        raise InvalidInput(f"{field}: {len(raw)} keys; a filter has at most {MAX_FILTER_KEYS}", field=field,
                           limit=MAX_FILTER_KEYS)
    check_values(raw, (field,))
    conditions: list[Condition] = []
    for key, spec in raw.items():
        where = f"{field}.{key}"
        if not _KEY.match(key):
            raise InvalidInput(f"{where}: filter keys are 1..64 of A-Z a-z 0-9 _ - (no $and/$or)", field=where,
                               limit=_KEY.pattern)
        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        if not ops:
            raise InvalidInput(f"{where}: empty condition", field=where)
        for op, value in ops.items():
            conditions.append(_condition(key, op, value, f"{where}.{op}" if isinstance(spec, dict) else where))
    return conditions


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
