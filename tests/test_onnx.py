"""The ONNX Runtime local backend: chosen by default on CPU, lossless at fp32, int8 on request."""

from __future__ import annotations

import numpy as np
import pytest

from bench.corpus import sentences
from chutes_embeddings.backends import onnx as onnx_mod
from chutes_embeddings.backends.local import build_local_backend
from chutes_embeddings.settings import Settings


@pytest.fixture(scope="module")
def texts():
    return sentences(64, seed=11) + ["short", "overflowing text " * 300]


def _settings(engine, tmp_path, **kw):
    return Settings(
        model=engine.embedder.settings.model,
        data_dir=str(tmp_path),
        model_cache_dir=engine.embedder.settings.model_cache_dir,
        cache_size=0,
        **kw,
    )


def _embed(backend, texts, mode):
    """Vectors in input order, the over-long text in a pass of its own: padding every short text
    to its 256 tokens would only multiply the work, not what is compared."""
    short = [t for t in texts if len(t) < 1000]
    long = [t for t in texts if len(t) >= 1000]
    rows = dict(zip(short, backend.embed(short, [mode] * len(short))))
    rows.update(zip(long, backend.embed(long, [mode] * len(long))))
    return np.stack([rows[t] for t in texts])


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_auto_on_cpu_serves_onnx_fp32(engine):
    assert engine.embedder.backend.runtime == "onnx-fp32"
    assert engine.info().embedder.runtime == "onnx-fp32"


def test_onnx_fp32_matches_torch_for_every_pooling(engine, tmp_path, texts):
    model = engine.embedder.backend.model
    onnx_backend = build_local_backend(_settings(engine, tmp_path, backend="onnx"), model)
    torch_backend = build_local_backend(_settings(engine, tmp_path, backend="torch"), model)
    assert (onnx_backend.runtime, torch_backend.runtime) == ("onnx-fp32", "torch-cpu")
    for mode in ("mean", "cls", "max", "mean_sqrt_len"):
        cos = _cos(_embed(onnx_backend, texts, mode), _embed(torch_backend, texts, mode))
        assert cos.min() >= 0.9999, (mode, cos.min())


def test_int8_is_faster_path_but_lossy_and_says_so(engine, tmp_path, texts):
    model = engine.embedder.backend.model
    int8 = build_local_backend(_settings(engine, tmp_path, backend="onnx", quantize="int8"), model)
    assert int8.runtime == "onnx-int8"
    fp32 = build_local_backend(_settings(engine, tmp_path, backend="onnx"), model)
    cos = _cos(_embed(int8, texts, "mean"), _embed(fp32, texts, "mean"))
    assert 0.95 < cos.min() < 0.99999 and cos.mean() > 0.985


def test_export_is_cached_by_model_and_revision(engine, tmp_path):
    cache = tmp_path / "cache"
    s = Settings(
        model=engine.embedder.settings.model, data_dir=str(tmp_path), model_cache_dir=str(cache), backend="onnx"
    )
    build_local_backend(s, engine.embedder.backend.model)
    [exported] = list(cache.glob("*-fp32.onnx"))
    first = exported.stat().st_mtime_ns
    build_local_backend(s, engine.embedder.backend.model)
    assert exported.stat().st_mtime_ns == first, "the export was redone instead of reused"
    s2 = Settings(
        model=engine.embedder.settings.model,
        data_dir=str(tmp_path),
        model_cache_dir=str(cache),
        backend="onnx",
        model_revision="v2",
    )
    build_local_backend(s2, engine.embedder.backend.model)
    assert len(list(cache.glob("*-fp32.onnx"))) == 2


def test_an_export_that_fails_verification_is_not_used(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_mod, "agreement", lambda *a: 0.5)
    s = Settings(
        model=engine.embedder.settings.model,
        data_dir=str(tmp_path),
        model_cache_dir=str(tmp_path / "c"),
        backend="onnx",
    )
    assert build_local_backend(s, engine.embedder.backend.model).runtime == "torch-cpu"


def test_onnx_threads_sleep_between_passes(engine):
    """ORT's workers must not spin after a pass: on a small CPU they would hold the cores the
    request threads need (measured in docs/benchmarks.md)."""
    options = engine.embedder.backend.runner._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
