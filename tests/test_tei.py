"""The TEI path end to end, against a stand-in launched by the supervisor as a real subprocess."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from loguru import logger

import schemas as S
from chutes_embeddings.engine.results import EmbedOptions
from chutes_embeddings.engine.startup import start_engine
from chutes_embeddings.errors import InvalidInput
from chutes_embeddings.settings import Settings
from tests.helpers import StandIn, free_port, running_server

pytestmark = pytest.mark.system  # starts TEI stand-ins and servers

STANDIN = Path(__file__).parent / "tei_standin.py"
# variables TEI would read as flags (or leak): the supervisor must not pass them on
CROWDED_ENV = {"HOSTNAME": "somebox", "PORT": "80", "MODEL_ID": "wrong/model", "API_KEY": "leak"}


@pytest.fixture
def tei_engine(tmp_path, engine):
    """Start an engine whose TEI is a stand-in; reuses the session's loaded model for the fallback
    (and ``sparse``, a loaded SPLADE model, gets a stand-in of its own)."""
    made = []

    def make(standin: StandIn, sparse=None, **overrides):
        if sparse is not None:
            overrides.update(sparse_model=sparse.path, sparse_tei_port=free_port())
        settings = Settings(model=engine.embedder.settings.model, tei_binary=str(standin.binary), tei_port=free_port(),
                            tei_startup_timeout_s=overrides.pop("startup", 90.0), data_dir=str(tmp_path),
                            cache_size=0, **overrides)
        e = start_engine(settings, S.LIMITS, model=engine.embedder.tokenizer, sparse_model=sparse)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


@dataclass
class Shared:
    """One engine on one stand-in for the tests that need no TEI of their own (they read its
    counters and records as deltas), and what its start showed: the log lines forwarded."""

    engine: Any
    standin: StandIn
    start_log: list[str]


@pytest.fixture(scope="module")
def shared(engine, sparse_encoder, tmp_path_factory):
    """Started with a crowded environment (to see it scrubbed), explicit TEI flags, and the
    stand-in's batch cap forced below them (to see requests split to what TEI's /info says); the
    SPLADE test model gets a stand-in of its own (``--pooling splade``)."""
    tmp = tmp_path_factory.mktemp("tei-shared")
    standin = StandIn(tmp, forced=("--max-client-batch-size", "4"))
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="DEBUG")
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in CROWDED_ENV.items():
                env.setenv(name, value)
            e = start_engine(Settings(model=engine.embedder.settings.model, tei_binary=str(standin.binary),
                                      tei_port=free_port(), tei_startup_timeout_s=90.0, data_dir=str(tmp), cache_size=0,
                                      tei_max_client_batch_size=16, tei_max_batch_tokens=2048,
                                      sparse_model=sparse_encoder.path, sparse_tei_port=free_port()),
                             S.LIMITS, model=engine.embedder.tokenizer, sparse_model=sparse_encoder)
    finally:
        logger.remove(sink)
    yield Shared(e, standin, lines)
    e.close()


def vectors(engine, texts, **options):
    """The engine's vectors for ``texts`` with ``EmbedOptions(**options)``."""
    return engine.embed(texts, EmbedOptions(**options)).vectors


def _local(engine, texts, pooling=None):
    return vectors(engine, texts, pooling=pooling, normalize=True)


def test_requests_are_served_by_tei_split_to_its_cap_and_match_the_contract(shared, engine, sparse_encoder):
    e, standin = shared.engine, shared.standin
    assert e.health().embedder.backend == "tei"
    seen, served = len(standin.requests()), dict(e.embedder.backend.served)
    texts = [f"tei serves text number {i}" for i in range(10)]
    got = vectors(e, texts)
    assert np.allclose((got * _local(engine, texts)).sum(1), 1.0, atol=1e-5)
    calls = [r for r in standin.requests()[seen:] if r["path"] == "/embed" and r["status"] == 200]
    assert sum(r["n"] for r in calls) == 10 and all(r["n"] <= 4 for r in calls) and len(calls) >= 3
    assert not [r for r in standin.events() if "violation" in r], "requests broke TEI's OpenAPI schema"
    assert e.embedder.backend.served["tei"] - served["tei"] == 10 and e.embedder.backend.served["local"] == 0
    info = e.info()
    assert info.embedder.backend == "tei" and info.embedder.tei["healthy"]
    assert info.embedder.tei["version"] == "1.9.3-standin"
    _sparse_served_by_its_own_tei(e, standin, sparse_encoder, texts)


def _sparse_served_by_its_own_tei(e, standin: StandIn, sparse_encoder, texts: list[str]) -> None:
    """The SPLADE model's TEI (``--pooling splade``): ``/embed_sparse`` split to the cap, as the local
    model computes it."""
    from chutes_embeddings.backends.protocols import SparseWork
    from chutes_embeddings.backends.sparse import LocalSparseEncoder

    assert e.health().sparse.backend == "tei" and e.sparse.backend.serving_tei
    argvs = [ev["argv"] for ev in standin.events() if ev.get("event") == "start"]
    sparse_argv = next(a for a in argvs if "--pooling" in a)
    assert sparse_argv[sparse_argv.index("--pooling") + 1] == "splade"
    assert sparse_argv[sparse_argv.index("--model-id") + 1] == sparse_encoder.path
    got = e.embed_sparse(texts).vectors
    ids = sparse_encoder.tokenize(texts)[0]
    local = LocalSparseEncoder(sparse_encoder).encode([SparseWork(t, i, "right") for t, i in zip(texts, ids)])

    def dense(indices, values) -> np.ndarray:
        row = np.zeros(sparse_encoder.dimension, dtype=np.float32)
        row[list(indices)] = values
        return row

    for vector, weights in zip(got, local):
        np.testing.assert_allclose(dense(vector.indices, vector.values), dense(weights.indices, weights.values),
                                   atol=1e-5)
    calls = [r for r in standin.requests("/embed_sparse") if r["status"] == 200]
    assert sum(r["n"] for r in calls) == len(texts) and all(r["n"] <= 4 for r in calls)
    assert not [r for r in standin.events() if "violation" in r], "requests broke TEI's OpenAPI schema"
    assert e.sparse.backend.served == {"tei": len(texts), "local": 0}


def test_default_tei_port_is_a_free_one_per_instance(tmp_path, shared, engine):
    settings = Settings(
        model=engine.embedder.settings.model,
        tei_binary=str(StandIn(tmp_path).binary),
        data_dir=str(tmp_path),
        tei_startup_timeout_s=90.0,
        cache_size=0,
    )
    assert settings.tei_port == 0
    second = start_engine(settings, S.LIMITS, model=engine.embedder.tokenizer)
    try:
        assert second.embedder.backend.primary.base_url != shared.engine.embedder.backend.primary.base_url
        assert second.health().embedder.backend == "tei" and vectors(second, ["own TEI"]).shape == (1, 384)
    finally:
        second.close()


def test_launched_on_loopback_with_explicit_flags_and_a_scrubbed_environment(shared):
    model = shared.engine.embedder.settings.model  # the embedder's TEI (the models' TEIs start side by side)
    start = next(ev for ev in shared.standin.events()
                 if ev.get("event") == "start" and ev["argv"][ev["argv"].index("--model-id") + 1] == model)
    argv = start["argv"]
    assert argv[argv.index("--hostname") + 1] == "127.0.0.1"
    assert shared.engine.embedder.backend.primary.base_url == f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
    assert argv[argv.index("--max-client-batch-size") + 1] == "16"
    assert argv[argv.index("--max-batch-tokens") + 1] == "2048"
    assert argv[argv.index("--model-id") + 1] == shared.engine.embedder.settings.model
    assert not set(CROWDED_ENV) & set(start["env"])


def test_tei_log_lines_are_forwarded(shared):
    assert any(line == "tei: Ready" for line in shared.start_log)


def test_per_request_pooling_goes_through_embed_all_and_equals_local(shared, engine):
    e, standin = shared.engine, shared.standin
    seen, local = len(standin.requests()), e.embedder.backend.served["local"]
    texts = ["pooling through TEI", "a second, somewhat longer text for the max pool"]
    for mode in ("cls", "max", "mean_sqrt_len"):
        got = vectors(e, texts, pooling=mode, normalize=False)
        ref = engine.embedder.backend.embed(texts, [mode] * 2, [True] * 2)
        assert np.allclose(got, ref, atol=1e-4), mode
    assert len([r for r in standin.requests()[seen:] if r["path"] == "/embed_all" and r["status"] == 200]) == 3
    assert e.embedder.backend.served["local"] == local == 0


def test_start_up_waits_for_readiness(tmp_path, tei_engine):
    standin = StandIn(tmp_path, "--ready-delay", "2")
    started = time.monotonic()
    e = tei_engine(standin)
    assert time.monotonic() - started >= 2
    assert e.health().embedder.backend == "tei"


def test_never_healthy_tei_start_up_continues_on_the_fallback(tmp_path, tei_engine):
    standin = StandIn(tmp_path, "--never-ready")
    started = time.monotonic()
    e = tei_engine(standin, startup=3.0)
    # it waits the 3 s asked, not TEI's readiness (never) nor the 90 s the other tests give: the rest of
    # the bound is building the engine on a loaded 2-core runner (12 s seen), not a timing target
    assert time.monotonic() - started < 45
    assert e.health().embedder.backend == "local"
    assert vectors(e, ["still answered"]).shape == (1, 384)
    assert e.embedder.backend.served == {"tei": 0, "local": 1}


def test_callers_bad_input_is_passed_through_not_retried(tmp_path, tei_engine):
    standin = StandIn(tmp_path, "--max-input-length", "32")
    e = tei_engine(standin)
    text = "this sentence has quite a few words in it " * 4  # ~40 tokens: fine locally, over the stand-in's 32
    with pytest.raises(InvalidInput) as err:
        vectors(e, [text], truncate=False)
    assert "less than 32 tokens" in err.value.message
    refused = [r for r in standin.requests("/embed") if r["status"] == 422]
    assert len(refused) == 1 and refused[0]["truncate"] is False
    assert e.embedder.backend.served["local"] == 0 and e.embedder.backend.breaker.state == "closed"


def test_kill_9_under_16_concurrent_callers_loses_nothing(tmp_path, tei_engine, st_model):
    standin = StandIn(tmp_path)
    e = tei_engine(standin)
    first_pid = e.embedder.backend.supervisor.pid
    backend = e.embedder.backend
    stop, failures, answers = threading.Event(), [], []
    progress = threading.Condition()  # notified after every answer: the test waits on states, not windows

    def caller(k: int) -> None:
        i = 0
        while not stop.is_set():
            text = f"caller {k} request {i} {uuid.uuid4().hex[:8]}"
            try:
                vec = vectors(e, [text])[0]
                with progress:
                    answers.append((text, vec))
                    progress.notify_all()
            except Exception as exc:  # recorded, and the test fails on any
                with progress:
                    failures.append(repr(exc))
                    progress.notify_all()
            i += 1

    def wait_until(state, what: str, timeout_s: float = 90.0) -> None:
        with progress:
            assert progress.wait_for(state, timeout_s), f"not within {timeout_s:.0f} s: {what}"

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    wait_until(lambda: backend.served["tei"] >= 32, "TEI serving the callers")
    served_before_kill = backend.served["tei"]
    os.kill(first_pid, signal.SIGKILL)
    wait_until(lambda: backend.served["local"] > 0, "an answer from the fallback after the kill")
    wait_until(lambda: backend.supervisor.pid != first_pid and backend.serving_tei, "TEI restarted")
    tei_after_restart = backend.served["tei"]
    wait_until(lambda: backend.served["tei"] > tei_after_restart, "the restarted TEI serving again")
    stop.set()
    for t in threads:
        t.join(30)

    assert failures == []
    assert served_before_kill > 0
    assert e.embedder.backend.served["local"] > 0, "nothing was answered from the fallback"
    assert e.embedder.backend.supervisor.restarts >= 1 and e.embedder.backend.supervisor.pid != first_pid
    assert e.embedder.backend.served["tei"] > tei_after_restart, "TEI was not serving again after its restart"
    assert any(r["pid"] != first_pid and r["status"] == 200 for r in standin.requests("/embed"))
    sample = answers[:: max(1, len(answers) // 40)]
    ref = st_model.encode([t for t, _ in sample], normalize_embeddings=True)
    assert min(float(v @ r) for (_, v), r in zip(sample, ref)) >= 0.99999


def test_429_when_full_is_absorbed(tmp_path, tei_engine):
    standin = StandIn(tmp_path, "--compute-delay", "0.2", forced=("--max-concurrent-requests", "1"))
    e = tei_engine(standin, max_batch_size=1)
    results, errors = [], []

    def one(i):
        try:
            results.append(vectors(e, [f"overload {i} {uuid.uuid4().hex}"]))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(results) == 8
    assert any(r["status"] == 429 for r in standin.requests("/embed"))


def test_stop_terminates_tei(tmp_path, tei_engine):
    e = tei_engine(StandIn(tmp_path))
    pid = e.embedder.backend.supervisor.pid
    e.embedder.backend.supervisor.stop()
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_served_through_tei_by_the_chute_and_tei_dies_with_it(tmp_path):
    # SIGKILL: no shutdown code of the service runs, TEI must still go (the parent-death signal);
    # after a SIGTERM, test_node_smoke.py checks that every TEI the service ran is gone
    standin = StandIn(tmp_path)
    env = {"EMBEDDINGS_TEI_BINARY": str(standin.binary), "EMBEDDINGS_TEI_PORT": str(free_port())}
    with running_server(tmp_path, env, stop_signal=signal.SIGKILL) as url:
        assert httpx.get(f"{url}/health").json()["backend"] == "tei"
        r = httpx.post(f"{url}/embed", json={"inputs": ["via the chute", "and TEI"]}, timeout=60)
        assert r.status_code == 200 and r.json()["count"] == 2
    assert [r for r in standin.requests("/embed") if r["status"] == 200]
    tei_pid = next(ev["pid"] for ev in standin.events() if ev.get("event") == "start")
    assert _gone(tei_pid, 15), "TEI outlived the service"
