"""Every cord through the chute app over HTTP, in dev mode and with production serialisation."""

from __future__ import annotations

import pytest

import schemas as S

ML = "machine learning algorithms"
TOPICS = ["neural network models", "cooking recipes", "deep learning with gradient descent", "baking bread at home"]


def test_embed_single_string_returns_one_vector(call):
    status, body = call("POST", "/embed", {"inputs": "hello world"})
    assert status == 200, body
    S.EmbedResponse.model_validate(body)
    assert body["dimension"] == 384 and len(body["embeddings"]) == 384
    assert "count" not in body
    assert body["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_embed_list_returns_vectors_in_order(call, st_model):
    texts = ["first text", "second, longer text about something else", "third"]
    status, body = call("POST", "/embed", {"inputs": texts})
    assert status == 200, body
    assert body["count"] == 3 and len(body["embeddings"]) == 3
    ref = st_model.encode(texts, normalize_embeddings=True)
    for vec, expected in zip(body["embeddings"], ref):
        assert sum(a * b for a, b in zip(vec, expected)) >= 0.99999


def test_embed_normalize_false_keeps_the_norm(call):
    status, body = call("POST", "/embed", {"inputs": "unnormalised please", "normalize": False, "pooling": "cls"})
    assert status == 200
    norm = sum(x * x for x in body["embeddings"]) ** 0.5
    assert abs(norm - 1.0) > 0.01


def test_embed_batch(call):
    texts = [f"text number {i}" for i in range(40)]
    status, body = call("POST", "/embed/batch", {"texts": texts, "batch_size": 8})
    assert status == 200, body
    S.EmbedBatchResponse.model_validate(body)
    assert body["processed_count"] == 40 and body["batch_size"] == 8 and len(body["embeddings"]) == 40


def test_similarity_sorted_with_ranks(call):
    status, body = call("POST", "/similarity", {"source_text": ML, "target_texts": TOPICS})
    assert status == 200, body
    S.SimilarityResponse.model_validate(body)
    sims = [r["similarity"] for r in body["results"]]
    assert sims == sorted(sims, reverse=True)
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4]
    assert {r["index"] for r in body["results"]} == {0, 1, 2, 3}
    for r in body["results"]:
        assert TOPICS[r["index"]] == r["text"]


def test_rerank_top_k(call):
    status, body = call("POST", "/rerank", {"query": ML, "texts": TOPICS, "top_k": 2})
    assert status == 200, body
    S.RerankResponse.model_validate(body)
    assert body["total_results"] == 2 and len(body["results"]) == 2
    assert body["results"][0]["score"] >= body["results"][1]["score"]


def test_search_top_k_and_threshold(call):
    status, body = call("POST", "/search", {"query": ML, "corpus": TOPICS, "top_k": 3})
    assert status == 200, body
    S.SearchResponse.model_validate(body)
    assert body["results_returned"] == 3 and body["total_corpus_size"] == 4
    status, body = call("POST", "/search", {"query": ML, "corpus": TOPICS, "threshold": 0.99})
    assert status == 200 and body["results"] == [] and body["threshold"] == 0.99


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "hdbscan"])
def test_cluster_methods(call, method):
    texts = ["the cat sat on the mat", "dogs love playing fetch", "kittens purr softly", "puppies chew shoes",
             "stock markets fell sharply", "the central bank raised rates", "shares rallied on earnings",
             "inflation data surprised investors"]
    status, body = call("POST", "/cluster", {"texts": texts, "method": method})
    assert status == 200, body
    S.ClusterResponse.model_validate(body)
    assert body["method"] == method and body["total_texts"] == 8
    assert sorted(i for c in body["clusters"] for i in c["indices"]) == list(range(8))


def test_the_readmes_clustering_example_groups_as_a_reader_expects(call):
    texts = ["a cat", "a kitten", "stocks fell", "bonds rose"]  # README, "curl"
    status, body = call("POST", "/cluster", {"texts": texts, "method": "kmeans"})
    assert status == 200 and body["n_clusters"] == 2
    groups = sorted(sorted(c["texts"]) for c in body["clusters"])
    assert groups == [["a cat", "a kitten"], ["bonds rose", "stocks fell"]]
    assert body["silhouette"] > 0.3


def test_cluster_fixed_k(call):
    status, body = call("POST", "/cluster", {"texts": ["a", "b", "c", "d"], "n_clusters": 3})
    assert status == 200 and body["n_clusters"] == 3


def test_health_and_info(call, chute_app):
    status, body = call("GET", "/health")
    assert status == 200
    S.HealthResponse.model_validate(body)
    assert body == {
        "status": "ok",
        "backend": "local",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "dimension": 384,
        "queue": {"depth": 0, "estimated_wait_s": 0.0},
        "reasons": [],
        "reranker": {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "kind": "bi-encoder",
            "backend": "local",
            "note": "no EMBEDDINGS_RERANK_MODEL configured: scored by the embedding model's cosine",
        },
        "sparse": None,  # no EMBEDDINGS_SPARSE_MODEL in the session chute
        "models": [{"name": "sentence-transformers/all-MiniLM-L6-v2", "kind": "embedder", "default": True,
                    "status": "ready", "names": ["sentence-transformers/all-MiniLM-L6-v2"], "backend": "local",
                    "runtime": body["models"][0]["runtime"], "max_input_tokens": 256, "dimension": 384,
                    "queue": {"depth": 0, "estimated_wait_s": 0.0}}],
    }
    status, body = call("GET", "/info")
    assert status == 200
    S.InfoResponse.model_validate(body)
    from chutes_embeddings.http.limits import service_limits

    assert body["limits"] == service_limits(chute_app.settings, S.LIMITS)
    assert body["max_input_tokens"] == 256 and body["pooling"] == "mean"


# --- bad input: 4xx naming the field and the limit, never a 500 ----------------------------
BAD = [
    ("/embed", {"inputs": []}, "inputs", 1),
    ("/embed", {"inputs": [""]}, "inputs[0]", 1),
    ("/embed", {"inputs": ""}, "inputs[0]", 1),
    ("/embed", {"inputs": ["x"] * (S.MAX_EMBED_INPUTS + 1)}, "inputs", S.MAX_EMBED_INPUTS),
    ("/embed", {"inputs": "x" * (S.MAX_TEXT_CHARS + 1)}, "inputs[0]", S.MAX_TEXT_CHARS),
    ("/embed", {"inputs": 42}, "inputs", None),
    ("/embed", {"inputs": ["ok", 7]}, "inputs[1]", None),
    (
        "/embed",
        {"inputs": "x", "pooling": "median"},
        "pooling",
        "'cls', 'mean', 'max', 'mean_sqrt_len', 'lasttoken' or 'weightedmean'",
    ),
    ("/embed", {"inputs": "x", "normalize": "yes"}, "normalize", None),
    ("/embed", {"inputs": "x", "top_n": 3}, "top_n", None),
    ("/embed", {}, "inputs", None),
    ("/embed", ["x"], "body", None),
    ("/embed/batch", {"texts": ["a"], "batch_size": 0}, "batch_size", 1),
    ("/embed/batch", {"texts": ["a"], "batch_size": S.MAX_BATCH_SIZE + 1}, "batch_size", S.MAX_BATCH_SIZE),
    ("/embed/batch", {"texts": ["a"] * (S.MAX_BATCH_TEXTS + 1)}, "texts", S.MAX_BATCH_TEXTS),
    ("/embed/batch", {"texts": ["a"], "batch_size": "8"}, "batch_size", None),
    ("/similarity", {"source_text": "a", "target_texts": []}, "target_texts", 1),
    ("/similarity", {"source_text": "", "target_texts": ["b"]}, "source_text", 1),
    (
        "/similarity",
        {"source_text": "a", "target_texts": ["b"] * (S.MAX_SIMILARITY_TARGETS + 1)},
        "target_texts",
        S.MAX_SIMILARITY_TARGETS,
    ),
    ("/rerank", {"query": "q", "texts": ["b"] * (S.MAX_RERANK_TEXTS + 1)}, "texts", S.MAX_RERANK_TEXTS),
    ("/rerank", {"query": "q", "texts": ["b"], "top_k": 0}, "top_k", 1),
    ("/rerank", {"query": "q", "texts": ["b"], "top_k": S.MAX_RERANK_TEXTS + 1}, "top_k", S.MAX_RERANK_TEXTS),
    ("/search", {"query": "q", "corpus": ["b"], "top_k": S.MAX_SEARCH_TOP_K + 1}, "top_k", S.MAX_SEARCH_TOP_K),
    ("/search", {"query": "q", "corpus": ["b"] * (S.MAX_SEARCH_CORPUS + 1)}, "corpus", S.MAX_SEARCH_CORPUS),
    ("/search", {"query": "q", "corpus": ["b"], "threshold": 1.5}, "threshold", 1.0),
    ("/search", {"query": "q", "corpus": ["b"], "threshold": -0.1}, "threshold", 0.0),
    ("/cluster", {"texts": ["a"]}, "texts", S.MIN_CLUSTER_TEXTS),
    ("/cluster", {"texts": ["a"] * (S.MAX_CLUSTER_TEXTS + 1)}, "texts", S.MAX_CLUSTER_TEXTS),
    ("/cluster", {"texts": ["a", "b"], "n_clusters": 1}, "n_clusters", S.MIN_CLUSTERS),
    ("/cluster", {"texts": ["a", "b"], "n_clusters": S.MAX_CLUSTERS + 1}, "n_clusters", S.MAX_CLUSTERS),
    ("/cluster", {"texts": ["a", "b"], "method": "dbscan"}, "method", "'kmeans', 'agglomerative' or 'hdbscan'"),
]


@pytest.mark.parametrize("path,payload,field,limit", BAD, ids=[f"{p}:{f}" for p, _, f, _ in BAD])
def test_bad_input_names_field_and_limit(dev_call, path, payload, field, limit):
    status, body = dev_call("POST", path, payload)
    assert status == 422, body
    detail = body["detail"]
    assert detail["error_type"] == "invalid_input"
    assert detail["field"] == field
    assert detail.get("limit") == limit
    assert field in detail["message"]


@pytest.mark.parametrize("content", [b"not json", b"{\"inputs\": [", b"", b"\xff\xfe"])
def test_non_json_body_is_400(dev_call, content):
    status, body = dev_call("POST", "/embed", content=content)
    assert status == 400, body
    assert body["detail"]["field"] == "body" and "JSON" in body["detail"]["message"]


def test_cluster_more_clusters_than_texts(dev_call):
    status, body = dev_call("POST", "/cluster", {"texts": ["a", "b", "c"], "n_clusters": 5})
    assert status == 422 and body["detail"]["field"] == "n_clusters" and body["detail"]["limit"] == 3


def test_hdbscan_refuses_n_clusters(dev_call):
    status, body = dev_call("POST", "/cluster", {"texts": ["a", "b", "c"], "n_clusters": 2, "method": "hdbscan"})
    assert status == 422 and "hdbscan" in body["detail"]["message"]


def test_truncate_false_over_limit_says_tokens_and_limit(dev_call, engine):
    long_text = "word " * 600
    status, body = dev_call("POST", "/embed", {"inputs": ["short", long_text], "truncate": False})
    assert status == 422, body
    detail = body["detail"]
    assert detail["field"] == "inputs[1]" and detail["limit"] == 256
    assert detail["tokens"] == engine.embedder.tokenizer.tokenize([long_text])[1][0] > 256
    assert "256" in detail["message"] and str(detail["tokens"]) in detail["message"]
    # with truncation the same text is embedded from its first 256 tokens
    status, body = dev_call("POST", "/embed", {"inputs": long_text, "truncate": True})
    assert status == 200


def test_truncate_false_within_limit_equals_truncate_true(dev_call):
    a = dev_call("POST", "/embed", {"inputs": "fits easily", "truncate": False})[1]["embeddings"]
    b = dev_call("POST", "/embed", {"inputs": "fits easily", "truncate": True})[1]["embeddings"]
    assert a == b


def test_local_server_and_production_send_the_same_json(test_client):
    """The local server sends a cord's result as the very bytes production's ``orjson.dumps``
    makes of it (not FastAPI's encoder), and production's encrypted path carries the same body."""
    import base64

    import orjson

    payload = {"inputs": ["one text", "another, longer text"], "normalize": False}
    dev = test_client.post("/embed", json=payload)
    prod = test_client.post("/embed", json=payload, headers={"x-test-production": "1"})
    assert dev.status_code == prod.status_code == 200
    assert dev.headers["content-type"] == "application/json"
    assert dev.content == orjson.dumps(orjson.loads(dev.content))  # orjson's bytes, no reformatting
    assert base64.b64decode(prod.json()["body"]) == dev.content


def test_startup_objects_are_out_of_the_collectors_way(engine):
    """The loaded models' objects are frozen out of full garbage collections (their pauses were
    the p99 of concurrent requests)."""
    import gc

    assert gc.get_freeze_count() > 100_000
