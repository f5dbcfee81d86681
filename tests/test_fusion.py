"""Hybrid retrieval's arithmetic and procedure over fake model services (the unit layer).

Fusion against hand-computed cases (RRF as Cormack et al. define it, relative score as Weaviate
does, DBSF as Qdrant does, Weaviate's ``alpha``); a corpus search's lexical leg against ``bm25s``
with FTS5's parameters; the legs a mode runs, and the refusals that name the field.
"""

from __future__ import annotations

import threading

import bm25s
import numpy as np
import pytest

from chutes_embeddings.engine.fusion import fuse, leg_weights
from chutes_embeddings.engine.hybrid import candidates_by_leg
from chutes_embeddings.engine.results import Retrieval
from chutes_embeddings.errors import InvalidInput
from chutes_embeddings.lexical.analyzer import analyzer
from chutes_embeddings.settings import Settings
from tests.fakes import fake_engine

DENSE = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
LEXICAL = [("c", 12.0), ("a", 3.0), ("d", 1.0)]


def test_rrf_sums_reciprocal_ranks_with_k():
    fused = fuse({"dense": DENSE, "lexical": LEXICAL}, "rrf", rrf_k=60)
    expected = {"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 63}
    assert [f.key for f in fused] == ["a", "c", "b", "d"]
    assert [f.score for f in fused] == pytest.approx([expected[f.key] for f in fused], abs=1e-12)
    a = fused[0]
    assert (a.legs["dense"].rank, a.legs["dense"].score, a.legs["lexical"].rank, a.legs["lexical"].score) == (
        1, 0.9, 2, 3.0)
    assert set(fused[2].legs) == {"dense"}, "a leg that did not find a candidate is not reported for it"


def test_rrf_k_changes_how_much_the_top_ranks_weigh():
    # with k = 1: a = 1/2 + 1/3, c = 1/4 + 1/2: c (first in lexical, third in dense) now wins
    fused = fuse({"dense": DENSE, "lexical": LEXICAL}, "rrf", rrf_k=1)
    assert [f.key for f in fused][:2] == ["a", "c"]
    assert fused[0].score == pytest.approx(1 / 2 + 1 / 3) and fused[1].score == pytest.approx(1 / 4 + 1 / 2)


def test_relative_score_min_max_normalises_each_leg_then_weighs_by_alpha():
    weights = leg_weights(["dense", "lexical"], 0.75)
    assert weights == {"dense": 0.75, "lexical": 0.25}
    fused = {f.key: f.score for f in fuse({"dense": DENSE, "lexical": LEXICAL}, "relative_score", weights)}
    # dense: a 1, b (0.8-0.1)/0.8 = 0.875, c 0; lexical: c 1, a (3-1)/11, d 0
    assert fused == pytest.approx({"a": 0.75 + 0.25 * 2 / 11, "b": 0.75 * 0.875, "c": 0.25, "d": 0.0})


def test_alpha_one_is_dense_alone_and_zero_the_other_legs_alone():
    only_dense = fuse({"dense": DENSE, "lexical": LEXICAL}, "relative_score", leg_weights(["dense", "lexical"], 1.0))
    assert [f.key for f in only_dense][:3] == ["a", "b", "c"]
    only_lexical = fuse({"dense": DENSE, "lexical": LEXICAL}, "relative_score",
                        leg_weights(["dense", "lexical"], 0.0))
    assert [f.key for f in only_lexical][:2] == ["c", "a"]
    assert leg_weights(["dense", "lexical", "sparse"], 0.4) == pytest.approx(
        {"dense": 0.4, "lexical": 0.3, "sparse": 0.3})


def test_dbsf_normalises_by_mean_and_three_deviations():
    scores = np.array([0.9, 0.8, 0.1])
    low, span = scores.mean() - 3 * scores.std(), 6 * scores.std()
    fused = {f.key: f.score for f in fuse({"dense": DENSE}, "dbsf", {"dense": 1.0})}
    assert fused == pytest.approx({k: (s - low) / span for (k, _), s in zip(DENSE, scores)})


def test_ties_keep_the_order_candidates_were_met_in():
    fused = fuse({"dense": [("x", 1.0), ("y", 0.5)], "lexical": [("y", 2.0), ("x", 1.0)]}, "rrf")
    assert [f.key for f in fused] == ["x", "y"]


def test_fuse_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="fusion"):
        fuse({"dense": DENSE}, "max")
    with pytest.raises(ValueError, match="rrf_k"):
        fuse({"dense": DENSE}, "rrf", rrf_k=0)


def test_the_legs_run_side_by_side_and_a_legs_error_comes_back_in_leg_order():
    lexical_started = threading.Event()

    def dense():  # finishes only once the lexical leg has started: in turn, it would wait in vain
        assert lexical_started.wait(30), "the lexical leg did not start while the dense leg ran"
        return DENSE

    def lexical():
        lexical_started.set()
        return LEXICAL

    found, skipped = candidates_by_leg("hybrid", ["dense", "lexical"], {"dense": dense, "lexical": lexical})
    assert found == {"dense": DENSE, "lexical": LEXICAL} and skipped == {}

    def refused():
        raise InvalidInput("bad", field="query")

    def broken():
        raise RuntimeError("the lexical leg failed")

    with pytest.raises(InvalidInput, match="bad"):  # the first leg's error, though both failed
        candidates_by_leg("hybrid", ["dense", "lexical"], {"dense": refused, "lexical": broken})
    with pytest.raises(RuntimeError, match="lexical leg failed"):
        candidates_by_leg("hybrid", ["dense", "lexical"], {"dense": lambda: DENSE, "lexical": broken})


CORPUS = ["Aerodynamic heating of a blunt body at hypersonic speed", "the cat sat on the mat",
          "heat transfer in laminar boundary layers", "stock markets fell today", "a cat and a dog",
          "boundary layer transition on a flat plate at supersonic speeds"]


@pytest.fixture
def fakes(tmp_path):
    """An engine over fakes without a sparse model: a corpus search's legs are dense and lexical."""
    engine = fake_engine(Settings(data_dir=str(tmp_path), cache_size=0), cross_encoder=False, sparse=False)
    yield engine
    engine.close()


@pytest.fixture
def sparse_engine(tmp_path):
    engine = fake_engine(Settings(data_dir=str(tmp_path), cache_size=0), cross_encoder=False)
    yield engine
    engine.close()


def test_a_corpus_search_in_lexical_mode_ranks_as_bm25s_with_fts5s_parameters(fakes):
    query = "heating of boundary layers"
    ranking = fakes.search(query, CORPUS, top_k=10, retrieval=Retrieval(mode="lexical"))
    terms = analyzer("english")
    index = bm25s.BM25(k1=1.2, b=0.75, method="robertson")
    index.index(terms.terms_of_many(CORPUS), show_progress=False)
    expected = index.get_scores(terms.terms(query))
    matching = [i for i, text in enumerate(CORPUS) if set(terms.terms(text)) & set(terms.terms(query))]
    assert sorted(h.index for h in ranking.hits) == matching, "exactly the texts holding a query term"
    assert [h.score for h in ranking.hits] == pytest.approx(sorted(expected[matching], reverse=True), abs=1e-5)
    assert all(set(h.legs) == {"lexical"} for h in ranking.hits) and ranking.mode == "lexical"


def test_a_hybrid_corpus_search_is_the_rrf_of_its_dense_and_lexical_legs(fakes):
    query = "cat on a mat"
    dense = fakes.search(query, CORPUS, top_k=6)
    lexical = fakes.search(query, CORPUS, top_k=6, retrieval=Retrieval(mode="lexical"))
    hybrid = fakes.search(query, CORPUS, top_k=3, retrieval=Retrieval(mode="hybrid"))
    expected = fuse({"dense": [(h.index, h.score) for h in dense.hits],
                     "lexical": [(h.index, h.score) for h in lexical.hits]}, "rrf")[:3]
    assert [h.index for h in hybrid.hits] == [f.key for f in expected]
    assert [h.score for h in hybrid.hits] == pytest.approx([f.score for f in expected])
    assert dense.hits[0].legs is None, "a dense answer stays as it was before hybrid search"
    top = hybrid.hits[0]
    assert top.legs["dense"].rank == [h.index for h in dense.hits].index(top.index) + 1


def test_a_query_of_stop_words_is_refused_in_lexical_mode_and_skips_the_leg_in_hybrid(fakes):
    with pytest.raises(InvalidInput) as refused:
        fakes.search("the of and", CORPUS, top_k=3, retrieval=Retrieval(mode="lexical"))
    assert refused.value.field == "query" and "stop words" in str(refused.value)
    hybrid = fakes.search("the of and", CORPUS, top_k=3, retrieval=Retrieval(mode="hybrid"))
    assert len(hybrid.hits) == 3 and set(hybrid.skipped) == {"lexical"}
    assert all(set(h.legs) == {"dense"} for h in hybrid.hits)


def test_modes_a_corpus_cannot_answer_are_refused_naming_the_field(fakes):
    with pytest.raises(InvalidInput) as no_sparse:
        fakes.search("cat", CORPUS, top_k=3, retrieval=Retrieval(mode="sparse"))
    assert no_sparse.value.field == "mode"
    with pytest.raises(InvalidInput) as threshold:
        fakes.search("cat", CORPUS, top_k=3, threshold=0.5, retrieval=Retrieval(mode="lexical"))
    assert threshold.value.field == "threshold"


def test_hybrid_then_rerank_keeps_each_hits_legs_and_the_bi_encoder_reads_the_texts(fakes):
    query = "cat on a mat"
    ranking = fakes.search(query, CORPUS, top_k=3, rerank=True, rerank_candidates=5,
                            retrieval=Retrieval(mode="hybrid"))
    assert len(ranking.hits) == 3 and ranking.reranker is not None and ranking.reranker.kind == "bi-encoder"
    assert all(h.rerank_score is not None and h.legs for h in ranking.hits)
    # fused scores are no cosines: the stand-in reranker scores each candidate by its own cosine
    vectors = fakes.embed([query] + [CORPUS[h.index] for h in ranking.hits]).vectors
    cosines = vectors[1:] @ vectors[0]
    assert [h.rerank_score for h in ranking.hits] == pytest.approx(list(cosines), abs=1e-5)
    assert [h.rerank_score for h in ranking.hits] == sorted((h.rerank_score for h in ranking.hits), reverse=True)


def test_with_a_sparse_model_hybrid_fuses_three_legs_and_sparse_mode_ranks_by_dot_product(sparse_engine):
    query = "cat on a mat"
    legs = {mode: sparse_engine.search(query, CORPUS, top_k=6, retrieval=Retrieval(mode=mode))
            for mode in ("dense", "lexical", "sparse")}
    encoded = sparse_engine.embed_sparse([query, *CORPUS]).vectors
    weights = dict(zip(encoded[0].indices, encoded[0].values))
    dots = [sum(weights.get(i, 0.0) * v for i, v in zip(d.indices, d.values)) for d in encoded[1:]]
    assert [h.index for h in legs["sparse"].hits] == sorted((i for i, d in enumerate(dots) if d > 0),
                                                            key=lambda i: -dots[i])
    assert [h.score for h in legs["sparse"].hits] == pytest.approx([dots[h.index] for h in legs["sparse"].hits])
    hybrid = sparse_engine.search(query, CORPUS, top_k=4, retrieval=Retrieval(mode="hybrid", rrf_k=10))
    expected = fuse({mode: [(h.index, h.score) for h in ranking.hits] for mode, ranking in legs.items()},
                    "rrf", rrf_k=10)[:4]
    assert [h.index for h in hybrid.hits] == [f.key for f in expected]
    assert [h.score for h in hybrid.hits] == pytest.approx([f.score for f in expected])
    assert set(hybrid.hits[0].legs) == {"dense", "lexical", "sparse"}
