"""Rerank with a cross-encoder: locally, through a reranker TEI (the stand-in), in every wire shape,
and as the second stage of search; and what /rerank does without one (the bi-encoder).

The cross-encoder is a tiny randomly initialised one-label BERT built by a fixture and loaded
through the real loading code; its scores must equal ``CrossEncoder(path).predict`` (Sigmoid, the
activation ``CrossEncoder`` gives a one-label model) within 1e-5.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from typing import Any

import httpx
import numpy as np
import pytest

import schemas as S
from chutes_embeddings.engine.reranking import BiEncoderReranker
from chutes_embeddings.engine.results import RerankOptions
from chutes_embeddings.engine.startup import start_engine
from chutes_embeddings.errors import InvalidInput, Overloaded, naming
from chutes_embeddings.http.dialects import native
from chutes_embeddings.settings import Settings
from tests.helpers import StandIn, free_port, running_server

torch = pytest.importorskip("torch")  # model tests: collected, and skipped, where torch is not installed

pytestmark = pytest.mark.system  # starts TEI stand-ins and servers

QUERY = "what is the capital of france"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany.",
    "Bananas are yellow and rich in potassium.",
    "The Eiffel Tower was finished in 1889.",
    "France borders Spain, Italy, Germany, Belgium and Switzerland.",
    "A recipe for sourdough bread needs flour, water and salt.",
]
LONG_DOC = "the history of the city in many words " * 120  # ~ 960 tokens: cut at 512 per pair


@pytest.fixture(scope="module")
def cross_encoder(tiny_reranker_path):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(tiny_reranker_path, device="cpu")


def predict(ce, query: str, docs: list[str], raw: bool = False) -> np.ndarray:
    kwargs = {"activation_fn": torch.nn.Identity()} if raw else {}
    return np.asarray(ce.predict([(query, d) for d in docs], **kwargs), dtype=np.float32)


@pytest.fixture(scope="module")
def rerank_engine(engine, tiny_reranker_path, tmp_path_factory):
    """An engine with the tiny cross-encoder served locally (the session's embedder reused)."""
    # the tiny model's pass takes well under a millisecond: without a window for company, concurrent
    # callers would rarely meet in one pass
    settings = Settings(model=engine.embedder.settings.model, rerank_model=tiny_reranker_path, tei_binary="",
                        data_dir=str(tmp_path_factory.mktemp("rerank-engine")), cache_size=0, batch_wait_ms=20)
    e = start_engine(settings, S.LIMITS, model=engine.embedder.tokenizer)
    yield e
    e.close()


# --- the engine, local cross-encoder ---------------------------------------------------------------------
def test_local_scores_equal_cross_encoder_predict(rerank_engine, cross_encoder):
    assert rerank_engine.info().reranker.runtime == "onnx-fp32", "auto on the CPU serves the ONNX export"
    docs = DOCS + [LONG_DOC]
    ranked = rerank_engine.rerank(QUERY, docs)
    np.testing.assert_allclose(ranked.activated(), predict(cross_encoder, QUERY, docs), atol=1e-5)
    np.testing.assert_allclose(ranked.logits, predict(cross_encoder, QUERY, docs, raw=True), atol=1e-5)
    np.testing.assert_allclose(ranked.relevance(), 1 / (1 + np.exp(-ranked.logits)), atol=1e-6)
    assert np.ptp(ranked.activated()) > 0.3, "the fixture must score pairs differently, or order proves nothing"
    assert ranked.reranker.kind == "cross-encoder" and ranked.reranker.activation == "Sigmoid"
    assert ranked.tokens == sum(min(512, n) for n in _pair_lengths(cross_encoder, QUERY, docs))


def _pair_lengths(ce, query, docs):
    return [len(ids) for ids in ce.tokenizer([query] * len(docs), docs)["input_ids"]]


def test_rerank_orders_best_first_and_cuts_to_top_k(rerank_engine, cross_encoder):
    ref = predict(cross_encoder, QUERY, DOCS)
    body = native.rerank(rerank_engine, S.RerankRequest(query=QUERY, texts=DOCS, top_k=3))
    assert [r["index"] for r in body["results"]] == list(np.argsort(-ref)[:3])
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]
    raw = native.rerank(rerank_engine, S.RerankRequest(query=QUERY, texts=DOCS, raw_scores=True))["results"]
    np.testing.assert_allclose(sorted(r["score"] for r in raw), sorted(predict(cross_encoder, QUERY, DOCS, raw=True)),
                               atol=1e-5)


def test_concurrent_callers_share_forward_passes_and_each_gets_its_own_scores(rerank_engine, cross_encoder):
    queries = [f"{QUERY} {i}" for i in range(16)]
    expected = {q: predict(cross_encoder, q, DOCS) for q in queries}
    before = rerank_engine.reranker.batcher.batches_run
    got: dict[str, np.ndarray] = {}

    def one(q: str) -> None:
        got[q] = rerank_engine.rerank(q, DOCS).activated()

    threads = [threading.Thread(target=one, args=(q,)) for q in queries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for q in queries:
        np.testing.assert_allclose(got[q], expected[q], atol=1e-5)
    assert rerank_engine.reranker.batcher.batches_run - before < len(queries), "callers should share passes"


def test_truncation_options(rerank_engine, cross_encoder):
    with pytest.raises(InvalidInput) as err, naming("texts"):
        rerank_engine.rerank(QUERY, [DOCS[0], LONG_DOC], RerankOptions(truncate=False))
    assert err.value.field == "texts[1]" and err.value.index == 1 and err.value.limit == 512
    right = rerank_engine.rerank(QUERY, [LONG_DOC]).logits[0]
    left = rerank_engine.rerank(QUERY, [LONG_DOC + " bananas"], RerankOptions(truncation_direction="left")).logits[0]
    assert right != pytest.approx(left)
    # max_tokens_per_doc cuts each document first: as predicting on the cut text
    cut = rerank_engine.rerank(QUERY, DOCS[:2], RerankOptions(max_tokens_per_doc=3)).activated()
    np.testing.assert_allclose(cut, predict(cross_encoder, QUERY, ["Paris is the", "Berlin is the"]), atol=1e-5)


def test_torch_runtime_and_a_full_rerank_queue_answers_429(engine, tiny_reranker_path, tmp_path, cross_encoder):
    settings = Settings(model=engine.embedder.settings.model, rerank_model=tiny_reranker_path, tei_binary="",
                        data_dir=str(tmp_path), cache_size=0, max_queue=4, backend="torch")
    e = start_engine(settings, S.LIMITS, model=engine.embedder.tokenizer)
    try:
        assert e.info().reranker.runtime == "torch-cpu"
        np.testing.assert_allclose(e.rerank(QUERY, DOCS[:4]).activated(), predict(cross_encoder, QUERY, DOCS[:4]),
                                   atol=1e-5)
        with pytest.raises(Overloaded) as err:
            e.rerank(QUERY, DOCS)
        assert "pairs are waiting" in str(err.value) or "queue holds 4" in str(err.value)
        assert e.rerank(QUERY, DOCS[:4]).activated().shape == (4,)
    finally:
        e.close()


def test_a_reranker_that_cannot_load_leaves_embeddings_up_and_says_so(engine, tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    two_labels = tmp_path / "two-labels"  # a classifier, but not a reranker (TEI refuses these too)
    tokenizer = AutoTokenizer.from_pretrained(engine.embedder.settings.model)
    BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64,
                                             num_labels=2)).save_pretrained(two_labels)
    tokenizer.save_pretrained(two_labels)
    for bad in (str(two_labels), "no-such-org/no-such-reranker"):
        settings = Settings(
            model=engine.embedder.settings.model, rerank_model=bad, tei_binary="", data_dir=str(tmp_path), cache_size=0
        )
        e = start_engine(settings, S.LIMITS, model=engine.embedder.tokenizer)
        try:
            assert isinstance(e.reranker, BiEncoderReranker) and e.info().reranker.kind == "bi-encoder"
            assert e.embed(["still embedding"]).vectors.shape == (1, 384)
        finally:
            e.close()


# --- through a reranker TEI (the stand-in), with the local cross-encoder behind it ---------------------------
@pytest.fixture
def tei_rerank_engine(engine, tiny_reranker_path, tmp_path):
    made = []

    def make(standin: StandIn):
        settings = Settings(model=engine.embedder.settings.model, rerank_model=tiny_reranker_path,
                            tei_binary=str(standin.binary), tei_port=free_port(), rerank_tei_port=free_port(),
                            tei_startup_timeout_s=90.0, data_dir=str(tmp_path), cache_size=0)
        e = start_engine(settings, S.LIMITS, model=engine.embedder.tokenizer)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def test_tei_served_scores_equal_cross_encoder_predict(tmp_path, tei_rerank_engine, cross_encoder):
    standin = StandIn(tmp_path)
    e = tei_rerank_engine(standin)
    reranker = e.reranker.backend
    assert reranker.serving_tei and e.reranker.describe().backend == "tei"
    docs = DOCS + [LONG_DOC]
    ranked = e.rerank(QUERY, docs)
    np.testing.assert_allclose(ranked.activated(), predict(cross_encoder, QUERY, docs), atol=1e-5)
    np.testing.assert_allclose(ranked.logits, predict(cross_encoder, QUERY, docs, raw=True), atol=1e-5)
    calls = standin.requests("/rerank")
    assert calls and all(c["status"] == 200 and c["raw_scores"] is True for c in calls)
    assert reranker.served["tei"] == len(docs) and reranker.served["local"] == 0
    # the embedder has its own TEI: two processes, two ports
    embedder = e.embedder.backend
    assert embedder.supervisor.pid != reranker.supervisor.pid and embedder.primary.base_url != reranker.primary.base_url
    assert e.health().status == "ok" and e.info().reranker.tei["healthy"] is True


def test_kill_9_of_the_reranker_tei_under_16_concurrent_callers_loses_nothing(tmp_path, tei_rerank_engine,
                                                                              cross_encoder):
    standin = StandIn(tmp_path)
    e = tei_rerank_engine(standin)
    backend = e.reranker.backend
    first_pid = backend.supervisor.pid
    expected = predict(cross_encoder, QUERY, DOCS)
    stop, failures, wrong = threading.Event(), [], []
    answered = [0]
    progress = threading.Condition()  # notified after every answer: the test waits on states, not windows

    def caller(k: int) -> None:
        while not stop.is_set():
            try:
                scores = e.rerank(QUERY, DOCS).activated()
                with progress:
                    answered[0] += 1
                    if not np.allclose(scores, expected, atol=1e-5):
                        wrong.append(scores)
                    progress.notify_all()
            except Exception as exc:  # recorded, and the test fails on any
                with progress:
                    failures.append(repr(exc))
                    progress.notify_all()

    def wait_until(state: Any, what: str, timeout_s: float = 90.0) -> None:
        with progress:
            assert progress.wait_for(state, timeout_s), f"not within {timeout_s:.0f} s: {what}"

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    wait_until(lambda: backend.served["tei"] >= 4 * len(DOCS), "the reranker's TEI serving the callers")
    served_before_kill = backend.served["tei"]
    os.kill(first_pid, signal.SIGKILL)
    wait_until(lambda: backend.served["local"] > 0, "an answer from the local cross-encoder after the kill")
    wait_until(lambda: backend.supervisor.pid != first_pid and backend.serving_tei, "the TEI restarted")
    tei_after_restart = backend.served["tei"]
    wait_until(lambda: backend.served["tei"] > tei_after_restart, "the restarted TEI serving again")
    stop.set()
    for t in threads:
        t.join(30)

    assert failures == [] and wrong == []
    assert answered[0] > 16 and served_before_kill > 0
    assert backend.served["local"] > 0, "nothing was answered by the local cross-encoder"
    assert backend.supervisor.restarts >= 1
    assert backend.served["tei"] > tei_after_restart, "the reranker's TEI was not serving again after its restart"
    assert e.embedder.backend.supervisor.restarts == 0, "the embedder's TEI is another process and was not touched"


# --- HTTP: a live server with the cross-encoder, driven by the real client libraries ------------------------
@pytest.fixture(scope="module")
def rerank_server(tmp_path_factory, tiny_reranker_path) -> str:
    with running_server(tmp_path_factory.mktemp("rerank-live"), {"EMBEDDINGS_RERANK_MODEL": tiny_reranker_path}) as url:
        yield url


def test_native_rerank_shape(rerank_server, cross_encoder, tiny_reranker_path):
    body = httpx.post(f"{rerank_server}/rerank", json={"query": QUERY, "texts": DOCS, "top_k": 2}).json()
    ref = predict(cross_encoder, QUERY, DOCS)
    assert [r["index"] for r in body["results"]] == list(np.argsort(-ref)[:2])
    assert body["results"][0]["score"] == pytest.approx(float(ref.max()), abs=1e-5)
    assert body["reranker"]["kind"] == "cross-encoder" and body["reranker"]["model"] == tiny_reranker_path
    info = httpx.get(f"{rerank_server}/info").json()
    assert info["reranker"]["kind"] == "cross-encoder" and info["limits"]["max_rerank_texts"] == S.MAX_RERANK_TEXTS
    assert httpx.get(f"{rerank_server}/health").json()["reranker"]["model"] == tiny_reranker_path
    from prometheus_client.parser import text_string_to_metric_families

    metrics = {s.name: s for f in text_string_to_metric_families(httpx.get(f"{rerank_server}/metrics").text)
               for s in f.samples}
    assert metrics["embeddings_reranker_info"].labels == {"kind": "cross-encoder", "backend": "local",
                                                          "model": tiny_reranker_path}
    assert metrics["embeddings_rerank_pairs_total"].value >= len(DOCS)


def test_tei_rerank_shape(rerank_server, cross_encoder):
    body = httpx.post(f"{rerank_server}/tei/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True}).json()
    ref = predict(cross_encoder, QUERY, DOCS)
    assert [r["index"] for r in body] == list(np.argsort(-ref)) and len(body) == len(DOCS)
    assert all(r["text"] == DOCS[r["index"]] for r in body)
    np.testing.assert_allclose([r["score"] for r in body], np.sort(ref)[::-1], atol=1e-5)
    raw = httpx.post(f"{rerank_server}/tei/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    np.testing.assert_allclose([r["score"] for r in raw], np.sort(predict(cross_encoder, QUERY, DOCS, raw=True))[::-1],
                               atol=1e-5)
    empty = httpx.post(f"{rerank_server}/tei/rerank", json={"query": QUERY, "texts": []})
    assert empty.status_code == 400 and empty.json()["error_type"] == "Empty"


def test_cohere_client_v2(rerank_server, cross_encoder):
    import cohere

    client = cohere.ClientV2(api_key="not-checked-locally", base_url=rerank_server)
    answer = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3)
    ref = 1 / (1 + np.exp(-predict(cross_encoder, QUERY, DOCS, raw=True)))
    assert [r.index for r in answer.results] == list(np.argsort(-ref)[:3])
    np.testing.assert_allclose([r.relevance_score for r in answer.results], np.sort(ref)[::-1][:3], atol=1e-5)
    assert answer.meta.tokens.input_tokens == sum(_pair_lengths(cross_encoder, QUERY, DOCS))
    with pytest.raises(cohere.core.ApiError) as err:  # bad input: Cohere's 400, naming the field
        client.rerank(model="m", query=QUERY, documents=[])
    assert err.value.status_code == 400 and err.value.body["field"] == "documents"


def test_cohere_v1_and_jina_shape(rerank_server, cross_encoder):
    docs = [{"text": d} for d in DOCS[:3]]
    body = httpx.post(f"{rerank_server}/v1/rerank", json={"model": "jina-reranker-v2", "query": QUERY,
                                                          "documents": docs, "return_documents": True}).json()
    ref = 1 / (1 + np.exp(-predict(cross_encoder, QUERY, DOCS[:3], raw=True)))
    assert [r["index"] for r in body["results"]] == list(np.argsort(-ref))
    assert [r["document"]["text"] for r in body["results"]] == [DOCS[i] for i in np.argsort(-ref)]
    assert body["usage"]["total_tokens"] == body["meta"]["tokens"]["input_tokens"] > 0
    bad = httpx.post(f"{rerank_server}/v1/rerank", json={"query": QUERY, "documents": ["ok", {"text": 3}]})
    assert bad.status_code == 400
    assert bad.json()["field"] == "documents[1].text" and bad.json()["detail"] == bad.json()["message"]
    too_many = httpx.post(f"{rerank_server}/v2/rerank", json={"model": "m", "query": QUERY,
                                                              "documents": ["d"] * (S.MAX_RERANK_TEXTS + 1)})
    assert too_many.status_code == 400 and too_many.json()["limit"] == S.MAX_RERANK_TEXTS


def test_langchain_cohere_rerank(rerank_server, cross_encoder):
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    rerank = CohereRerank(model="rerank-v3.5", cohere_api_key="x", base_url=rerank_server, top_n=2)
    out = rerank.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    ref = predict(cross_encoder, QUERY, DOCS)
    assert [d.page_content for d in out] == [DOCS[i] for i in np.argsort(-ref)[:2]]
    assert out[0].metadata["relevance_score"] == pytest.approx(float(ref.max()), abs=1e-5)


def test_llama_index_tei_and_jina_rerank_postprocessors(rerank_server, cross_encoder):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.jinaai_rerank import JinaRerank
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in DOCS]
    best = [DOCS[i] for i in np.argsort(-predict(cross_encoder, QUERY, DOCS))[:2]]
    tei = TextEmbeddingInference(base_url=f"{rerank_server}/tei", top_n=2)
    assert [n.node.get_content() for n in tei.postprocess_nodes(nodes, QueryBundle(QUERY))] == best
    jina = JinaRerank(api_key="x", base_url=f"{rerank_server}/v1", top_n=2)
    assert [n.node.get_content() for n in jina.postprocess_nodes(nodes, QueryBundle(QUERY))] == best


def test_readme_rerank_snippet_runs_as_written(rerank_server, cross_encoder, capsys):
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [block] = [b.split("```", 1)[0] for b in text.split("```python\n")[1:] if b.startswith("# Rerank with the Cohere")]
    exec(compile(block.replace("http://127.0.0.1:8000", rerank_server), "README:rerank", "exec"), {})
    index, score, content = capsys.readouterr().out.split(maxsplit=2)
    ref = 1 / (1 + np.exp(-predict(cross_encoder, "capital of France", ["Berlin", "Paris"], raw=True)))
    assert int(index) == int(np.argmax(ref)) and float(score) == pytest.approx(float(ref.max()), abs=1e-5)
    assert content.strip() == ["Berlin", "Paris"][int(np.argmax(ref))]


def test_two_stage_search_returns_the_cross_encoders_order_of_the_vector_candidates(rerank_server, cross_encoder):
    corpus = DOCS + [f"note {i} about the weather in town {i}" for i in range(20)]
    vector = httpx.post(f"{rerank_server}/search", json={"query": QUERY, "corpus": corpus, "top_k": 8}).json()
    candidates = [r["corpus_index"] for r in vector["results"]]
    body = httpx.post(f"{rerank_server}/search", json={"query": QUERY, "corpus": corpus, "top_k": 3,
                                                       "rerank": True, "rerank_candidates": 8}).json()
    ce = predict(cross_encoder, QUERY, [corpus[i] for i in candidates])
    assert [r["corpus_index"] for r in body["results"]] == [candidates[i] for i in np.argsort(-ce)[:3]]
    by_index = {r["corpus_index"]: r["score"] for r in vector["results"]}
    assert all(r["score"] == pytest.approx(by_index[r["corpus_index"]], abs=1e-6) for r in body["results"])
    np.testing.assert_allclose([r["rerank_score"] for r in body["results"]], np.sort(ce)[::-1][:3], atol=1e-5)
    assert body["reranker"]["kind"] == "cross-encoder"


def test_two_stage_store_search(rerank_server, cross_encoder):
    from chutes_embeddings.client import EmbeddingsClient

    collection = "rr_" + uuid.uuid4().hex[:8]
    texts = DOCS + [f"note {i} about the weather in town {i}" for i in range(20)]
    with EmbeddingsClient(rerank_server, timeout=60) as client:
        client.store_add(texts, collection, metadata=[{"i": i} for i in range(len(texts))])
        vector = client.store_search(QUERY, collection, top_k=10)["results"]
        body = client.store_search(QUERY, collection, top_k=4, rerank=True, rerank_candidates=10)
        ce = predict(cross_encoder, QUERY, [h["text"] for h in vector])
        assert [h["id"] for h in body["results"]] == [vector[i]["id"] for i in np.argsort(-ce)[:4]]
        assert all("rerank_score" in h and "score" in h and h["metadata"]["i"] >= 0 for h in body["results"])
        filtered = client.store_search(QUERY, collection, top_k=2, rerank=True,
                                       filter_metadata={"i": {"$lt": 6}})["results"]
        assert {h["metadata"]["i"] for h in filtered} <= set(range(6)) and len(filtered) == 2
        bad = httpx.post(f"{rerank_server}/store/search", json={"collection": collection, "query_vector": [0.1] * 384,
                                                                "rerank": True})
        assert bad.status_code == 422 and bad.json()["detail"]["field"] == "rerank"
        client.store_drop(collection)


# --- without a cross-encoder: the bi-encoder, and it says so -------------------------------------------------
def test_without_a_reranker_rerank_is_cosine_and_says_so(dev_call, engine):
    status, body = dev_call("POST", "/rerank", {"query": QUERY, "texts": DOCS[:3]})
    assert status == 200 and body["reranker"]["kind"] == "bi-encoder"
    vecs = engine.embed([QUERY, *DOCS[:3]]).vectors
    cosine = vecs[1:] @ vecs[0]
    assert [r["index"] for r in body["results"]] == list(np.argsort(-cosine))
    status, v2 = dev_call("POST", "/v2/rerank", {"model": "m", "query": QUERY, "documents": DOCS[:3]})
    assert status == 200 and v2["reranker"]["kind"] == "bi-encoder"
    np.testing.assert_allclose([r["relevance_score"] for r in v2["results"]], (np.sort(cosine)[::-1] + 1) / 2,
                               atol=1e-5)
    status, search = dev_call("POST", "/search", {"query": QUERY, "corpus": DOCS, "top_k": 2, "rerank": True})
    assert status == 200 and search["reranker"]["kind"] == "bi-encoder"
    assert [r["rerank_score"] for r in search["results"]] == pytest.approx([r["score"] for r in search["results"]],
                                                                          abs=1e-6)
    status, health = dev_call("GET", "/health")
    assert health["reranker"]["kind"] == "bi-encoder"


@pytest.mark.parametrize("path,body,field", [
    ("/rerank", {"query": QUERY, "texts": ["a"], "raw_scores": "yes"}, "raw_scores"),
    ("/search", {"query": QUERY, "corpus": ["a"], "rerank": True, "rerank_candidates": S.MAX_RERANK_CANDIDATES + 1},
     "rerank_candidates"),
    ("/v2/rerank", {"model": "m", "query": QUERY, "documents": ["a"], "top_n": 0}, "top_n"),
    ("/v2/rerank", {"model": "m", "query": QUERY, "documents": ["a"], "max_tokens_per_doc": 0}, "max_tokens_per_doc"),
    ("/v1/rerank", {"query": "", "documents": ["a"]}, "query"),
])
def test_bad_rerank_input_names_the_field(dev_call, path, body, field):
    status, answer = dev_call("POST", path, body)
    assert 400 <= status < 500
    named = answer["detail"]["field"] if path in ("/rerank", "/search") else answer["field"]
    assert named == field
