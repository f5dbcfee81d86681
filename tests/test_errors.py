"""Every error class: raised in a cord -> its status and body -> the same class in the client.

The classes are the one place status knowledge lives: the guard's headers, the client's retry
policy and the OpenAPI document must read it from them (the tests below change an attribute and
watch each follow).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

import chutes_embeddings
from chutes_embeddings import client
from chutes_embeddings.client.base import may_retry
from chutes_embeddings.errors import (
    ERROR_CLASSES,
    BackendUnavailable,
    EmbeddingsConnectionError,
    EmbeddingsError,
    EmbeddingsTimeout,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    for_status,
)
from chutes_embeddings.http.dialects import cohere, native, openai, tei
from chutes_embeddings.http.guard import error_response

DIALECTS = (native, openai, tei, cohere)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_error_round_trip(cls, dev_call, engine, monkeypatch):
    def fail():
        raise cls("something specific went wrong", field="somefield", limit=7)

    monkeypatch.setattr(engine, "health", fail)
    status, body = dev_call("GET", "/health")
    assert status == cls.status
    assert body["detail"]["error_type"] == cls.error_type
    assert body["detail"]["message"] == "something specific went wrong"
    rebuilt = EmbeddingsError.from_body(status, body)
    assert type(rebuilt) is cls and rebuilt.field == "somefield" and rebuilt.limit == 7


def test_unexpected_exception_is_json_500_without_traceback(dev_call, engine, monkeypatch):
    def boom():
        raise KeyError("secret internal detail")

    monkeypatch.setattr(engine, "info", boom)
    status, body = dev_call("GET", "/info")
    assert status == 500
    assert body["detail"]["error_type"] == "internal" and body["detail"]["request_id"]
    assert "secret" not in str(body) and "Traceback" not in str(body)


# --- the classes ---------------------------------------------------------------------------------
def test_each_answered_class_has_its_own_status_type_and_description():
    assert len({c.status for c in ERROR_CLASSES}) == len(ERROR_CLASSES)
    assert len({c.error_type for c in ERROR_CLASSES}) == len(ERROR_CLASSES)
    assert len({c.description for c in ERROR_CLASSES}) == len(ERROR_CLASSES)
    for cls in ERROR_CLASSES:
        assert for_status(cls.status) is cls and cls.description
    assert for_status(418) is EmbeddingsError


def test_connection_errors_join_the_tree_but_are_never_answered():
    assert issubclass(EmbeddingsTimeout, EmbeddingsConnectionError)
    assert issubclass(EmbeddingsConnectionError, EmbeddingsError)
    assert EmbeddingsConnectionError not in ERROR_CLASSES and EmbeddingsTimeout not in ERROR_CLASSES
    assert client.EmbeddingsConnectionError is chutes_embeddings.EmbeddingsConnectionError is EmbeddingsConnectionError
    assert client.EmbeddingsTimeout is chutes_embeddings.EmbeddingsTimeout is EmbeddingsTimeout
    # a server body naming a client-side type is not rebuilt as one
    rebuilt = EmbeddingsError.from_body(503, {"detail": {"error_type": "connection", "message": "m"}})
    assert type(rebuilt) is BackendUnavailable


def test_every_status_a_dialect_renders_is_a_class_of_the_tree():
    for dialect in DIALECTS:
        for cls in ERROR_CLASSES:
            status, _ = dialect.render_error(cls("x"))
            assert for_status(status).status == status, (dialect.name, cls.__name__, status)


# --- the guard -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_guard_headers_follow_the_class(cls, dialect):
    plain = error_response(cls("x"), dialect).headers
    hinted = error_response(cls("x", retry_after_s=7), dialect).headers
    if cls.retry_after is None:
        assert "retry-after" not in plain and "retry-after" not in hinted
    else:
        assert plain["retry-after"] == str(cls.retry_after) and hinted["retry-after"] == "7"


def test_guard_reads_retry_after_and_allow_from_the_class(monkeypatch):
    monkeypatch.setattr(NotFound, "retry_after", 5)
    assert error_response(NotFound("x"), native).headers["retry-after"] == "5"
    monkeypatch.setattr(Overloaded, "retry_after", None)
    assert "retry-after" not in error_response(Overloaded("x", retry_after_s=3), native).headers
    allowed = error_response(MethodNotAllowed("x", allow=["GET", "HEAD"]), tei).headers
    assert allowed["allow"] == "GET, HEAD"
    assert "allow" not in error_response(NotFound("x", allow=["GET"]), native).headers


# --- the client's retry policy -------------------------------------------------------------------
def _failing_once(cls):
    """A transport answering ``cls`` (as the native dialect sends it) once, then 200."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            status, body = native.render_error(cls("x"))
            return httpx.Response(status, json=body)
        return httpx.Response(200, json={"status": "ok"})

    return httpx.MockTransport(handler), seen


def _expected_sends(cls, idempotent):
    return 2 if cls.retryable and (idempotent or not cls.acted_on) else 1


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_client_retries_what_the_class_allows(cls):
    for idempotent, call in ((True, lambda c: c.health()), (False, lambda c: c.store_drop("docs"))):
        transport, seen = _failing_once(cls)
        with client.EmbeddingsClient("http://svc", backoff_s=0.001, transport=transport) as c:
            if _expected_sends(cls, idempotent) == 2:
                assert call(c) == {"status": "ok"}
            else:
                with pytest.raises(cls):
                    call(c)
        assert len(seen) == _expected_sends(cls, idempotent), (cls.__name__, idempotent)


def test_async_client_retries_what_the_class_allows():
    async def sends(cls, idempotent):
        transport, seen = _failing_once(cls)
        async with client.AsyncEmbeddingsClient("http://svc", backoff_s=0.001, transport=transport) as c:
            try:
                await (c.health() if idempotent else c.store_drop("docs"))
            except EmbeddingsError as err:
                assert type(err) is cls
        return len(seen)

    for cls in ERROR_CLASSES:
        for idempotent in (True, False):
            assert asyncio.run(sends(cls, idempotent)) == _expected_sends(cls, idempotent), cls.__name__


def test_client_reads_retryable_and_acted_on_from_the_class(monkeypatch):
    monkeypatch.setattr(NotFound, "retryable", True)
    transport, seen = _failing_once(NotFound)
    with client.EmbeddingsClient("http://svc", backoff_s=0.001, transport=transport) as c:
        assert c.health() == {"status": "ok"}
    assert len(seen) == 2
    transport, seen = _failing_once(NotFound)
    with client.EmbeddingsClient("http://svc", backoff_s=0.001, transport=transport) as c:
        with pytest.raises(NotFound):
            c.store_drop("docs")  # acted_on: not for a call that is not idempotent
    monkeypatch.setattr(NotFound, "acted_on", False)
    transport, seen = _failing_once(NotFound)
    with client.EmbeddingsClient("http://svc", backoff_s=0.001, transport=transport) as c:
        assert c.store_drop("docs") == {"status": "ok"}
    assert len(seen) == 2


def test_the_answers_status_names_the_rule_whatever_its_body_says():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:  # a proxy's 503, then a 503 whose body names a class that is never retried
            return httpx.Response(BackendUnavailable.status, text="upstream busy")
        if len(seen) == 2:
            return httpx.Response(BackendUnavailable.status, json=native.render_error(NotFound("gone"))[1])
        return httpx.Response(200, json={"status": "ok"})

    with client.EmbeddingsClient("http://svc", backoff_s=0.001, transport=httpx.MockTransport(handler)) as c:
        assert c.health() == {"status": "ok"}
    assert len(seen) == 3


def test_connection_errors_retry_policy():
    refused = EmbeddingsConnectionError("refused")
    refused.acted_on = False
    dropped = EmbeddingsConnectionError("dropped")
    assert may_retry(refused, idempotent=False) and may_retry(dropped, idempotent=True)
    assert not may_retry(dropped, idempotent=False)
    assert not may_retry(EmbeddingsTimeout("slow"), idempotent=True)
    assert not may_retry(ValueError("not ours"), idempotent=True)


# --- the OpenAPI document ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routes():
    import my_embeddings

    return my_embeddings.ROUTES


def _documented(doc):
    """(path, method, status) -> description, for every error answer in the document."""
    return {(path, method, int(status)): answer["description"]
            for path, ops in doc["paths"].items() for method, op in ops.items()
            for status, answer in op["responses"].items() if status != "200"}


def test_openapi_describes_each_status_with_its_class(routes):
    from chutes_embeddings.http.openapi import build_openapi

    documented = _documented(build_openapi(routes))
    for (_, _, status), description in documented.items():
        assert description == for_status(status).description
    for cls in ERROR_CLASSES:
        assert any(status == cls.status for _, _, status in documented), cls.__name__


def test_openapi_lists_what_each_class_can_reach(routes):
    from chutes_embeddings.http.openapi import build_openapi

    documented = _documented(build_openapi(routes))
    body_only = {cls.status for cls in ERROR_CLASSES if cls.scope == "body"}
    for route in routes.routes:
        statuses = {s for p, m, s in documented if (p, m) == (route.path, route.method.lower())}
        expected = {route.dialect.render_error(cls("x"))[0] for cls in ERROR_CLASSES
                    if cls.scope == "any" or (cls.scope == "body" and route.request is not None)
                    or (cls.scope == "collection" and route.path.startswith("/store/"))
                    or (cls.scope == "token" and route.access is not None)
                    or (cls.scope == "sparse" and route.uses_model == "sparse")}
        assert statuses == expected, route.path
        assert (424 in statuses) == (route.path in ("/embed/sparse", "/tei/embed_sparse")), route.path
        assert (401 in statuses) == (route.access is not None), route.path
        if route.request is None:
            assert not statuses & body_only, route.path
        assert (409 in statuses) == (route.dialect is native and route.path.startswith("/store/")), route.path


def test_openapi_reads_the_class_attributes(routes, monkeypatch):
    from chutes_embeddings.http.openapi import build_openapi

    monkeypatch.setattr(NotFound, "description", "nothing by that name")
    monkeypatch.setattr(BackendUnavailable, "scope", "body")
    documented = _documented(build_openapi(routes))
    assert documented[("/embed", "post", 404)] == "nothing by that name"
    assert ("/health", "get", 503) not in documented and ("/embed", "post", 503) in documented
