"""Nothing acknowledged is lost: restarts, kill -9 mid-write, concurrent writers, two processes."""

from __future__ import annotations

import signal
import threading
import uuid

import httpx
import pytest

from chutes_embeddings.store import open_store
from chutes_embeddings.store.service import StoreService
from tests.helpers import running_server
from tests.store_helpers import LEXICAL, NO_FILTER


@pytest.fixture(params=["embedded", "postgres"])
def store_env(request):
    if request.param == "embedded":
        return {}
    return {"EMBEDDINGS_STORE_URL": request.getfixturevalue("pg_url")}


def _post(url, path, body):
    r = httpx.post(f"{url}{path}", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _open(tmp_path, store_env):
    """The store the server in ``tmp_path`` keeps, opened in this process as the service opens it."""
    return open_store(store_env.get("EMBEDDINGS_STORE_URL", ""), tmp_path / "data")


def test_acknowledged_adds_survive_restart_and_kill_9(tmp_path, store_env, engine):
    """One server start per store: the clean stop before it and the restart after the kill are this
    process opening the same store (the service's own code, without a second model load and port)."""
    coll = "durable_" + uuid.uuid4().hex[:8]
    # 1) create the collection with a lexical leg, add, stop cleanly (close): the server finds it
    store = _open(tmp_path, store_env)
    store.ensure_collection(coll, engine.model_id, engine.dimension, LEXICAL)
    StoreService(engine, store).add(coll, ["kept across a clean restart"], ["clean"], None)
    store.close()
    acked: list[list[str]] = []
    attempted: list[list[str]] = []
    acked_docs: dict[str, int] = {}  # every third add also adds a document (its chunks: one transaction)
    attempted_docs: list[str] = []
    # 2) a client adds in a loop; the server is killed with SIGKILL in the middle of it
    with running_server(tmp_path, store_env, stop_signal=signal.SIGKILL) as url:
        assert _post(url, "/store/get", {"collection": coll, "ids": ["clean"]})["records"][0]["text"] == \
            "kept across a clean restart"
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                ids = [f"k{i}-{j}" for j in range(5)]
                attempted.append(ids)
                try:
                    r = httpx.post(f"{url}/store/add", timeout=30, json={
                        "collection": coll, "ids": ids, "texts": [f"durable text {i} part {j}" for j in range(5)]})
                except httpx.HTTPError:
                    return  # the server died under this request: it was never acknowledged
                if r.status_code == 200:
                    acked.append(ids)
                if i % 3 == 0:
                    attempted_docs.append(f"doc{i}")
                    text = "\n\n".join(f"durable document {i} paragraph {p} with a few more words" for p in range(3))
                    try:
                        r = httpx.post(f"{url}/store/add", timeout=30, json={
                            "collection": coll, "documents": [{"id": f"doc{i}", "text": text}],
                            "chunking": {"max_tokens": 16}})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        acked_docs[f"doc{i}"] = r.json()["documents"][0]["chunks"]
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        while len(acked) < 15 and thread.is_alive():
            threading.Event().wait(0.05)
    # the context has sent SIGKILL while the writer was still writing
    stop.set()
    thread.join(30)
    assert len(acked) >= 15
    # 3) after restart every acknowledged add is there, whole; an unacknowledged one is whole or absent
    store = _open(tmp_path, store_env)
    try:
        service = StoreService(engine, store)
        acked_ids = [i for ids in acked for i in ids]
        got = service.get(coll, acked_ids)
        assert got.missing_ids == []
        texts = {r.id: r.text for r in got.records}
        for rid in acked_ids:
            i, j = rid[1:].split("-")
            assert texts[rid] == f"durable text {i} part {j}"
        for ids in attempted[len(acked):]:
            present = service.get(coll, ids).records
            assert len(present) in (0, 5), f"half-written add: {[r.id for r in present]}"
        # a document's chunks: all of an acknowledged one, all or none of one that was not
        assert len(acked_docs) >= 4 and set(acked_docs.values()) == {3}
        for doc in attempted_docs:
            chunks = store.get_documents(coll, [doc])
            assert len(chunks) in ((3,) if doc in acked_docs else (0, 3)), f"half-written document {doc}"
        # the search index agrees with the truth after the crash
        found = service.search(coll, "durable text 3 part 2", 1, None, None)
        assert found.records[found.ranking.hits[0].index].id == "k3-2"
        # and so does the lexical index: every stored record, each acknowledged one among them
        stored = {r.id for r in store.export(coll)}
        lexical = {h.id for h in store.search_lexical(coll, ["durabl"], len(stored) + 10, NO_FILTER)}
        assert lexical == stored - {"clean"} and set(acked_ids) <= lexical
        assert [h.id for h in store.search_lexical(coll, ["clean", "restart"], 5, NO_FILTER)] == ["clean"]
    finally:
        store.close()


def _concurrent_writers_and_readers(collections: StoreService, coll: str) -> None:
    errors: list[str] = []
    writers_done = threading.Event()

    def writer(w: int) -> None:
        for i in range(10):
            try:
                collections.add(coll, [f"writer {w} item {i} part {j}" for j in range(3)],
                                [f"w{w}-{i}-{j}" for j in range(3)], {"writer": w})
            except Exception as exc:
                errors.append(f"write: {exc!r}")

    def reader() -> None:
        while not writers_done.is_set():
            try:
                collections.search(coll, "writer item", 5, None, None)
            except Exception as exc:
                errors.append(f"read: {exc!r}")

    collections.add(coll, ["seed"], ["seed"], None)
    readers = [threading.Thread(target=reader) for _ in range(8)]
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(120)
    writers_done.set()
    for t in readers:
        t.join(30)
    assert errors == []
    ids = [f"w{w}-{i}-{j}" for w in range(8) for i in range(10) for j in range(3)]
    assert collections.get(coll, ids).missing_ids == []
    assert collections.store.describe(coll).size == 241


def test_8_writers_8_readers_embedded(chute_app):
    _concurrent_writers_and_readers(chute_app.store, "conc_" + uuid.uuid4().hex[:8])


def test_8_writers_8_readers_postgres(engine, pg_url, tmp_path):
    store = open_store(pg_url, tmp_path)  # as the service opens it
    try:
        _concurrent_writers_and_readers(StoreService(engine, store), "conc_" + uuid.uuid4().hex[:8])
    finally:
        store.close()


def test_two_server_processes_share_one_postgres(tmp_path, pg_url):
    coll = "shared_" + uuid.uuid4().hex[:8]
    env = {"EMBEDDINGS_STORE_URL": pg_url}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a", env) as a, running_server(tmp_path / "b", env) as b:
        _post(a, "/store/add", {"collection": coll, "texts": ["written through instance A"], "ids": ["from-a"]})
        hit = _post(b, "/store/search", {"collection": coll, "query": "instance A", "top_k": 1})["results"][0]
        assert hit["id"] == "from-a"
        _post(b, "/store/add", {"collection": coll, "texts": ["written through instance B"], "ids": ["from-b"]})
        listing = httpx.get(f"{a}/store/collections").json()["collections"]
        assert next(c for c in listing if c["name"] == coll)["size"] == 2
