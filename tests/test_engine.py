"""The engine's verbs over fake model services (the unit layer): what they compute, and what not.

The bi-encoder stand-in reuses the vector stage's scores; a request that needs two models is
refused before any work when either queue is full; item errors carry an index that a dialect
names; health reads each service's own status.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from chutes_embeddings.engine.core import EMBEDDER, RERANKER, two_stage
from chutes_embeddings.engine.results import EmbedOptions, RerankOptions
from chutes_embeddings.errors import InvalidInput, Overloaded, naming
from chutes_embeddings.settings import Settings
from chutes_embeddings.store import open_store
from chutes_embeddings.store.service import StoreService
from tests.fakes import FakeEmbedder, FakeReranker, fake_engine
from tests.helpers import wait_until

CORPUS = ["the cat sat on the mat", "stock markets fell today", "a cat and a mat", "bonds rose"]


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=str(tmp_path), cache_size=0)  # no cache: every embedding reaches the model


def test_bi_encoder_second_stage_reuses_the_vector_scores(settings):
    model = FakeEmbedder()
    engine = fake_engine(settings, cross_encoder=False, embedder=model)
    try:
        plain = engine.search("cat mat", CORPUS, top_k=2)
        calls = len(model.calls)
        staged = engine.search("cat mat", CORPUS, top_k=2, rerank=True, rerank_candidates=4)
        assert len(model.calls) - calls == 1, "query and corpus embedded once, candidates not again"
        assert [h.index for h in staged.hits] == [h.index for h in plain.hits]
        assert [h.rerank_score for h in staged.hits] == [h.score for h in staged.hits]
        assert staged.reranker is not None and staged.reranker.kind == "bi-encoder"
    finally:
        engine.close()


def test_store_search_with_the_bi_encoder_embeds_the_query_only(settings, tmp_path):
    model = FakeEmbedder()
    engine = fake_engine(settings, cross_encoder=False, embedder=model)
    service = StoreService(engine, open_store("", tmp_path / "store"))
    try:
        service.add("c", CORPUS, None, None)
        before = sum(len(c) for c in model.calls)
        found = service.search("c", "cat mat", 2, None, None, rerank=True, rerank_candidates=4)
        assert sum(len(c) for c in model.calls) - before == 1
        assert [found.records[h.index].text for h in found.ranking.hits][0] in ("the cat sat on the mat",
                                                                              "a cat and a mat")
        assert all(h.rerank_score == h.score for h in found.ranking.hits)
    finally:
        service.close()
        engine.close()


def test_two_stage_orders_by_the_reranker_and_keeps_the_vector_score(settings):
    engine = fake_engine(settings)
    try:
        vector_scores = np.array([0.9, 0.8, 0.7])
        ranking = two_stage(engine.reranker, "cat mat", ["bonds rose", "a cat and a mat", "the mat"], vector_scores, 2)
        assert [h.index for h in ranking.hits] == [1, 2] and [h.rank for h in ranking.hits] == [1, 2]
        assert [h.score for h in ranking.hits] == [0.8, 0.7]
        assert ranking.hits[0].rerank_score > ranking.hits[1].rerank_score
    finally:
        engine.close()


def test_a_full_reranker_queue_refuses_a_two_stage_search_before_any_embedding(tmp_path):
    settings = Settings(data_dir=str(tmp_path), cache_size=0, max_queue=2)
    scoring, release = threading.Event(), threading.Event()

    def hold(work):
        scoring.set()
        assert release.wait(30), "the test never released the reranker"

    model = FakeEmbedder()
    engine = fake_engine(settings, embedder=model, reranker=FakeReranker(on_score=hold))
    threads = [threading.Thread(target=engine.rerank, args=("q", docs)) for docs in (["a"], ["b", "c"])]
    try:
        threads[0].start()
        assert scoring.wait(30)
        threads[1].start()  # queued behind the pass in progress: the queue (2 pairs) is full
        wait_until(lambda: engine.reranker.describe().batching.queue_depth == 2, 30, what="two pairs queued")
        with pytest.raises(Overloaded):
            engine.search("q", CORPUS, top_k=2, rerank=True)
        assert model.calls == [], "nothing was embedded for a request that could not be reranked"
        assert engine.embed(["q"]).vectors.shape == (1, 32)  # the embedder alone still serves
        with pytest.raises(Overloaded):
            engine.check_admission([EMBEDDER, RERANKER])
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
        engine.close()


def test_item_errors_carry_an_index_the_dialect_names(settings):
    engine = fake_engine(settings)
    long_text = " ".join(f"w{i}" for i in range(100))
    try:
        with pytest.raises(InvalidInput) as plain:
            engine.embed(["ok", long_text], EmbedOptions(truncate=False))
        assert plain.value.index == 1 and plain.value.field is None and plain.value.message.startswith("text 1 has")
        with pytest.raises(InvalidInput) as named, naming("documents"):
            engine.rerank("q", ["ok", long_text], RerankOptions(truncate=False))
        assert named.value.field == "documents[1]" and named.value.message.startswith("documents[1] with the query")
    finally:
        engine.close()


def test_rerank_forms_are_computed_from_the_logits_on_demand(settings):
    engine = fake_engine(settings)
    try:
        ranked = engine.rerank("cat", ["dog", "cat"])
        np.testing.assert_allclose(ranked.logits, [-3.0, 3.0])
        np.testing.assert_allclose(ranked.relevance(), 1 / (1 + np.exp(-ranked.logits)), rtol=1e-6)
        np.testing.assert_allclose(ranked.activated(), ranked.relevance(), rtol=1e-6)  # the fake's activation
        assert ranked.order() == [1, 0] and ranked.order(1) == [1]
        assert ranked.tokens > 0 and ranked.reranker.kind == "cross-encoder"
    finally:
        engine.close()


class _TeiDown(FakeEmbedder):
    """A service whose TEI is not serving (its local model answers)."""

    def status(self) -> dict:
        return {"serving": False, "restarts": 1}


def test_health_reads_each_services_own_status(settings):
    engine = fake_engine(settings, embedder=_TeiDown())
    try:
        health = engine.health()
        assert health.status == "degraded" and any("TEI is not serving" in r for r in health.reasons)
        assert engine.info().embedder.tei == {"serving": False, "restarts": 1}
    finally:
        engine.close()
    healthy = fake_engine(settings)
    try:
        assert healthy.health().status == "ok" and healthy.info().reranker.batching is not None
    finally:
        healthy.close()


def test_a_cached_text_is_counted_and_checked_without_tokenising_it_again(tmp_path):
    engine = fake_engine(Settings(data_dir=str(tmp_path), cache_size=100))
    tokenizer = engine.embedder.tokenizer
    long_text = " ".join(f"w{i}" for i in range(100))
    try:
        first = engine.embed(["the cat sat", long_text], EmbedOptions(count_tokens=True))
        assert first.token_counts == [5, engine.embedder.backend.max_input_tokens]  # as embedded: cut
        seen = len(tokenizer.seen)
        again = engine.embed(["the cat sat"], EmbedOptions(count_tokens=True, truncate=False))
        assert again.token_counts == [5]
        with pytest.raises(InvalidInput) as refused:
            engine.embed(["the cat sat", long_text], EmbedOptions(truncate=False))
        assert refused.value.index == 1 and refused.value.extra["tokens"] == 102
        assert len(tokenizer.seen) == seen, "cache hits answered from the cache"
    finally:
        engine.close()


def test_a_text_too_long_to_cut_is_refused_at_its_first_position(settings):
    engine = fake_engine(settings)
    long_text = " ".join(f"w{i}" for i in range(100))
    try:
        with pytest.raises(InvalidInput) as refused:
            engine.embed(["ok", "fine", long_text, "ok", long_text], EmbedOptions(truncate=False))
        assert refused.value.index == 2
        assert engine.embed(["ok"], EmbedOptions(truncate=False, count_tokens=True)).token_counts == [3]
    finally:
        engine.close()
