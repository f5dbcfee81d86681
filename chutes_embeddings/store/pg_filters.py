"""Metadata filters as Postgres SQL over the ``metadata`` jsonb column of a collection's table.

The clause means what ``sqlite_filters.sqlite_where`` means on the embedded store (the contract
suite checks both). Equality conditions that every match must meet are also written as
``metadata @> {...}``: a superset of the exact clause that the GIN index answers and the column's
statistics estimate.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from .filters import All, Condition, Filter, Not, json_type

_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def pg_where(where: Filter) -> tuple[sql.Composable, list[Any]]:
    """SQL over the ``metadata`` jsonb column, with the same meaning as the embedded store's."""
    params: list[Any] = []

    def condition(c: Condition) -> sql.Composable:
        if c.op in ("$eq", "$ne"):
            params.extend([c.key, Jsonb(c.value)])
            eq = sql.SQL("coalesce(metadata -> %s = %s::jsonb, false)")
            return eq if c.op == "$eq" else sql.SQL("NOT ") + eq
        if c.op in ("$in", "$nin"):
            params.extend([c.key, [Jsonb(v) for v in c.value]])
            any_of = sql.SQL("coalesce(metadata -> %s = ANY(%s::jsonb[]), false)")
            return any_of if c.op == "$in" else sql.SQL("NOT ") + any_of
        params.extend([c.key, json_type(c.value), c.key, Jsonb(c.value)])
        return sql.SQL("coalesce(jsonb_typeof(metadata -> %s) = %s AND metadata -> %s {} %s::jsonb, false)").format(
            sql.SQL(_COMPARE[c.op]))

    def render(node: Filter) -> sql.Composable:  # always true or false, never NULL
        if isinstance(node, Condition):
            return condition(node)
        if isinstance(node, Not):
            return sql.SQL("NOT ({})").format(render(node.item))
        if not node.items:
            return sql.SQL("true" if isinstance(node, All) else "false")
        joiner = sql.SQL(" AND " if isinstance(node, All) else " OR ")
        return sql.SQL("({})").format(joiner.join(render(item) for item in node.items))

    clause = render(where)
    contained = must_equal(where)
    if not contained:
        return clause, params
    # a superset of the exact clause for these conditions (never changes the result), usable by GIN
    return sql.SQL("metadata @> %s::jsonb AND {}").format(clause), [Jsonb(contained), *params]


def must_equal(where: Filter) -> dict[str, Any]:
    """``{key: value}`` of the equality conditions every match must meet (ANDed at the top)."""
    out: dict[str, Any] = {}
    stack = [where]
    while stack:
        node = stack.pop()
        if isinstance(node, All):
            stack.extend(node.items)
        elif isinstance(node, Condition) and node.op == "$eq":
            if node.key in out and out[node.key] != node.value:
                continue  # contradictory: the exact clause already matches nothing
            out[node.key] = node.value
    return out
