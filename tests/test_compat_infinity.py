"""Infinity's API under /infinity, litellm's ``infinity/`` and ``hosted_vllm/`` providers, and the
routes clients call that were missing (``models.retrieve``, TEI's ``/decode`` and its root route
with a similarity body), against a live server with the real client libraries."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from tests.test_compat import TEXTS, assert_same, native_vectors

QUERY = "a cat on a mat"
DOCS = ["Stock markets fell sharply.", "The cat sat on the mat.", "A recipe for sourdough bread"]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


# --- Infinity's own client ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def infinity(live_server):
    from infinity_client import Client

    return Client(base_url=f"{live_server}/infinity", timeout=60, raise_on_unexpected_status=True)


def test_infinity_client_embeddings_equal_the_native_vectors(infinity, live_server):
    from infinity_client.api.default import embeddings
    from infinity_client.models import OpenAIEmbeddingInputText

    answer = embeddings.sync(client=infinity, body=OpenAIEmbeddingInputText(input_=TEXTS, model="any"))
    assert [d.index for d in answer.data] == [0, 1, 2] and answer.model == MODEL
    assert answer.usage.prompt_tokens > 0 and str(answer.id).startswith("infinity-") and answer.created > 0
    assert_same([d.embedding for d in answer.data], native_vectors(live_server, TEXTS))


def test_infinity_client_rerank_returns_documents_as_strings(infinity, live_server):
    from infinity_client.api.default import rerank
    from infinity_client.models import RerankInput

    answer = rerank.sync(client=infinity, body=RerankInput(query=QUERY, documents=DOCS, return_documents=True,
                                                           top_n=2))
    assert answer.results[0].index == 1 and len(answer.results) == 2 and answer.results[0].document == DOCS[1]
    native = httpx.post(f"{live_server}/rerank", json={"query": QUERY, "texts": DOCS}, timeout=60).json()
    assert [r.index for r in answer.results] == [r["index"] for r in native["results"][:2]]
    raw = httpx.post(f"{live_server}/infinity/rerank", json={"query": QUERY, "documents": DOCS, "raw_scores": True},
                     timeout=60).json()
    assert "document" not in raw["results"][0] and raw["object"] == "rerank"
    assert -1.0 <= raw["results"][-1]["relevance_score"] <= raw["results"][0]["relevance_score"] <= 1.0


def test_infinity_client_lists_the_models(infinity):
    from infinity_client.api.default import models

    answer = models.sync(client=infinity)
    assert answer.data[0].id == MODEL and "embed" in answer.data[0].capabilities
    assert "queue_fraction" in answer.data[0].stats.additional_properties


def test_infinity_base64_and_dimensions(live_server):
    body = httpx.post(f"{live_server}/infinity/embeddings", json={"input": TEXTS[0], "encoding_format": "base64",
                                                                   "dimensions": 64}, timeout=60).json()
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (64,)
    full = httpx.post(f"{live_server}/infinity/embeddings", json={"input": TEXTS[0], "dimensions": 0},
                      timeout=60).json()
    assert len(full["data"][0]["embedding"]) == 384


@pytest.mark.parametrize(("path", "body", "status", "param"), [
    ("/infinity/embeddings", {"input": []}, 422, "input"),
    ("/infinity/embeddings", {"input": "hi", "dimensions": 9999}, 422, "dimensions"),
    ("/infinity/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n"),
    ("/infinity/nothing-here", {"input": "hi"}, 404, "path"),
])
def test_infinity_errors_are_infinitys(live_server, path, body, status, param):
    answer = httpx.post(f"{live_server}{path}", json=body, timeout=60)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == status and error["param"] == param and error["message"]


# --- litellm --------------------------------------------------------------------------------------
@pytest.fixture()
def litellm(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # its bundled price list: no fetch at import
    import litellm

    monkeypatch.setattr(litellm, "telemetry", False, raising=False)
    return litellm


def test_litellm_infinity_provider_embeds_and_reranks(litellm, live_server):
    base = f"{live_server}/infinity"
    answer = litellm.embedding(model=f"infinity/{MODEL}", input=TEXTS, api_base=base, api_key="unused")
    assert_same([d["embedding"] for d in answer.data], native_vectors(live_server, TEXTS))
    ranked = litellm.rerank(model=f"infinity/{MODEL}", query=QUERY, documents=DOCS, top_n=2, return_documents=True,
                            api_base=base, api_key="unused")
    assert ranked.results[0]["index"] == 1 and ranked.results[0]["document"]["text"] == DOCS[1]
    assert len(ranked.results) == 2


def test_litellm_hosted_vllm_provider_embeds_and_reranks(litellm, live_server):
    base = f"{live_server}/v1"
    answer = litellm.embedding(model=f"hosted_vllm/{MODEL}", input=TEXTS, api_base=base, api_key="unused")
    assert_same([d["embedding"] for d in answer.data], native_vectors(live_server, TEXTS))
    ranked = litellm.rerank(model=f"hosted_vllm/{MODEL}", query=QUERY, documents=DOCS, top_n=2,
                            return_documents=True, api_base=base, api_key="unused")
    assert ranked.results[0]["index"] == 1 and ranked.results[0]["document"]["text"] == DOCS[1]


# --- routes clients call that were missing --------------------------------------------------------
def test_openai_models_retrieve(live_server):
    with openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0) as client:
        assert client.models.retrieve(MODEL).id == MODEL
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve("text-embedding-3-small")
    assert "text-embedding-3-small" in caught.value.message and caught.value.body["param"] == "model"


def test_tei_decode_inverts_tokenize(live_server):
    with httpx.Client(base_url=f"{live_server}/tei", timeout=60) as tei:
        spans = tei.post("/tokenize", json={"inputs": ["Hello world", "The cat sat."]}).json()
        ids = [[t["id"] for t in row] for row in spans]
        assert tei.post("/decode", json={"ids": ids}).json() == ["hello world", "the cat sat."]
        kept = tei.post("/decode", json={"ids": ids[0], "skip_special_tokens": False}).json()
        assert kept == ["[CLS] hello world [SEP]"]
        refused = tei.post("/decode", json={"ids": [101, 10**9]})
    assert refused.status_code == 422 and refused.json()["error_type"] == "Validation"
    assert "ids[1]" in refused.json()["error"]


def test_huggingface_hub_sentence_similarity_against_tei_root(live_server, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # loopback only
    client = InferenceClient(model=f"{live_server}/tei")
    scores = client.sentence_similarity("a cat sat on the mat", ["stock markets fell", "a kitten on a rug"])
    assert len(scores) == 2 and scores[1] > scores[0]
    assert np.asarray(client.feature_extraction("a cat sat on the mat")).shape[-1] == 384
