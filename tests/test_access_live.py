"""Store access tokens through the real client, on both stores and on a real server.

- The chute over fake model services, on the embedded store and on Postgres, driven by the real
  ``EmbeddingsClient`` (and LlamaIndex's vector store): scopes and namespaces keep their promises
  on both stores.
- One real server (``chutes run --dev``, the real model, Postgres, as a chute on Chutes uses it)
  with tokens configured: the client end to end, the README's several-customers example as
  written, and a log that never holds a token.
"""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from chutes_embeddings.client import EmbeddingsClient
from chutes_embeddings.errors import Forbidden, NotFound, Unauthorized
from tests.helpers import app_transport, fake_chute, loopback_client, running_server, wait_until

ACME = "acme-token-change-me-0123456789"  # the README example's tokens
GLOBEX = "globex-token-change-me-0123456789"
READER = "reader-0123456789abcdef"
ADMIN = "admin-0123456789abcdefgh"
WRONG = "wrong-0123456789abcdefgh"
TOKENS = f"{ACME}:write:acme,{GLOBEX}:write:globex,{READER}:read,{ADMIN}:admin"
SECRETS = (ACME, GLOBEX, READER, ADMIN, WRONG)


@pytest.fixture(params=[pytest.param("embedded", marks=pytest.mark.http),
                        pytest.param("postgres", marks=pytest.mark.system)], scope="module")
def store(request, tmp_path_factory):
    """A client factory over the chute over fakes with tokens, on each store."""
    env = {"EMBEDDINGS_STORE_TOKENS": TOKENS}
    if request.param == "postgres":
        env["EMBEDDINGS_STORE_URL"] = request.getfixturevalue("pg_url")
    app = fake_chute(f"my_embeddings_tokens_{request.param}", tmp_path_factory.mktemp("tokens"), env)
    clients = loopback_client(app)
    transport = app_transport(next(clients))
    yield lambda token=None: EmbeddingsClient("http://127.0.0.1", store_token=token, transport=transport)
    clients.close()
    app.store.close()
    app.engine.close()


def test_namespaces_isolate_through_the_real_client(store):
    name = "docs_" + uuid.uuid4().hex[:8]
    with store(ACME) as acme, store(GLOBEX) as globex, store(ADMIN) as admin:
        acme.store_add(["rockets to the moon", "rocket fuel"], name, ids=["a1", "a2"], metadata={"t": "acme"})
        globex.store_add(["hammocks"], name, ids=["g1"], metadata={"t": "globex"})
        assert [r["id"] for r in acme.store_search("rockets", name, top_k=5)["results"]] == ["a1", "a2"]
        assert [r["id"] for r in globex.store_search("rockets", name, top_k=5)["results"]] == ["g1"]
        assert globex.store_get(["a1"], name)["missing_ids"] == ["a1"]
        assert name in {c["name"] for c in acme.store_collections()["collections"]}
        assert {c["name"] for c in globex.store_collections()["collections"]} >= {name}
        assert not any("/" in c["name"] for c in globex.store_collections()["collections"])
        assert {f"acme/{name}", f"globex/{name}"} <= {c["name"] for c in admin.store_collections()["collections"]}
        assert acme.store_delete(name, ids=["a2"])["total_in_collection"] == 1
        with pytest.raises(Forbidden):  # a tenant's write token cannot drop
            acme.store_drop(name)
        admin.store_drop(f"globex/{name}")
        with pytest.raises(NotFound) as gone:
            globex.store_search("x", name)
        assert gone.value.message == f"collection {name!r} does not exist"
        assert acme.store_get(["a1"], name)["records"][0]["metadata"] == {"t": "acme"}
        admin.store_drop(f"acme/{name}")


def test_the_client_raises_the_401_and_403_classes(store):
    with store() as anonymous, store(WRONG) as wrong, store(READER) as reader:
        for client, error in ((anonymous, Unauthorized), (wrong, Unauthorized), (reader, Forbidden)):
            with pytest.raises(error) as err:
                client.store_add(["x"], "docs")
            assert err.value.field == "token" and err.value.limit == "write"
            assert not any(secret in str(err.value) for secret in SECRETS)
        with pytest.raises(Unauthorized):
            anonymous.store_collections()
        assert reader.store_collections()["store"] in ("embedded", "postgres")


def test_the_llama_index_store_takes_the_token_once(store):
    llama = pytest.importorskip("chutes_embeddings.integrations.llama_index")
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    name = "li_" + uuid.uuid4().hex[:8]
    with store() as client:
        transport = client._http._transport
    vectors = llama.ChutesVectorStore("http://127.0.0.1", name, store_token=ACME, vector_model="fake/hashed-tokens")
    vectors._client = EmbeddingsClient("http://127.0.0.1", store_token=ACME, transport=transport)
    assert ACME not in repr(vectors) and "store_token" not in vectors.model_dump()
    vectors.add([TextNode(text="a cat", id_="n1", embedding=[1.0] + [0.0] * 31)])
    found = vectors.query(VectorStoreQuery(query_embedding=[1.0] + [0.0] * 31, similarity_top_k=1))
    assert found.ids == ["n1"]
    with store(GLOBEX) as globex:
        assert name not in {c["name"] for c in globex.store_collections()["collections"]}


# --- one real server, as a shared chute runs ---------------------------------------------------------------
@pytest.fixture(scope="module")
def token_server(tmp_path_factory, pg_url):
    """``chutes run --dev`` with tokens and the Postgres store; DEBUG logs (the SDK's own lines too)."""
    workdir = tmp_path_factory.mktemp("token-server")
    env = {"EMBEDDINGS_STORE_TOKENS": TOKENS, "EMBEDDINGS_STORE_URL": pg_url, "EMBEDDINGS_LOG_LEVEL": "DEBUG"}
    with running_server(workdir, env) as url:
        yield url, workdir / "server.log"


def test_a_real_server_with_tokens_end_to_end(token_server):
    url, _ = token_server
    name = "live_" + uuid.uuid4().hex[:8]
    with EmbeddingsClient(url, store_token=ACME) as acme, EmbeddingsClient(url) as anonymous:
        assert acme.store_add(["machine learning from data"], name)["added_count"] == 1
        assert acme.store_search("learning", name)["results"][0]["text"] == "machine learning from data"
        assert name in {c["name"] for c in acme.store_collections()["collections"]}
        with pytest.raises(Unauthorized):
            anonymous.store_search("learning", name)
        assert len(anonymous.embed("compute stays open")["embeddings"]) == 384
    with EmbeddingsClient(url, store_token=ADMIN) as admin:
        admin.store_drop(f"acme/{name}")


def test_the_readmes_several_customers_example_runs_as_written(token_server, capsys):
    url, _ = token_server
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [block] = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]
               if b.startswith("# One chute, several customers")]
    exec(compile(block.replace("http://127.0.0.1:8000", url), "README:customers", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "Acme ships rockets to the moon", printed
    listed = ast.literal_eval(printed[1])  # globex's own collections (the session's Postgres may hold more)
    assert "docs" in listed and not [n for n in listed if "/" in n], printed
    with EmbeddingsClient(url, store_token=ADMIN) as admin:
        admin.store_drop("acme/docs")
        admin.store_drop("globex/docs")


def test_no_token_reaches_the_servers_log(token_server):
    """Right, wrong and too-small tokens, in the body and the header, on refused and answered requests:
    none of them is in the log, the SDK's DEBUG lines included."""
    import httpx

    url, log = token_server
    marker = uuid.uuid4().hex
    for token in (WRONG, READER, ACME):
        httpx.post(f"{url}/store/add", json={"collection": marker, "texts": ["x"], "token": token})
        httpx.post(f"{url}/store/search", json={"collection": marker, "query": "x", "token": token, "top_k": 0})
        httpx.get(f"{url}/store/collections", headers={"Authorization": f"Bearer {token}"})
    httpx.post(f"{url}/store/drop", json={"collection": f"acme/{marker}", "token": ADMIN})
    # the guard logs its 404 for a path nobody declared: once that line is in, every line before it is
    assert httpx.post(f"{url}/no-route-{marker}", json={"token": ADMIN}).status_code == 404
    wait_until(lambda: marker in log.read_text(errors="replace"), 30, what="the last request in the server's log")
    text = log.read_text(errors="replace")
    assert not [secret for secret in SECRETS if secret in text]
