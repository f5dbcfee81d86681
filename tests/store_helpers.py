"""Helpers the store tests share: vectors, the filter cases both stores must agree on, a crash."""

from __future__ import annotations

import numpy as np

from chutes_embeddings.store import Legs, Record, SparseVector
from chutes_embeddings.store.filters import All

NO_FILTER = All()
DIM = 384
MODEL = "test-model"


def unit(rng, n, dim=DIM):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def clustered(rng, n, centres=50, noise=0.35):
    """Vectors with real neighbourhoods (random ones have none)."""
    c = unit(rng, centres)
    v = c[rng.integers(0, centres, n)] + noise * unit(rng, n) / np.sqrt(2)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def add(store, name, vectors, metas=None, prefix="r"):
    """Create the collection and upsert ``vectors`` as records ``{prefix}{i}``; returns the size."""
    store.ensure_collection(name, MODEL, vectors.shape[1])
    recs = [Record(f"{prefix}{i}", f"text {prefix}{i}", (metas[i] if metas else {"i": i}), v)
            for i, v in enumerate(vectors)]
    return store.upsert(name, recs)


LEXICAL = Legs(lexical="english")
BOTH_LEGS = Legs(lexical="english", sparse_model="test-sparse")


def add_texts(store, name, texts, metas=None, sparse=None, legs=BOTH_LEGS, prefix="r"):
    """Create the collection with ``legs`` and upsert ``texts`` as records ``{prefix}{i}`` (random
    vectors; ``sparse``: each record's ``{id: weight}``); returns the size."""
    store.ensure_collection(name, MODEL, DIM, legs)
    vectors = unit(np.random.default_rng(len(texts)), len(texts))
    recs = [Record(f"{prefix}{i}", text, (metas[i] if metas else {"i": i}), vectors[i],
                   sparse_vector(sparse[i]) if sparse else (sparse_vector({i: 1.0}) if legs.sparse_model else None))
            for i, text in enumerate(texts)]
    return store.upsert(name, recs)


def sparse_vector(weights):
    """A ``SparseVector`` of ``{id: weight}``."""
    ids = sorted(weights)
    return SparseVector(tuple(ids), tuple(float(weights[i]) for i in ids))


def crash(store):
    """Forget an embedded store without saving anything, as kill -9 would."""
    store._collections.clear()
    store._closed.set()
    store._lock_file.close()


FILTER_METAS = [
    {"lang": "en", "year": 2019, "score": 0.5, "flag": True, "tag": "a"},
    {"lang": "de", "year": 2021, "score": 1.5, "flag": False, "tag": "b"},
    {"lang": "en", "year": 2023, "score": 2.5, "flag": 1, "tag": "c"},
    {"lang": "fr", "year": "2022", "tag": None},
    {"other": "x"},
]
FILTER_CASES = [
    ({"lang": "en"}, {0, 2}),
    ({"lang": {"$ne": "en"}}, {1, 3, 4}),
    ({"lang": {"$in": ["de", "fr"]}}, {1, 3}),
    ({"lang": {"$nin": ["de", "fr"]}}, {0, 2, 4}),
    ({"year": {"$gte": 2021}}, {1, 2}),
    ({"year": {"$gt": 2019, "$lte": 2021}}, {1}),
    ({"year": {"$lt": 2022}}, {0, 1}),
    ({"year": "2022"}, {3}),
    ({"score": {"$gte": 1.5}}, {1, 2}),
    ({"flag": True}, {0}),
    ({"flag": 1}, {2}),
    ({"tag": None}, {3}),
    ({"tag": {"$gte": "b"}}, {1, 2}),
    ({"lang": "en", "year": {"$gte": 2020}}, {2}),
    ({"missing": "x"}, set()),
    ({"$or": [{"lang": "de"}, {"year": {"$gte": 2023}}]}, {1, 2}),
    ({"$and": [{"year": {"$gte": 2019}}, {"year": {"$lte": 2021}}]}, {0, 1}),
    ({"$not": {"lang": "en"}}, {1, 3, 4}),
    ({"lang": "en", "$or": [{"flag": True}, {"tag": "c"}]}, {0, 2}),
    ({"$not": {"$or": [{"lang": "en"}, {"other": "x"}]}}, {1, 3}),
    ({"$or": [{"$and": [{"lang": "en"}, {"year": {"$lt": 2020}}]}, {"tag": None}]}, {0, 3}),
    ({"$or": [{"missing": 1}, {"other": {"$ne": "x"}}]}, {0, 1, 2, 3}),
]
