"""VectorIndex: exact below the threshold, IVF above it, built off the request path, nothing lost."""

from __future__ import annotations

import threading

import numpy as np

from chutes_embeddings.store.vector_index import VectorIndex
from tests.helpers import clustered, unit


def brute(matrix, rids, queries, k):
    s = queries @ matrix.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return rids[order]


def test_exact_search_is_the_true_top_k_in_one_product():
    rng = np.random.default_rng(0)
    vecs = unit(rng, 500)
    idx = VectorIndex(384, ann_threshold=10**9)
    idx.upsert(np.arange(500) * 3, vecs)
    q = unit(rng, 7)
    scores, rids = idx.search(q, 10)
    assert (rids == brute(vecs, np.arange(500) * 3, q, 10)).all()
    assert np.all(np.diff(scores, axis=1) <= 1e-6) and idx.mode == "exact"


def test_remove_and_replace_keep_rows_consistent():
    rng = np.random.default_rng(1)
    vecs = unit(rng, 100)
    idx = VectorIndex(384, ann_threshold=10**9)
    idx.upsert(np.arange(100), vecs)
    idx.remove(np.array([0, 50, 99, 1234]))
    new = unit(rng, 1)
    idx.upsert(np.array([10]), new)
    assert len(idx) == 97
    _, rids = idx.search(vecs[[0, 50, 99]], 1)
    assert not set(rids.ravel()) & {0, 50, 99}
    assert idx.search(new, 1)[1][0, 0] == 10
    assert idx.search(vecs[[42]], 1)[1][0, 0] == 42


def test_filtered_search_is_exact_over_allowed_rows():
    rng = np.random.default_rng(2)
    vecs = unit(rng, 300)
    idx = VectorIndex(384, ann_threshold=100, background=False)
    idx.upsert(np.arange(300), vecs)
    assert idx.mode == "ann"
    allowed = np.arange(0, 300, 7)
    _, rids = idx.search(vecs[:3], 5, allowed)
    assert (rids == brute(vecs[allowed], allowed, vecs[:3], 5)).all()


def test_ivf_above_threshold_reaches_recall():
    rng = np.random.default_rng(3)
    vecs = clustered(rng, 20_000)
    idx = VectorIndex(384, ann_threshold=5_000, nprobe=32)
    idx.upsert(np.arange(20_000), vecs)
    idx.wait_for_build(60)
    assert idx.mode == "ann" and idx.last_build_s is not None
    q = vecs[rng.integers(0, 20_000, 50)] + 0.02 * unit(rng, 50)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    _, got = idx.search(q, 10)
    truth = brute(vecs, np.arange(20_000), q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
    assert recall >= 0.95


def test_writes_during_a_background_build_are_not_lost():
    rng = np.random.default_rng(4)
    vecs = clustered(rng, 30_000)
    idx = VectorIndex(384, ann_threshold=20_000, nprobe=64)
    idx.upsert(np.arange(20_000), vecs[:20_000])  # crosses the threshold: the build starts in the background
    late = vecs[20_000:]
    done = threading.Event()

    def writer():
        for start in range(0, 10_000, 500):
            idx.upsert(np.arange(20_000 + start, 20_500 + start), late[start : start + 500])
        idx.remove(np.arange(0, 1000))
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    t.join(60)
    idx.wait_for_build(120)
    assert done.is_set() and idx.mode == "ann" and len(idx) == 29_000
    _, got_late = idx.search(late[:200], 1)
    assert np.mean(got_late[:, 0] == np.arange(20_000, 20_200)) >= 0.95
    _, got_removed = idx.search(vecs[:200], 5)
    assert not set(got_removed.ravel()) & set(range(1000))
