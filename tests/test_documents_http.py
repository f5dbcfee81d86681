"""Documents through /store/*: stored as chunks of the model's own tokens, searched grouped by
document in every mode, got and deleted by document, replaced whole; bad chunking and colliding
ids refused naming the field (the chute app, embedded store, real model)."""

from __future__ import annotations

import uuid

import pytest

import schemas as S

TOPICS = {
    "bread": "Sourdough bread rises slowly. The starter needs flour and water every day. Bakers fold the dough "
             "gently. A hot oven gives the crust its colour. ",
    "rockets": "A rocket engine burns fuel and oxidiser. The nozzle accelerates the exhaust. Staging drops "
               "empty tanks on the way up. Orbit needs about eight kilometres a second. ",
    "gardens": "Tomatoes want sun and regular watering. Compost feeds the soil. Prune the side shoots. "
               "Harvest when the fruit is red. ",
}


def _document(topic: str, paragraphs: int = 6) -> str:
    return "\n\n".join(f"Part {i} about {topic}. " + TOPICS[topic] * 2 for i in range(paragraphs))


@pytest.fixture
def coll():
    return "docs_" + uuid.uuid4().hex[:10]


def _add(call, coll, docs, **chunking):
    status, body = call("POST", "/store/add", {"collection": coll, "chunking": chunking or None, "documents": [
        {"id": doc_id, "text": text, "metadata": {"topic": doc_id}} for doc_id, text in docs.items()]})
    assert status == 200, body
    return S.StoreAddResponse.model_validate(body)


def test_documents_are_stored_as_chunks_with_their_spans_and_replaced_whole(call, coll):
    docs = {"bread": _document("bread"), "rockets": _document("rockets", 2)}
    added = _add(call, coll, docs, max_tokens=64, overlap=8)
    counts = {d.id: d.chunks for d in added.documents}
    assert counts["bread"] > 3 and counts["rockets"] >= 1 and added.added_count == sum(counts.values())
    assert added.ids[0] == "bread#0" and added.total_in_collection == added.added_count

    status, body = call("POST", "/store/get", {"collection": coll, "document_ids": ["bread", "nope"]})
    assert status == 200, body
    got = S.StoreGetResponse.model_validate(body)
    assert [r.chunk for r in got.records] == list(range(counts["bread"])) and got.missing_ids == ["nope"]
    for r in got.records:
        start, end = r.span
        assert docs["bread"][start:end] == r.text and r.document_id == "bread" and r.metadata == {"topic": "bread"}
    assert got.records[1].span[0] < got.records[0].span[1]  # the overlap asked
    tokens = call("POST", "/tei/tokenize", {"inputs": [r.text for r in got.records], "add_special_tokens": False})[1]
    assert max(len(t) for t in tokens) <= 64  # counted by the model's own tokenizer

    # re-added shorter: its chunks are replaced, none left over
    added = _add(call, coll, {"bread": _document("bread", 1)}, max_tokens=64)
    assert added.total_in_collection == added.added_count + counts["rockets"]
    body = call("POST", "/store/get", {"collection": coll, "document_ids": ["bread"]})[1]
    assert len(body["records"]) == added.documents[0].chunks

    status, body = call("POST", "/store/delete", {"collection": coll, "document_ids": ["bread"]})
    assert status == 200 and body["deleted_count"] == added.added_count
    assert body["total_in_collection"] == counts["rockets"]


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_search_grouped_by_document_counts_documents_in_every_mode(call, coll, mode):
    _add(call, coll, {t: _document(t) for t in TOPICS}, max_tokens=48)
    call("POST", "/store/add", {"collection": coll, "texts": ["Bread needs a hot oven and a good starter."],
                                "ids": ["note"]})
    query = {"collection": coll, "query": "sourdough starter and a hot oven for the bread crust", "mode": mode}
    status, body = call("POST", "/store/search", {**query, "top_k": 5})
    assert status == 200, body
    plain = S.StoreSearchResponse.model_validate(body).results
    assert plain[0].document_id == "bread" or plain[0].id == "note"
    assert sum(r.document_id == "bread" for r in plain) >= 2  # a long document's chunks crowd the top

    status, body = call("POST", "/store/search", {**query, "top_k": 3, "group_by": "document"})
    assert status == 200, body
    grouped = S.StoreSearchResponse.model_validate(body).results
    keys = [r.document_id or r.id for r in grouped]
    assert len(keys) == len(set(keys)) and {"bread", "note"} <= set(keys) and [r.rank for r in grouped] == [1, 2, 3][
        :len(grouped)]
    bread = next(r for r in grouped if r.document_id == "bread")
    assert bread.other_chunks >= 1 and bread.id == next(r.id for r in plain if r.document_id == "bread")
    assert next(r for r in grouped if r.id == "note").other_chunks == 0


@pytest.mark.parametrize("chunking, field, limit", [
    ({"max_tokens": 15}, "chunking.max_tokens", 16),
    ({"max_tokens": 10_000}, "chunking.max_tokens", 254),  # MiniLM: 256 tokens, less [CLS] and [SEP]
    ({"max_tokens": 32, "overlap": 32}, "chunking.overlap", 31),
])
def test_bad_chunking_is_a_422_naming_the_field_and_the_limit(call, coll, chunking, field, limit):
    status, body = call("POST", "/store/add", {"collection": coll, "documents": [{"id": "d", "text": "some text"}],
                                               "chunking": chunking})
    assert status == 422 and (body["detail"]["field"], body["detail"]["limit"]) == (field, limit), body


def test_document_and_record_ids_never_collide(call, coll):
    call("POST", "/store/add", {"collection": coll, "texts": ["a plain record"], "ids": ["plain"]})
    _add(call, coll, {"bread": _document("bread", 1)})
    status, body = call("POST", "/store/add", {"collection": coll, "documents": [{"id": "plain", "text": "x y z"}]})
    assert status == 409 and body["detail"]["field"] == "documents", body
    status, body = call("POST", "/store/add", {"collection": coll, "texts": ["x"], "ids": ["bread"]})
    assert status == 409 and body["detail"]["field"] == "ids", body
    status, body = call("POST", "/store/add", {"collection": coll, "texts": ["x"],
                                               "documents": [{"id": "d", "text": "x"}]})
    assert status == 422 and body["detail"]["field"] == "texts", body
    status, body = call("POST", "/store/add", {"collection": coll, "documents": [{"id": "d", "text": "x"},
                                                                                 {"id": "d", "text": "y"}]})
    assert status == 422 and body["detail"]["field"] == "documents[1].id", body
