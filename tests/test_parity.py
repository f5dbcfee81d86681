"""Served vectors equal sentence-transformers' own, and each pooling equals an independent reference."""

from __future__ import annotations

import numpy as np
import pytest

TEXTS = [
    "A man is playing a guitar.",
    "  leading and trailing spaces  ",
    "Line one\n\nline two\twith a tab",
    "UPPER case, lower case, MiXeD",
    "Ünïcödé, emoji 🚀 and CJK 漢字",
    "short",
    "a much longer sentence " * 20,
    "overflowing text " * 300,  # beyond 256 tokens: truncated exactly as sentence-transformers does
]


def _reference_pool(tokens: np.ndarray, mode: str) -> np.ndarray:
    """Pooling written out per text, independently of the service's vectorised version."""
    n = tokens.shape[0]
    if mode == "cls":
        return tokens[0]
    if mode == "mean":
        return tokens.sum(0) / n
    if mode == "max":
        return tokens.max(0)
    if mode == "mean_sqrt_len":
        return tokens.sum(0) / np.sqrt(n)
    if mode == "lasttoken":
        return tokens[-1]
    if mode == "weightedmean":
        w = np.arange(1, n + 1, dtype=np.float64)
        return (tokens * w[:, None]).sum(0) / w.sum()
    raise AssertionError(mode)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def test_served_vectors_equal_sentence_transformers(dev_call, st_model):
    status, body = dev_call("POST", "/embed", {"inputs": TEXTS})
    assert status == 200, body
    served = np.asarray(body["embeddings"])
    ref = st_model.encode(TEXTS, normalize_embeddings=True)
    cos = _cos(served, ref)
    assert cos.min() >= 0.99999, cos
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["cls", "mean", "max", "mean_sqrt_len", "lasttoken", "weightedmean"])
def test_each_pooling_equals_reference_from_token_embeddings(dev_call, st_model, mode):
    status, body = dev_call("POST", "/embed", {"inputs": TEXTS, "pooling": mode, "normalize": False})
    assert status == 200, body
    served = np.asarray(body["embeddings"])
    token_embeddings = st_model.encode(TEXTS, output_value="token_embeddings", convert_to_numpy=False)
    ref = np.stack([_reference_pool(t.float().cpu().numpy().astype(np.float64), mode) for t in token_embeddings])
    assert np.allclose(served, ref, rtol=1e-4, atol=1e-4), np.abs(served - ref).max()


def test_poolings_really_differ(dev_call):
    vecs = {
        mode: np.asarray(
            dev_call("POST", "/embed", {"inputs": "pooling changes the vector", "pooling": mode})[1]["embeddings"]
        )
        for mode in ("cls", "mean", "max")
    }
    assert _cos(vecs["cls"], vecs["mean"]) < 0.99
    assert _cos(vecs["max"], vecs["mean"]) < 0.99
