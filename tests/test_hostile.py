"""Hostile input on every route of every dialect: no answer is a 5xx, every refusal is in the route's
own error shape, and the server answers normally afterwards.

Enumerated, not drawn: each POST route's valid body with one field at a time replaced by each
hostile value (lone surrogates, control and bidi characters, empty and oversized strings, integers
at and past 64 bits, extreme floats, wrong types, deep and wide values), each route with bodies that
are no JSON object (raw bytes, other JSON values, duplicate keys, deep nesting, number literals past
the parser's limits), and each GET route with a body. Through the chute app over fake model services
(the http layer: the guard, the cords and the dialects as in production); a sample runs against
the live server in ``test_a_sample_of_the_hostile_cases_against_the_live_server``.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

import httpx
import pytest

import my_embeddings
import schemas as S

VALID: dict[str, dict[str, Any]] = {  # a valid body for each POST route
    "/embed": {"inputs": ["a cat"]},
    "/embed/batch": {"texts": ["a cat", "a dog"]},
    "/embed/sparse": {"inputs": ["a cat"], "truncation_direction": "left"},
    "/similarity": {"source_text": "a cat", "target_texts": ["a dog"]},
    "/rerank": {"query": "cat", "texts": ["a cat", "a dog"]},
    "/search": {"query": "cat", "corpus": ["a cat", "a dog"]},
    "/cluster": {"texts": ["a cat", "a dog", "stocks", "bonds"]},
    "/store/add": {"collection": "hostile", "texts": ["a cat", "a dog"], "metadata": {"k": "v"}},
    "/store/search": {"collection": "hostile", "query": "cat", "filter_metadata": {"k": "v"}},
    "/store/get": {"collection": "hostile", "filter_metadata": {"k": "v"}},
    "/store/delete": {"collection": "hostile", "ids": ["nope"]},
    "/store/drop": {"collection": "hostile-drop"},
    "/store/collections": {},
    "/v1/embeddings": {"input": ["a cat"], "model": "m"},
    "/tei/v1/embeddings": {"input": "a cat", "model": "m"},
    "/infinity/embeddings": {"input": ["a cat"], "model": "m"},
    "/infinity/rerank": {"query": "cat", "documents": ["a cat", "a dog"]},
    "/tei": {"inputs": "a cat"},
    "/tei/embed": {"inputs": ["a cat"], "truncate": True},
    "/tei/embed_all": {"inputs": "a cat"},
    "/tei/embed_sparse": {"inputs": ["a cat"], "truncate": True},
    "/tei/tokenize": {"inputs": "a cat"},
    "/tei/decode": {"ids": [101, 102]},
    "/tei/similarity": {"inputs": {"source_sentence": "a cat", "sentences": ["a dog"]}},
    "/tei/rerank": {"query": "cat", "texts": ["a cat"]},
    "/v1/rerank": {"query": "cat", "documents": ["a cat"], "model": "m"},
    "/v2/rerank": {"query": "cat", "documents": ["a cat"], "model": "m"},
    "/v2/embed": {"texts": ["a cat"], "model": "m", "input_type": "search_query", "embedding_types": ["int8"],
                  "output_dimension": 16, "max_tokens": 8, "truncate": "END"},
    "/v1/embed": {"texts": ["a cat"], "model": "m", "input_type": "clustering", "embedding_types": ["binary"]},
}


def _deep(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


HOSTILE_VALUES: list[Any] = [  # tried on every field
    "\ud800", "a\udfffb", "\x00", "\u202eevil\x1b[31m", "", " \t\r\n", "1", 0, -1, 1.5, 2**63, -(2**63) - 1,
    1e308, True, None, [], {}, ["\ud800"], [None], _deep(40),
]
BIG_VALUES: list[Any] = [  # tried on each route's first field (each costs more to send and to refuse)
    "x" * (S.MAX_TEXT_CHARS + 1), "\U0001d4b3" * 1000, [0] * 3000, ["a"] * 3000, _deep(300),
    {f"k{i}": i for i in range(300)}, 10**40, 5e-324, {"$or": [{"a": {"$in": []}}]}, "\ufeff\uffff",
]
WHOLE_BODIES: list[bytes] = [
    b"", b" ", b"{", b"}", b"[]", b"null", b'"text"', b"123", b"true", b"\xff\xfe\x00", b"\xef\xbb\xbf{}",
    b'{"a": 1} trailing', b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": 1' + b"0" * 5000 + b"}",
    b'{"a": 1e99999}', b'{"a": "\\ud800"}', b'{"a": "\\u0000"}', b"[" * 100_000 + b"]" * 100_000,
    b'{"a": 1, "a": 2}', b"{'single': 'quotes'}", b'{"a": "\xff"}', b"\x00" * 64,
]


# An unknown field is ignored by the compatible APIs and refused by the native one: only the values
# that could trouble the body checks are tried on it.
UNKNOWN_FIELD_VALUES: list[Any] = ["\ud800", "\x00", 2**63, 1e308, _deep(40)]


def _fields(path: str) -> list[str]:
    route = next(r for r in my_embeddings.ROUTES.routes if r.path == path and r.method == "POST")
    schema = route.request.model_json_schema()
    fields = list(schema.get("properties", {}))
    if not fields:  # a root model (POST /tei): the fields of its members
        fields = sorted({f for member in schema.get("$defs", {}).values() for f in member.get("properties", {})})
    return fields


def hostile_cases(paths: Iterable[str] = VALID) -> Iterator[tuple[str, bytes]]:
    """(path, body) for each POST route of ``paths``: each field replaced by each hostile value
    (and the first by each big one), then the bodies that are no JSON object."""
    for path in paths:
        valid = VALID[path]
        fields = _fields(path)
        for field in fields:
            for value in HOSTILE_VALUES + (BIG_VALUES if field == fields[0] else []):
                yield path, json.dumps({**valid, field: value}).encode()
        for value in UNKNOWN_FIELD_VALUES:
            yield path, json.dumps({**valid, "unknown_field": value}).encode()
        for body in WHOLE_BODIES:
            yield path, body


def _dialect_error_model(path: str) -> Any:
    return my_embeddings.ROUTES.error_models[my_embeddings.ROUTES.dialect(path).name]


def test_every_post_route_has_a_valid_body_here():
    declared = {r.path for r in my_embeddings.ROUTES.routes if r.method == "POST"}
    assert declared == set(VALID)
    assert len(list(hostile_cases())) >= 2000


@pytest.mark.parametrize("path", list(VALID))  # one test per route: the workers share them
def test_no_hostile_input_gets_a_5xx_or_leaves_its_dialect(fake_client, path):
    cases = list(hostile_cases([path]))
    failures = []
    for path, body in cases:
        answer = fake_client.post(path, content=body, headers={"content-type": "application/json"})
        if answer.status_code >= 500:
            failures.append(f"{answer.status_code} {path} {body[:120]!r}: {answer.text[:200]}")
        elif answer.status_code >= 400:
            try:
                _dialect_error_model(path).model_validate(answer.json())
            except ValueError as exc:
                failures.append(f"{answer.status_code} {path} {body[:120]!r}: not its dialect's shape: {exc}")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:30])
    assert fake_client.post("/embed", json={"inputs": ["still fine"]}).status_code == 200


@pytest.mark.parametrize("path", sorted({r.path for r in my_embeddings.ROUTES.routes if r.method == "GET"}))
def test_get_routes_shrug_off_bodies_and_queries(fake_client, path):
    for body in WHOLE_BODIES[:8]:
        answer = fake_client.request("GET", f"{path}?x=%00&y=%ud800&" + "z=1&" * 200, content=body,
                                     headers={"content-type": "application/json"})
        assert answer.status_code < 500, answer.text


def test_a_sample_of_the_hostile_cases_against_the_live_server(live_server):
    """Every 13th case (about 300), through ``chutes run --dev`` and the real model."""
    cases = list(hostile_cases())[::13]
    with httpx.Client(base_url=live_server, timeout=60) as client:
        failures = [f"{a.status_code} {path} {body[:120]!r}: {a.text[:200]}" for path, body in cases
                    if (a := client.post(path, content=body, headers={"content-type": "application/json"}))
                    .status_code >= 500]
        assert client.post("/embed", json={"inputs": ["still fine"]}).status_code == 200
    assert not failures, "\n".join(failures[:30])
