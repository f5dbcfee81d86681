"""Hybrid search through the store's verbs (``StoreService``) over fake model services, on both stores.

What the store contract suite cannot see: the service runs the legs a mode asks for, fuses them
as ``engine.fusion`` defines, keeps every leg inside the filter, says which leg it skipped and
why, and refuses what a collection cannot answer with the field named.
"""

from __future__ import annotations

import uuid

import pytest

from chutes_embeddings.engine.fusion import fuse
from chutes_embeddings.engine.results import Retrieval
from chutes_embeddings.errors import Conflict, InvalidInput
from chutes_embeddings.settings import Settings
from chutes_embeddings.store import SparseVector, open_store
from chutes_embeddings.store.service import StoreService
from tests.fakes import FakeSparseEncoder, fake_engine

TEXTS = ["aerodynamic heating of a blunt body at hypersonic speed", "the cat sat on the mat",
         "heat transfer in laminar boundary layers", "stock markets fell today on rate fears",
         "a cat and a dog in the garden", "boundary layer transition on a flat plate",
         "supersonic flow past a cone", "the mat was red"]
METAS = [{"topic": "aero" if i in (0, 2, 5, 6) else "other", "i": i} for i in range(len(TEXTS))]


@pytest.fixture(params=["embedded", "postgres"])
def store(request, tmp_path):
    url = "" if request.param == "embedded" else request.getfixturevalue("pg_url")
    return open_store(url, tmp_path / "store")


@pytest.fixture
def service(store, tmp_path):
    """The store verbs over a fake engine with a sparse model, on each store."""
    engine = fake_engine(Settings(data_dir=str(tmp_path), cache_size=0), cross_encoder=False)
    service = StoreService(engine, store, "english")
    yield service
    service.close()
    engine.close()


@pytest.fixture
def coll(service):
    name = "h_" + uuid.uuid4().hex[:10]
    service.add(name, TEXTS, [f"d{i}" for i in range(len(TEXTS))], METAS)
    return name


def _ids(found):
    return [found.records[h.index].id for h in found.ranking.hits]


def test_a_collection_added_with_a_sparse_model_has_every_leg(service, coll):
    legs = service.store.legs(coll)
    assert (legs.lexical, legs.sparse_model) == ("english", service.engine.sparse_model_id)
    lexical = service.search(coll, "cat on a mat", 10, None, None, retrieval=Retrieval(mode="lexical"))
    assert set(_ids(lexical)) == {"d1", "d4", "d7"}, "exactly the texts holding a query term"
    assert all(set(h.legs) == {"lexical"} for h in lexical.ranking.hits)
    sparse = service.search(coll, "cat on a mat", 10, None, None, retrieval=Retrieval(mode="sparse"))
    assert _ids(sparse)[0] in {"d1", "d4", "d7"} and sparse.ranking.mode == "sparse"


def test_hybrid_is_the_rrf_of_the_collections_legs(service, coll):
    query = "boundary layer heating"
    singles = {mode: service.search(coll, query, 8, None, None, retrieval=Retrieval(mode=mode))
               for mode in ("dense", "lexical", "sparse")}
    hybrid = service.search(coll, query, 4, None, None, retrieval=Retrieval(mode="hybrid", leg_candidates=8))
    expected = fuse({mode: [(found.records[h.index].id, h.score) for h in found.ranking.hits]
                     for mode, found in singles.items()}, "rrf")[:4]
    assert _ids(hybrid) == [f.key for f in expected]
    assert [h.score for h in hybrid.ranking.hits] == pytest.approx([f.score for f in expected])
    for hit, fused in zip(hybrid.ranking.hits, expected):
        assert {leg: (s.rank, round(s.score, 4)) for leg, s in hit.legs.items()} == {
            leg: (s.rank, round(s.score, 4)) for leg, s in fused.legs.items()}
    assert hybrid.records[0].text == TEXTS[int(_ids(hybrid)[0][1:])], "each hit's text is its own record's"


def test_the_filter_applies_inside_every_leg(service, coll):
    for mode in ("dense", "lexical", "sparse", "hybrid"):
        found = service.search(coll, "cat mat heating", 8, {"topic": "aero"}, None, retrieval=Retrieval(mode=mode))
        assert found.records and all(r.metadata["topic"] == "aero" for r in found.records), mode
        assert "d1" not in _ids(found) and "d7" not in _ids(found)


def test_relative_score_with_alpha_weighs_the_dense_leg(service, coll):
    only_dense = service.search(coll, "cat", 3, None, None,
                                retrieval=Retrieval(mode="hybrid", fusion="relative_score", alpha=1.0))
    dense = service.search(coll, "cat", 3, None, None)
    assert _ids(only_dense) == _ids(dense)
    assert all(0.0 <= h.score <= 1.0 for h in only_dense.ranking.hits)


def test_a_query_of_stop_words_is_refused_lexically_and_skipped_in_hybrid(service, coll):
    with pytest.raises(InvalidInput) as refused:
        service.search(coll, "the of and", 3, None, None, retrieval=Retrieval(mode="lexical"))
    assert refused.value.field == "query"
    found = service.search(coll, "the of and !!", 3, None, None, retrieval=Retrieval(mode="hybrid"))
    assert "lexical" in found.ranking.skipped and found.ranking.hits
    assert all("lexical" not in h.legs for h in found.ranking.hits)


def test_hybrid_then_rerank_and_both_query_forms(service, coll):
    reranked = service.search(coll, "cat mat", 2, None, None, rerank=True, rerank_candidates=6,
                              retrieval=Retrieval(mode="hybrid"))
    assert len(reranked.ranking.hits) == 2 and all(h.rerank_score is not None and h.legs
                                                   for h in reranked.ranking.hits)
    vector = service.engine.embed(["cat mat"]).vectors[0].tolist()
    both = service.search(coll, "cat mat", 3, None, None, vector, retrieval=Retrieval(mode="hybrid"))
    by_text = service.search(coll, "cat mat", 3, None, None, retrieval=Retrieval(mode="hybrid"))
    assert _ids(both) == _ids(by_text), "the caller's vector serves the dense leg as the server's would"
    with pytest.raises(InvalidInput) as no_text:
        service.search(coll, None, 3, None, None, vector, retrieval=Retrieval(mode="lexical"))
    assert no_text.value.field == "query"


def test_a_collection_without_a_sparse_leg_refuses_sparse_mode_and_hybrid_runs_the_rest(service, tmp_path):
    plain = fake_engine(Settings(data_dir=str(tmp_path / "plain"), cache_size=0), cross_encoder=False, sparse=False)
    try:
        without = StoreService(plain, service.store, "english")
        name = "h_" + uuid.uuid4().hex[:10]
        without.add(name, TEXTS, None, None)
        assert service.store.legs(name).sparse_model is None
        with pytest.raises(InvalidInput) as refused:
            service.search(name, "cat", 3, None, None, retrieval=Retrieval(mode="sparse"))
        assert refused.value.field == "mode" and "dense, lexical" in str(refused.value)
        found = service.search(name, "cat", 3, None, None, retrieval=Retrieval(mode="hybrid"))
        assert {leg for h in found.ranking.hits for leg in h.legs} <= {"dense", "lexical"}
        with pytest.raises(InvalidInput) as threshold:
            service.search(name, "cat", 3, None, 0.5, retrieval=Retrieval(mode="lexical"))
        assert threshold.value.field == "threshold"
    finally:
        plain.close()


def test_a_collection_of_another_sparse_model_refuses_this_servers_sparse_vectors(service, coll, tmp_path):
    other = fake_engine(Settings(data_dir=str(tmp_path / "other"), cache_size=0), cross_encoder=False,
                        sparse=FakeSparseEncoder(model_id="fake/another-splade"))
    try:
        with pytest.raises(Conflict) as refused:
            StoreService(other, service.store, "english").add(coll, ["more text"], None, None)
        assert refused.value.field == "collection" and "fake/another-splade" in str(refused.value)
    finally:
        other.close()


def test_a_callers_sparse_query_serves_the_sparse_leg_and_is_checked(service, coll):
    encoded = service.engine.embed_sparse(["cat on a mat"]).vectors[0]
    by_text = service.search(coll, "cat on a mat", 5, None, None, retrieval=Retrieval(mode="sparse"))
    given = service.search(coll, None, 5, None, None, retrieval=Retrieval(mode="sparse"), query_sparse=encoded)
    assert _ids(given) == _ids(by_text)
    vocabulary = service.engine.sparse_vocab_size
    outside = SparseVector((1, vocabulary), (0.5, 0.5))
    with pytest.raises(InvalidInput) as refused:
        service.search(coll, None, 5, None, None, retrieval=Retrieval(mode="sparse"), query_sparse=outside)
    assert refused.value.field == "query_sparse.indices[1]" and refused.value.limit == vocabulary - 1
    with pytest.raises(InvalidInput) as unordered:
        service.search(coll, None, 5, None, None, retrieval=Retrieval(mode="sparse"),
                       query_sparse=SparseVector((5, 3), (1.0, 1.0)))
    assert unordered.value.field == "query_sparse.indices"
