"""Hybrid search through the chute app over fake model services (the http layer): the request's
options, the answer's shape (each hit's legs, the mode, the legs skipped), and bad input as a 422
naming the field and the limit."""

from __future__ import annotations

import uuid

import pytest

import schemas as S

TEXTS = ["Model ZX-81 wing flutter tests", "boundary layer transition on a flat plate",
         "heat transfer to a blunt body", "the cat sat on the mat"]


@pytest.fixture
def collection(fake_call):
    name = "hy_" + uuid.uuid4().hex[:8]
    status, body = fake_call("POST", "/store/add", {"collection": name, "texts": TEXTS,
                                                    "ids": ["zx", "bl", "ht", "cat"],
                                                    "metadata": [{"kind": "report"}] * 3 + [{"kind": "pet"}]})
    assert status == 200, body
    yield name
    fake_call("POST", "/store/drop", {"collection": name})


def test_each_mode_answers_with_its_legs(fake_call, collection):
    for mode in ("dense", "lexical", "sparse", "hybrid"):
        status, body = fake_call("POST", "/store/search", {"collection": collection, "query": "ZX-81 flutter",
                                                           "mode": mode, "top_k": 3})
        assert status == 200, body
        S.StoreSearchResponse.model_validate(body)
        assert body["mode"] == mode and body["results"][0]["id"] == "zx", mode
        legs = body["results"][0].get("legs")
        assert (legs is None) if mode == "dense" else set(legs) == ({"dense", "lexical", "sparse"}
                                                                     if mode == "hybrid" else {mode})
    status, body = fake_call("POST", "/search", {"query": "flat plate", "corpus": TEXTS, "mode": "hybrid",
                                                 "fusion": "relative_score", "alpha": 0.3, "top_k": 2})
    assert status == 200 and body["results"][0]["corpus_index"] == 1 and 0 <= body["results"][0]["score"] <= 1
    S.SearchResponse.model_validate(body)


def test_stop_words_skip_the_lexical_leg_and_say_so(fake_call, collection):
    status, body = fake_call("POST", "/store/search", {"collection": collection, "query": "the of and",
                                                       "mode": "hybrid"})
    assert status == 200 and "lexical" in body["skipped_legs"] and body["results"]
    status, body = fake_call("POST", "/store/search", {"collection": collection, "query": "the of and",
                                                       "mode": "lexical"})
    assert status == 422 and body["detail"]["field"] == "query"


@pytest.mark.parametrize(("extra", "field", "limit"), [
    ({"mode": "fuzzy"}, "mode", None),
    ({"mode": "hybrid", "alpha": 1.5}, "alpha", 1.0),
    ({"mode": "hybrid", "rrf_k": 0}, "rrf_k", 1),
    ({"mode": "hybrid", "fusion": "max"}, "fusion", None),
    ({"mode": "hybrid", "leg_candidates": 1001}, "leg_candidates", 1000),
    ({"mode": "lexical", "threshold": 0.5}, "threshold", None),
    ({"query_sparse": {"indices": [3], "values": [1.0]}, "query": None}, "query_sparse", None),
    ({"mode": "sparse", "query_sparse": {"indices": [3, 2], "values": [1.0, 1.0]}, "query": None},
     "query_sparse.indices", None),
    ({"mode": "sparse", "query_sparse": {"indices": [40_000], "values": [1.0]}, "query": None},
     "query_sparse.indices[0]", 30_521),
    ({"mode": "lexical", "query_vector": [1.0] * 32, "query": None}, "query_vector", None),
])
def test_bad_retrieval_options_are_a_422_naming_the_field(fake_call, collection, extra, field, limit):
    body = {"collection": collection, "query": "flutter", **extra}
    status, answer = fake_call("POST", "/store/search", {k: v for k, v in body.items() if v is not None})
    assert status == 422, answer
    assert answer["detail"]["field"] == field
    if limit is not None:
        assert answer["detail"]["limit"] == limit
