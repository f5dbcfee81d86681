"""Building the engine for the settings: the embedder, the reranker and the sparse encoder, each a
model service built by the one backend factory (TEI-served when the binary is found, a local model
behind it)."""

from __future__ import annotations

import gc
import time
from typing import Any

from loguru import logger

from ..backends.factory import build_service, tei_binary, wait_for_tei
from ..settings import Settings
from .core import Engine
from .embedding import EmbeddingPipeline
from .prompts import ModelPrompts
from .reranking import BiEncoderReranker, RerankPipeline, RerankService
from .sparse import SparsePipeline


def start_engine(settings: Settings, limits: dict[str, Any] | None = None, model: Any = None,
                 reranker_model: Any = None, max_clusters: int = 20, sparse_model: Any = None) -> Engine:
    """Build the engine for ``settings`` (the startup hook calls this).

    When the TEI binary is found, TEI is launched and supervised for the embedding model (and
    another for ``rerank_model``) and serves requests, with the local model as a fallback nobody
    notices; the local models then stay on the CPU (with ``EMBEDDINGS_DEVICE=auto``) so the GPU
    holds each model once, in TEI. Start-up waits at most ``tei_startup_timeout_s`` for TEI and
    otherwise goes on with the fallback.

    Args:
        settings: the service settings.
        limits: every request limit, reported by /info.
        model: an already loaded ``LoadedModel`` to reuse (tests share one).
        reranker_model: an already loaded ``LoadedReranker`` to reuse.
        max_clusters: the most clusters /cluster chooses among.
        sparse_model: an already loaded ``LoadedSparseEncoder`` to reuse.
    """
    started = time.monotonic()
    binary = tei_binary(settings)
    built = build_service("embedder", settings, binary, model)
    started_services = [built.service]
    try:
        prompts = ModelPrompts(built.tokenizer.prompts, built.tokenizer.default_prompt_name)
        embedder = EmbeddingPipeline(settings, built.service, built.tokenizer, built.profile,  # type: ignore[arg-type]
                                     prompts)
        reranker = _reranker(settings, binary, reranker_model, embedder)
        if isinstance(reranker, RerankPipeline):
            started_services.append(reranker.backend)
        sparse = _sparse(settings, binary, sparse_model)
        if sparse is not None:
            started_services.append(sparse.backend)
        wait_for_tei(started_services, settings.tei_startup_timeout_s)
        engine = Engine(embedder, reranker, limits, max_clusters, sparse, lexical_language=settings.lexical_language)
    except BaseException:
        for service in started_services:
            service.close()  # its TEI is running: stop it
        raise
    # The models' millions of long-lived Python objects would otherwise be walked by every full
    # garbage collection, a pause of a few hundred ms that requests' allocations trigger every few
    # seconds (it was the p99 of 16 concurrent clients: docs/benchmarks.md, "Against Infinity").
    gc.collect()
    gc.freeze()
    described = reranker.describe()
    logger.info(
        "engine ready: model={} backend={} runtime={} dim={} reranker={} ({}) sparse={} in {:.1f}s",
        engine.model_id, built.service.kind, built.service.runtime, engine.dimension, described.model,
        described.kind, engine.sparse_model_id, time.monotonic() - started,
    )
    return engine


def _reranker(settings: Settings, binary: str | None, model: Any, embedder: EmbeddingPipeline) -> RerankService:
    """The cross-encoder's pipeline, or the bi-encoder stand-in when none is configured or it
    cannot be loaded: a reranker that fails to download or is not a one-label classifier must
    not take embeddings down."""
    if not settings.rerank_model:
        return BiEncoderReranker(embedder)
    try:
        return RerankPipeline(settings, build_service("reranker", settings, binary, model))
    except Exception as exc:
        logger.opt(exception=exc).error(
            "the reranker {!r} could not be loaded ({}): /rerank answers with the embedding model's cosine "
            "(reranker.kind = bi-encoder) until the service restarts with a model that loads",
            settings.rerank_model, type(exc).__name__)
        return BiEncoderReranker(embedder)


def _sparse(settings: Settings, binary: str | None, model: Any) -> SparsePipeline | None:
    """The sparse encoder's pipeline, or None when none is configured or it cannot be loaded (as
    for the reranker: a sparse model that fails to download or is not a SPLADE model must not
    take embeddings down; its routes answer ``not_configured`` until a restart with one that loads)."""
    if not settings.sparse_model:
        return None
    try:
        return SparsePipeline(settings, build_service("sparse", settings, binary, model))
    except Exception as exc:
        logger.opt(exception=exc).error(
            "the sparse model {!r} could not be loaded ({}): /embed/sparse and sparse search answer "
            "not_configured until the service restarts with a model that loads", settings.sparse_model,
            type(exc).__name__)
        return None
