"""Metadata filters as SQLite SQL over the embedded store's ``records.metadata`` JSON column.

The clause means what ``pg_filters.pg_where`` means on Postgres and what ``metadata_index``
computes in memory (the contract suite checks all three): a missing key equals nothing, values
compare only with values of the same JSON type, ``$ne``/``$nin``/``$not`` are the complements.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from .filters import All, Condition, Filter, Not, json_type

_SQLITE_TYPES = {"number": ("integer", "real"), "string": ("text",), "boolean": ("true", "false"), "null": ("null",)}
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
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


def _balanced(terms: list[str], joiner: str, empty: str) -> str:
    """``terms`` joined by ``joiner`` as a balanced tree (depth log2(n), not n)."""
    if not terms:
        return empty
    while len(terms) > 1:
        terms = [f"({a}{joiner}{b})" for a, b in zip(terms[::2], terms[1::2])] + (terms[-1:] if len(terms) % 2 else [])
    return terms[0]
