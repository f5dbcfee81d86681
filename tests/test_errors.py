"""Every error class: raised in a cord -> its status and body -> the same class in the client."""

from __future__ import annotations

import pytest

from chutes_embeddings.errors import ERROR_CLASSES, EmbeddingsError


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
