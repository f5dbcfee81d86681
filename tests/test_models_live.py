"""Two models served side by side by the session's live server (``conftest.live_server``): the bundled
all-MiniLM-L6-v2 (the default) and its CLS-pooled copy (``helpers.cls_model_folder``, served as
``minilm-cls``), each picked per request by the real client libraries of every dialect, each equal
to its own ``SentenceTransformer.encode``, and their vectors different."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.helpers import CLS_MODEL_NAME
from tests.test_compat import TEXTS, assert_same

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def reference(cls_model_path: str) -> Any:
    """``encode(texts)`` of each served model by sentence-transformers itself, normalised."""
    from sentence_transformers import SentenceTransformer

    from chutes_embeddings.settings import default_model

    models = {MODEL: SentenceTransformer(default_model(), device="cpu"),
              CLS_MODEL_NAME: SentenceTransformer(cls_model_path, device="cpu")}
    return lambda name, texts: models[name].encode(texts, normalize_embeddings=True)


def test_the_two_models_differ_and_each_equals_its_own_sentence_transformer(live_server, reference):
    with openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0) as client:
        listed = [(m.id, m.kind, m.default) for m in client.models.list()]  # type: ignore[attr-defined]
        assert listed[:2] == [(MODEL, "embedder", True), (CLS_MODEL_NAME, "embedder", False)]
        assert [kind for _, kind, _ in listed[2:]] == ["sparse"]
        vectors = {}
        for name in (MODEL, CLS_MODEL_NAME):
            answer = client.embeddings.create(model=name, input=TEXTS)
            assert answer.model == name
            vectors[name] = [d.embedding for d in answer.data]
            assert_same(vectors[name], reference(name, TEXTS))
    a, b = np.asarray(vectors[MODEL]), np.asarray(vectors[CLS_MODEL_NAME])
    assert float(((a * b).sum(-1)).max()) < 0.99, "the two models' vectors differ"


def test_each_dialects_client_picks_the_model_it_names(live_server, reference, monkeypatch):
    import cohere
    from huggingface_hub import InferenceClient, constants
    from infinity_client import Client
    from infinity_client.api.default import embeddings
    from infinity_client.models import OpenAIEmbeddingInputText

    want = reference(CLS_MODEL_NAME, TEXTS)
    co = cohere.ClientV2(api_key="unused", base_url=live_server)
    answer = co.embed(model=CLS_MODEL_NAME, texts=TEXTS, input_type="search_document", embedding_types=["float"])
    assert_same(answer.embeddings.float_, want)
    infinity = Client(base_url=f"{live_server}/infinity", timeout=60, raise_on_unexpected_status=True)
    answer = embeddings.sync(client=infinity, body=OpenAIEmbeddingInputText(input_=TEXTS, model=CLS_MODEL_NAME))
    assert answer.model == CLS_MODEL_NAME
    assert_same([d.embedding for d in answer.data], want)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # loopback only
    assert_same(InferenceClient(model=f"{live_server}/tei/{CLS_MODEL_NAME}").feature_extraction(TEXTS), want)
    assert_same(InferenceClient(model=f"{live_server}/tei").feature_extraction(TEXTS), reference(MODEL, TEXTS))
    native = httpx.post(f"{live_server}/embed", json={"inputs": TEXTS, "model": CLS_MODEL_NAME}, timeout=60).json()
    assert native["model"] == CLS_MODEL_NAME
    assert_same(native["embeddings"], want)
    # no cross-encoder here: a rerank naming an embedder is scored by that embedder's cosine (Jina's shape)
    jina = httpx.post(f"{live_server}/v1/rerank", json={"model": CLS_MODEL_NAME, "query": "a cat on a mat",
                                                        "documents": ["stocks fell", "The cat sat on the mat."]},
                      timeout=60).json()
    assert jina["model"] == CLS_MODEL_NAME and jina["results"][0]["index"] == 1
    info = httpx.get(f"{live_server}/tei/{CLS_MODEL_NAME}/info", timeout=60).json()
    assert info["model_id"] == CLS_MODEL_NAME and info["model_type"]["embedding"]["pooling"] == "cls"


def test_the_client_and_the_adapters_take_model(live_server, reference):
    from chutes_embeddings.client import EmbeddingsClient
    from chutes_embeddings.integrations.langchain import ChutesEmbeddings
    from chutes_embeddings.integrations.llama_index import ChutesEmbedding

    want = reference(CLS_MODEL_NAME, TEXTS)
    with EmbeddingsClient(live_server, model=CLS_MODEL_NAME, max_retries=0) as client:
        assert_same(client.embed(TEXTS)["embeddings"], want)
        assert_same(client.embed_batch(TEXTS), want)
    langchain = ChutesEmbeddings(live_server, model=CLS_MODEL_NAME)
    assert langchain.model == CLS_MODEL_NAME
    assert_same(langchain.embed_documents(TEXTS), want)
    llama = ChutesEmbedding(live_server, model=CLS_MODEL_NAME)
    assert llama.model_name == CLS_MODEL_NAME
    assert_same(llama.get_text_embedding_batch(TEXTS), want)


def test_a_model_of_another_kind_is_refused_by_name(live_server):
    with openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(model="splade-tiny", input=TEXTS)  # the sparse model's name
    assert "sparse" in refused.value.message and MODEL in refused.value.message
    assert refused.value.body["param"] == "model"
