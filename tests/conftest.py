"""Shared fixtures: one chute app (one loaded model) per session, a live server, helpers.

The chute is driven the way the platform drives it: ``CHUTES_EXECUTION_CONTEXT=REMOTE`` and
dev mode, ``initialize()`` runs the startup hook and mounts the cords, ``DevMiddleware`` parses
the body. A second middleware reproduces production's response path (orjson of the cord's
result before encryption) for requests that carry ``X-Test-Production: 1``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
_TMP = tempfile.mkdtemp(prefix="embeddings-tests-")
os.environ.update(
    {
        "CHUTES_EXECUTION_CONTEXT": "REMOTE",
        "CHUTES_DEV_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "EMBEDDINGS_DATA_DIR": _TMP,
        # one ONNX export per test run, shared by every server the tests start
        "EMBEDDINGS_MODEL_CACHE_DIR": os.path.join(_TMP, "models"),
        "EMBEDDINGS_LOG_LEVEL": "WARNING",
    }
)
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))


from chutes_embeddings.tools.devserver import free_port  # noqa: E402,F401  (tests import it from here)


@pytest.fixture(scope="session")
def chute_app() -> Any:
    """The chute with startup run and cords mounted (the model loads once, here)."""
    from chutes.entrypoint.run import DevMiddleware
    from starlette.middleware.base import BaseHTTPMiddleware

    import my_embeddings

    class ProductionSerialisation(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):  # type: ignore[no-untyped-def]
            if request.headers.get("x-test-production") == "1":
                request.state._encrypt = lambda data: base64.b64encode(data).decode()
            return await call_next(request)

    app = my_embeddings.chute
    asyncio.run(app.initialize())
    app.add_middleware(ProductionSerialisation)
    app.add_middleware(DevMiddleware)
    yield app
    app.engine.close()


@pytest.fixture(scope="session")
def engine(chute_app: Any) -> Any:
    return chute_app.engine


@pytest.fixture(scope="session")
def st_model(engine: Any) -> Any:
    """The sentence-transformers model the engine loaded (reference for parity tests)."""
    return engine.embedder.backend.model.st


@pytest.fixture(scope="session")
def test_client(chute_app: Any) -> Any:
    from starlette.testclient import TestClient

    # the local server answers loopback host names only
    with TestClient(chute_app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        yield client


Call = Callable[..., tuple[int, Any]]


def _make_call(client: Any, production: bool) -> Call:
    def call(method: str, path: str, json: Any = None, content: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {**({"x-test-production": "1"} if production else {}), **(headers or {})}
        if content is not None:
            headers.setdefault("content-type", "application/json")
            response = client.request(method, path, content=content, headers=headers)
        else:
            response = client.request(method, path, json=json, headers=headers)
        body = response.json()
        if production and response.status_code == 200:
            # the SDK's two encrypted shapes: a plain result orjson-dumped, or a Response's body
            # (what cords return on the local server: the same orjson bytes, see boundary.rendered)
            body = orjson.loads(base64.b64decode(body["json"] if "json" in body else body["body"]))
        return response.status_code, body

    return call


@pytest.fixture(params=["dev", "production"])
def call(request: Any, test_client: Any) -> Call:
    """``call(method, path, json)`` -> (status, body), in dev mode and with production serialisation."""
    return _make_call(test_client, request.param == "production")


@pytest.fixture
def dev_call(test_client: Any) -> Call:
    return _make_call(test_client, False)


@contextlib.contextmanager
def running_server(workdir: Path, env_extra: dict[str, str] | None = None, timeout_s: float = 180,
                   stop_signal: int = signal.SIGTERM):
    """``chutes run my_embeddings:chute --dev`` on a free loopback port, as ``make serve`` runs it."""
    from chutes_embeddings.tools.devserver import start_dev_server

    env = {"EMBEDDINGS_DATA_DIR": str(workdir / "data"), **(env_extra or {})}
    log_path = workdir / "server.log"
    with open(log_path, "ab") as log:
        try:
            server = start_dev_server(ROOT, env, log, timeout_s)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {log_path.read_text()[-3000:]}") from None
        try:
            yield server.url
        finally:
            server.stop(stop_signal)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: Any) -> str:
    # a short body timeout so the slow-body test need not wait the default 30 s
    with running_server(tmp_path_factory.mktemp("live"), {"EMBEDDINGS_BODY_TIMEOUT_S": "2"}) as url:
        yield url


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: Any) -> str:
    """A real PostgreSQL + pgvector started for this run by the project's own script (never skipped)."""
    workdir = Path(tempfile.mkdtemp(prefix="embeddings-pg-"))
    script = ROOT / "scripts" / "pg-test-server"
    env = {**os.environ, "PYTHON": sys.executable}
    started = subprocess.run([str(script), "start", str(workdir)], env=env, capture_output=True, text=True)
    if started.returncode != 0:  # e.g. a pgvector that dies with SIGILL on this CPU: say so, loudly
        pytest.fail(f"the test PostgreSQL did not start (exit {started.returncode}):\n{started.stderr[-3000:]}",
                    pytrace=False)
    url = started.stdout.strip().splitlines()[-1]
    yield url
    subprocess.run([str(script), "stop", str(workdir)], env=env, check=False)


def build_tiny_cross_encoder(folder: Path) -> Path:
    """A tiny randomly initialised one-label BERT cross-encoder (seeded, so the same every run) with
    the bundled model's tokenizer, saved as a model folder: real loading code, no downloads.

    The weights are drawn wide (``initializer_range=0.5``) so that scores differ clearly from pair
    to pair: a near-constant scorer could not show that pairs are scored and ordered right."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from chutes_embeddings.settings import default_model

    tokenizer = AutoTokenizer.from_pretrained(default_model())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1, initializer_range=0.5)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_reranker_path(tmp_path_factory: Any) -> str:
    return str(build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder")))
