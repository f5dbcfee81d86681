"""The client against a live local server, plus retry/auth behaviour with a mock transport."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from chutes_embeddings import AsyncEmbeddingsClient, EmbeddingsClient, EmbeddingsError, InvalidInput, Overloaded
from chutes_embeddings.client import EmbeddingsConnectionError, EmbeddingsTimeout
from tests.helpers import free_port


@pytest.fixture(scope="module")
def client(live_server):
    with EmbeddingsClient(live_server, timeout=60) as c:
        yield c


def test_every_method(client):
    assert client.health()["status"] == "ok"
    info = client.info()
    assert info["dimension"] == 384
    assert len(client.embed("hi")["embeddings"]) == 384
    assert client.embed(["a", "b"], pooling="cls")["count"] == 2
    assert client.similarity("cats", ["dogs", "stocks"])["results"][0]["text"] == "dogs"
    assert client.rerank("cats", ["stocks", "kittens"], top_k=1)["results"][0]["text"] == "kittens"
    assert client.search("cats", ["stocks", "kittens"], top_k=1, threshold=0.1)["results_returned"] == 1
    assert client.cluster(["a cat", "a kitten", "stocks fell", "bonds rose"], n_clusters=2)["n_clusters"] == 2


def test_embed_batch_splits_beyond_server_limit_in_order(client, st_model):
    limit = client.info()["limits"]["max_batch_texts"]
    texts = [f"t{i}" for i in range(limit * 2 + 17)]
    vectors = client.embed_batch(texts, progress=True)
    assert len(vectors) == len(texts)
    sample = [0, limit - 1, limit, len(texts) - 1]
    ref = st_model.encode([texts[i] for i in sample], normalize_embeddings=True)
    for i, e in zip(sample, ref):
        assert float(np.dot(vectors[i], e)) >= 0.99999


def test_typed_errors_carry_status_field_and_message(client):
    with pytest.raises(InvalidInput) as err:
        client.embed([])
    assert err.value.status == 422 and err.value.field == "inputs" and err.value.limit == 1
    assert "at least 1" in err.value.message


def test_async_twin(live_server):
    async def main():
        async with AsyncEmbeddingsClient(live_server) as c:
            assert (await c.health())["status"] == "ok"
            one = await c.embed("hello")
            vecs = await c.embed_batch([f"x{i}" for i in range(25)])
            sim = await c.similarity("a", ["b"])
            with pytest.raises(InvalidInput):
                await c.rerank("q", [])
            return one, vecs, sim

    one, vecs, sim = asyncio.run(main())
    assert len(one["embeddings"]) == 384 and len(vecs) == 25 and sim["results"]


def _flaky_transport(statuses):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = statuses[min(len(seen) - 1, len(statuses) - 1)]
        if status == 200:
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(status, json={"detail": {"error_type": "overloaded", "message": "busy"}})

    return handler, seen


def test_retries_429_and_503_then_succeeds_and_sends_bearer():
    handler, seen = _flaky_transport([429, 503, 200])
    with EmbeddingsClient("http://svc", api_key="sekrit", backoff_s=0.001, transport=httpx.MockTransport(handler)) as c:
        assert c.health() == {"status": "ok"}
    assert len(seen) == 3
    assert all(r.headers["authorization"] == "Bearer sekrit" for r in seen)


def test_gives_up_after_max_retries_with_typed_error():
    handler, seen = _flaky_transport([429])
    with EmbeddingsClient("http://svc", max_retries=2, backoff_s=0.001, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(Overloaded) as err:
            c.health()
    assert err.value.status == 429 and len(seen) == 3


def test_4xx_is_not_retried():
    handler, seen = _flaky_transport([422])
    with EmbeddingsClient("http://svc", backoff_s=0.001, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(EmbeddingsError) as err:
            c.health()
    assert len(seen) == 1 and err.value.status == 422


def test_connection_refused_is_retried_then_raised():
    with EmbeddingsClient(f"http://127.0.0.1:{free_port()}", max_retries=1, backoff_s=0.001) as c:
        with pytest.raises(EmbeddingsConnectionError):
            c.health()


def test_retry_after_is_honoured():
    stamps = []

    def handler(request):
        stamps.append(time.monotonic())
        if len(stamps) == 1:
            return httpx.Response(429, headers={"Retry-After": "0.6"},
                                  json={"detail": {"error_type": "overloaded", "message": "busy", "retry_after_s": 1}})
        return httpx.Response(200, json={"status": "ok"})

    with EmbeddingsClient("http://svc", backoff_s=0.001, transport=httpx.MockTransport(handler)) as c:
        assert c.health() == {"status": "ok"}
    # a lower bound only (a sleep never ends early, a loaded machine only stretches it): the client
    # waited the 0.6 s of Retry-After, not its own 0.001 s backoff
    assert len(stamps) == 2 and stamps[1] - stamps[0] >= 0.55


def test_retry_budget_outlasts_a_server_that_comes_up_later():
    """The server is down for 3 s (a restart); the default budget (60 s) waits it out."""
    port = free_port()
    ready = threading.Event()

    def late_server():
        time.sleep(3)  # the outage the client must wait out (not synchronisation: its length is the test)
        with socket.socket() as srv:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("127.0.0.1", port))
            srv.listen()
            ready.set()
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n"
                             b"connection: close\r\n\r\n{\"status\":\"ok\"}")

    # taken before the server's clock starts, so the bound below holds however the threads are scheduled
    started = time.monotonic()
    thread = threading.Thread(target=late_server, daemon=True)
    thread.start()
    with EmbeddingsClient(f"http://127.0.0.1:{port}", backoff_s=0.2) as c:
        assert c.health() == {"status": "ok"}
    assert ready.is_set() and time.monotonic() - started >= 3


def test_a_small_retry_budget_gives_up_soon():
    """Counted in attempts, not seconds: with backoff 0.2 s the waits run 0.2, 0.4, 0.8 s, so a 1 s
    budget allows the first try and two retries (0.6 s of waiting; the next would end at 1.4 s),
    where the retry count alone (10) would allow eleven tries. A loaded machine can only cost a retry."""
    seen = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with EmbeddingsClient("http://svc", backoff_s=0.2, retry_budget_s=1.0, transport=httpx.MockTransport(refuse)) as c:
        with pytest.raises(EmbeddingsConnectionError):
            c.health()
    assert 2 <= len(seen) <= 3, f"{len(seen)} tries within a 1 s budget"


def test_a_server_that_never_answers_costs_one_timeout():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        with EmbeddingsClient(f"http://127.0.0.1:{port}", timeout=1.0) as c:
            started = time.monotonic()
            with pytest.raises(EmbeddingsTimeout):
                c.health()
            assert time.monotonic() - started >= 0.9, "it waited for the timeout"
        # one timeout, not retried: the kernel queued every connection the client opened, and the
        # server never accepted one, so the queue holds exactly the tries (a clock bound would not)
        srv.setblocking(False)
        connections = 0
        while True:
            try:
                conn, _ = srv.accept()
            except BlockingIOError:
                break
            conn.close()
            connections += 1
    assert connections == 1


def test_only_idempotent_calls_are_retried_after_the_server_may_have_acted():
    handler, seen = _flaky_transport([503, 200])
    with EmbeddingsClient("http://svc", backoff_s=0.001, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(EmbeddingsError) as err:
            c.store_drop("docs")  # a retry after a drop that happened would answer 404
    assert err.value.status == 503 and len(seen) == 1
    handler, seen = _flaky_transport([429, 200])
    with EmbeddingsClient("http://svc", backoff_s=0.001, transport=httpx.MockTransport(handler)) as c:
        c.store_drop("docs")  # 429: refused before any work, safe to send again
    assert len(seen) == 2
    handler, seen = _flaky_transport([503, 200])
    with EmbeddingsClient("http://svc", backoff_s=0.001, transport=httpx.MockTransport(handler)) as c:
        c.store_search("q", collection="docs")
    assert len(seen) == 2


def test_embed_batch_errors_name_the_global_index_and_keep_what_was_computed(client):
    limit = client.info()["limits"]["max_batch_texts"]
    texts = [f"text {i}" for i in range(limit * 2 + 10)]
    texts[limit * 2 + 3] = ""  # breaks the third chunk
    with pytest.raises(InvalidInput) as err:
        client.embed_batch(texts)
    bad = limit * 2 + 3
    assert err.value.field == f"texts[{bad}]" and f"texts[{bad}]" in err.value.message and err.value.index == bad
    assert len(err.value.partial) == limit * 2
    texts[bad] = "fixed"
    vectors = client.embed_batch(texts, resume_from=err.value.partial)
    assert len(vectors) == len(texts)
    assert vectors[:5] == err.value.partial[:5]


def test_async_embed_batch_errors_name_the_global_index(live_server):
    async def main():
        async with AsyncEmbeddingsClient(live_server) as c:
            limit = (await c.info())["limits"]["max_batch_texts"]
            texts = [f"t{i}" for i in range(limit + 5)]
            texts[limit + 1] = ""
            with pytest.raises(InvalidInput) as err:
                await c.embed_batch(texts)
            return limit, err.value

    limit, err = asyncio.run(main())
    assert err.field == f"texts[{limit + 1}]" and len(err.partial) == limit


def test_plain_text_error_body_becomes_typed_error():
    def handler(request):
        return httpx.Response(500, text="Internal Server Error")

    with EmbeddingsClient("http://svc", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(EmbeddingsError) as err:
            c.info()
    assert err.value.status == 500 and "Internal Server Error" in str(err.value)


def test_store_methods(client):
    coll = "client_store"
    added = client.store_add(["Paris is in France", "Berlin is in Germany"], collection=coll,
                             metadata=[{"lang": "en"}, {"lang": "de"}])
    assert added["added_count"] == 2
    hits = client.store_search("capital of France", collection=coll, top_k=1)["results"]
    assert hits[0]["text"] == "Paris is in France"
    filtered = client.store_search("France", collection=coll, filter_metadata={"lang": "de"})["results"]
    assert filtered[0]["metadata"] == {"lang": "de"}
    assert client.store_get(added["ids"][:1], collection=coll, include_vectors=True)["records"][0]["vector"]
    assert client.store_delete(coll, ids=added["ids"][1:])["deleted_count"] == 1
    assert any(c["name"] == coll for c in client.store_collections()["collections"])
    assert client.store_drop(coll)["dropped"]
    from chutes_embeddings import NotFound

    with pytest.raises(NotFound) as err:
        client.store_search("x", collection=coll)
    assert err.value.status == 404
