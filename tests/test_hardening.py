"""Regression tests for the hostile-input and overload probe (issue 8), each at its reproduction.

In-process through the chute app (dev mode, so the local-server rules apply) unless the defect
lives in the real server path (hypercorn, the SDK's routes), which the live server covers.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
import uuid

import httpx
import pytest

from chutes_embeddings.http.payload import MAX_JSON_DEPTH, MAX_NUMBER_DIGITS
from chutes_embeddings.store.metadata import MAX_METADATA_BYTES
from tests.helpers import wait_until

POST_ROUTES = ["/embed", "/embed/batch", "/similarity", "/rerank", "/search", "/cluster", "/store/add",
               "/store/search", "/store/get", "/store/delete", "/store/drop"]


def _detail(body):
    assert isinstance(body, dict) and isinstance(body.get("detail"), dict), body
    return body["detail"]


# 1. deeply nested JSON ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize("depth", [10_000, MAX_JSON_DEPTH + 5])
def test_deeply_nested_json_is_400_naming_the_limit(dev_call, path, depth):
    raw = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
    status, body = dev_call("POST", path, content=raw)
    assert status == 400, body
    assert _detail(body)["error_type"] == "malformed_request" and _detail(body)["limit"] == MAX_JSON_DEPTH


def test_nesting_within_the_limit_is_judged_by_the_schema(dev_call):
    inner = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    status, body = dev_call("POST", "/embed", content=f'{{"inputs": [{inner}]}}'.encode())
    assert status == 422 and _detail(body)["field"].startswith("inputs")


# 2. integer literals over 4,300 digits --------------------------------------------------------------
@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_number_of_thousands_of_digits_is_400(dev_call, path):
    raw = b'{"inputs": "a", "top_k": 1' + b"0" * (MAX_NUMBER_DIGITS + 100) + b"}"
    status, body = dev_call("POST", path, content=raw)
    assert status == 400, body
    assert _detail(body)["limit"] == MAX_NUMBER_DIGITS


# 3. NaN / Infinity -------------------------------------------------------------------------------
@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused_naming_the_field(dev_call, literal):
    status, body = dev_call("POST", "/store/search", content=b'{"query": "q", "threshold": ' + literal + b"}")
    assert status == 422 and _detail(body)["field"] == "threshold", body
    coll = "nan_" + uuid.uuid4().hex[:8]
    raw = b'{"collection": "%s", "texts": ["hello"], "ids": ["n1"], "metadata": {"x": %s}}' % (coll.encode(), literal)
    status, body = dev_call("POST", "/store/add", content=raw)
    assert status == 422 and _detail(body)["field"] == "metadata.x", body
    status, body = dev_call("POST", "/store/get", {"collection": coll, "ids": ["n1"]})
    assert status == 404, "nothing may be stored by a refused add"


def test_nan_in_one_of_several_metadata_objects_names_its_index(dev_call):
    raw = b'{"texts": ["a", "b"], "metadata": [{"ok": 1}, {"deep": {"x": [1, NaN]}}]}'
    status, body = dev_call("POST", "/store/add", content=raw)
    assert status == 422 and _detail(body)["field"] == "metadata[1].deep.x[1]", body


# 4 and 5. filters at their limits and numbers outside int64 (both stores: test_store_contract) ----
def test_filters_at_their_limit_over_http(dev_call):
    coll = "flt_" + uuid.uuid4().hex[:8]
    texts = [f"text {i}" for i in range(6)]
    metadata = [{"n": i} for i in range(6)]
    status, _ = dev_call("POST", "/store/add", {"collection": coll, "texts": texts, "metadata": metadata})
    assert status == 200
    values = list(range(0, 2000, 2))
    search = {"collection": coll, "query": "text"}
    status, body = dev_call("POST", "/store/search", {**search, "filter_metadata": {"n": {"$in": values}}})
    assert status == 200 and {r["metadata"]["n"] for r in body["results"]} == {0, 2, 4}
    status, body = dev_call("POST", "/store/search", {**search, "filter_metadata": {"n": {"$nin": values + [1]}}})
    assert status == 422 and _detail(body)["limit"] == 1000
    too_many_keys = {f"k{j}": 1 for j in range(65)}
    status, body = dev_call("POST", "/store/delete", {"collection": coll, "filter_metadata": too_many_keys})
    assert status == 422 and _detail(body)["limit"] == 64


@pytest.mark.parametrize("flt", [{"n": 18446744073709551616}, {"n": {"$gt": 18446744073709551616}}])
@pytest.mark.parametrize("path", ["/store/search", "/store/delete"])
def test_filter_values_outside_int64_are_422(dev_call, path, flt):
    status, body = dev_call("POST", path, {"collection": "default", "query": "q", "filter_metadata": flt}
                            if path == "/store/search" else {"collection": "default", "filter_metadata": flt})
    assert status == 422 and _detail(body)["field"].startswith("filter_metadata.n"), body


# 6. size limits ------------------------------------------------------------------------------------
@pytest.fixture
def small_body_limit(chute_app):
    saved = chute_app.settings
    chute_app.settings = dataclasses.replace(saved, max_body_bytes=4096)
    yield 4096
    chute_app.settings = saved


def test_bodies_over_the_limit_are_413_before_parsing(dev_call, small_body_limit):
    big = json.dumps({"inputs": ["x" * 5000]}).encode()
    status, body = dev_call("POST", "/embed", content=big)
    assert status == 413 and _detail(body)["limit"] == small_body_limit
    status, body = dev_call("POST", "/embed", content=b"{" * 5000)  # not even JSON: size is checked first
    assert status == 413


def test_a_streamed_body_over_the_limit_is_413(test_client, small_body_limit):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = test_client.post("/embed", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["detail"]["error_type"] == "payload_too_large"


def test_live_server_refuses_big_bodies_with_413_whether_sized_or_streamed(live_server):
    limit = httpx.get(live_server + "/info").json()["limits"]["max_body_bytes"]

    def stream():
        for _ in range(limit // 2**20 + 2):
            yield b" " * 2**20

    headers = {"content-type": "application/json"}
    for content in (b" " * (limit + 1), stream()):
        response = httpx.post(live_server + "/embed", content=content, headers=headers, timeout=60)
        assert response.status_code == 413 and response.json()["detail"]["limit"] == limit


def test_metadata_over_its_size_limit_is_422_and_at_the_limit_is_kept(dev_call):
    coll = "meta_" + uuid.uuid4().hex[:8]
    at_limit = {"blob": "y" * (MAX_METADATA_BYTES - len('{"blob":""}'))}
    status, body = dev_call("POST", "/store/add", {"collection": coll, "texts": ["a"], "metadata": at_limit})
    assert status == 200, body
    over = {"blob": at_limit["blob"] + "y"}
    status, body = dev_call("POST", "/store/add", {"collection": coll, "texts": ["b"], "metadata": [over]})
    assert status == 422 and _detail(body)["field"] == "metadata[0]" and _detail(body)["limit"] == MAX_METADATA_BYTES


# 8. logs leak nothing --------------------------------------------------------------------------------
@pytest.fixture
def service_log(chute_app, monkeypatch):
    """What the service logs, through its own sink configuration (into a buffer for the test)."""
    import io
    import sys

    from chutes_embeddings.logs import configure_logging

    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    configure_logging(chute_app.settings)
    yield buffer
    monkeypatch.undo()
    configure_logging(chute_app.settings)


def test_a_500_logs_one_traceback_without_locals_and_answers_a_request_id(dev_call, engine, monkeypatch, service_log):
    marker = "SECRET-" + uuid.uuid4().hex

    def broken(texts, **kwargs):
        payload = {"texts": list(texts)}  # noqa: F841  (a local holding the request's texts)
        raise RuntimeError("a bug")

    monkeypatch.setattr(engine, "cluster", broken)
    status, body = dev_call("POST", "/cluster", {"texts": [marker, marker + " two"]})
    logged = service_log.getvalue()
    assert status == 500 and _detail(body)["error_type"] == "internal" and _detail(body)["request_id"]
    assert marker not in json.dumps(body)
    assert marker not in logged
    assert logged.count(_detail(body)["request_id"]) == 1, "logged once"
    assert len(logged.splitlines()) < 40, logged


def test_a_malformed_body_logs_at_most_one_line(dev_call, service_log):
    status, _ = dev_call("POST", "/embed", content=b'{"inputs": ["secret text",')
    logged = service_log.getvalue()
    assert status == 400
    assert len(logged.strip().splitlines()) <= 1 and "secret text" not in logged


# 9. the token-limit check comes before the cache ----------------------------------------------------
def test_truncate_false_is_checked_even_when_the_cache_holds_the_text(dev_call):
    long_text = "cached long text " * 200
    status, _ = dev_call("POST", "/embed", {"inputs": long_text})
    assert status == 200
    status, body = dev_call("POST", "/embed", {"inputs": ["ok", long_text], "truncate": False})
    assert status == 422 and _detail(body)["field"] == "inputs[1]"


def test_long_texts_are_cut_like_sentence_transformers(dev_call, st_model):
    import numpy as np

    long_text = "a sentence that goes on and on " * 100
    status, body = dev_call("POST", "/embed", {"inputs": [long_text, "short"]})
    assert status == 200
    ref = st_model.encode([long_text, "short"], normalize_embeddings=True)
    assert float(np.dot(body["embeddings"][0], ref[0])) >= 0.99999
    assert float(np.dot(body["embeddings"][1], ref[1])) >= 0.99999


# 11. every answer in the documented shape ------------------------------------------------------------
@pytest.mark.parametrize("method,path,status", [("GET", "/nope", 404), ("POST", "/nope", 404),
                                                ("POST", "/health", 405), ("GET", "/embed", 405),
                                                ("POST", "/info", 405), ("GET", "/store/add", 405)])
def test_404_and_405_are_in_the_documented_shape(dev_call, method, path, status):
    got, body = dev_call(method, path, content=b"" if method == "POST" else None)
    assert got == status
    assert _detail(body)["error_type"] == {404: "not_found", 405: "method_not_allowed"}[status]


def test_405_names_the_allowed_methods(test_client):
    response = test_client.post("/health", content=b"")
    assert response.status_code == 405 and response.headers["allow"] == "GET"


# 12. the local server's defaults (the real server path: hypercorn and the SDK's own routes) ---------
@pytest.mark.parametrize("method,path", [("GET", "/_procs"), ("POST", "/_slurp"), ("POST", "/_connectivity"),
                                         ("POST", "/_token"), ("GET", "/_metrics")])
def test_sdk_internal_routes_are_hidden_on_the_local_server(live_server, method, path):
    response = httpx.request(method, live_server + path, json={"path": "/etc/passwd", "url": "http://example.com"})
    assert response.status_code == 404 and response.json()["detail"]["error_type"] == "not_found"


def test_local_server_wants_json_bodies_and_a_loopback_host(live_server):
    plain = httpx.post(live_server + "/store/drop", content=b'{"collection": "x"}',
                       headers={"content-type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["detail"]["error_type"] == "unsupported_media_type"
    rebound = httpx.get(live_server + "/health", headers={"host": "attacker.example:80"})
    assert rebound.status_code == 403 and rebound.json()["detail"]["error_type"] == "forbidden"
    port = live_server.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert httpx.get(live_server + "/health", headers={"host": host}).status_code == 200


def test_live_server_parse_failures_are_4xx_with_one_log_line(live_server, tmp_path):
    for raw in (b"{" * 10_000, b'{"inputs": 1' + b"0" * 5000 + b"}", b"not json", b""):
        response = httpx.post(live_server + "/embed", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["detail"]["error_type"] == "malformed_request"


def test_a_slow_body_times_out_with_408(live_server):
    """The live server runs with EMBEDDINGS_BODY_TIMEOUT_S=2 (conftest)."""
    host, port = live_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /embed HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                     "Content-Length: 40\r\n\r\n{\"inputs\": ".encode())
        started = time.monotonic()
        answer = b""
        while b"request_timeout" not in answer:  # headers and body may come in separate segments
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    answer = answer.decode()
    assert answer.startswith("HTTP/1.1 408") and "request_timeout" in answer, answer
    assert 1.5 < time.monotonic() - started < 10


# 7. overload: refused fast, truthful health, callers that left cost nothing -----------------------
def _long_texts(prefix: str, n: int) -> list[str]:
    """``n`` distinct texts of ~100 words (~130 tokens)."""
    from bench.corpus import sentences

    pool = sentences(8 * n, seed=3)
    return [f"{prefix} {i} " + " ".join(pool[8 * i : 8 * i + 8]) for i in range(n)]


def test_overload_is_refused_at_once_with_retry_after_and_health_says_so(live_server):
    """The live server admits work while the queue holds under 2 s of model time (the default)."""
    from concurrent.futures import ThreadPoolExecutor

    tag = uuid.uuid4().hex[:6]
    with httpx.Client(base_url=live_server, timeout=120) as http:
        http.post("/embed/batch", json={"texts": _long_texts("warm " + tag, 64)})  # a measured drain rate

        bodies = [{"texts": _long_texts(f"{tag} {i}", 300)} for i in range(6)]

        def batch(i: int) -> httpx.Response:
            return http.post("/embed/batch", json=bodies[i])

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(batch, i) for i in range(6)]
            # /health while the batches are in: the first answer that reports the overload, or the
            # one after the last batch was answered (then the assertion below fails)
            health_during = wait_until(
                lambda: http.get("/health").json(), timeout_s=120, interval_s=0.05, what="an overload or all answers",
                until=lambda health: health["status"] == "overloaded" or all(f.done() for f in futures))
            answers = [f.result() for f in futures]
        refused = [a for a in answers if a.status_code == 429]
        assert refused and all(a.status_code in (200, 429) for a in answers), [a.status_code for a in answers]
        for a in refused:
            assert int(a.headers["retry-after"]) >= 1 and a.json()["detail"]["error_type"] == "overloaded"
            assert a.elapsed.total_seconds() < 1.0, "refusals come before any tokenising or queueing"
        assert health_during["status"] == "overloaded" and health_during["reasons"], health_during
        assert http.get("/health").json()["status"] == "ok"


def test_work_of_clients_that_disconnected_is_dropped(live_server):
    tag = uuid.uuid4().hex[:6]
    with httpx.Client(base_url=live_server, timeout=120) as http:
        # about a second of model time on this machine, loaded as it is now: later requests are still
        # admitted (under 2 s of queued work) but wait
        probe = _long_texts(f"{tag} probe", 8)
        started = time.perf_counter()
        http.post("/embed/batch", json={"texts": probe}).raise_for_status()
        per_text = (time.perf_counter() - started) / len(probe)
        before = http.get("/info").json()["batching"]
        blocker_body = {"texts": _long_texts(tag, max(10, min(200, int(0.9 / per_text))))}
        blocker = threading.Thread(target=lambda: http.post("/embed/batch", json=blocker_body))
        blocker.start()
        wait_until(lambda: http.get("/info").json()["batching"]["queue_depth"] > 0 or not blocker.is_alive(),
                   timeout_s=30, interval_s=0.01, what="the blocker's texts queued")
        gone = 0
        for i in range(3):  # each queues behind the blocker, then its client gives up
            try:
                httpx.post(live_server + "/embed/batch", json={"texts": [f"{tag} gone {i} {j}" for j in range(20)]},
                           timeout=0.15)
            except httpx.TimeoutException:
                gone += 20
        blocker.join()
        # the texts of the clients that left are counted when the worker reaches them, after the blocker
        after = wait_until(lambda: http.get("/info").json()["batching"], timeout_s=30, interval_s=0.05,
                           what="the texts of the clients that left counted as dropped",
                           until=lambda info: info["texts_dropped"] - before["texts_dropped"] >= gone // 2)
    assert gone >= 20, "no request was left waiting: the blocker was too short for this machine"
    assert after["texts_dropped"] - before["texts_dropped"] >= gone // 2, (gone, before, after)


def test_early_refusals_do_not_poison_kept_alive_connections(live_server):
    """A 405/404/415 sent before the body is read closes the connection (and says so), so a client
    that keeps connections alive never sends its next request into a closing one."""
    with httpx.Client(base_url=live_server, timeout=30) as http:
        for i in range(60):
            refused = http.request(["PATCH", "PUT", "POST"][i % 3], ["/rerank", "/embed", "/nope"][i % 3],
                                   content=b'{"inputs": "x"}', headers={"content-type": "application/json"})
            assert refused.status_code in (404, 405)
            assert refused.headers.get("connection") == "close"
            assert http.get("/health").status_code == 200


@pytest.mark.parametrize("first", ["GET /health", "DELETE /embed", "GET /no-such-route"])
def test_a_body_on_a_request_that_takes_none_does_not_cost_the_next_request_its_answer(live_server, first):
    """A GET or DELETE may carry a body. The server closes a connection whose request body was not
    read when the answer went out, without saying so, so a client's next request on it got no
    answer ("Server disconnected without sending a response": a fuzz run found it). The guard reads
    such a body before answering, or says ``Connection: close`` when it answers early."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(live_server)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(f"{first} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: 2\r\n\r\n".encode())  # the body follows later, as a slow client sends it
        sock.settimeout(1.0)
        try:
            seen = sock.recv(65536)  # an answer before the body, if the server gives one
        except TimeoutError:
            seen = b""
        sock.settimeout(30)
        sock.sendall(b'{}GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
        while seen.count(b"HTTP/1.1 ") < 2:
            chunk = sock.recv(65536)
            if not chunk:
                break
            seen += chunk
    first_answer = seen.split(b"HTTP/1.1 ")[1].split(b"\r\n\r\n")[0].lower()
    assert seen.count(b"HTTP/1.1 ") == 2 or b"connection: close" in first_answer, seen[:400]
