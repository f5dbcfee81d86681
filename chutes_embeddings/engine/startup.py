"""Building the engine for the settings: every configured model (``settings.model_specs``: embedders,
rerankers, sparse encoders), each a model service built by the one backend factory (TEI-served when
the binary is found, a local model behind it), loaded side by side."""

from __future__ import annotations

import gc
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loguru import logger

from ..backends.factory import BuiltService, build_service, tei_binary, wait_for_tei
from ..settings import KIND_VARIABLES, ModelSpec, Settings
from .core import Engine
from .embedding import EmbeddingPipeline
from .models import ModelEntry, ModelRegistry
from .prompts import ModelPrompts
from .reranking import BiEncoderReranker, RerankPipeline, RerankService
from .results import EMBEDDER, RERANKER, SPARSE
from .sparse import SparsePipeline

# Models loading at once: loading is mostly reading files and building graphs, which overlap; more
# would only queue for the same cores and memory.
MAX_CONCURRENT_LOADS = 4


def start_engine(settings: Settings, limits: dict[str, Any] | None = None, model: Any = None,
                 reranker_model: Any = None, max_clusters: int = 20, sparse_model: Any = None) -> Engine:
    """Build the engine for ``settings`` (the startup hook calls this).

    Every configured model is loaded at once (up to ``MAX_CONCURRENT_LOADS``), each its own service
    with its own batcher and cache. When the TEI binary is found, a TEI is launched and supervised
    for each model (its own loopback port) and serves its requests, with the local model as a
    fallback nobody notices; the local models then stay on the CPU (with ``EMBEDDINGS_DEVICE=auto``)
    so the GPU holds each model once, in TEI. Start-up waits at most ``tei_startup_timeout_s`` for
    the TEIs and otherwise goes on with the fallbacks.

    A model that fails to load degrades only itself (its requests get 503 naming it), except the
    default embedder, without which the service does not start; a default cross-encoder that fails
    leaves the bi-encoder stand-in, a default sparse model no sparse leg, as with one model.

    Args:
        settings: the service settings.
        limits: every request limit, reported by /info.
        model: an already loaded ``LoadedModel`` for the default embedder (tests share one).
        reranker_model: an already loaded ``LoadedReranker`` for the default reranker.
        max_clusters: the most clusters /cluster chooses among.
        sparse_model: an already loaded ``LoadedSparseEncoder`` for the default sparse model.
    """
    started = time.monotonic()
    binary = tei_binary(settings)
    specs = settings.model_specs
    given = {EMBEDDER: model, RERANKER: reranker_model, SPARSE: sparse_model}
    served: list[ModelEntry] = []
    try:
        with ThreadPoolExecutor(min(MAX_CONCURRENT_LOADS, len(specs)), thread_name_prefix="load") as pool:
            loads = [pool.submit(_load, settings, binary, spec, given.pop(spec.kind, None)) for spec in specs]
            served = [load.result() for load in loads]
        embedder = served[0].service
        if embedder is None:  # the default embedder: nothing serves without it
            raise RuntimeError(f"the default embedder {specs[0].model!r} ({KIND_VARIABLES[EMBEDDER]} or the first "
                               f"embedder of EMBEDDINGS_MODELS) failed to load: {served[0].error}")
        registry = ModelRegistry(served)
        wait_for_tei([m.service.backend for m in served if m.service is not None], settings.tei_startup_timeout_s)
        reranker = _default_reranker(registry, embedder)
        sparse = registry.default(SPARSE)
        engine = Engine(embedder, reranker, limits, max_clusters, sparse.service if sparse else None,
                        lexical_language=settings.lexical_language, models=registry)
    except BaseException:
        for loaded in served:
            if loaded.service is not None:
                loaded.service.close()  # its TEI is running: stop it
        raise
    # The models' millions of long-lived Python objects would otherwise be walked by every full
    # garbage collection, a pause of a few hundred ms that requests' allocations trigger every few
    # seconds (it was the p99 of 16 concurrent clients: docs/benchmarks.md, "Against Infinity").
    gc.collect()
    gc.freeze()
    for loaded in served:
        state = loaded.service.describe() if loaded.service is not None else None
        logger.info("model {} ({}): {}", loaded.name, loaded.kind,
                    f"{state.kind} on {state.backend} ({state.runtime})" if state else f"FAILED: {loaded.error}")
    described = reranker.describe()
    logger.info(
        "engine ready: model={} backend={} runtime={} dim={} reranker={} ({}) sparse={} models={} in {:.1f}s",
        engine.model_id, embedder.backend.kind, embedder.backend.runtime, engine.dimension, described.model,
        described.kind, engine.sparse_model_id, len(served), time.monotonic() - started,
    )
    return engine


def _load(settings: Settings, binary: str | None, spec: ModelSpec, model: Any) -> ModelEntry:
    """One model's service, or its error (logged; the other models go on loading)."""
    try:
        own = spec.settings_for(settings)
        return ModelEntry(spec, _pipeline(own, spec.kind, build_service(spec.kind, own, binary, model, spec)))
    except Exception as exc:
        logger.opt(exception=exc).error(
            "the {} {!r} could not be loaded ({}: {}); its requests get 503 until the service restarts with a "
            "model that loads", spec.kind, spec.served_name, type(exc).__name__, exc)
        return ModelEntry(spec, None, f"{type(exc).__name__}: {exc}")


def _pipeline(settings: Settings, kind: str, built: BuiltService) -> Any:
    """The engine's pipeline of ``kind`` over a built service (its own batcher and cache)."""
    try:
        if kind == EMBEDDER:
            prompts = ModelPrompts(built.tokenizer.prompts, built.tokenizer.default_prompt_name)
            return EmbeddingPipeline(settings, built.service, built.tokenizer, built.profile,  # type: ignore[arg-type]
                                     prompts)
        if kind == RERANKER:
            return RerankPipeline(settings, built)
        return SparsePipeline(settings, built)
    except BaseException:
        built.service.close()
        raise


def _default_reranker(registry: ModelRegistry, embedder: EmbeddingPipeline) -> RerankService:
    """The default cross-encoder's pipeline, or the bi-encoder stand-in when none is configured or
    it could not be loaded: a reranker that fails to download or is not a one-label classifier must
    not take embeddings down."""
    default = registry.default(RERANKER)
    if default is not None and default.service is not None:
        return default.service
    if default is not None:
        logger.error("the reranker {!r} could not be loaded: /rerank answers with the embedding model's cosine "
                     "(reranker.kind = bi-encoder) until the service restarts with a model that loads", default.name)
    return BiEncoderReranker(embedder)
