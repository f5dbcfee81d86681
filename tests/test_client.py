"""The client against a live local server, plus retry/auth behaviour with a mock transport."""

from __future__ import annotations

import asyncio
import json
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


def test_documents_through_the_client_grouped_got_and_deleted(client):
    coll = "client_docs"
    para = "Sourdough needs a lively starter. Bake it in a hot oven. " * 6
    docs = [{"id": f"doc{i}", "text": "\n\n".join([para] * (i + 1)), "metadata": {"n": i}} for i in range(3)]
    done = client.store_add_documents(docs, collection=coll, chunking={"max_tokens": 64}, progress=False)
    assert done["documents"] == 3 and done["chunks"] >= 6 and done["total_in_collection"] == done["chunks"]
    again = client.store_add_documents(docs, collection=coll, chunking={"max_tokens": 64}, progress=False)
    assert again["total_in_collection"] == done["total_in_collection"]  # idempotent by document id
    hits = client.store_search("a hot oven", collection=coll, top_k=3, group_by="document")["results"]
    assert sorted(h["document_id"] for h in hits) == ["doc0", "doc1", "doc2"]
    assert max(h["other_chunks"] for h in hits) >= 2
    chunks = client.store_get(collection=coll, document_ids=["doc1"])["records"]
    assert [c["chunk"] for c in chunks] == list(range(len(chunks))) and chunks[0]["metadata"] == {"n": 1}
    assert client.store_delete(coll, document_ids=["doc1"])["deleted_count"] == len(chunks)
    client.store_drop(coll)


def _document_server(limits, fail_on=None):
    """A /info and /store/add stand-in that counts a chunk per 10 characters and refuses more than
    ``max_store_add_chunks`` (as the service does), and the document whose text is ``fail_on``."""
    stored: list[str] = []

    def handler(request):
        if request.url.path == "/info":
            return httpx.Response(200, json={"limits": limits})
        docs = json.loads(request.content)["documents"]
        chunks = sum(len(d["text"]) // 10 + 1 for d in docs)
        if chunks > limits["max_store_add_chunks"]:
            return httpx.Response(422, json={"detail": {"error_type": "invalid_input", "message": "too many chunks",
                                                        "field": "documents", "limit": limits["max_store_add_chunks"]}})
        for i, d in enumerate(docs):
            if d["text"] == fail_on:
                return httpx.Response(422, json={"detail": {
                    "error_type": "invalid_input", "field": f"documents[{i}].text",
                    "message": f"documents[{i}].text is bad"}})
        stored.extend(d["id"] for d in docs)
        return httpx.Response(200, json={"collection": "c", "added_count": chunks, "ids": [],
                                         "total_in_collection": len(stored)})

    return handler, stored


def test_store_add_documents_batches_within_the_limits_and_resumes_after_a_failure():
    limits = {"max_store_add_documents": 3, "max_body_bytes": 4 * 100, "max_store_add_chunks": 4}
    docs = [{"id": f"d{i}", "text": "x" * (25 if i % 2 else 5)} for i in range(10)]
    docs[7]["text"] = "bad"
    handler, stored = _document_server(limits, fail_on="bad")
    with EmbeddingsClient("http://svc", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(InvalidInput) as err:
            c.store_add_documents(docs, progress=False)
        assert err.value.document_id == "d7" and err.value.field == "documents[7].text"
        assert stored == [f"d{i}" for i in range(err.value.committed)] and err.value.committed <= 7
        docs[7]["text"] = "fixed"
        done = c.store_add_documents(docs, resume_from=err.value.committed, progress=False)
    assert stored == [f"d{i}" for i in range(10)] and done["documents"] == 10 - err.value.committed


def test_async_store_add_documents_names_the_failing_document_and_keeps_the_committed():
    limits = {"max_store_add_documents": 2, "max_body_bytes": 10_000, "max_store_add_chunks": 100}
    docs = [{"id": f"d{i}", "text": "bad" if i == 3 else "fine"} for i in range(5)]
    handler, stored = _document_server(limits, fail_on="bad")

    async def main():
        async with AsyncEmbeddingsClient("http://svc", transport=httpx.MockTransport(handler)) as c:
            with pytest.raises(InvalidInput) as err:
                await c.store_add_documents(docs, progress=False)
            return err.value

    err = asyncio.run(main())
    assert (err.document_id, err.committed, err.field) == ("d3", 2, "documents[3].text") and stored == ["d0", "d1"]
