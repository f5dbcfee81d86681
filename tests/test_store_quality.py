"""Search quality on 10k real embeddings: exact on the embedded store, HNSW recall on Postgres."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest

from bench.corpus import sentences
from chutes_embeddings.store import Record
from chutes_embeddings.store.embedded import EmbeddedStore
from chutes_embeddings.store.filters import All
from chutes_embeddings.store.pgvector import PgVectorStore, table_name

N, QUERIES, K = 10_000, 100, 10
NO_FILTER = All()


@pytest.fixture(scope="module")
def real(engine):
    texts = sentences(N + QUERIES, seed=7)
    vectors = engine.embed(texts).vectors
    return texts[:N], vectors[:N], vectors[N:]


def _load(store, name, texts, vectors):
    store.ensure_collection(name, "m", vectors.shape[1])
    for s in range(0, len(texts), 1000):
        store.upsert(name, [Record(str(i), texts[i], {}, vectors[i]) for i in range(s, min(s + 1000, len(texts)))])


def _recall(store, name, corpus, queries):
    exact = np.argsort(-(queries @ corpus.T), axis=1)[:, :K]
    got = store.search(name, queries, K, NO_FILTER, None)
    return float(np.mean([len({h.id for h in g} & {str(i) for i in e}) / K for g, e in zip(got, exact)]))


def test_embedded_store_returns_the_true_top_k(real, tmp_path):
    texts, corpus, queries = real
    store = EmbeddedStore(tmp_path / "s")
    try:
        _load(store, "quality", texts, corpus)
        assert _recall(store, "quality", corpus, queries) == 1.0
    finally:
        store.close()


def test_postgres_hnsw_recall_at_10(real, pg_url):
    texts, corpus, queries = real
    # a floor: EMBEDDINGS_PG_EF_SEARCH defaults higher; a graph of other than the default m/ef_construction
    store = PgVectorStore(pg_url, ef_search=100, hnsw_m=24, hnsw_ef_construction=100)
    name = "quality_" + uuid.uuid4().hex[:8]
    try:
        _load(store, name, texts, corpus)
        with psycopg.connect(pg_url) as conn:
            index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                                 (table_name(name) + "_hnsw",)).fetchone()[0]
        assert "m='24'" in index and "ef_construction='100'" in index, index
        recall = _recall(store, name, corpus, queries)
        print(f"pgvector HNSW recall@10 on {N} real embeddings, ef_search=100: {recall:.3f}")
        assert recall >= 0.95
    finally:
        store.drop(name)
        store.close()
