"""Store access tokens without a server: parsing, scopes, the constant-time look-up, the settings
that configure them, the namespaced view of the store and the client's half (``access.py``,
``store/tenancy.py``, ``client/base.py``)."""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
from dataclasses import dataclass

import httpx
import pytest

from chutes_embeddings import access as access_module
from chutes_embeddings.access import OPEN, Grant, Scope, StoreAccess, parse_entries
from chutes_embeddings.client import EmbeddingsClient
from chutes_embeddings.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from chutes_embeddings.settings import Settings
from chutes_embeddings.store import CollectionInfo
from chutes_embeddings.store.tenancy import NamespacedStore

READER = "reader-0123456789abcdef"
WRITER = "writer-0123456789abcdef"
ADMIN = "admin-0123456789abcdefgh"
ACME = "acme-writer-0123456789ab"
ACME_ADMIN = "acme-admin-0123456789abc"


def _access(require_for_compute: bool = False) -> StoreAccess:
    text = f"{READER}:read,{WRITER}:write\n{ADMIN}:admin, {ACME}:write:acme,{ACME_ADMIN}:admin:acme"
    return StoreAccess(parse_entries(text, "EMBEDDINGS_STORE_TOKENS"), require_for_compute)


# --- parsing ----------------------------------------------------------------------------------------
def test_entries_give_scopes_and_namespaces():
    access = _access()
    assert len(access) == 5 and access.enabled
    assert access.grant_of(READER) == Grant(Scope.READ)
    assert access.grant_of(ACME) == Grant(Scope.WRITE, "acme")
    assert access.grant_of(ADMIN).every_namespace and not access.grant_of(ACME_ADMIN).every_namespace
    assert access.grant_of("unknown-0123456789abcdef") is None


@pytest.mark.parametrize("entry,complaint", [
    ("{t}", "expected token:scope"),
    ("{t}:read:acme:extra", "expected token:scope"),
    ("short-token:read", "shorter than 16"),
    ("{t}!:read", "a token is 16..512 characters"),
    ("{t}:wrte", "unknown scope"),
    ("read:{t}", "shorter than 16"),  # swapped: the token sits where the scope goes, and is not echoed
    ("{t}:read:", "a namespace is 1..64"),
    ("{t}:read:a/b", "a namespace is 1..64"),
    ("{t}:read,{t}:write", "repeats the token of"),
])
def test_a_bad_entry_fails_start_up_without_showing_the_token(entry, complaint):
    token = "s3cret-token-0123456789"
    with pytest.raises(ValueError) as err:
        Settings.from_env({"EMBEDDINGS_STORE_TOKENS": entry.format(t=token)})
    message = str(err.value)
    assert complaint in message and "EMBEDDINGS_STORE_TOKENS" in message
    assert "s3cret" not in message and "0123456789" not in message


def test_a_tokens_file_with_comments_adds_to_the_variable(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# tenants\n\n{ACME}:write:acme   \n  # ops\n{ADMIN}:admin\n")
    settings = Settings.from_env({"EMBEDDINGS_STORE_TOKENS": READER + ":read",
                                  "EMBEDDINGS_STORE_TOKENS_FILE": str(tokens)})
    assert len(settings.access) == 3 and settings.access.grant_of(ACME) == Grant(Scope.WRITE, "acme")
    tokens.write_text(f"{ACME}:write:acme\n{READER}:admin\n")
    with pytest.raises(ValueError, match="EMBEDDINGS_STORE_TOKENS_FILE line 2 repeats the token of "
                                         "EMBEDDINGS_STORE_TOKENS entry 1"):
        Settings.from_env({"EMBEDDINGS_STORE_TOKENS": READER + ":read", "EMBEDDINGS_STORE_TOKENS_FILE": str(tokens)})
    with pytest.raises(ValueError, match="cannot read it"):
        Settings.from_env({"EMBEDDINGS_STORE_TOKENS_FILE": str(tmp_path / "missing")})


def test_settings_never_show_the_tokens():
    settings = Settings.from_env({"EMBEDDINGS_STORE_TOKENS": f"{READER}:read,{ACME}:write:acme"})
    for text in (repr(settings), str(settings), repr(settings.access)):
        assert READER not in text and ACME not in text and "0123456789" not in text
    assert repr(settings.access) == "StoreAccess(tokens=2, require_for_compute=False)"


def test_requiring_a_token_for_compute_needs_a_token_configured():
    with pytest.raises(ValueError, match="EMBEDDINGS_REQUIRE_TOKEN_FOR_COMPUTE is set but no token"):
        Settings.from_env({"EMBEDDINGS_REQUIRE_TOKEN_FOR_COMPUTE": "true"})
    settings = Settings.from_env({"EMBEDDINGS_REQUIRE_TOKEN_FOR_COMPUTE": "true",
                                  "EMBEDDINGS_STORE_TOKENS": f"{READER}:read"})
    assert settings.access.require_for_compute


# --- authorize --------------------------------------------------------------------------------------
def test_no_tokens_configured_opens_everything_as_before():
    access = StoreAccess()
    assert not access.enabled
    for needs in ("read", "write", "admin", "compute"):
        assert access.authorize(None, needs) is OPEN
    assert OPEN.every_namespace


@pytest.mark.parametrize("token,needs,outcome", [
    (READER, "read", Scope.READ), (READER, "write", Forbidden), (READER, "admin", Forbidden),
    (WRITER, "read", Scope.WRITE), (WRITER, "write", Scope.WRITE), (WRITER, "admin", Forbidden),
    (ADMIN, "read", Scope.ADMIN), (ADMIN, "write", Scope.ADMIN), (ADMIN, "admin", Scope.ADMIN),
    (ACME, "write", Scope.WRITE), (ACME, "admin", Forbidden), (ACME_ADMIN, "admin", Scope.ADMIN),
    (None, "read", Unauthorized), ("", "read", Unauthorized), ("wrong-0123456789abcdef", "read", Unauthorized),
    (READER[:-1], "read", Unauthorized), (READER + "x", "read", Unauthorized),
])
def test_each_scope_implies_the_smaller_ones(token, needs, outcome):
    access = _access()
    if isinstance(outcome, Scope):
        assert access.authorize(token, needs).scope is outcome
        return
    with pytest.raises(outcome) as err:
        access.authorize(token, needs)
    assert (err.value.status, err.value.field, err.value.limit) == (outcome.status, "token", needs)
    assert f"{needs!r} scope" in err.value.message  # names the scope the route needs
    assert not token or token not in err.value.message


def test_compute_routes_stay_open_unless_the_service_requires_a_token():
    assert _access().authorize(None, "compute") is None
    assert _access().authorize("wrong-0123456789abcdef", "compute") is None
    strict = _access(require_for_compute=True)
    with pytest.raises(Unauthorized, match="any scope"):
        strict.authorize(None, "compute")
    with pytest.raises(Unauthorized):
        strict.authorize("wrong-0123456789abcdef", "compute")
    assert strict.authorize(READER, "compute").scope is Scope.READ


# --- constant time ----------------------------------------------------------------------------------
@pytest.mark.parametrize("presented", [READER, ADMIN, ACME_ADMIN, READER[:8] + "x" * 15, "y" * 23, "z"])
def test_every_configured_digest_is_compared_whatever_is_presented(monkeypatch, presented):
    """The look-up compares the presented token's digest with each configured digest, all of them,
    with ``hmac.compare_digest``: a match (first, last or none) or a long common prefix stops nothing."""
    compared: list[tuple[bytes, bytes]] = []
    real = access_module.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access_module.hmac, "compare_digest", counting)
    access = _access()
    access.grant_of(presented)
    assert len(compared) == len(access)
    assert all(len(a) == len(b) == 32 for a, b in compared)  # digests, never the token itself
    assert len({a for a, _ in compared}) == len(access)


def test_the_look_up_has_no_comparison_or_key_of_its_own():
    """No ``==``, ``in`` or dict look-up on a secret in the look-up: only ``hmac.compare_digest``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(StoreAccess.grant_of)))
    compares = [node for node in ast.walk(tree) if isinstance(node, (ast.Compare, ast.Subscript))]
    assert compares == []
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert "hmac.compare_digest" in calls and "_digest" in calls


# --- the store as one caller sees it ----------------------------------------------------------------
@dataclass
class RecordingService:
    """A ``StoreService`` stand-in: records the names it is given, holds a few collections."""

    names: tuple[str, ...] = ("docs", "acme/docs", "acme/faq", "globex/docs")
    kind: str = "embedded"

    def __post_init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def _call(self, verb: str, collection: str) -> str:
        self.calls.append((verb, collection))
        if collection not in self.names:
            raise NotFound(f"collection {collection!r} does not exist", field="collection")
        return collection

    def add(self, collection, *args, **kwargs):
        return self._call("add", collection)

    def search(self, collection, *args, **kwargs):
        return self._call("search", collection)

    def get(self, collection, *args, **kwargs):
        return self._call("get", collection)

    def delete(self, collection, *args, **kwargs):
        return self._call("delete", collection)

    def drop(self, collection):
        self._call("drop", collection)

    def list_collections(self):
        return [CollectionInfo(n, 1, 4, "m", []) for n in self.names]


def test_a_namespaced_caller_names_its_collections_short_and_sees_no_other():
    service = RecordingService()
    acme = NamespacedStore(service, "acme", every_namespace=False)
    for verb in ("add", "search", "get", "delete"):
        assert getattr(acme, verb)("docs", None) == "acme/docs"
    acme.drop("faq")
    assert service.calls[-1] == ("drop", "acme/faq")
    assert [i.name for i in acme.list_collections()] == ["docs", "faq"]
    with pytest.raises(NotFound) as missing:
        acme.search("nope")
    assert missing.value.message == "collection 'nope' does not exist"  # as the caller named it
    with pytest.raises(InvalidInput) as other:
        acme.search("globex/docs")
    assert other.value.field == "collection" and service.calls[-1] == ("search", "acme/nope")  # never asked


def test_another_namespace_answers_as_a_collection_that_does_not_exist():
    """Globex asking for ``faq`` (which acme has) gets exactly what it gets for a name nobody has."""
    globex = NamespacedStore(RecordingService(), "globex", every_namespace=False)
    answers = []
    for name in ("faq", "never-made"):
        with pytest.raises(NotFound) as err:
            globex.search(name)
        answers.append((err.value.status, err.value.to_body()))
    assert answers[0][1]["message"].replace("faq", "X") == answers[1][1]["message"].replace("never-made", "X")
    assert answers[0][0] == answers[1][0] == 404


def test_callers_without_a_namespace_see_the_top_level_and_admins_see_everything():
    service = RecordingService()
    top = NamespacedStore(service, None, every_namespace=False)
    assert [i.name for i in top.list_collections()] == ["docs"] and top.search("docs") == "docs"
    with pytest.raises(InvalidInput):
        top.get("acme/docs")
    admin = NamespacedStore(service, None, every_namespace=True)
    assert [i.name for i in admin.list_collections()] == list(service.names)
    assert admin.search("acme/docs") == "acme/docs"


# --- the client's half ------------------------------------------------------------------------------
def test_the_client_sends_its_store_token_in_every_body_and_posts_the_listing():
    seen: list[tuple[str, str, dict | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, body))
        return httpx.Response(200, json={"collections": [], "total": 0, "store": "embedded", "embeddings": [0.0]})

    with EmbeddingsClient("http://svc", api_key="platform-key", store_token=WRITER,
                          transport=httpx.MockTransport(answer)) as client:
        client.store_add(["a"], "docs")
        client.store_search("q", "docs")
        client.store_drop("docs")
        client.store_collections()
        client.embed("x")
    assert [(m, p) for m, p, _ in seen] == [("POST", "/store/add"), ("POST", "/store/search"),
                                           ("POST", "/store/drop"), ("POST", "/store/collections"),
                                           ("POST", "/embed")]
    assert all(body["token"] == WRITER for _, _, body in seen)
    with EmbeddingsClient("http://svc", transport=httpx.MockTransport(answer)) as client:
        client.store_collections()
        client.store_get(["a"], "docs")
    assert seen[-2][:2] == ("GET", "/store/collections") and "token" not in seen[-1][2]
