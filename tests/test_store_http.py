"""The store cords through the chute app (embedded store), with the real model."""

from __future__ import annotations

import uuid

import pytest

import schemas as S


@pytest.fixture
def coll():
    return "http_" + uuid.uuid4().hex[:10]


DOCS = ["machine learning algorithms learn from data", "neural network models have many layers",
        "cooking recipes for a quick dinner", "how to bake sourdough bread", "gradient descent minimises a loss"]


def test_add_search_get_delete_drop_and_listing(call, coll):
    status, body = call("POST", "/store/add", {"collection": coll, "texts": DOCS,
                                               "metadata": [{"topic": "ml"}, {"topic": "ml"}, {"topic": "food"},
                                                            {"topic": "food"}, {"topic": "ml"}]})
    assert status == 200, body
    S.StoreAddResponse.model_validate(body)
    assert body["added_count"] == 5 and body["total_in_collection"] == 5 and len(set(body["ids"])) == 5

    status, body = call("POST", "/store/search", {"collection": coll, "query": "deep learning", "top_k": 3})
    assert status == 200, body
    S.StoreSearchResponse.model_validate(body)
    assert body["results"][0]["metadata"] == {"topic": "ml"}
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]

    status, body = call("POST", "/store/search", {"collection": coll, "query": "dinner ideas",
                                                  "filter_metadata": {"topic": "ml"}})
    assert status == 200 and {r["metadata"]["topic"] for r in body["results"]} == {"ml"}

    ids = call("POST", "/store/add", {"collection": coll, "texts": DOCS[:1]})[1]["ids"]
    status, body = call("POST", "/store/get", {"collection": coll, "ids": [ids[0], "nope"], "include_vectors": True})
    assert status == 200, body
    S.StoreGetResponse.model_validate(body)
    assert body["records"][0]["text"] == DOCS[0] and len(body["records"][0]["vector"]) == 384
    assert body["missing_ids"] == ["nope"]

    status, body = call("POST", "/store/delete", {"collection": coll, "filter_metadata": {"topic": "food"}})
    assert status == 200 and body["deleted_count"] == 2 and body["total_in_collection"] == 3
    S.StoreDeleteResponse.model_validate(body)

    status, body = call("GET", "/store/collections")
    assert status == 200
    S.CollectionsResponse.model_validate(body)
    mine = next(c for c in body["collections"] if c["name"] == coll)
    assert mine["size"] == 3 and mine["dimension"] == 384 and mine["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert body["store"] == "embedded"

    status, body = call("POST", "/store/drop", {"collection": coll})
    assert status == 200 and body == {"collection": coll, "dropped": True}
    assert call("POST", "/store/search", {"collection": coll, "query": "x"})[0] == 404


def test_adding_the_same_text_twice_does_not_duplicate(dev_call, coll):
    first = dev_call("POST", "/store/add", {"collection": coll, "texts": ["same text", "same text"]})[1]
    second = dev_call("POST", "/store/add", {"collection": coll, "texts": ["same text"]})[1]
    assert first["added_count"] == 1 and second["total_in_collection"] == 1 and first["ids"][0] == second["ids"][0]


def test_explicit_ids_upsert_and_one_metadata_for_all(dev_call, coll):
    dev_call(
        "POST", "/store/add", {"collection": coll, "texts": ["a", "b"], "ids": ["1", "2"], "metadata": {"src": "x"}}
    )
    body = dev_call("POST", "/store/add", {"collection": coll, "texts": ["b2"], "ids": ["2"]})[1]
    assert body["total_in_collection"] == 2
    recs = dev_call("POST", "/store/get", {"collection": coll, "ids": ["1", "2"]})[1]["records"]
    assert [(r["id"], r["text"], r["metadata"]) for r in recs] == [("1", "a", {"src": "x"}), ("2", "b2", {})]


def test_default_collection(dev_call):
    assert dev_call("POST", "/store/add", {"texts": ["into the default collection"]})[1]["collection"] == "default"


def test_unknown_collection_is_404_with_message(dev_call):
    for path, body in [("/store/search", {"collection": "never_made", "query": "q"}),
                       ("/store/get", {"collection": "never_made", "ids": ["x"]}),
                       ("/store/delete", {"collection": "never_made", "ids": ["x"]}),
                       ("/store/drop", {"collection": "never_made"})]:
        status, answer = dev_call("POST", path, body)
        assert status == 404, (path, answer)
        assert answer["detail"]["error_type"] == "not_found" and "never_made" in answer["detail"]["message"]


def test_other_model_in_collection_is_409(dev_call, engine, chute_app, coll):
    chute_app.store.store.ensure_collection(coll, "some/other-model", 384)
    status, body = dev_call("POST", "/store/add", {"collection": coll, "texts": ["x"]})
    assert status == 409 and "some/other-model" in body["detail"]["message"]


BAD = [
    ("/store/add", {"collection": "../etc", "texts": ["x"]}, "collection"),
    ("/store/add", {"collection": "a" * 65, "texts": ["x"]}, "collection"),
    ("/store/add", {"collection": "", "texts": ["x"]}, "collection"),
    ("/store/add", {"texts": []}, "texts"),
    ("/store/add", {"texts": ["x"] * (S.MAX_STORE_ADD_TEXTS + 1)}, "texts"),
    ("/store/add", {"texts": ["a", "b"], "ids": ["1"]}, "ids"),
    ("/store/add", {"texts": ["a", "b"], "metadata": [{}]}, "metadata"),
    ("/store/add", {"texts": ["a"], "ids": [""]}, "ids[0]"),
    ("/store/search", {"query": "q", "top_k": 0}, "top_k"),
    ("/store/search", {"query": "q", "top_k": S.MAX_STORE_TOP_K + 1}, "top_k"),
    ("/store/search", {"query": ""}, "query"),
    ("/store/search", {"query": "q", "filter_metadata": {"k": {"$regex": "."}}}, "filter_metadata.k.$regex"),
    ("/store/search", {"query": "q", "filter_metadata": "lang=en"}, "filter_metadata"),
    ("/store/delete", {"collection": "default"}, "ids"),
    ("/store/delete", {"collection": "default", "ids": ["a"], "filter_metadata": {"a": 1}}, "ids"),
    ("/store/delete", {"collection": "default", "filter_metadata": {}}, "filter_metadata"),
    ("/store/get", {"ids": []}, "ids"),
    ("/store/drop", {}, "collection"),
]


@pytest.mark.parametrize("path,payload,field", BAD, ids=[f"{p}:{f}" for p, _, f in BAD])
def test_bad_store_input_names_the_field(dev_call, path, payload, field):
    if path == "/store/search":
        dev_call("POST", "/store/add", {"texts": ["make sure default exists"]})
    status, body = dev_call("POST", path, payload)
    assert status == 422, body
    assert body["detail"]["field"] == field, body
