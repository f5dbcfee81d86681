"""Several models in one service (``EMBEDDINGS_MODELS``, ``engine/models.py``, ``Engine.using``).

The settings' list and the name rules are unit tests. The rest runs the real start-up
(``start_engine``: every model its own service, loaded side by side) over fake model services put
in the backend factory's place, so a model that fails to load is a builder that raises: two
embedders of different dimensions, a reranker and a broken embedder, served by a chute in process,
picked per request in every dialect.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from chutes_embeddings.backends import factory
from chutes_embeddings.backends.factory import BuiltService
from chutes_embeddings.backends.protocols import BatchingProfile
from chutes_embeddings.engine.models import ModelEntry, ModelRegistry
from chutes_embeddings.errors import BackendUnavailable, InvalidInput, NotFound
from chutes_embeddings.settings import ModelSpec, Settings, parse_models
from tests.fakes import FakeEmbedder, FakePairTokenizer, FakeReranker
from tests.helpers import chute_over, loopback_client, make_call

MODELS = ("fake/small name=small aliases=tiny; fake/large name=large; "
          "fake/scorer kind=reranker name=scorer; fake/broken name=broken")


# --- the list ----------------------------------------------------------------------------------------
def test_the_compact_and_the_json_forms_read_the_same():
    compact = parse_models("a/b name=x aliases=p,q pooling=cls max_tokens=128 runtime=torch; c kind=reranker")
    as_json = parse_models('[{"model": "a/b", "name": "x", "aliases": ["p", "q"], "pooling": "cls", '
                           '"max_tokens": 128, "runtime": "torch"}, {"model": "c", "kind": "reranker"}]')
    assert compact == as_json
    assert compact[0] == ModelSpec("a/b", "embedder", "x", ("p", "q"), "cls", 128, "torch")
    assert compact[0].names() == ("x", "p", "q") and compact[0].loose_names() == ("a/b",)


def test_the_first_of_each_kind_is_its_default_and_the_one_model_fields_name_it():
    s = Settings.from_env({"EMBEDDINGS_MODELS": "r kind=reranker; e1; e2 name=two",
                           "EMBEDDINGS_SPARSE_MODEL": "sp"})
    assert [(m.model, m.kind) for m in s.model_specs] == [("e1", "embedder"), ("e2", "embedder"),
                                                          ("r", "reranker"), ("sp", "sparse")]
    assert (s.model, s.rerank_model, s.sparse_model) == ("e1", "r", "sp")
    one = Settings.from_env({"EMBEDDINGS_MODEL": "solo", "EMBEDDINGS_RERANK_MODEL": "ce"})
    assert [(m.model, m.kind) for m in one.model_specs] == [("solo", "embedder"), ("ce", "reranker")]
    # a one-model variable names its kind's default (as the image's EMBEDDINGS_RERANK_MODEL does);
    # the list's entry of the same model gives it its options
    both = Settings.from_env({"EMBEDDINGS_MODELS": "e1; ce2 kind=reranker; e2 name=two", "EMBEDDINGS_MODEL": "e2",
                              "EMBEDDINGS_RERANK_MODEL": "ce"})
    assert [(m.served_name, m.kind) for m in both.model_specs] == [
        ("two", "embedder"), ("e1", "embedder"), ("ce", "reranker"), ("ce2", "reranker")]
    assert (both.model, both.rerank_model) == ("e2", "ce")


@pytest.mark.parametrize(("env", "named"), [
    ({"EMBEDDINGS_MODELS": "a name=x; b name=x"}, "EMBEDDINGS_MODELS"),
    ({"EMBEDDINGS_MODELS": "a; b aliases=a"}, "EMBEDDINGS_MODELS"),
    ({"EMBEDDINGS_MODELS": "a colour=red"}, "EMBEDDINGS_MODELS"),
    ({"EMBEDDINGS_MODELS": "a kind=classifier"}, "EMBEDDINGS_MODELS"),
    ({"EMBEDDINGS_MODELS": "a pooling=median"}, "EMBEDDINGS_MODELS"),
    ({"EMBEDDINGS_MODELS": "a max_tokens=lots"}, "EMBEDDINGS_MODELS"),
    ({"EMBEDDINGS_MODELS": "[{\"kind\": \"embedder\"}"}, "EMBEDDINGS_MODELS"),
])
def test_a_bad_list_fails_start_up_naming_the_variable(env, named):
    with pytest.raises(ValueError) as refused:
        Settings.from_env(env)
    assert named in str(refused.value)


# --- names -------------------------------------------------------------------------------------------
def _registry(*specs: ModelSpec, failed: str | None = None) -> ModelRegistry:
    return ModelRegistry([ModelEntry(s, None if s.served_name == failed else object(),
                                      "OSError: no such file" if s.served_name == failed else None) for s in specs])


def test_names_resolve_to_their_model_and_none_to_the_default():
    registry = _registry(ModelSpec("org/first-model"), ModelSpec("org/second", name="second", aliases=("2nd",)),
                         ModelSpec("ce", "reranker"))
    first, second = registry.of_kind("embedder")
    assert registry.resolve("embedder", None) is first
    assert registry.resolve("embedder", "org/first-model") is first
    assert registry.resolve("embedder", "first-model") is first  # a hub id's last part, claimed by no other
    assert registry.resolve("embedder", "2nd") is second and registry.resolve("embedder", "org/second") is second
    assert registry.resolve("reranker", "anything") is registry.default("reranker")  # a kind's only model


def test_an_unknown_name_among_several_is_a_404_listing_the_served_ones():
    registry = _registry(ModelSpec("a"), ModelSpec("b"))
    with pytest.raises(NotFound) as refused:
        registry.resolve("embedder", "text-embedding-3-small")
    assert refused.value.field == "model" and refused.value.limit == ["a", "b"]
    assert "text-embedding-3-small" in refused.value.message
    anything = _registry(ModelSpec("a"), ModelSpec("b", aliases=("*",)))
    assert anything.resolve("embedder", "text-embedding-3-small").name == "b"


def test_a_model_of_another_kind_is_a_422_and_a_failed_one_a_503_naming_it():
    registry = _registry(ModelSpec("a"), ModelSpec("b"), ModelSpec("ce", "reranker"), failed="b")
    with pytest.raises(InvalidInput) as wrong:
        registry.resolve("embedder", "ce", "POST /v1/embeddings")
    assert "reranker" in wrong.value.message and "/v1/embeddings" in wrong.value.message
    assert wrong.value.limit == ["a", "b"]
    with pytest.raises(BackendUnavailable) as down:
        registry.resolve("embedder", "b")
    assert "'b'" in down.value.message and "no such file" in down.value.message


def test_kinds_may_share_a_name_and_a_route_picks_its_own_kind():
    specs = Settings.from_env({"EMBEDDINGS_MODELS": "org/m; org/m kind=sparse"}).model_specs
    registry = _registry(*specs)
    assert registry.resolve("sparse", "org/m").kind == "sparse" and registry.resolve("embedder", "m").kind == "embedder"


def test_a_loose_name_two_models_share_picks_neither():
    registry = _registry(ModelSpec("x/same", name="one"), ModelSpec("y/same", name="two"))
    with pytest.raises(NotFound):
        registry.resolve("embedder", "same")


# --- a service of several models, over fakes --------------------------------------------------------
def _fake_builders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake model services in the factory's place: ``dimension=`` of an embedder's id (none: 32), and
    a builder that raises for a model whose id ends in ``broken``."""

    def embedder(settings: Settings, binary: Any, model: Any = None, spec: Any = None) -> BuiltService:
        if settings.model.endswith("broken"):
            raise OSError(f"{settings.model}: no such model")
        dimension = 16 if settings.model.endswith("small") else 32
        fake = FakeEmbedder(dimension=dimension, model_id=spec.served_name)
        return BuiltService(fake, BatchingProfile(), fake.tokenizer)

    def reranker(settings: Settings, binary: Any, model: Any = None, spec: Any = None) -> BuiltService:
        fake = FakeReranker(model_id=spec.served_name)
        return BuiltService(fake, BatchingProfile(), FakePairTokenizer(fake.max_input_tokens))

    monkeypatch.setitem(factory.BUILDERS, "embedder", embedder)
    monkeypatch.setitem(factory.BUILDERS, "reranker", reranker)


@pytest.fixture(scope="module")
def models_app(tmp_path_factory: Any) -> Any:
    from chutes_embeddings.engine.startup import start_engine

    with pytest.MonkeyPatch.context() as patch:
        _fake_builders(patch)
        env = {"EMBEDDINGS_MODELS": MODELS, "EMBEDDINGS_TEI_BINARY": ""}
        app = chute_over("my_embeddings_models", tmp_path_factory.mktemp("models-app"),
                         lambda settings, limits: start_engine(settings, limits), env)
    yield app
    app.store.close()
    app.engine.close()


@pytest.fixture(scope="module")
def models_call(models_app: Any) -> Any:
    for client in loopback_client(models_app):
        yield make_call(client, production=True)


def test_each_route_embeds_with_the_model_it_names(models_call):
    for name, dimension in (("small", 16), ("tiny", 16), ("large", 32), (None, 16)):
        body = {"input": ["a cat"], "encoding_format": "float", **({"model": name} if name else {})}
        status, answer = models_call("POST", "/v1/embeddings", body)
        assert status == 200, answer
        assert len(answer["data"][0]["embedding"]) == dimension
        assert answer["model"] == ("large" if dimension == 32 else "small")
    status, native = models_call("POST", "/embed", {"inputs": "a cat", "model": "large"})
    assert status == 200 and native["model"] == "large" and native["dimension"] == 32
    status, tei = models_call("POST", "/tei/large/embed", {"inputs": "a cat"})
    assert status == 200 and len(tei[0]) == 32
    status, default = models_call("POST", "/tei/embed", {"inputs": "a cat"})
    assert status == 200 and len(default[0]) == 16
    status, root = models_call("POST", "/tei/large", {"inputs": "a cat"})  # TEI's root under a model's prefix
    assert status == 200 and len(root[0]) == 32
    assert models_call("POST", "/tei/no-such-model", {"inputs": "a cat"})[0] == 404
    status, cohere = models_call("POST", "/v2/embed", {"model": "large", "texts": ["a cat"],
                                                       "input_type": "search_query"})
    assert status == 200 and len(cohere["embeddings"]["float"][0]) == 32
    status, infinity = models_call("POST", "/infinity/embeddings", {"model": "small", "input": "a cat"})
    assert status == 200 and infinity["model"] == "small"
    status, tokens = models_call("POST", "/tei/large/embed_all", {"inputs": "a cat"})
    assert status == 200 and len(tokens[0][0]) == 32
    status, searched = models_call("POST", "/search", {"query": "cat", "corpus": ["a cat", "stocks"],
                                                       "model": "large"})
    assert status == 200 and searched["model"] == "large"


def test_the_vectors_of_two_models_differ_and_each_is_its_own(models_app, models_call):
    status, small = models_call("POST", "/embed", {"inputs": ["a cat", "a dog"], "model": "small"})
    status2, large = models_call("POST", "/embed", {"inputs": ["a cat", "a dog"], "model": "large"})
    assert status == status2 == 200
    engine = models_app.engine
    for name, answer in (("small", small), ("large", large)):
        own = engine.using("embedder", name).embed(["a cat", "a dog"]).vectors
        assert np.allclose(own, answer["embeddings"], atol=1e-6)
    assert np.asarray(small["embeddings"]).shape != np.asarray(large["embeddings"]).shape


@pytest.mark.parametrize(("path", "body", "status", "where"), [
    ("/v1/embeddings", {"input": "x", "model": "text-embedding-3-small"}, 404, ("error", "message")),
    ("/v1/embeddings", {"input": "x", "model": "scorer"}, 400, ("error", "message")),
    ("/embed", {"inputs": "x", "model": "nope"}, 404, ("detail", "message")),
    ("/v2/embed", {"model": "embed-v4.0", "texts": ["x"], "input_type": "search_query"}, 404, ("message",)),
    ("/rerank", {"query": "q", "texts": ["a"], "model": "large"}, 422, ("detail", "message")),
    ("/v1/embeddings", {"input": "x", "model": "broken"}, 503, ("error", "message")),
    ("/tei/broken/embed", {"inputs": "x"}, 503, ("error",)),
    ("/tei/nope/embed", {"inputs": "x"}, 404, ("error",)),
])
def test_a_bad_model_name_is_a_4xx_or_503_in_the_dialects_shape(models_call, path, body, status, where):
    got, answer = models_call("POST", path, body)
    assert got == status, answer
    message = answer
    for key in where:
        message = message[key]
    named = body.get("model") or path.split("/")[2]
    assert named in message
    if status == 404:
        assert "small" in message and "large" in message and "broken" in message  # the served ones
    if status == 503:
        assert "no such model" in message


def test_every_model_is_listed_and_the_failed_one_degrades_only_itself(models_call):
    status, listed = models_call("GET", "/v1/models")
    assert status == 200
    assert [(m["id"], m["kind"], m["default"], m["status"]) for m in listed["data"]] == [
        ("small", "embedder", True, "ready"), ("large", "embedder", False, "ready"),
        ("broken", "embedder", False, "failed"), ("scorer", "reranker", True, "ready")]
    status, health = models_call("GET", "/health")
    assert status == 200 and health["status"] == "degraded"
    assert any("'broken'" in reason and "failed to load" in reason for reason in health["reasons"])
    failed = next(m for m in health["models"] if m["name"] == "broken")
    assert failed["status"] == "failed" and "no such model" in failed["error"]
    status, info = models_call("GET", "/info")
    assert status == 200 and [m.get("dimension") for m in info["models"]] == [16, 32, None, None]
    status, ranked = models_call("POST", "/v2/rerank", {"model": "rerank-v3.5", "query": "cat",
                                                        "documents": ["a cat", "stocks"]})
    assert status == 200 and ranked["model"] == "scorer"  # a kind's only model answers any name


def test_metrics_label_every_model(models_app, models_call):
    models_call("POST", "/embed", {"inputs": "metrics text", "model": "large"})
    status = models_call("GET", "/health")[0]
    assert status == 200
    text = models_app.metrics.render().decode()
    assert 'embeddings_model_info{backend="",kind="embedder",model="broken",runtime="",status="failed"} 1.0' in text
    assert 'embeddings_model_items_total{kind="embedder",model="large"}' in text


def test_a_collection_keeps_its_model_and_refuses_another_at_search(models_call):
    status, added = models_call("POST", "/store/add", {"collection": "large-docs", "texts": ["a cat", "stocks"],
                                                       "model": "large"})
    assert status == 200, added
    status, found = models_call("POST", "/store/search", {"collection": "large-docs", "query": "cat"})
    assert status == 200 and found["model"] == "large"  # searched with its own model, though not the default
    status, refused = models_call("POST", "/store/search", {"collection": "large-docs", "query": "cat",
                                                            "model": "small"})
    assert status == 409 and "large" in refused["detail"]["message"] and refused["detail"]["field"] == "model"
    status, same = models_call("POST", "/store/search", {"collection": "large-docs", "query": "cat",
                                                         "model": "large"})
    assert status == 200 and same["results"][0]["text"] == "a cat"


def test_without_a_cross_encoder_a_rerank_is_the_cosine_of_the_embedder_it_names(tmp_path):
    from chutes_embeddings.engine.core import Engine
    from chutes_embeddings.engine.embedding import EmbeddingPipeline
    from tests.fakes import fake_engine

    settings = Settings(data_dir=str(tmp_path))
    base = fake_engine(settings, cross_encoder=False, sparse=False)
    other = FakeEmbedder(dimension=16, model_id="other")
    entries = [ModelEntry(ModelSpec("fake/hashed-tokens"), base.embedder),
               ModelEntry(ModelSpec("other"), EmbeddingPipeline(settings, other, other.tokenizer, BatchingProfile())),
               ModelEntry(ModelSpec("ce", "reranker"), None, "OSError: gone")]  # the default cross-encoder failed
    engine = Engine(base.embedder, base.reranker, models=ModelRegistry(entries))
    try:
        assert engine.using("reranker", "other").rerank("a cat", ["a cat", "stocks"]).reranker.model == "other"
        assert engine.using("reranker", "rerank-v3.5") is engine and engine.using("reranker", "ce") is engine
        assert engine.using("embedder", "other").reranker.describe().model == "other"  # its own cosine
    finally:
        engine.close()
