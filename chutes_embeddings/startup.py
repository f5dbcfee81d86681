"""Building the engine for the settings: the local model, and TEI supervised in front of it."""

from __future__ import annotations

import time
from typing import Any

from loguru import logger

from .backends import Backend
from .engine import Engine
from .settings import Settings

# A TEI server batches again on its side; a few requests in flight keep its GPU busy.
TEI_BATCHES_IN_FLIGHT = 4
# On a GPU a pass costs mostly its launch overhead: padding is cheap, extra passes are not.
GPU_BATCH_OVERHEAD_TOKENS = 2048


def start_engine(settings: Settings, limits: dict[str, int] | None = None, model: Any = None) -> Engine:
    """Build the engine for ``settings`` (the startup hook calls this).

    When the TEI binary is found, TEI is launched and supervised and serves requests, with the
    local model as a fallback nobody notices; the local model then stays on the CPU (with
    ``EMBEDDINGS_DEVICE=auto``) so the GPU holds the model once, in TEI. Start-up waits at most
    ``tei_startup_timeout_s`` for TEI and otherwise goes on with the fallback.

    Args:
        settings: the service settings.
        limits: request limits reported by /info.
        model: an already loaded ``LoadedModel`` to reuse (tests share one).
    """
    from .backends.local import LoadedModel, build_local_backend
    from .backends.tei_process import find_binary

    started = time.monotonic()
    binary = find_binary(settings.tei_binary) if settings.tei_binary else None
    if binary is None:
        logger.info("TEI binary {!r} not found: serving with the local backend only", settings.tei_binary)
    device = "cpu" if binary and settings.device == "auto" else settings.device
    model = model or LoadedModel(settings, device)
    local = build_local_backend(settings, model)
    backend: Backend = local
    in_flight, overhead = 1, None
    if model.device != "cpu":
        overhead = GPU_BATCH_OVERHEAD_TOKENS
    if binary is not None:
        backend = _start_tei(settings, binary, local)
        in_flight, overhead = TEI_BATCHES_IN_FLIGHT, settings.max_batch_tokens  # TEI re-batches: send big batches
    engine = Engine(settings, backend, model, limits, in_flight, overhead)
    logger.info(
        "engine ready: model={} backend={} runtime={} dim={} in {:.1f}s",
        engine.model_id, backend.kind, backend.runtime, engine.dimension, time.monotonic() - started,
    )
    return engine


def _start_tei(settings: Settings, binary: str, local: Backend) -> Backend:
    from .backends.failover import FailoverBackend
    from .backends.tei import TeiBackend, TeiUnavailable
    from .backends.tei_process import TeiLaunch, TeiSupervisor
    from .devserver import free_port

    supervisor = TeiSupervisor(
        TeiLaunch(
            binary=binary, model=settings.model, port=settings.tei_port or free_port(), revision=settings.model_revision,
            max_batch_tokens=settings.tei_max_batch_tokens, max_client_batch_size=settings.tei_max_client_batch_size,
            max_concurrent_requests=settings.tei_max_concurrent_requests,
            fallback_cache=str(settings.data_path / "hub"),
        )
    )
    supervisor.start()
    tei = TeiBackend(supervisor.url, model_id=local.model_id, dimension=local.dimension,
                     max_input_tokens=local.max_input_tokens, default_pooling=local.default_pooling)
    if supervisor.wait_ready(settings.tei_startup_timeout_s):
        try:
            tei.refresh_info()
        except TeiUnavailable as exc:
            logger.warning("TEI is up but /info failed ({}); it will be read on first use", exc)
    else:
        logger.warning("TEI not healthy after {:.0f} s: serving from the local model until it is",
                       settings.tei_startup_timeout_s)
    return FailoverBackend(tei, local, supervisor)
