"""Every route in every dialect, through the chute app over fake model services (the http layer).

No model and no process: the cords, the boundary, the dialects and the engine run as in
production, over ``tests/fakes.py``. Each answer is checked against its route's response model
(what the OpenAPI document promises), and each dialect's errors against its error model; the real
client libraries drive the app through Starlette's ``TestClient`` (an ``httpx.Client``).
"""

from __future__ import annotations

import base64
import uuid

import numpy as np
import pytest

import schemas as S

LONG = " ".join(f"word{i}" for i in range(60))  # over the fake embedder's 32 tokens
LONG_PAIR = f"{LONG} {LONG}"  # over the fake reranker's 64 tokens with any query


def _ok(call, method, path, body, model):
    status, answer = call(method, path, body)
    assert status == 200, answer
    model.model_validate(answer)
    return answer


def test_native_engine_routes(fake_call):
    one = _ok(fake_call, "POST", "/embed", {"inputs": "a cat"}, S.EmbedResponse)
    assert len(one["embeddings"]) == one["dimension"] == 32 and one["model"] == "fake/hashed-tokens"
    many = _ok(fake_call, "POST", "/embed", {"inputs": ["a cat", "a dog"], "dimensions": 8}, S.EmbedResponse)
    assert many["count"] == 2 and many["dimension"] == 8
    assert np.allclose(np.linalg.norm(many["embeddings"], axis=1), 1.0, atol=1e-5)
    batch = _ok(fake_call, "POST", "/embed/batch", {"texts": ["x", "y", "z"], "batch_size": 2}, S.EmbedBatchResponse)
    assert batch["processed_count"] == 3 and batch["batch_size"] == 2
    sim = _ok(fake_call, "POST", "/similarity", {"source_text": "a cat sat", "target_texts": ["stocks", "a cat sat"]},
              S.SimilarityResponse)
    assert [r["index"] for r in sim["results"]] == [1, 0] and sim["results"][0]["similarity"] == pytest.approx(1.0)
    cluster = _ok(fake_call, "POST", "/cluster", {"texts": ["a", "b", "c", "d"], "n_clusters": 2}, S.ClusterResponse)
    assert cluster["n_clusters"] == 2 and sum(c["size"] for c in cluster["clusters"]) == 4


def test_rerank_and_two_stage_search_order_by_the_cross_encoder(fake_call):
    texts = ["the cat sat on the mat", "stock markets fell", "a cat and a mat"]
    ranked = _ok(fake_call, "POST", "/rerank", {"query": "cat mat", "texts": texts, "top_k": 2}, S.RerankResponse)
    assert [r["index"] for r in ranked["results"]][0] in (0, 2) and ranked["total_results"] == 2
    assert ranked["reranker"] == {"model": "fake/overlap-reranker", "kind": "cross-encoder", "backend": "local",
                                  "activation": "Sigmoid", "max_input_tokens": 64}
    raw = _ok(fake_call, "POST", "/rerank", {"query": "cat mat", "texts": texts, "raw_scores": True}, S.RerankResponse)
    assert raw["results"][-1]["score"] == pytest.approx(-3.0)  # no overlap: the fake's lowest logit
    search = _ok(fake_call, "POST", "/search", {"query": "cat mat", "corpus": texts, "top_k": 2, "rerank": True,
                                                "rerank_candidates": 3}, S.SearchResponse)
    assert search["reranker"]["kind"] == "cross-encoder"
    assert all("rerank_score" in r and r["text"] == texts[r["corpus_index"]] for r in search["results"])
    assert [r["rank"] for r in search["results"]] == [1, 2]


def test_state_routes(fake_call):
    health = _ok(fake_call, "GET", "/health", None, S.HealthResponse)
    assert health["status"] == "ok" and health["reranker"]["queue"] == {"depth": 0, "estimated_wait_s": 0.0}
    info = _ok(fake_call, "GET", "/info", None, S.InfoResponse)
    assert info["local_runtime"] == "fake" and info["reranker"]["local_runtime"] == "fake"
    assert info["limits"]["max_embed_inputs"] == S.MAX_EMBED_INPUTS and info["tei"] is None
    tei = _ok(fake_call, "GET", "/tei/info", None, S.TeiInfoResponse)  # from the same engine state as /info
    assert (tei["model_id"], tei["max_input_length"], tei["max_batch_tokens"]) == (
        info["model"], info["max_input_tokens"], info["batching"]["max_batch_tokens"])


def test_store_routes_round_trip(fake_call):
    name = "fake_" + uuid.uuid4().hex[:8]
    texts = ["the cat sat on the mat", "stock markets fell", "a cat and a mat"]
    added = _ok(fake_call, "POST", "/store/add", {"collection": name, "texts": texts, "ids": ["a", "b", "c"],
                                                  "metadata": [{"i": 0}, {"i": 1}, {"i": 2}]}, S.StoreAddResponse)
    assert added["added_count"] == 3 and added["total_in_collection"] == 3
    found = _ok(fake_call, "POST", "/store/search", {"collection": name, "query": "the cat sat on the mat",
                                                     "top_k": 2}, S.StoreSearchResponse)
    assert found["results"][0]["id"] == "a" and found["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    reranked = _ok(fake_call, "POST", "/store/search", {"collection": name, "query": "cat mat", "top_k": 2,
                                                        "rerank": True, "filter_metadata": {"i": {"$ne": 1}}},
                   S.StoreSearchResponse)
    assert {r["id"] for r in reranked["results"]} == {"a", "c"} and reranked["reranker"]["kind"] == "cross-encoder"
    for hit in reranked["results"]:  # each hit's text and metadata are its own record's
        assert hit["text"] == texts["abc".index(hit["id"])] and hit["metadata"] == {"i": "abc".index(hit["id"])}
    got = _ok(fake_call, "POST", "/store/get", {"collection": name, "ids": ["c", "zz"], "include_vectors": True},
              S.StoreGetResponse)
    assert got["missing_ids"] == ["zz"] and len(got["records"][0]["vector"]) == 32
    deleted = _ok(fake_call, "POST", "/store/delete", {"collection": name, "ids": ["b"]}, S.StoreDeleteResponse)
    assert deleted == {"collection": name, "deleted_count": 1, "total_in_collection": 2}
    listed = _ok(fake_call, "GET", "/store/collections", None, S.CollectionsResponse)
    assert name in {c["name"] for c in listed["collections"]}
    _ok(fake_call, "POST", "/store/drop", {"collection": name}, S.StoreDropResponse)
    status, body = fake_call("POST", "/store/search", {"collection": name, "query": "x"})
    assert status == 404 and S.NativeError.model_validate(body)


def test_tei_routes(fake_call):
    vectors = _ok(fake_call, "POST", "/tei/embed", {"inputs": ["a", "b"]}, S.TeiEmbedResponse)
    assert np.array(vectors).shape == (2, 32)
    assert _ok(fake_call, "POST", "/tei", {"inputs": "a"}, S.TeiEmbedResponse) == vectors[:1]
    tokens = _ok(fake_call, "POST", "/tei/embed_all", {"inputs": "a cat"}, S.TeiEmbedAllResponse)
    assert np.array(tokens[0]).shape == (4, 32)  # [CLS] a cat [SEP]
    details = _ok(fake_call, "POST", "/tei/tokenize", {"inputs": "a cat"}, S.TeiTokenizeResponse)
    assert [t["text"] for t in details[0]] == ["[CLS]", "a", "cat", "[SEP]"]
    ranks = _ok(fake_call, "POST", "/tei/rerank", {"query": "cat", "texts": ["dog", "cat"], "return_text": True},
                S.TeiRerankResponse)
    assert [r["index"] for r in ranks] == [1, 0] and 0 < ranks[1]["score"] < ranks[0]["score"] < 1


def test_openai_and_cohere_routes(fake_call):
    answer = _ok(fake_call, "POST", "/v1/embeddings", {"input": ["a cat", "a dog"], "encoding_format": "base64"},
                 S.OpenAIEmbeddingsResponse)
    first = np.frombuffer(base64.b64decode(answer["data"][0]["embedding"]), dtype="<f4")
    assert first.shape == (32,) and answer["usage"]["prompt_tokens"] == 8  # [CLS] a cat [SEP], twice
    models = _ok(fake_call, "GET", "/v1/models", None, S.OpenAIModelsResponse)
    assert models["data"][0]["id"] == "fake/hashed-tokens"
    v2 = _ok(fake_call, "POST", "/v2/rerank", {"model": "m", "query": "cat", "documents": ["dog", "cat"], "top_n": 1},
             S.CohereRerankResponse)
    assert [r["index"] for r in v2["results"]] == [1] and v2["model"] == "fake/overlap-reranker"
    v1 = _ok(fake_call, "POST", "/v1/rerank", {"query": "cat", "documents": [{"text": "cat"}],
                                               "return_documents": True}, S.CohereRerankResponse)
    assert v1["results"][0]["document"] == {"text": "cat"} and v1["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("path,body,status,error_model,where", [
    ("/embed", {"inputs": ["ok", LONG], "truncate": False}, 422, S.NativeError, ("detail", "field", "inputs[1]")),
    ("/v1/embeddings", {"input": ["ok", "x", "y"], "dimensions": 99}, 400, S.OpenAIError,
     ("error", "param", "dimensions")),
    ("/tei/embed", {"inputs": ["ok", LONG], "truncate": False}, 422, S.TeiError, ("error_type", None, "Validation")),
    ("/tei/rerank", {"query": "q", "texts": ["a", LONG_PAIR], "truncate": False}, 422, S.TeiError,
     ("error_type", None, "Validation")),
    ("/rerank", {"query": "q", "texts": ["a", LONG_PAIR], "truncate": False}, 422, S.NativeError,
     ("detail", "field", "texts[1]")),
])
def test_engine_errors_name_the_dialects_own_field(fake_call, path, body, status, error_model, where):
    got, answer = fake_call("POST", path, body)
    assert got == status, answer
    error_model.model_validate(answer)
    outer, inner, expected = where
    assert (answer[outer][inner] if inner else answer[outer]) == expected
    if error_model is S.TeiError:
        assert "inputs[1]" in answer["error"] or "texts[1]" in answer["error"]


def test_cohere_names_its_documents_field(fake_client):
    answer = fake_client.post("/v2/rerank", json={"model": "m", "query": "q", "documents": ["a", LONG_PAIR],
                                                  "max_tokens_per_doc": 100000})
    assert answer.status_code == 200  # the cross-encoder cuts pairs (truncate is Cohere's default)
    bad = fake_client.post("/v2/rerank", json={"model": "m", "query": "q", "documents": []})
    assert bad.status_code == 400 and S.CohereError.model_validate(bad.json()).field == "documents"


def test_the_openai_sdk_against_the_app(fake_client):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="x", base_url="http://127.0.0.1/v1", http_client=fake_client)
    got = client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"])
    assert len(got.data) == 2 and len(got.data[0].embedding) == 32 and got.usage.prompt_tokens == 8
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="m", input="a", dimensions=99)
    assert err.value.body["param"] == "dimensions"


def test_the_cohere_sdk_against_the_app(fake_client):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="x", base_url="http://127.0.0.1", httpx_client=fake_client)
    answer = client.rerank(model="rerank-v3.5", query="cat", documents=["dog", "cat", "a cat"], top_n=2)
    assert [r.index for r in answer.results][0] in (1, 2) and len(answer.results) == 2
    embedded = client.embed(model="embed-v4.0", texts=["a cat"], input_type="search_document",
                            embedding_types=["float", "int8"])
    assert len(embedded.embeddings.float_[0]) == 32 and len(embedded.embeddings.int8[0]) == 32
    with pytest.raises(cohere.core.ApiError) as err:
        client.embed(model="m", texts=["a"], input_type="search_query", embedding_types=["int4"])
    assert err.value.status_code == 400 and err.value.body["field"] == "embedding_types[0]"


# A lone UTF-16 surrogate is valid JSON ("\ud800") but no Unicode text: every route refuses it where it
# sits, in its own dialect, never with a 500.
SURROGATE = "ok \\ud800 there"


@pytest.mark.parametrize("path,raw,status,field", [
    ("/embed", '{"inputs": ["fine", "%s"]}', 422, "inputs[1]"),
    ("/v1/embeddings", '{"input": "%s"}', 400, "input"),
    ("/tei/embed", '{"inputs": ["%s"]}', 422, None),
    ("/tei/embed_all", '{"inputs": "%s"}', 422, None),
    ("/tei/tokenize", '{"inputs": ["a", "%s"]}', 422, None),
    ("/v2/rerank", '{"model": "m", "query": "q", "documents": ["a", "%s"]}', 400, "documents[1]"),
    ("/v1/rerank", '{"query": "q", "documents": [{"text": "%s"}]}', 400, "documents[0].text"),
    ("/store/add", '{"texts": ["a"], "metadata": {"k": "%s"}}', 422, "metadata.k"),
    ("/store/add", '{"texts": ["a"], "metadata": {"%s": 1}}', 422, "metadata"),
    ("/store/search", '{"query": "q", "filter_metadata": {"k": "%s"}}', 422, "filter_metadata.k"),
    ("/store/delete", '{"filter_metadata": {"%s": 1}}', 422, "filter_metadata"),
])
def test_a_lone_surrogate_is_refused_where_it_is(fake_client, path, raw, status, field):
    answer = fake_client.post(path, content=(raw % SURROGATE).encode(), headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    body = answer.json()
    if path.startswith("/tei"):
        assert body["error_type"] == "Validation" and "surrogate" in body["error"]
    elif path.startswith("/v1/embeddings"):
        assert body["error"]["param"] == field and "surrogate" in body["error"]["message"]
    elif path.startswith(("/v2", "/v1")):
        assert body["field"] == field and "surrogate" in body["message"]
    else:
        assert body["detail"]["field"] == field and body["detail"]["reason"] == "invalid_unicode"


def test_a_4xx_is_an_answer_not_an_error_in_the_default_log(fake_client, capfd):
    from chutes_embeddings.logs import configure_logging
    from chutes_embeddings.settings import Settings

    try:
        configure_logging(Settings())  # the defaults, as `make serve` runs
        capfd.readouterr()
        assert fake_client.post("/embed", json={"inputs": []}).status_code == 422
        quiet = capfd.readouterr().out
        configure_logging(Settings(log_level="DEBUG"))
        assert fake_client.post("/embed", json={"inputs": []}).status_code == 422
        loud = capfd.readouterr().out
    finally:
        configure_logging(Settings(log_level="WARNING"))
    assert "HTTPException" not in quiet, quiet  # the SDK's ERROR line for the refusal stays out
    assert "ServiceHTTPException" in loud, "at DEBUG the SDK's line shows (or the SDK stopped logging it)"


def test_the_local_server_parses_a_body_once_and_hands_it_on_as_the_sdk_would():
    """On the local server the guard parses the body (orjson) and hands it on in
    ``request.state.decrypted``, as the SDK's dev middleware does, and that middleware (the
    costliest layer of a request there) leaves the stack."""
    from chutes.entrypoint.run import DevMiddleware
    from fastapi import FastAPI
    from starlette.responses import JSONResponse
    from starlette.testclient import TestClient

    from chutes_embeddings.http.boundary import install_boundary
    from chutes_embeddings.http.routes import RouteTable
    from chutes_embeddings.settings import Settings

    app = FastAPI()
    app.settings = Settings(local_server=True)
    seen: list[object] = []

    async def echo(request):  # a plain Starlette endpoint, as the SDK mounts a cord
        seen.append((request.state.decrypted, request.state.serialized, await request.body()))
        return JSONResponse({})

    app.router.add_route("/echo", echo, methods=["POST"])
    app.add_middleware(DevMiddleware)
    install_boundary(app, RouteTable())
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.post("/echo", json={"inputs": ["a", "b"], "x": 1.5}).status_code == 200
        refused = client.post("/echo", content=b'{"inputs": [', headers={"content-type": "application/json"})
    assert seen == [({"inputs": ["a", "b"], "x": 1.5}, False, b'{"inputs":["a","b"],"x":1.5}')]
    assert refused.status_code == 400 and "not valid JSON" in refused.text
    assert not any(m.cls is DevMiddleware for m in app.user_middleware)


# One strictness rule on every route: an integer is a JSON integer or a whole-number float; a
# boolean, a numeric string or a fraction is refused in the route's own error shape, naming the field.
STRICTNESS = [  # path, a valid body, the integer field, an error model, how much the field's value shows
    ("/embed/batch", {"texts": ["a", "b"]}, "batch_size", S.NativeError),
    ("/search", {"query": "cat", "corpus": ["a cat", "a dog"]}, "top_k", S.NativeError),
    ("/v1/embeddings", {"input": "a cat", "model": "m"}, "dimensions", S.OpenAIError),
    ("/tei/embed", {"inputs": "a cat"}, "dimensions", S.TeiError),
    ("/v2/rerank", {"model": "m", "query": "cat", "documents": ["dog", "cat"]}, "top_n", S.CohereError),
    ("/v1/rerank", {"model": "m", "query": "cat", "documents": ["dog", "cat"]}, "max_tokens_per_doc", S.CohereError),
    ("/infinity/embeddings", {"input": "a cat"}, "dimensions", S.InfinityError),
    ("/infinity/rerank", {"query": "cat", "documents": ["dog", "cat"]}, "top_n", S.InfinityError),
]


@pytest.mark.parametrize("path,body,field,error_model", STRICTNESS)
@pytest.mark.parametrize("value", [True, "2", 2.5])
def test_a_boolean_a_string_or_a_fraction_is_no_integer_on_any_route(fake_call, path, body, field, error_model, value):
    status, answer = fake_call("POST", path, {**body, field: value})
    assert 400 <= status < 500, answer
    error_model.model_validate(answer)
    assert field in str(answer), answer


@pytest.mark.parametrize("path,body,field,error_model", STRICTNESS)
def test_a_whole_number_float_is_an_integer_on_every_route(fake_call, path, body, field, error_model):
    status, answer = fake_call("POST", path, {**body, field: 2.0})
    assert status == 200, answer
    status, exact = fake_call("POST", path, {**body, field: 2})
    assert status == 200
    if isinstance(answer, dict):  # Cohere's and Infinity's answers carry a fresh id, Infinity's its second
        for fresh in ("id", "created"):
            answer.pop(fresh, None)
            exact.pop(fresh, None)
    assert answer == exact


@pytest.mark.parametrize("path,body,field,error_model", [
    ("/embed", {"inputs": "a cat"}, "normalize", S.NativeError),
    ("/tei/embed", {"inputs": "a cat"}, "normalize", S.TeiError),
    ("/v1/rerank", {"model": "m", "query": "cat", "documents": ["dog"]}, "return_documents", S.CohereError),
])
@pytest.mark.parametrize("value", [1, "true"])
def test_only_true_and_false_are_booleans_on_any_route(fake_call, path, body, field, error_model, value):
    status, answer = fake_call("POST", path, {**body, field: value})
    assert 400 <= status < 500, answer
    error_model.model_validate(answer)
    assert field in str(answer), answer


def test_rows_damaged_by_another_writer_never_make_a_collection_unsearchable(fake_app, fake_call):
    """Metadata written into the SQLite file by another writer (NaN, Infinity, 1e999, a 70-digit
    integer, a key twice, no JSON at all) is read as repaired, and a filter over the collection
    (its in-memory path: more rows than ``filter_memory_min_rows``) still answers."""
    import sqlite3
    from pathlib import Path

    coll = f"damaged-{uuid.uuid4().hex[:6]}"
    rows = fake_app.settings.filter_memory_min_rows + 500
    for start in range(0, rows, 1000):
        part = range(start, min(start + 1000, rows))
        status, _ = fake_call("POST", "/store/add", {"collection": coll, "texts": [f"t{i}" for i in part],
                                                     "ids": [f"r{i}" for i in part],
                                                     "metadata": [{"k": i % 5} for i in part]})
        assert status == 200
    damaged = ['{"k": NaN}', '{"k": Infinity}', '{"k": -Infinity}', '{"k": 1e999}', '{"k": ' + "9" * 70 + "}",
               '{"k": 1, "k": 2}', '{"k": ', '[1, 2]', '"text"', 'null', '{"k": {"deep": NaN}}', '{"k": "\\ud800"}',
               '{"\\udc00": 1}']
    [db] = list(Path(fake_app.settings.data_dir).rglob("*.sqlite3"))
    with sqlite3.connect(db) as con:
        for i, text in enumerate(damaged):
            con.execute("UPDATE records SET metadata = ? WHERE collection = ? AND id = ?", (text, coll, f"r{i}"))
    for flt in ({"k": {"$ne": 1}}, {"k": {"$gt": 2}}, {"k": 3}):
        status, found = fake_call("POST", "/store/search", {"collection": coll, "query": "t1", "top_k": 5,
                                                            "filter_metadata": flt})
        assert status == 200, found
        status, got = fake_call("POST", "/store/get", {"collection": coll, "filter_metadata": flt, "limit": 1000})
        assert status == 200, got
    status, got = fake_call("POST", "/store/get", {"collection": coll, "ids": [f"r{i}" for i in range(len(damaged))]})
    assert status == 200 and len(got["records"]) == len(damaged), got
    fake_call("POST", "/store/drop", {"collection": coll})


@pytest.mark.parametrize("path,error_model", [
    ("/v1/no-such-route", S.OpenAIError), ("/v2/no-such-route", S.CohereError), ("/tei/no-such-route", S.TeiError),
    ("/infinity/no-such-route", S.InfinityError), ("/no-such-route", S.NativeError),
])
def test_an_unknown_path_answers_404_in_the_dialect_of_its_prefix(fake_call, path, error_model):
    """So each SDK shows a message for a route this service lacks (``/v1/...`` is OpenAI's prefix
    here, ``/v2/...`` Cohere's, ``/tei/...`` TEI's)."""
    status, body = fake_call("POST", path, {"input": "x"})
    assert status == 404, body
    error_model.model_validate(body)


def test_tei_similarity_answers_each_sentences_cosine_in_input_order(fake_call):
    body = {"inputs": {"source_sentence": "a cat", "sentences": ["stocks fell", "a cat", "a kitten"]}, "parameters": {}}
    scores = _ok(fake_call, "POST", "/tei/similarity", body, S.TeiSimilarityResponse)
    status, native = fake_call("POST", "/similarity", {"source_text": "a cat",
                                                       "target_texts": ["stocks fell", "a cat", "a kitten"]})
    assert status == 200
    by_index = {r["index"]: r["similarity"] for r in native["results"]}
    np.testing.assert_allclose(scores, [by_index[i] for i in range(3)], rtol=1e-6)
    assert scores[1] == pytest.approx(1.0, abs=1e-5)
    status, refused = fake_call("POST", "/tei/similarity", {"inputs": {"source_sentence": "a", "sentences": []}})
    assert 400 <= status < 500 and S.TeiError.model_validate(refused)
    status, refused = fake_call("POST", "/tei/similarity", {**body, "parameters": {"prompt_name": "query"}})
    assert status == 422 and "prompt_name" in refused["error"]


def test_teis_openai_route_and_metrics_answer_under_tei(fake_call):
    """TEI serves ``/v1/embeddings`` and ``/metrics`` too: a client given ``<service>/tei`` as TEI's
    URL finds them there, answering as ``/v1/embeddings`` and ``/metrics`` do."""
    body = {"input": ["a cat", "a dog"], "model": "m"}
    under_tei = _ok(fake_call, "POST", "/tei/v1/embeddings", body, S.OpenAIEmbeddingsResponse)
    direct = _ok(fake_call, "POST", "/v1/embeddings", body, S.OpenAIEmbeddingsResponse)
    assert under_tei["data"] == direct["data"] and under_tei["usage"] == direct["usage"]
    status, refused = fake_call("POST", "/tei/v1/embeddings", {"input": [], "model": "m"})
    assert status == 400 and S.OpenAIError.model_validate(refused)


def test_tei_metrics_is_the_prometheus_text(fake_client):
    answer = fake_client.get("/tei/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert "te_queue_size" in answer.text and "embeddings_requests_total" in answer.text


def test_infinity_routes(fake_call):
    body = {"input": ["a cat", "a dog"], "encoding_format": "base64", "dimensions": 8, "model": "m"}
    answer = _ok(fake_call, "POST", "/infinity/embeddings", body, S.InfinityEmbeddingsResponse)
    assert np.frombuffer(base64.b64decode(answer["data"][1]["embedding"]), dtype="<f4").shape == (8,)
    assert answer["id"].startswith("infinity-") and answer["usage"]["prompt_tokens"] == 8
    openai_answer = _ok(fake_call, "POST", "/v1/embeddings", body, S.OpenAIEmbeddingsResponse)
    assert answer["data"] == openai_answer["data"]
    ranked = _ok(fake_call, "POST", "/infinity/rerank", {"query": "cat", "documents": ["dog", "cat", "a cat"],
                                                         "return_documents": True, "top_n": 2},
                 S.InfinityRerankResponse)
    assert [r["document"] for r in ranked["results"]] == ["cat", "a cat"] and ranked["model"] == "fake/overlap-reranker"
    raw = _ok(fake_call, "POST", "/infinity/rerank", {"query": "cat", "documents": ["dog", "cat"], "raw_scores": True},
              S.InfinityRerankResponse)
    assert raw["results"][0]["relevance_score"] > 1 and "document" not in raw["results"][0]  # a logit
    models = _ok(fake_call, "GET", "/infinity/models", None, S.InfinityModelsResponse)
    assert [(m["id"], m["capabilities"]) for m in models["data"]] == [("fake/hashed-tokens", ["embed"]),
                                                                      ("fake/overlap-reranker", ["rerank"])]


def test_tei_root_answers_a_similarity_body_as_similarity(fake_call):
    body = {"inputs": {"source_sentence": "a cat", "sentences": ["stocks fell", "a cat"]}}
    assert _ok(fake_call, "POST", "/tei", body, S.TeiSimilarityResponse) == _ok(
        fake_call, "POST", "/tei/similarity", body, S.TeiSimilarityResponse)
    status, refused = fake_call("POST", "/tei", {"inputs": {"source_sentence": "a cat"}})
    assert status == 422 and "sentences" in refused["error"] and S.TeiError.model_validate(refused)


def test_tei_decode_turns_ids_back_into_text(fake_call):
    spans = _ok(fake_call, "POST", "/tei/tokenize", {"inputs": ["a cat", "sourdough"]}, S.TeiTokenizeResponse)
    ids = [[t["id"] for t in row] for row in spans]
    assert _ok(fake_call, "POST", "/tei/decode", {"ids": ids}, S.TeiDecodeResponse) == ["a cat", "sourdough"]
    assert _ok(fake_call, "POST", "/tei/decode", {"ids": ids[0], "skip_special_tokens": False},
               S.TeiDecodeResponse) == ["[CLS] a cat [SEP]"]
    for ids_sent, place, expected in (([1, 40_000], "ids[1]", 422), ([[1], [2, 40_000]], "ids[1][1]", 422),
                                      ([-1], "ids[0]", 422), ([True], "ids[0]", 422), ([1.5], "ids[0]", 422),
                                      ([], "ids", 400), ([[]], "ids", 400)):  # TEI: an empty batch is 400 Empty
        status, refused = fake_call("POST", "/tei/decode", {"ids": ids_sent})
        assert status == expected and S.TeiError.model_validate(refused), refused
        assert place in refused["error"], refused


def test_openai_models_retrieve_answers_the_served_model_or_404(fake_client):
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=f"{fake_client.base_url}/v1", api_key="unused", http_client=fake_client, max_retries=0)
    assert client.models.retrieve("fake/hashed-tokens").id == "fake/hashed-tokens"
    with pytest.raises(NotFoundError) as caught:
        client.models.retrieve("text-embedding-3-small")
    assert caught.value.body["param"] == "model" and "fake/hashed-tokens" in caught.value.message


@pytest.mark.parametrize("raw", [b"null", b'""', b"0", b"false", b"[]", b'["x"]'])
def test_a_body_that_is_no_json_object_is_refused_naming_it(fake_client, raw):
    """Even on a route whose fields are all optional: the SDK reads a falsy body as none at all."""
    answer = fake_client.post("/store/collections", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and answer.json()["detail"]["field"] == "body", answer.text
    assert "JSON object" in answer.json()["detail"]["message"]


# --- Cohere's embed API and the embedding types -----------------------------------------------------
def test_cohere_embed_v2_answers_each_type_of_the_native_vectors(fake_call):
    from chutes_embeddings.engine.quantize import by_type

    texts = ["a cat", "a dog"]
    status, native = fake_call("POST", "/embed", {"inputs": texts})
    assert status == 200
    floats = np.asarray(native["embeddings"], dtype=np.float32)
    kinds = ["float", "int8", "uint8", "binary", "ubinary", "base64"]
    v2 = _ok(fake_call, "POST", "/v2/embed", {"model": "embed-v4.0", "texts": texts, "input_type": "search_query",
                                              "embedding_types": kinds}, S.CohereEmbedByTypeResponse)
    assert v2["response_type"] == "embeddings_by_type" and v2["texts"] == texts and list(v2["embeddings"]) == kinds
    assert v2["meta"] == {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 8}}
    assert v2["embeddings"] == by_type(floats, kinds)
    assert len(v2["embeddings"]["binary"][0]) == 32 // 8
    default = _ok(fake_call, "POST", "/v2/embed", {"model": "m", "inputs": [{"content": [{"type": "text",
                                                                                          "text": "a cat"}]}]},
                  S.CohereEmbedByTypeResponse)
    assert list(default["embeddings"]) == ["float"] and default["embeddings"]["float"] == native["embeddings"][:1]


def test_cohere_embed_v1_answers_floats_unless_types_are_asked(fake_call):
    floats = _ok(fake_call, "POST", "/v1/embed", {"texts": ["a cat"], "model": "embed-english-v3.0"},
                 S.CohereV1EmbedResponse)
    assert floats["response_type"] == "embeddings_floats" and len(floats["embeddings"][0]) == 32
    assert floats["meta"]["api_version"] == {"version": "1"}
    typed = _ok(fake_call, "POST", "/v1/embed", {"texts": ["a cat"], "embedding_types": ["ubinary"]},
                S.CohereV1EmbedResponse)
    assert typed["response_type"] == "embeddings_by_type" and list(typed["embeddings"]) == ["ubinary"]


def test_cohere_embed_truncate_output_dimension_and_max_tokens(fake_call):
    words = " ".join(f"w{i}" for i in range(40))  # over the fake embedder's 32 tokens
    def vec(body):
        return np.asarray(_ok(fake_call, "POST", "/v2/embed", {"model": "m", **body},
                              S.CohereEmbedByTypeResponse)["embeddings"]["float"][0])

    def native(body):
        return np.asarray(fake_call("POST", "/embed", body)[1]["embeddings"])

    assert np.allclose(vec({"texts": [words]}), native({"inputs": words}), atol=1e-6)  # END: the start is kept
    tail = " ".join(f"w{i}" for i in range(10, 40))  # START keeps the last 30 content tokens
    assert np.allclose(vec({"texts": [words], "truncate": "START"}), native({"inputs": tail}), atol=1e-6)
    status, refused = fake_call("POST", "/v2/embed", {"model": "m", "texts": ["ok", words], "truncate": "NONE"})
    assert status == 400 and refused["field"] == "texts[1]" and S.CohereError.model_validate(refused)
    short = vec({"texts": ["a cat sat"], "output_dimension": 8})
    assert short.shape == (8,) and np.allclose(short, native({"inputs": "a cat sat", "dimensions": 8}), atol=1e-6)
    assert np.allclose(vec({"texts": [words], "max_tokens": 3}), native({"inputs": "w0 w1 w2"}), atol=1e-6)
    assert np.allclose(vec({"texts": [words], "max_tokens": 3, "truncate": "START"}),
                       native({"inputs": "w37 w38 w39"}), atol=1e-6)
    status, refused = fake_call("POST", "/v2/embed", {"model": "m", "texts": ["a b c d"], "max_tokens": 3,
                                                      "truncate": "NONE"})
    assert status == 400 and refused["field"] == "texts[0]" and refused["limit"] == 3


COHERE_BAD_EMBEDS = [
    ({"texts": ["a"], "embedding_types": ["float", "int4"]}, "embedding_types[1]"),
    ({"texts": ["a"], "input_type": "search_everything"}, "input_type"),
    ({"texts": ["a"], "input_type": "image"}, "input_type"),
    ({"texts": ["a"], "output_dimension": 33}, "output_dimension"),
    ({"texts": ["a"] * (S.MAX_COHERE_EMBED_TEXTS + 1)}, "texts"),
    ({"texts": []}, "texts"),
    ({}, "texts"),
    ({"texts": ["a"], "truncate": "MIDDLE"}, "truncate"),
    ({"images": ["data:image/png;base64,AAAA"]}, "images"),
    ({"inputs": [{"content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]}, "inputs[0].content[0]"),
    ({"texts": ["a"], "inputs": [{"content": [{"type": "text", "text": "b"}]}]}, "inputs"),
]
V2_ONLY = ("inputs", "output_dimension")  # v1 ignores v2's fields, as Cohere v1 does


@pytest.mark.parametrize("path,body,field", [("/v2/embed", body, field) for body, field in COHERE_BAD_EMBEDS] + [
    ("/v1/embed", body, field) for body, field in COHERE_BAD_EMBEDS if not field.startswith(V2_ONLY)])
def test_cohere_embed_bad_input_is_a_400_naming_the_field(fake_client, path, body, field):
    answer = fake_client.post(path, json={"model": "m", **body})
    assert answer.status_code == 400, answer.text
    error = S.CohereError.model_validate(answer.json())
    assert error.field == field and error.message == error.detail


def test_native_embed_answers_the_types_asked_shaped_as_its_floats(fake_call):
    from chutes_embeddings.engine.quantize import by_type

    floats = _ok(fake_call, "POST", "/embed", {"inputs": ["a cat", "a dog"], "embedding_types": ["float"]},
                 S.EmbedResponse)
    assert isinstance(floats["embeddings"], list)  # float only: today's answer
    typed = _ok(fake_call, "POST", "/embed", {"inputs": ["a cat", "a dog"], "embedding_types": ["int8", "binary"]},
                S.EmbedResponse)
    assert typed["embeddings"] == by_type(np.asarray(floats["embeddings"], np.float32), ["int8", "binary"])
    assert typed["count"] == 2 and typed["dimension"] == 32
    one = _ok(fake_call, "POST", "/embed", {"inputs": "a cat", "embedding_types": ["ubinary", "base64"]},
              S.EmbedResponse)
    assert len(one["embeddings"]["ubinary"]) == 4 and isinstance(one["embeddings"]["base64"], str)
    status, refused = fake_call("POST", "/embed", {"inputs": "a cat", "normalize": False, "embedding_types": ["int8"]})
    assert status == 422 and refused["detail"]["field"] == "embedding_types[0]"
    status, refused = fake_call("POST", "/embed", {"inputs": "a cat", "embedding_types": ["int3"]})
    assert status == 422 and refused["detail"]["field"] == "embedding_types[0]"
