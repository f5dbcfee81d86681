"""Cohere's embed API (``/v2/embed``, ``/v1/embed``) against a live server, driven by the real
client libraries: ``cohere.ClientV2`` and ``cohere.Client``, LangChain's ``CohereEmbeddings``
(langchain-cohere) and Haystack's ``CohereTextEmbedder`` (cohere-haystack). Float vectors equal
the native ``/embed`` vectors; the other types equal sentence-transformers' ``quantize_embeddings``
of those floats with the service's documented ranges (``engine/quantize.py``)."""

from __future__ import annotations

import base64

import cohere
import numpy as np
import pytest

from chutes_embeddings.engine.quantize import int8_ranges
from tests.test_compat import TEXTS, assert_same, native_vectors

TYPES = ["float", "int8", "uint8", "binary", "ubinary", "base64"]


def st_types(floats: np.ndarray) -> dict[str, list]:
    """What each integer type must be: sentence-transformers' own quantisation of ``floats``."""
    ranges = int8_ranges(floats.shape[1])
    from sentence_transformers.util.quantization import quantize_embeddings  # torch: not in the fast layer

    return {kind: quantize_embeddings(floats, kind, ranges=ranges).tolist()
            for kind in ("int8", "uint8", "binary", "ubinary")}


@pytest.fixture(scope="module")
def co(live_server):
    return cohere.ClientV2(api_key="not-checked-locally", base_url=live_server)


def test_client_v2_embed_every_type_equals_the_native_vectors_quantised(co, live_server):
    answer = co.embed(model="embed-v4.0", texts=TEXTS, input_type="search_document", embedding_types=TYPES)
    ref = native_vectors(live_server, TEXTS)
    floats = np.asarray(answer.embeddings.float_, dtype=np.float32)
    assert_same(floats, ref)
    for kind, expected in st_types(floats).items():
        assert getattr(answer.embeddings, kind) == expected, kind
    decoded = np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in answer.embeddings.base64])
    assert np.array_equal(decoded, floats)
    assert answer.texts == TEXTS and answer.response_type == "embeddings_by_type"
    assert answer.meta.api_version.version == "2" and answer.meta.billed_units.input_tokens > 0


def test_client_v2_output_dimension_inputs_and_truncate(co, live_server):
    short = co.embed(model="m", texts=TEXTS[:1], input_type="search_query", output_dimension=128,
                     embedding_types=["float", "int8"])
    full = native_vectors(live_server, TEXTS[:1])[0]
    prefix = np.asarray(short.embeddings.float_, dtype=np.float32)
    assert prefix.shape == (1, 128)
    assert_same(prefix[0], full[:128] / np.linalg.norm(full[:128]))
    assert short.embeddings.int8 == st_types(prefix)["int8"]
    parts = co.embed(model="m", input_type="classification",
                     inputs=[{"content": [{"type": "text", "text": TEXTS[0]}]}], embedding_types=["float"])
    assert_same(parts.embeddings.float_, native_vectors(live_server, TEXTS[:1]))
    long_text = " ".join(["word"] * 600)  # over the model's 256 tokens
    with pytest.raises(cohere.core.ApiError) as err:
        co.embed(model="m", texts=[TEXTS[0], long_text], input_type="search_query", truncate="NONE")
    assert err.value.status_code == 400 and err.value.body["field"] == "texts[1]"
    assert co.embed(model="m", texts=[long_text], input_type="search_query", truncate="START").embeddings.float_
    cut = co.embed(model="m", texts=[TEXTS[0]], input_type="search_query", max_tokens=3)  # the model's tokens
    assert_same(cut.embeddings.float_, native_vectors(live_server, ["The cat sat"]))
    tail = co.embed(model="m", texts=[TEXTS[0]], input_type="search_query", max_tokens=3, truncate="START")
    assert_same(tail.embeddings.float_, native_vectors(live_server, ["the mat."]))


@pytest.mark.parametrize("kwargs,field", [
    ({"embedding_types": ["int4"]}, "embedding_types[0]"),
    ({"input_type": "search_everything"}, "input_type"),
    ({"output_dimension": 385}, "output_dimension"),
    ({"texts": ["a"] * 97}, "texts"),
])
def test_client_v2_bad_input_is_a_400_naming_the_field(co, kwargs, field):
    with pytest.raises(cohere.core.ApiError) as err:
        co.embed(**{"model": "m", "texts": ["a"], "input_type": "search_query", **kwargs})
    assert err.value.status_code == 400 and err.value.body["field"] == field and err.value.body["message"]


def test_client_v1_embed_floats_and_types(live_server):
    client = cohere.Client(api_key="not-checked-locally", base_url=live_server)
    texts = [f"sentence number {i} about cats" for i in range(100)]  # the SDK sends 96, then 4
    floats = client.embed(texts=texts, model="embed-english-v3.0", input_type="search_document")
    assert floats.response_type == "embeddings_floats" and len(floats.embeddings) == 100
    assert_same(floats.embeddings, native_vectors(live_server, texts))
    typed = client.embed(texts=TEXTS, model="m", input_type="clustering", embedding_types=["float", "binary"])
    assert typed.response_type == "embeddings_by_type"
    assert typed.embeddings.binary == st_types(np.asarray(typed.embeddings.float_, np.float32))["binary"]
    assert len(typed.embeddings.binary[0]) == 384 // 8


def test_langchain_cohere_embeddings(live_server):
    from langchain_cohere import CohereEmbeddings

    emb = CohereEmbeddings(model="embed-english-v3.0", cohere_api_key="not-checked-locally", base_url=live_server)
    ref = native_vectors(live_server, TEXTS)
    assert_same(emb.embed_documents(TEXTS), ref)
    assert_same(emb.embed_query(TEXTS[0]), ref[0])
    ints = CohereEmbeddings(model="m", cohere_api_key="x", base_url=live_server, embedding_types=["int8"])
    assert ints.embed_documents(TEXTS[:1]) == [[float(x) for x in st_types(ref[:1])["int8"][0]]]


def test_haystack_cohere_text_embedder(live_server):
    from haystack.utils import Secret
    from haystack_integrations.components.embedders.cohere import CohereTextEmbedder
    from haystack_integrations.components.embedders.cohere.embedding_types import EmbeddingTypes

    embedder = CohereTextEmbedder(api_key=Secret.from_token("not-checked-locally"), api_base_url=live_server)
    answer = embedder.run(text=TEXTS[0])
    ref = native_vectors(live_server, TEXTS[:1])
    assert_same(answer["embedding"], ref[0])
    assert answer["meta"]["billed_units"]["input_tokens"] > 0
    ubinary = CohereTextEmbedder(api_key=Secret.from_token("x"), api_base_url=live_server,
                                 embedding_type=EmbeddingTypes.UBINARY).run(text=TEXTS[0])
    assert ubinary["embedding"] == st_types(ref)["ubinary"][0]
