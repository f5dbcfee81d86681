"""Store access tokens through the chute app over fake model services (the http layer).

Every store route against every kind of caller (no token, a wrong one, one of too small a scope,
one of another namespace, the right one), the answers in each dialect's shape when the service
requires a token for compute, and the local server's ``Authorization: Bearer``. No answer may
carry a token back.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import schemas as S
from tests.helpers import app_transport, fake_chute, loopback_client, make_call

READER = "reader-0123456789abcdef"
WRITER = "writer-0123456789abcdef"
ADMIN = "admin-0123456789abcdefgh"
ACME = "acme-writer-0123456789ab"
GLOBEX = "globex-admin-0123456789a"  # every scope, in namespace globex
WRONG = "wrong-0123456789abcdefgh"
TOKENS = f"{READER}:read,{WRITER}:write,{ADMIN}:admin,{ACME}:write:acme,{GLOBEX}:admin:globex"
SECRETS = (READER, WRITER, ADMIN, ACME, GLOBEX, WRONG)


@pytest.fixture(scope="module")
def token_app(tmp_path_factory):
    """The chute over fakes with tokens configured (compute routes open)."""
    app = fake_chute("my_embeddings_with_tokens", tmp_path_factory.mktemp("token-app"),
                     {"EMBEDDINGS_STORE_TOKENS": TOKENS})
    yield app
    app.store.close()
    app.engine.close()


@pytest.fixture(scope="module")
def token_client(token_app):
    yield from loopback_client(token_app)


@pytest.fixture(scope="module")
def strict_token_client(tmp_path_factory):
    """The chute over fakes that requires a token on every route."""
    app = fake_chute("my_embeddings_tokens_everywhere", tmp_path_factory.mktemp("strict-app"),
                     {"EMBEDDINGS_STORE_TOKENS": TOKENS, "EMBEDDINGS_REQUIRE_TOKEN_FOR_COMPUTE": "true"})
    yield from loopback_client(app)
    app.store.close()
    app.engine.close()


def _post(client, path: str, body: dict[str, Any], token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    answer = client.post(path, json={**body, **({"token": token} if token is not None else {})}, **kwargs)
    for secret in SECRETS:
        assert secret not in answer.text, (path, answer.status_code)
    return answer.status_code, answer.json()


@pytest.fixture(scope="module")
def acme_only(token_client):
    """A collection that only acme has (``acme/<name>``), and the records it holds."""
    name = "only_acme_" + uuid.uuid4().hex[:8]
    status, body = _post(token_client, "/store/add", {"collection": name, "texts": ["a cat", "a dog"],
                                                     "ids": ["i0", "i1"]}, ACME)
    assert status == 200, body
    return name


# route, the scope it needs, its body for a collection
STORE_ROUTES = [
    ("/store/add", "write", lambda c: {"collection": c, "texts": ["a bird"], "ids": ["i9"]}),
    ("/store/search", "read", lambda c: {"collection": c, "query": "a cat"}),
    ("/store/get", "read", lambda c: {"collection": c, "ids": ["i0"]}),
    ("/store/delete", "write", lambda c: {"collection": c, "ids": ["i9"]}),
    ("/store/drop", "admin", lambda c: {"collection": c}),
    ("/store/collections", "read", lambda c: {}),
]
TOO_SMALL = {"write": READER, "admin": WRITER}


@pytest.mark.parametrize("path,needs,body", STORE_ROUTES, ids=[r[0] for r in STORE_ROUTES])
@pytest.mark.parametrize("token", [None, WRONG, "x"], ids=["no token", "wrong token", "short token"])
def test_a_store_route_without_a_configured_token_is_401_naming_the_scope(token_client, acme_only, path, needs,
                                                                        body, token):
    status, answer = _post(token_client, path, body(acme_only), token)
    assert status == 401, answer
    detail = S.NativeError.model_validate(answer).detail
    assert (detail.error_type, detail.field, detail.limit) == ("unauthorized", "token", needs)
    assert f"{needs!r} scope" in detail.message and acme_only not in detail.message  # no hint of the collection


@pytest.mark.parametrize("path,needs,body", [r for r in STORE_ROUTES if r[1] in TOO_SMALL],
                         ids=[r[0] for r in STORE_ROUTES if r[1] in TOO_SMALL])
def test_a_token_of_too_small_a_scope_is_403_naming_the_scope(token_client, acme_only, path, needs, body):
    status, answer = _post(token_client, path, body(acme_only), TOO_SMALL[needs])
    assert status == 403, answer
    detail = S.NativeError.model_validate(answer).detail
    assert (detail.error_type, detail.field, detail.limit) == ("forbidden", "token", needs)
    assert f"{needs!r} scope" in detail.message and acme_only not in detail.message


@pytest.mark.parametrize("path,needs,body", [r for r in STORE_ROUTES if r[0] not in ("/store/add",
                                                                                      "/store/collections")],
                         ids=["/store/search", "/store/get", "/store/delete", "/store/drop"])
def test_another_namespaces_collection_answers_as_one_that_does_not_exist(token_client, acme_only, path, needs,
                                                                          body):
    """Globex's token has every scope in its namespace; acme's collection is not there for it: the
    same status and message as a name nobody ever made."""
    theirs = _post(token_client, path, body(acme_only), GLOBEX)
    nobody = _post(token_client, path, body("never_made"), GLOBEX)
    assert theirs[0] == nobody[0] == 404
    assert json.dumps(theirs[1]).replace(acme_only, "X") == json.dumps(nobody[1]).replace("never_made", "X")
    assert _post(token_client, "/store/get", {"collection": acme_only, "ids": ["i0"]}, ACME)[1]["records"]  # intact


def test_the_right_token_works_on_every_store_route_within_its_namespace(token_client, acme_only):
    mine = "shared_name_" + uuid.uuid4().hex[:6]
    for token, text in ((ACME, "acme's record"), (GLOBEX, "globex's record"), (WRITER, "the top level's")):
        status, added = _post(token_client, "/store/add", {"collection": mine, "texts": [text], "ids": ["r"]}, token)
        assert status == 200 and added["collection"] == mine and added["total_in_collection"] == 1
    for token, text in ((ACME, "acme's record"), (GLOBEX, "globex's record"), (READER, "the top level's")):
        status, found = _post(token_client, "/store/search", {"collection": mine, "query": "record"}, token)
        assert status == 200 and [r["text"] for r in found["results"]] == [text] and found["collection"] == mine
        status, got = _post(token_client, "/store/get", {"collection": mine, "ids": ["r"]}, token)
        assert status == 200 and got["records"][0]["text"] == text
    status, listed = _post(token_client, "/store/collections", {}, ACME)
    assert status == 200 and {c["name"] for c in listed["collections"]} == {mine, acme_only}
    S.CollectionsResponse.model_validate(listed)
    assert mine in {c["name"] for c in _post(token_client, "/store/collections", {}, READER)[1]["collections"]}
    everything = {c["name"] for c in _post(token_client, "/store/collections", {}, ADMIN)[1]["collections"]}
    assert {mine, f"acme/{mine}", f"globex/{mine}", f"acme/{acme_only}"} <= everything
    status, deleted = _post(token_client, "/store/delete", {"collection": mine, "ids": ["r"]}, ACME)
    assert status == 200 and deleted["total_in_collection"] == 0
    assert _post(token_client, "/store/drop", {"collection": mine}, GLOBEX) == (200, {"collection": mine,
                                                                                       "dropped": True})
    # an admin without a namespace names any collection in full; the others keep theirs
    assert _post(token_client, "/store/drop", {"collection": f"acme/{mine}"}, ADMIN)[0] == 200
    assert _post(token_client, "/store/search", {"collection": mine, "query": "x"}, READER)[0] == 200
    assert _post(token_client, "/store/drop", {"collection": mine}, ADMIN)[0] == 200


def test_a_namespaced_token_cannot_name_another_namespace(token_client, acme_only):
    status, answer = _post(token_client, "/store/search", {"collection": f"acme/{acme_only}", "query": "x"}, GLOBEX)
    assert status == 422 and answer["detail"]["field"] == "collection"
    assert _post(token_client, "/store/drop", {"collection": f"acme/{acme_only}"}, GLOBEX)[0] == 422
    assert _post(token_client, "/store/get", {"collection": acme_only, "ids": ["i0"]}, ACME)[1]["records"]


def test_the_token_is_checked_before_the_body_is_validated(token_client):
    """A caller without the right token learns nothing from validation errors; with it, they name
    the field but never echo the token."""
    assert _post(token_client, "/store/search", {"collection": "../etc", "query": 5})[0] == 401
    status, answer = _post(token_client, "/store/search", {"collection": "../etc", "query": "x"}, READER)
    assert status == 422 and answer["detail"]["field"] == "collection"
    status, answer = _post(token_client, "/store/search", {"query": "x", "unknown": 1}, READER)
    assert status == 422 and answer["detail"]["field"] == "unknown"


def test_compute_routes_stay_open_and_state_routes_never_show_tokens(token_client):
    assert _post(token_client, "/embed", {"inputs": "a cat"})[0] == 200
    assert _post(token_client, "/embed", {"inputs": "a cat"}, WRONG)[0] == 200  # not checked where not needed
    for path in ("/health", "/info", "/openapi", "/metrics"):
        answer = token_client.get(path)
        assert answer.status_code == 200 and not any(s in answer.text for s in SECRETS), path


def test_the_local_servers_bearer_header_carries_a_token_and_the_bodys_wins(token_client, acme_only):
    listed = token_client.get("/store/collections", headers={"Authorization": f"Bearer {ACME}"})
    assert listed.status_code == 200 and acme_only in {c["name"] for c in listed.json()["collections"]}
    assert token_client.get("/store/collections").status_code == 401
    assert token_client.get("/store/collections", headers={"Authorization": f"Bearer {WRONG}"}).status_code == 401
    body = {"collection": acme_only, "ids": ["i0"]}
    assert _post(token_client, "/store/get", body, headers={"Authorization": f"Bearer {ACME}"})[0] == 200
    assert _post(token_client, "/store/get", body, WRONG, headers={"Authorization": f"Bearer {ACME}"})[0] == 401
    assert _post(token_client, "/store/get", body, headers={"Authorization": f"Basic {ACME}"})[0] == 401


def test_production_serialisation_answers_the_same(token_client, acme_only):
    call = make_call(token_client, production=True)
    status, body = call("POST", "/store/get", {"collection": acme_only, "ids": ["i0"], "token": ACME})
    assert status == 200 and body["records"][0]["id"] == "i0"
    status, body = call("POST", "/store/get", {"collection": acme_only, "ids": ["i0"]})
    assert status == 401 and body["detail"]["error_type"] == "unauthorized"


# --- EMBEDDINGS_REQUIRE_TOKEN_FOR_COMPUTE: every dialect's own 401 ---------------------------------------
COMPUTE_ROUTES = [
    ("/embed", {"inputs": "a cat"}, S.NativeError),
    ("/rerank", {"query": "cat", "texts": ["a cat"]}, S.NativeError),
    ("/search", {"query": "cat", "corpus": ["a cat", "a dog"]}, S.NativeError),
    ("/v1/embeddings", {"input": "a cat"}, S.OpenAIError),
    ("/tei/embed", {"inputs": "a cat"}, S.TeiError),
    ("/tei/similarity", {"inputs": {"source_sentence": "a", "sentences": ["a", "b"]}}, S.TeiError),
    ("/v2/rerank", {"model": "m", "query": "cat", "documents": ["a cat"]}, S.CohereError),
    ("/v1/rerank", {"query": "cat", "documents": ["a cat"]}, S.CohereError),
    ("/v2/embed", {"model": "m", "texts": ["a cat"], "input_type": "search_query"}, S.CohereError),
    ("/v1/embed", {"texts": ["a cat"]}, S.CohereError),
]


@pytest.mark.parametrize("path,body,error_model", COMPUTE_ROUTES, ids=[r[0] for r in COMPUTE_ROUTES])
def test_a_service_that_requires_tokens_answers_401_in_each_dialect(strict_token_client, path, body, error_model):
    status, answer = _post(strict_token_client, path, body)
    assert status == 401, answer
    error_model.model_validate(answer)
    assert "any scope" in json.dumps(answer)
    assert _post(strict_token_client, path, body, WRONG)[0] == 401
    assert _post(strict_token_client, path, body, READER)[0] == 200


def test_the_openai_sdk_sends_the_token_in_extra_body_or_locally_as_its_api_key(strict_token_client):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="platform-key", base_url="http://127.0.0.1/v1", http_client=strict_token_client)
    with pytest.raises(openai.AuthenticationError) as err:
        client.embeddings.create(model="m", input="a cat")
    assert err.value.body["code"] == "unauthorized" and err.value.body["param"] == "token"
    got = client.embeddings.create(model="m", input="a cat", extra_body={"token": READER})
    assert len(got.data[0].embedding) == 32
    local = openai.OpenAI(api_key=READER, base_url="http://127.0.0.1/v1", http_client=strict_token_client)
    assert len(local.embeddings.create(model="m", input="a cat").data) == 1


def test_the_client_and_adapters_take_the_token_once(strict_token_client):
    """The real client (over the app's transport) and the LangChain adapters send the token they
    were built with on every request."""
    from chutes_embeddings.client import EmbeddingsClient
    from chutes_embeddings.errors import Unauthorized

    transport = app_transport(strict_token_client)
    with EmbeddingsClient("http://127.0.0.1", transport=transport) as anonymous:
        with pytest.raises(Unauthorized):
            anonymous.embed("a cat")
    with EmbeddingsClient("http://127.0.0.1", store_token=WRITER, transport=transport) as client:
        assert client.embed("a cat")["dimension"] == 32
        assert client.store_add(["a cat"], "docs")["added_count"] == 1
        assert [c["name"] for c in client.store_collections()["collections"]] == ["docs"]
    langchain = pytest.importorskip("chutes_embeddings.integrations.langchain")
    embeddings = langchain.ChutesEmbeddings("http://127.0.0.1", store_token=READER, transport=transport)
    assert len(embeddings.embed_query("a cat")) == 32
    store = langchain.ChutesVectorStore("http://127.0.0.1", "docs", store_token=READER, transport=transport)
    assert store.similarity_search("cat", k=1)[0].page_content == "a cat"
    rerank = langchain.ChutesRerank(base_url="http://127.0.0.1", store_token=READER,
                                    client_options={"transport": transport})
    assert READER not in repr(rerank) and "store_token" not in rerank.model_dump()
