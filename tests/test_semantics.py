"""Semantic sanity with the real model, through the cords."""

from __future__ import annotations

QUERY = "machine learning algorithms"
CANDIDATES = ["cooking recipes", "neural network models", "gardening tips for spring"]


def _position(results, key, value):
    return next(r["rank"] for r in results if r[key] == value)


def test_similarity_prefers_related_topic(dev_call):
    body = dev_call("POST", "/similarity", {"source_text": QUERY, "target_texts": CANDIDATES})[1]
    assert _position(body["results"], "text", "neural network models") < _position(
        body["results"], "text", "cooking recipes"
    )
    assert body["results"][0]["text"] == "neural network models"


def test_rerank_prefers_related_topic(dev_call):
    body = dev_call("POST", "/rerank", {"query": QUERY, "texts": CANDIDATES})[1]
    assert body["results"][0]["text"] == "neural network models"
    assert body["results"][0]["index"] == 1


def test_search_prefers_related_topic(dev_call):
    body = dev_call("POST", "/search", {"query": QUERY, "corpus": CANDIDATES, "top_k": 2})[1]
    assert body["results"][0]["corpus_index"] == 1
    assert "cooking recipes" not in [r["text"] for r in body["results"][:1]]


def test_cluster_separates_two_topics(dev_call):
    animals = [
        "the cat chased a mouse",
        "my dog loves long walks",
        "a kitten sleeping in the sun",
        "puppies play fetch in the park",
    ]
    finance = ["the stock market fell sharply today", "interest rates were raised by the central bank",
               "investors sold shares after weak earnings", "bond yields climbed on inflation fears"]
    body = dev_call("POST", "/cluster", {"texts": animals + finance})[1]
    assert body["n_clusters"] == 2, body
    groups = sorted(sorted(c["indices"]) for c in body["clusters"])
    assert groups == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert body["silhouette"] is not None and body["silhouette"] > 0.1
    for c in body["clusters"]:
        assert c["centroid_text"] in c["texts"]
