"""The learned-sparse (SPLADE) encoder: ``Engine.embed_sparse``, ``/embed/sparse`` and TEI's
``/tei/embed_sparse``.

Over fakes (unit, http): the vectors are the model's weights of the engine's token ids (indices
ascending, values positive), texts from concurrent callers share forward passes, cuts follow
``truncate`` and its direction, each dialect answers in its own shape, and a deployment without a
sparse model answers 424 naming ``EMBEDDINGS_SPARSE_MODEL``. With the SPLADE test model (model):
the local service equals ``SparseEncoder.encode``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import schemas as S
from chutes_embeddings.engine.core import NO_SPARSE_MODEL
from chutes_embeddings.engine.results import SPARSE
from chutes_embeddings.errors import InvalidInput, NotConfigured, Overloaded, naming
from chutes_embeddings.http.dialects import native, tei
from chutes_embeddings.settings import Settings
from tests.fakes import FakeSparseEncoder, fake_engine
from tests.helpers import wait_until

TEXTS = ["The cat sat on the mat.", "A cat and a mat", "Quarterly earnings beat expectations", "x"]
LONG = " ".join(f"word{i}" for i in range(60))  # over the fake encoder's 32 tokens


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=str(tmp_path), cache_size=0)


@pytest.fixture
def encoder():
    return FakeSparseEncoder()


@pytest.fixture
def sparse_engine(settings, encoder):
    engine = fake_engine(settings, sparse=encoder)
    yield engine
    engine.close()


def _expected(encoder: FakeSparseEncoder, text: str, direction: str = "right") -> tuple[list[int], list[float]]:
    ids = encoder.tokenizer.tokenize([text], direction)[0][0]
    weights = encoder.weights(ids)
    return weights.indices.tolist(), weights.values.tolist()


# --- the engine (unit) ----------------------------------------------------------------------------
def test_vectors_are_the_models_weights_of_the_engines_ids_in_input_order(sparse_engine, encoder):
    encoded = sparse_engine.embed_sparse(TEXTS)
    assert len(encoded.vectors) == len(TEXTS)
    for text, vector in zip(TEXTS, encoded.vectors):
        indices, values = _expected(encoder, text)
        assert list(vector.indices) == indices and np.allclose(vector.values, values)
        assert list(vector.indices) == sorted(set(vector.indices)) and min(vector.values) > 0
    assert encoded.token_counts == [len(encoder.tokenizer.tokenize([t])[0][0]) for t in TEXTS]
    assert encoded.tokens == sum(encoded.token_counts)
    assert encoded.model.model == "fake/hashed-splade" and encoded.model.kind == "sparse-encoder"
    # texts that share words share indices (what a sparse leg scores by)
    cat, also_cat, earnings = (set(v.indices) for v in encoded.vectors[:3])
    assert len(cat & also_cat) > len(cat & earnings)
    assert sparse_engine.sparse_model_id == "fake/hashed-splade" and sparse_engine.sparse_vocab_size == 30_522


def test_truncation_cuts_from_the_side_asked_and_refuses_when_told_not_to(sparse_engine, encoder):
    right = sparse_engine.embed_sparse([LONG]).vectors[0]
    left = sparse_engine.embed_sparse([LONG], truncation_direction="left").vectors[0]
    assert list(right.indices) == _expected(encoder, LONG)[0]
    assert list(left.indices) == _expected(encoder, LONG, "left")[0] and left != right
    assert sparse_engine.embed_sparse([LONG]).token_counts == [32]  # as encoded: cut at the limit
    with pytest.raises(InvalidInput) as refused, naming("inputs"):
        sparse_engine.embed_sparse(["short", LONG], truncate=False)
    assert refused.value.field == "inputs[1]" and refused.value.limit == 32 and refused.value.extra["tokens"] == 62
    with pytest.raises(InvalidInput) as bad:
        sparse_engine.embed_sparse(["a"], truncation_direction="middle")
    assert bad.value.field == "truncation_direction"


def test_concurrent_callers_share_forward_passes_and_a_full_queue_refuses_at_once(tmp_path):
    release, entered = threading.Event(), threading.Event()

    def hold(work):
        entered.set()
        release.wait(10)

    encoder = FakeSparseEncoder(on_encode=hold)
    engine = fake_engine(Settings(data_dir=str(tmp_path), max_queue=8), sparse=encoder)
    try:
        first = threading.Thread(target=engine.embed_sparse, args=(["held"],))
        first.start()
        assert entered.wait(10)
        waiting = [threading.Thread(target=engine.embed_sparse, args=([f"text {i}"],)) for i in range(4)]
        for t in waiting:
            t.start()
        wait_until(lambda: engine.sparse.batcher.stats().queue_depth, 10, until=lambda n: n == 4)
        with pytest.raises(Overloaded):
            engine.embed_sparse([f"more {i}" for i in range(5)])  # 4 waiting + 5 > max_queue
        release.set()
        for t in [first, *waiting]:
            t.join(10)
        assert encoder.calls == [1, 4], "the four waiting texts shared one pass"
    finally:
        release.set()
        engine.close()


def test_without_a_sparse_model_it_is_not_configured_naming_the_setting(settings):
    engine = fake_engine(settings, sparse=False)
    try:
        assert engine.sparse_model_id is None and engine.sparse_vocab_size is None
        engine.check_admission([SPARSE])  # nothing queues: the verb answers
        with pytest.raises(NotConfigured) as missing:
            engine.embed_sparse(["a"])
        assert missing.value.extra["setting"] == NO_SPARSE_MODEL == "EMBEDDINGS_SPARSE_MODEL"
        assert NO_SPARSE_MODEL in missing.value.message
        status, body = native.render_error(missing.value)
        assert status == 424 and body["detail"]["error_type"] == "not_configured"
        assert body["detail"]["setting"] == "EMBEDDINGS_SPARSE_MODEL"
        assert tei.render_error(missing.value) == (424, {"error": missing.value.message, "error_type": "Backend"})
        assert engine.health().sparse is None and engine.info().sparse is None
    finally:
        engine.close()


def test_health_and_info_describe_the_sparse_encoder(sparse_engine):
    health, info = sparse_engine.health(), sparse_engine.info()
    assert health.status == "ok" and health.sparse is not None and health.sparse.backend == "local"
    assert info.sparse is not None and info.sparse.batching is not None
    assert info.sparse.batching.max_batch_tokens == Settings().sparse_max_batch_tokens


# --- the routes (http) ----------------------------------------------------------------------------
def test_native_embed_sparse_shape(fake_call, fake_app):
    status, body = fake_call("POST", "/embed/sparse", {"inputs": TEXTS[:2]})
    assert status == 200, body
    S.SparseEmbedResponse.model_validate(body)
    expected = fake_app.engine.embed_sparse(TEXTS[:2])
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert [d["indices"] for d in body["data"]] == [list(v.indices) for v in expected.vectors]
    assert np.allclose(body["data"][0]["values"], expected.vectors[0].values)
    assert body["model"] == "fake/hashed-splade" and body["vocab_size"] == 30_522
    assert body["usage"] == {"prompt_tokens": expected.tokens, "total_tokens": expected.tokens}
    status, one = fake_call("POST", "/embed/sparse", {"inputs": "a cat", "truncation_direction": "left"})
    assert status == 200 and len(one["data"]) == 1
    status, refused = fake_call("POST", "/embed/sparse", {"inputs": ["a", LONG], "truncate": False})
    assert status == 422 and refused["detail"]["field"] == "inputs[1]" and refused["detail"]["limit"] == 32
    status, empty = fake_call("POST", "/embed/sparse", {"inputs": []})
    assert status == 422 and empty["detail"]["field"] == "inputs"


def test_tei_embed_sparse_shape_and_errors(fake_call, fake_app):
    status, body = fake_call("POST", "/tei/embed_sparse", {"inputs": TEXTS[:2], "truncation_direction": "Left"})
    assert status == 200, body
    S.TeiEmbedSparseResponse.model_validate(body)
    expected = fake_app.engine.embed_sparse(TEXTS[:2], truncation_direction="left").vectors
    assert [[p["index"] for p in row] for row in body] == [list(v.indices) for v in expected]
    assert all(set(p) == {"index", "value"} and p["value"] > 0 for row in body for p in row)
    status, single = fake_call("POST", "/tei/embed_sparse", {"inputs": "a cat"})
    assert status == 200 and len(single) == 1
    for request, code, kind in [({"inputs": []}, 400, "Empty"),
                                ({"inputs": [LONG], "truncate": False}, 422, "Validation"),
                                ({"inputs": "a", "prompt_name": "query"}, 422, "Validation")]:
        status, error = fake_call("POST", "/tei/embed_sparse", request)
        assert (status, error["error_type"]) == (code, kind), error
        S.TeiError.model_validate(error)


def test_health_info_and_metrics_report_the_sparse_model(fake_call, fake_client):
    status, health = fake_call("GET", "/health")
    assert status == 200 and health["sparse"]["model"] == "fake/hashed-splade"
    assert health["sparse"]["kind"] == "sparse-encoder" and health["sparse"]["queue"]["depth"] == 0
    S.HealthResponse.model_validate(health)
    status, info = fake_call("GET", "/info")
    assert status == 200 and info["sparse"]["vocab_size"] == 30_522 and info["sparse"]["batching"]["texts_run"] >= 0
    S.InfoResponse.model_validate(info)
    from prometheus_client.parser import text_string_to_metric_families

    fake_call("POST", "/embed/sparse", {"inputs": ["counted"]})
    samples = {s.name: s for f in text_string_to_metric_families(fake_client.get("/metrics").text) for s in f.samples}
    assert samples["embeddings_sparse_info"].labels == {"backend": "local", "model": "fake/hashed-splade"}
    assert samples["embeddings_sparse_texts_total"].value >= 1 and "embeddings_sparse_queue_size" in samples


# --- the SPLADE test model (model) ----------------------------------------------------------------
MODEL_TEXTS = ["The capital of France is Paris.", "what is sparse retrieval?", "Ünïcödé 🚀 and numbers 12345",
               " ".join(f"token{i}" for i in range(400))]  # over the model's 512 tokens: cut at its end


def test_the_test_model_loads_as_splade(sparse_encoder):
    names = [type(m).__name__ for m in sparse_encoder.se]
    assert names == ["Transformer", "SpladePooling"] and sparse_encoder.se[0].transformer_task == "fill-mask"
    assert type(sparse_encoder.se[0].auto_model).__name__ == "BertForMaskedLM"
    assert (sparse_encoder.se[1].pooling_strategy, sparse_encoder.se[1].activation_function) == ("max", "relu")
    assert sparse_encoder.dimension == 30_522 and sparse_encoder.max_input_tokens == 512


def test_local_service_equals_sparse_encoder_encode(sparse_encoder):
    from chutes_embeddings.backends.protocols import SparseEncoder, SparseWork
    from chutes_embeddings.backends.sparse import LocalSparseEncoder

    reference = sparse_encoder.se.encode(MODEL_TEXTS, convert_to_tensor=True).to_dense().numpy()
    ids, full = sparse_encoder.tokenize(MODEL_TEXTS)
    assert full[-1] > 512 and len(ids[-1]) == 512
    local = LocalSparseEncoder(sparse_encoder)
    assert isinstance(local, SparseEncoder) and local.vocab_size == 30_522
    got = local.encode([SparseWork(t, i, "right") for t, i in zip(MODEL_TEXTS, ids)])
    for row, weights in zip(reference, got):
        np.testing.assert_array_equal(weights.indices, np.flatnonzero(row))
        np.testing.assert_allclose(weights.values, row[weights.indices], atol=1e-5)
    decoded = sparse_encoder.se.decode(sparse_encoder.se.encode(MODEL_TEXTS[:1], convert_to_tensor=True)[0], top_k=3)
    assert {word for word, _ in decoded} == {"capital", "paris", "france"}  # a meaningful model, not noise


def test_engine_with_the_sparse_model_and_a_model_that_is_not_splade(engine, sparse_encoder, sparse_model_path,
                                                                      tmp_path):
    from chutes_embeddings.engine.startup import start_engine

    base = {"model": engine.embedder.settings.model, "data_dir": str(tmp_path), "tei_binary": "", "cache_size": 0,
            "backend": "torch"}
    served = start_engine(Settings(sparse_model=sparse_model_path, **base), model=engine.embedder.tokenizer,
                          sparse_model=sparse_encoder)
    try:
        encoded = served.embed_sparse(MODEL_TEXTS[:2])
        reference = sparse_encoder.se.encode(MODEL_TEXTS[:2], convert_to_tensor=True).to_dense().numpy()
        for row, vector in zip(reference, encoded.vectors):
            assert list(vector.indices) == np.flatnonzero(row).tolist()
        assert served.sparse_model_id == sparse_model_path and served.sparse_vocab_size == 30_522
    finally:
        served.close()
    # an embedding model is no SPLADE model: logged, and the routes answer not_configured
    unserved = start_engine(Settings(sparse_model=engine.embedder.settings.model, **base),
                            model=engine.embedder.tokenizer)
    try:
        assert unserved.sparse is None
        with pytest.raises(NotConfigured):
            unserved.embed_sparse(["a"])
    finally:
        unserved.close()


def test_the_chute_without_a_sparse_model_answers_424_in_each_dialect(call):
    status, body = call("POST", "/embed/sparse", {"inputs": ["a"]})
    assert status == 424 and body["detail"]["setting"] == "EMBEDDINGS_SPARSE_MODEL"
    status, body = call("POST", "/tei/embed_sparse", {"inputs": ["a"]})
    assert status == 424 and body["error_type"] == "Backend" and "EMBEDDINGS_SPARSE_MODEL" in body["error"]
