"""Fixtures and hooks only (shared helpers live in ``tests/helpers.py``).

The chute is driven the way the platform drives it: ``CHUTES_EXECUTION_CONTEXT=REMOTE`` and
dev mode, ``initialize()`` runs the startup hook and mounts the cords, ``DevMiddleware`` parses
the body. A second middleware reproduces production's response path (orjson of the cord's
result before encryption) for requests that carry ``X-Test-Production: 1``.

Layers. Every test gets exactly one of the markers ``unit``, ``http``, ``model``, ``system``
(registered in pyproject.toml), by ``pytest_collection_modifyitems``:

1. a layer marker the test declares (on the function, its class, a ``pytest.param`` or the
   module's ``pytestmark``) is its layer; declaring a lighter layer than its fixtures imply, or
   two layers, is a collection error;
2. otherwise the heaviest layer its fixtures imply (``SYSTEM_FIXTURES``, ``MODEL_FIXTURES``,
   ``HTTP_FIXTURES``, and ``SYSTEM_PARAMS`` for a parametrised fixture that reaches Postgres only
   for one of its values), or ``SYSTEM_MODULES`` for files that start processes without saying so;
3. otherwise ``unit``.

``make test-fast`` runs ``-m "unit or http"`` in a virtualenv without torch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    CLS_MODEL_NAME,
    ROOT,
    Call,
    build_tiny_cross_encoder,
    cls_model_folder,
    fake_chute,
    loopback_client,
    make_call,
    running_server,
    sparse_test_model,
    started_chute,
)

LAYERS = ("unit", "http", "model", "system")  # lightest first

# Fixtures (their closure, so also what uses them) that start processes or Postgres.
SYSTEM_FIXTURES = frozenset({
    "live_server", "pg_url",
    # fixtures of test files that start TEI stand-ins or servers themselves
    "tei_engine", "tei_rerank_engine", "rerank_server", "store_env",
})
# Fixtures that load a real model in this process.
MODEL_FIXTURES = frozenset({
    "chute_app", "engine", "st_model", "test_client", "call", "dev_call",
    "tiny_reranker_path", "rerank_engine", "cross_encoder", "sparse_encoder",
    "prompted_app",  # test_prompts.py: a copy of the bundled model whose config defines prompts
})
# Fixtures that serve the chute app over tests/fakes.py in process.
HTTP_FIXTURES = frozenset({"fake_app", "fake_client", "fake_call", "token_app", "token_client", "strict_token_client"})
# (fixture, param) pairs whose value reaches Postgres through ``request.getfixturevalue``, which
# the fixture closure cannot show.
SYSTEM_PARAMS = frozenset({("store", "postgres")})
# Test files that start processes in tests using none of the fixtures above (and do not declare
# ``pytestmark = pytest.mark.system`` themselves).
SYSTEM_MODULES = frozenset({"test_tei.py"})

_SAVED_STATE = pytest.StashKey[tuple[dict[str, str], str, str]]()
_SHARED_MODELS = "EMBEDDINGS_TEST_MODEL_CACHE_DIR"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """The environment every test (and every server a test starts) runs in, set once for the
    session and restored by ``pytest_unconfigure``: remote execution context, dev mode, offline
    hub, a private data directory, one ONNX export cache, quiet logs, the project root as cwd."""
    tmp = tempfile.mkdtemp(prefix="embeddings-tests-")
    config.stash[_SAVED_STATE] = (dict(os.environ), os.getcwd(), tmp)
    # One ONNX export per test run, shared by every server the tests start and, under pytest-xdist,
    # by every worker: the first pytest process (the controller) names it, and the workers it
    # spawns inherit the name. Exports are written to a temporary file and renamed into place.
    os.environ.setdefault(_SHARED_MODELS, os.path.join(tmp, "models"))
    os.environ.update({
        "CHUTES_EXECUTION_CONTEXT": "REMOTE",
        "CHUTES_DEV_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "EMBEDDINGS_DATA_DIR": tmp,
        "EMBEDDINGS_MODEL_CACHE_DIR": os.environ[_SHARED_MODELS],
        "EMBEDDINGS_LOG_LEVEL": "WARNING",
    })
    os.chdir(ROOT)


def pytest_unconfigure(config: pytest.Config) -> None:
    saved = config.stash.get(_SAVED_STATE, None)
    if saved is None:
        return
    environ, cwd, tmp = saved
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    shutil.rmtree(tmp, ignore_errors=True)  # a server a test failed to stop may still write there


def _declared_layers(item: pytest.Item) -> set[str]:
    return {mark.name for mark in item.iter_markers() if mark.name in LAYERS}


def _implied_layer(item: pytest.Item) -> str:
    names = set(getattr(item, "fixturenames", ()))
    params = getattr(getattr(item, "callspec", None), "params", {})
    if (names & SYSTEM_FIXTURES or any(params.get(f) == v for f, v in SYSTEM_PARAMS)
            or item.path.name in SYSTEM_MODULES):
        return "system"
    if names & MODEL_FIXTURES:
        return "model"
    if names & HTTP_FIXTURES:
        return "http"
    return "unit"


def layer_of(item: pytest.Item) -> str:
    """The test's one layer (see the module docstring)."""
    implied = _implied_layer(item)
    declared = _declared_layers(item)
    if len(declared) > 1:
        raise pytest.UsageError(f"{item.nodeid} declares several layers: {sorted(declared)}")
    if not declared:
        return implied
    layer = declared.pop()
    if LAYERS.index(layer) < LAYERS.index(implied):
        raise pytest.UsageError(f"{item.nodeid} is marked {layer!r} but its fixtures make it {implied!r}")
    return layer


# The files that take longest (``--durations``, 2 cores), longest first.
LONGEST_FILES = ("test_tei.py", "test_rerank.py", "test_node_smoke.py", "test_store_durability.py",
                 "test_store_quality.py", "test_devserver.py", "test_store_contract.py", "test_fuzz.py")


def _rank_by_length(name: str) -> int:
    return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    heaviest: dict[Path, int] = {}
    for item in items:
        layer = layer_of(item)
        if layer not in _declared_layers(item):
            item.add_marker(getattr(pytest.mark, layer))
        heaviest[item.path] = max(heaviest.get(item.path, 0), LAYERS.index(layer))
    # The longest files first, then by layer, each file kept whole and in order: ``make test`` hands
    # a file at a time to each pytest-xdist worker, and the long process-starting files must begin
    # at once, not trail behind everything else (longest-first is what keeps two workers even).
    items.sort(key=lambda item: (_rank_by_length(item.path.name), -heaviest[item.path]))


# Fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chute_app() -> Any:
    """The chute with startup run and cords mounted (the model loads once, here)."""
    import my_embeddings

    app = started_chute(my_embeddings.chute)
    yield app
    app.store.close()
    app.engine.close()


@pytest.fixture(scope="session")
def fake_app(tmp_path_factory: Any) -> Any:
    """A second chute from ``my_embeddings.py`` over fake model services (``fake_chute``)."""
    app = fake_chute("my_embeddings_over_fakes", tmp_path_factory.mktemp("fake-app"))
    yield app
    app.store.close()
    app.engine.close()


@pytest.fixture(scope="session")
def fake_client(fake_app: Any) -> Any:
    """A ``TestClient`` over the chute over fakes."""
    yield from loopback_client(fake_app)


@pytest.fixture(params=["dev", "production"])
def fake_call(request: Any, fake_client: Any) -> Call:
    """``call`` over the chute over fakes, in dev mode and with production serialisation."""
    return make_call(fake_client, request.param == "production")


@pytest.fixture(scope="session")
def engine(chute_app: Any) -> Any:
    """The session chute's engine (shared: restore whatever a test changes on it)."""
    return chute_app.engine


@pytest.fixture(scope="session")
def st_model(engine: Any) -> Any:
    """The sentence-transformers model the engine loaded (reference for parity tests)."""
    return engine.embedder.backend.model.st


@pytest.fixture(scope="session")
def test_client(chute_app: Any) -> Any:
    """A ``TestClient`` over the session chute."""
    yield from loopback_client(chute_app)


@pytest.fixture(params=["dev", "production"])
def call(request: Any, test_client: Any) -> Call:
    """``call(method, path, json)`` -> (status, body), in dev mode and with production serialisation."""
    return make_call(test_client, request.param == "production")


@pytest.fixture
def dev_call(test_client: Any) -> Call:
    """``call`` in dev mode only."""
    return make_call(test_client, False)


@pytest.fixture(scope="session")
def live_server_dir(tmp_path_factory: Any) -> Path:
    """The live server's folder: its data and its log (``server.log``)."""
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="session")
def cls_model_path(tmp_path_factory: Any) -> str:
    """The bundled model's weights with CLS pooling (``helpers.cls_model_folder``): a second model."""
    return str(cls_model_folder(tmp_path_factory.mktemp("cls-model")))


@pytest.fixture(scope="session")
def live_server(live_server_dir: Path, cls_model_path: str) -> str:
    """One real local server for the session (``chutes run``, as ``make serve`` starts it)."""
    # a short body timeout so the slow-body test need not wait the default 30 s; the default log
    # level, as a user runs it (the tests' own processes log at WARNING)
    # with the SPLADE test model, so that the sparse routes (and hybrid search) are live too
    # two embedders: the bundled model, the default, answering any name no model claims (the compat
    # tests send their clients' own model names), and its CLS-pooled copy (torch: no second export)
    from chutes_embeddings.settings import default_model

    models = f"'{default_model()}' aliases=*; '{cls_model_path}' name={CLS_MODEL_NAME} runtime=torch"
    with running_server(live_server_dir, {"EMBEDDINGS_BODY_TIMEOUT_S": "2", "EMBEDDINGS_LOG_LEVEL": "INFO",
                                          "EMBEDDINGS_SPARSE_MODEL": sparse_test_model(),
                                          "EMBEDDINGS_MODELS": models}) as url:
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


@pytest.fixture(scope="session")
def sparse_model_path() -> str:
    """The offline SPLADE test model's folder (``helpers.sparse_test_model``)."""
    return sparse_test_model()


@pytest.fixture(scope="session")
def sparse_encoder(sparse_model_path: str) -> Any:
    """The SPLADE test model loaded once, as the service loads it (a ``LoadedSparseEncoder``)."""
    from chutes_embeddings.backends.sparse import LoadedSparseEncoder

    return LoadedSparseEncoder(sparse_model_path)


@pytest.fixture(scope="session")
def tiny_reranker_path(tmp_path_factory: Any) -> str:
    """A tiny seeded cross-encoder saved as a model folder (see ``helpers.build_tiny_cross_encoder``)."""
    return str(build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder")))
