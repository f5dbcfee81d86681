"""The ecosystem's wire formats against a live server, driven by the real client libraries.

OpenAI's API through ``openai`` (sync and async) and ``langchain-openai``; TEI's API under /tei
through ``huggingface_hub`` and Haystack's TEI sparse embedders (``huggingface-api-haystack``), and
checked against TEI's own OpenAPI schemas; /metrics through
``prometheus_client``'s parser; the OpenAPI document through ``openapi-spec-validator``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import openai
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEI_DOC = json.loads((ROOT / "tests" / "data" / "tei-openapi.json").read_text())
TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply.", "A recipe for sourdough bread"]


def native_vectors(live_server: str, texts: list[str]) -> np.ndarray:
    body = httpx.post(f"{live_server}/embed", json={"inputs": texts}, timeout=60).json()
    return np.asarray(body["embeddings"], dtype=np.float32)


def assert_same(a: Any, b: Any) -> None:
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    assert a.shape == b.shape
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert float(np.min(cos)) >= 0.99999, cos


# --- OpenAI ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def oai(live_server):
    with openai.OpenAI(base_url=f"{live_server}/v1", api_key="not-checked-locally", max_retries=0) as client:
        yield client


def test_openai_sdk_default_base64_and_float_equal_the_native_vectors(oai, live_server):
    ref = native_vectors(live_server, TEXTS)
    default = oai.embeddings.create(model="text-embedding-3-small", input=TEXTS)  # the SDK asks for base64
    assert [d.index for d in default.data] == [0, 1, 2] and default.object == "list"
    assert_same([d.embedding for d in default.data], ref)
    floats = oai.embeddings.create(model="whatever", input=TEXTS[0], encoding_format="float")
    assert_same([floats.data[0].embedding], ref[:1])
    assert default.model == floats.model == "sentence-transformers/all-MiniLM-L6-v2"


def test_openai_usage_counts_real_tokens(oai, live_server):
    tokens = httpx.post(f"{live_server}/tei/tokenize", json={"inputs": TEXTS}).json()
    answer = oai.embeddings.create(model="m", input=TEXTS)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == sum(len(t) for t in tokens)


def test_openai_dimensions_are_the_renormalised_prefix(oai, live_server):
    full = native_vectors(live_server, TEXTS[:1])[0]
    short = np.asarray(oai.embeddings.create(model="m", input=TEXTS[0], dimensions=128).data[0].embedding)
    assert short.shape == (128,) and abs(float(np.linalg.norm(short)) - 1.0) < 1e-5
    assert_same(short, full[:128] / np.linalg.norm(full[:128]))
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model="m", input="x", dimensions=385)
    assert err.value.body["param"] == "dimensions" and "384" in err.value.message


def test_openai_models_list(oai):  # the live server serves two embedders and a sparse model (conftest.live_server)
    assert [m.id for m in oai.models.list()][:2] == ["sentence-transformers/all-MiniLM-L6-v2", "minilm-cls"]


@pytest.mark.parametrize("bad", ["", [], ["ok", ""]])
def test_openai_empty_input_is_a_bad_request(oai, bad):
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model="m", input=bad)
    assert err.value.status_code == 400 and err.value.body["param"].startswith("input")
    assert err.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize("ids", [[1, 2, 3], [[1, 2], [3, 4]]])
def test_openai_token_ids_are_refused_with_the_langchain_hint(oai, ids):
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model="m", input=ids)
    assert "check_embedding_ctx_length=False" in err.value.message


def test_openai_async_twin(live_server):
    async def main() -> tuple[Any, Any]:
        async with openai.AsyncOpenAI(base_url=f"{live_server}/v1", api_key="x", max_retries=0) as client:
            answer = await client.embeddings.create(model="m", input=TEXTS)
            models = [m.id async for m in client.models.list()]
            return answer, models

    answer, models = asyncio.run(main())
    assert_same([d.embedding for d in answer.data], native_vectors(live_server, TEXTS))
    assert models[:2] == ["sentence-transformers/all-MiniLM-L6-v2", "minilm-cls"]


def test_openai_overload_is_a_rate_limit_with_retry_after(live_server):
    """429s keep OpenAI's shape and carry Retry-After (the SDK honours it)."""
    response = httpx.post(f"{live_server}/v1/embeddings", json={"input": "x", "encoding_format": "md5"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "encoding_format"
    from chutes_embeddings.errors import Overloaded
    from chutes_embeddings.http.dialects import openai as dialect

    status, body = dialect.render_error(Overloaded("busy", retry_after_s=3))
    assert status == 429 and body["error"]["type"] == "rate_limit_error"


def test_langchain_openai_embeddings(live_server):
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(base_url=f"{live_server}/v1", api_key="x", model="all-MiniLM-L6-v2",
                           check_embedding_ctx_length=False, max_retries=0)
    ref = native_vectors(live_server, TEXTS)
    assert_same(emb.embed_documents(TEXTS), ref)
    assert_same([emb.embed_query(TEXTS[1])], ref[1:2])

    async def both() -> tuple[Any, Any]:  # one event loop: the async client keeps its connections
        return await emb.aembed_documents(TEXTS), await emb.aembed_query(TEXTS[2])

    documents, query = asyncio.run(both())
    assert_same(documents, ref)
    assert_same([query], ref[2:3])


# --- TEI ---------------------------------------------------------------------------------------------
def _nullable(schema: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` (TEI's document) as JSON Schema's ``type: [T, "null"]``."""
    if isinstance(schema, dict):
        out = {k: _nullable(v) for k, v in schema.items()}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_nullable(v) for v in schema]
    return schema


TEI_COMPONENTS = _nullable(copy.deepcopy(TEI_DOC["components"]))


def tei_valid(name: str, value: Any) -> None:
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": TEI_COMPONENTS}).validate(
        value
    )


def test_huggingface_hub_feature_extraction_against_tei_root(live_server, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    # make test runs with HF_HUB_OFFLINE=1 (nothing is downloaded); this client talks to loopback only
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    client = InferenceClient(model=f"{live_server}/tei")
    one = client.feature_extraction(TEXTS[0])
    assert np.asarray(one).shape == (1, 384)  # as the README says
    assert_same(one, native_vectors(live_server, TEXTS[:1]))
    several = client.feature_extraction(TEXTS, normalize=True, truncate=True)  # huggingface_hub sends a list too
    assert np.asarray(several).shape == (3, 384)


def test_huggingface_hub_sentence_similarity_against_tei_similarity(live_server, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # loopback only, as above
    client = InferenceClient(model=f"{live_server}/tei/similarity")
    scores = client.sentence_similarity("a cat sat on the mat", ["stock markets fell", "a kitten on a rug"])
    assert len(scores) == 2 and scores[1] > scores[0]
    vectors = native_vectors(live_server, ["a cat sat on the mat", "stock markets fell", "a kitten on a rug"])
    np.testing.assert_allclose(scores, vectors[1:] @ vectors[0], atol=1e-5)


def test_tei_routes_answer_in_teis_shapes(live_server):
    with httpx.Client(base_url=f"{live_server}/tei", timeout=60) as tei:
        request = {"inputs": TEXTS, "normalize": True, "truncate": True, "truncation_direction": "Right"}
        tei_valid("EmbedRequest", request)
        vectors = tei.post("/embed", json=request).json()
        tei_valid("EmbedResponse", vectors)
        assert_same(vectors, native_vectors(live_server, TEXTS))
        assert tei.post("/embed", json={"inputs": TEXTS[0], "dimensions": 64}).json()[0].__len__() == 64
        tokens = tei.post("/embed_all", json={"inputs": TEXTS[:2]}).json()
        tei_valid("EmbedAllResponse", tokens)
        assert len(tokens) == 2 and len(tokens[0][0]) == 384
        spans = tei.post("/tokenize", json={"inputs": "Hello world", "add_special_tokens": True}).json()
        tei_valid("TokenizeResponse", spans)
        assert [t["text"] for t in spans[0]] == ["[CLS]", "Hello", "world", "[SEP]"]
        assert spans[0][1]["start"] == 0 and spans[0][1]["stop"] == 5 and spans[0][0]["special"]
        ranks = tei.post("/rerank", json={"query": "a cat", "texts": TEXTS, "return_text": True}).json()
        tei_valid("RerankResponse", ranks)
        assert [r["index"] for r in ranks][0] == 0 and ranks[0]["text"] == TEXTS[0]
        assert [r["score"] for r in ranks] == sorted((r["score"] for r in ranks), reverse=True)
        sparse_request = {"inputs": TEXTS, "truncate": True, "truncation_direction": "Right"}
        tei_valid("EmbedSparseRequest", sparse_request)
        sparse = tei.post("/embed_sparse", json=sparse_request).json()
        tei_valid("EmbedSparseResponse", sparse)
        for row, want in zip(sparse, native_sparse(live_server, TEXTS), strict=True):
            assert_same_sparse([p["index"] for p in row], [p["value"] for p in row], want)
        info = tei.get("/info").json()
        tei_valid("Info", info)
        assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["max_input_length"] == 256
        health = tei.get("/health")
        assert health.status_code == 200 and health.content == b""


def native_sparse(live_server: str, texts: list[str]) -> list[dict]:
    body = httpx.post(f"{live_server}/embed/sparse", json={"inputs": texts}, timeout=60).json()
    return body["data"]


def assert_same_sparse(indices: list[int], values: list[float], expected: dict) -> None:
    """Equal weights within 1e-5 (texts batched with others are padded: a weight at the edge of
    zero may be there in one answer and not in the other)."""
    got, want = dict(zip(indices, values)), dict(zip(expected["indices"], expected["values"]))
    assert indices == sorted(indices) and min(values) > 0
    for index in got.keys() | want.keys():
        assert got.get(index, 0.0) == pytest.approx(want.get(index, 0.0), abs=1e-5), index


def test_haystack_tei_sparse_embedders_against_tei_embed_sparse(live_server, monkeypatch):
    monkeypatch.setenv("HAYSTACK_TELEMETRY_ENABLED", "False")
    from haystack import Document
    from haystack_integrations.components.embedders.huggingface_api import (
        HuggingFaceTEISparseDocumentEmbedder,
        HuggingFaceTEISparseTextEmbedder,
    )

    expected = native_sparse(live_server, TEXTS)
    text_embedder = HuggingFaceTEISparseTextEmbedder(api_base_url=f"{live_server}/tei", token=None)
    one = text_embedder.run(TEXTS[0])["sparse_embedding"]
    assert_same_sparse(one.indices, one.values, expected[0])
    documents = HuggingFaceTEISparseDocumentEmbedder(api_base_url=f"{live_server}/tei", token=None, batch_size=2)
    embedded = documents.run([Document(content=t) for t in TEXTS])["documents"]
    for document, want in zip(embedded, expected, strict=True):
        assert_same_sparse(document.sparse_embedding.indices, document.sparse_embedding.values, want)
    text_embedder.close()
    documents.close()


def test_long_inputs_are_cut_from_the_side_asked(live_server):
    long_text = "start " + "filler words here " * 200 + " the very end"
    with httpx.Client(base_url=f"{live_server}/tei", timeout=60) as tei:
        right = tei.post("/embed", json={"inputs": long_text, "truncation_direction": "Right"}).json()[0]
        left = tei.post("/embed", json={"inputs": long_text, "truncation_direction": "Left"}).json()[0]
        refused = tei.post("/embed", json={"inputs": long_text, "truncate": False})
    assert float(np.dot(right, left)) < 0.999, "left and right cuts keep different tokens"
    assert refused.status_code == 422 and refused.json()["error_type"] == "Validation"
    assert_same([right], native_vectors(live_server, [long_text]))  # the native API cuts on the right


@pytest.mark.parametrize("body,status,kind", [
    ({"inputs": []}, 400, "Empty"),
    ({"inputs": ["ok", ""]}, 400, "Empty"),
    ({"inputs": [[101, 7592]]}, 422, "Validation"),
    ({"inputs": "x", "prompt_name": "no-such-prompt"}, 422, "Validation"),
    ({"inputs": "x", "dimensions": 0}, 422, "Validation"),
    ({"inputs": "x", "truncation_direction": "Middle"}, 422, "Validation"),
])
def test_tei_errors_are_teis(live_server, body, status, kind):
    response = httpx.post(f"{live_server}/tei/embed", json=body)
    assert response.status_code == status, response.text
    tei_valid("ErrorResponse", response.json())
    assert response.json()["error_type"] == kind


# --- metrics -----------------------------------------------------------------------------------------
def _samples(live_server: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{live_server}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_parse_and_move_with_traffic(live_server):
    before = _samples(live_server)
    unique = [f"metrics probe {os.getpid()} {i}" for i in range(5)]
    assert httpx.post(f"{live_server}/embed", json={"inputs": unique}).status_code == 200
    assert httpx.post(f"{live_server}/embed", json={"inputs": unique}).status_code == 200  # cached
    assert httpx.post(f"{live_server}/embed", json={"inputs": []}).status_code == 422
    after = _samples(live_server)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("embeddings_requests_total", route="/embed", method="POST", status="200") == 2
    assert moved("embeddings_requests_total", route="/embed", method="POST", status="422") == 1
    assert moved("te_embed_count_total") >= 5
    assert moved("embeddings_cache_hits_total") >= 5
    assert moved("te_batch_next_size_count") >= 1
    assert moved("te_request_input_length_count") >= 5
    assert ("te_queue_size", ()) in after
    assert after[("embeddings_backend_info", (("backend", "local"), ("model", "sentence-transformers/all-MiniLM-L6-v2"),
                                              ("runtime", "onnx-fp32")))] == 1


def test_store_operations_are_counted(live_server):
    before = _samples(live_server)
    coll = f"metrics_{os.getpid()}"
    httpx.post(f"{live_server}/store/add", json={"collection": coll, "texts": ["a", "b"]})
    httpx.post(f"{live_server}/store/search", json={"collection": coll, "query": "a"})
    httpx.post(f"{live_server}/store/drop", json={"collection": coll})
    after = _samples(live_server)
    for op in ("upsert", "search", "drop"):
        key = ("embeddings_store_operations_total", (("op", op), ("status", "ok")))
        assert after.get(key, 0) - before.get(key, 0) == 1, op


# --- the OpenAPI document ------------------------------------------------------------------------------
def test_openapi_document_is_valid_complete_and_committed(live_server):
    from openapi_spec_validator import validate

    import my_embeddings
    from chutes_embeddings.http.openapi import ServedModel, build_openapi

    built = build_openapi(my_embeddings.ROUTES)
    validate(built)
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == built, (
        "docs/openapi.json is stale: python -m chutes_embeddings.tools.openapi_doc > docs/openapi.json"
    )
    served = httpx.get(f"{live_server}/openapi").json()  # the same, with the loaded model's bounds
    prompts = tuple(httpx.get(f"{live_server}/info").json()["prompts"])  # sentence-transformers' (empty) ones
    assert served == build_openapi(my_embeddings.ROUTES, served=ServedModel(384, 30522, prompts, 127))
    embed_dimensions = served["components"]["schemas"]["EmbedRequest"]["properties"]["dimensions"]
    assert {"type": "integer", "minimum": 1, "maximum": 384} in embed_dimensions["anyOf"]
    declared = {(r.path, r.method.lower()) for r in my_embeddings.ROUTES.routes}
    assert declared == {(p, m) for p, ops in built["paths"].items() for m in ops}
    embed = built["paths"]["/v1/embeddings"]["post"]
    assert embed["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIEmbeddingsRequest"}
    assert embed["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
