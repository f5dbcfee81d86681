"""32 simultaneous /embed calls: each caller gets its own correct vector, from shared passes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np


def test_32_simultaneous_embed_calls(live_server, st_model):
    texts = [f"concurrent caller number {i} asks about topic {i * 7 % 13}" for i in range(32)]
    before = httpx.get(f"{live_server}/info").json()["batching"]["batches_run"]
    barrier_pool = ThreadPoolExecutor(32)

    def one(text):
        r = httpx.post(f"{live_server}/embed", json={"inputs": text}, timeout=60)
        assert r.status_code == 200, r.text
        return np.asarray(r.json()["embeddings"])

    got = list(barrier_pool.map(one, texts))
    ref = st_model.encode(texts, normalize_embeddings=True)
    for g, e in zip(got, ref):
        assert float(g @ e) >= 0.99999
    after = httpx.get(f"{live_server}/info").json()["batching"]["batches_run"]
    assert after - before < 32, f"{after - before} forward passes for 32 concurrent texts: no sharing"
