"""Building the engine for the settings: the embedder and the optional reranker, each served by
its own supervised TEI when the binary is found, with a local model behind it."""

from __future__ import annotations

import gc
import time
from typing import Any

from ..backends.factory import BuiltBackend

from loguru import logger

from ..backends.factory import build_embedder, build_reranker, tei_binary, wait_for_tei
from .core import Engine
from .reranking import RerankPipeline
from ..settings import Settings


def start_engine(settings: Settings, limits: dict[str, int] | None = None, model: Any = None,
                 reranker_model: Any = None) -> Engine:
    """Build the engine for ``settings`` (the startup hook calls this).

    When the TEI binary is found, TEI is launched and supervised for the embedding model (and
    another for ``rerank_model``) and serves requests, with the local model as a fallback nobody
    notices; the local models then stay on the CPU (with ``EMBEDDINGS_DEVICE=auto``) so the GPU
    holds each model once, in TEI. Start-up waits at most ``tei_startup_timeout_s`` for TEI and
    otherwise goes on with the fallback.

    Args:
        settings: the service settings.
        limits: request limits reported by /info.
        model: an already loaded ``LoadedModel`` to reuse (tests share one).
        reranker_model: an already loaded ``LoadedReranker`` to reuse.
    """
    started = time.monotonic()
    binary = tei_binary(settings)
    embedder = build_embedder(settings, binary, model)
    try:
        reranker = _reranker_or_none(settings, binary, reranker_model)
        wait_for_tei([embedder.backend] + ([reranker.backend] if reranker else []), settings.tei_startup_timeout_s)
        engine = Engine(settings, embedder.backend, embedder.model, limits, embedder.profile.in_flight,
                        embedder.profile.overhead_tokens,
                        reranker=RerankPipeline(settings, reranker) if reranker is not None else None)
    except BaseException:
        embedder.backend.close()  # its TEI is running: stop it
        raise
    # The models' millions of long-lived Python objects would otherwise be walked by every full
    # garbage collection, a pause of a few hundred ms that requests' allocations trigger every few
    # seconds (it was the p99 of 16 concurrent clients: docs/benchmarks.md, "Against Infinity").
    gc.collect()
    gc.freeze()
    logger.info(
        "engine ready: model={} backend={} runtime={} dim={} reranker={} in {:.1f}s",
        engine.model_id, embedder.backend.kind, embedder.backend.runtime, engine.dimension,
        engine.reranker_info["model"] if reranker else "none (bi-encoder)", time.monotonic() - started,
    )
    return engine


def _reranker_or_none(settings: Settings, binary: str | None, model: Any) -> BuiltBackend | None:
    """The reranker, or None (rerank by cosine, and say so) when it cannot be loaded: a reranker
    that fails to download or is not a one-label classifier must not take embeddings down."""
    try:
        return build_reranker(settings, binary, model)
    except Exception as exc:
        logger.opt(exception=exc).error(
            "the reranker {!r} could not be loaded ({}): /rerank answers with the embedding model's cosine "
            "(reranker.kind = bi-encoder) until the service restarts with a model that loads",
            settings.rerank_model, type(exc).__name__)
        return None
