"""One way to build a model service of any kind: the embedder, the reranker and the sparse encoder,
each TEI-served or local.

``build_service(kind, ...)`` picks the kind's builder; ``build_embedder``, ``build_reranker`` and
``build_sparse`` load the local model (the fallback, and the tokenizer the engine uses whoever serves) and, when
the TEI binary is found, launch and supervise a TEI process for that model on its own loopback
port, wrapped with the local model in a ``FailoverEmbedder`` / ``FailoverReranker`` /
``FailoverSparseEncoder``. Each result
carries the ``BatchingProfile`` that suits what serves it: a local model runs one pass at a time,
a GPU pass costs mostly its launch, TEI batches again on its side and is kept busy with a few big
requests in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from loguru import logger

from ..settings import ModelSpec, Settings
from .failover import FailoverEmbedder, FailoverReranker, FailoverService, FailoverSparseEncoder
from .protocols import BatchingProfile, ModelService

# A TEI server batches again on its side; a few requests in flight keep its GPU busy.
TEI_BATCHES_IN_FLIGHT = 4
# On a GPU a pass costs mostly its launch overhead: padding is cheap, extra passes are not.
GPU_BATCH_OVERHEAD_TOKENS = 2048


@dataclass
class BuiltService:
    """A model service, how to batch for it, and the local model that tokenises for it."""

    service: ModelService
    profile: BatchingProfile
    tokenizer: Any  # LoadedModel or LoadedSparseEncoder (a Tokenizer), or LoadedReranker (a PairTokenizer)


def tei_binary(settings: Settings) -> str | None:
    """The TEI executable's path when it is there (logged once when it is not)."""
    from .tei_process import find_binary

    binary = find_binary(settings.tei_binary) if settings.tei_binary else None
    if binary is None:
        logger.info("TEI binary {!r} not found: serving with local models only", settings.tei_binary)
    return binary


def _local_device(settings: Settings, binary: str | None) -> str:
    """With TEI serving, ``auto`` keeps the fallback on the CPU so the GPU holds each model once."""
    return "cpu" if binary and settings.device == "auto" else settings.device


def _profile(device: str, binary: str | None, tei_batch_tokens: int) -> BatchingProfile:
    if binary is not None:
        return BatchingProfile(TEI_BATCHES_IN_FLIGHT, tei_batch_tokens)  # TEI re-batches: send big batches
    return BatchingProfile(1, GPU_BATCH_OVERHEAD_TOKENS if device != "cpu" else None)


def _built(load: Callable[[], Any]) -> Any:
    """A local model loaded while no other is (``local.MODEL_BUILD_LOCK``: models load side by side)."""
    from .local import MODEL_BUILD_LOCK

    with MODEL_BUILD_LOCK:
        return load()


def _as_specified(model: Any, spec: ModelSpec | None) -> Any:
    """The loaded model with ``spec``'s served name, pooling and (lower) token limit."""
    if spec is not None:
        if spec.name:
            model.model_id = spec.name
        if spec.pooling:
            model.default_pooling = spec.pooling
        if spec.max_tokens:
            model.max_input_tokens = min(model.max_input_tokens, spec.max_tokens)
    return model


def build_embedder(settings: Settings, binary: str | None, model: Any = None,
                   spec: ModelSpec | None = None) -> BuiltService:
    """The embedding backend for ``settings`` (``model``: an already loaded ``LoadedModel``;
    ``spec``: the served name, pooling and token limit it is served with)."""
    from .local import LoadedModel, build_local_backend
    from .tei import TeiBackend

    model = _as_specified(model or _built(lambda: LoadedModel(settings, _local_device(settings, binary))), spec)
    local = build_local_backend(settings, model)
    service: ModelService = local
    if binary is not None:
        service = _supervised(settings, binary, settings.model, settings.model_revision, settings.tei_port, local,
                              lambda url: TeiBackend(url, model_id=local.model_id, dimension=local.dimension,
                                                     max_input_tokens=local.max_input_tokens,
                                                     default_pooling=local.default_pooling),
                              FailoverEmbedder, pooling=spec.pooling if spec is not None else None)
    return BuiltService(service, _profile(model.device, binary, settings.max_batch_tokens), model)


def build_reranker(settings: Settings, binary: str | None, model: Any = None,
                   spec: ModelSpec | None = None) -> BuiltService:
    """The cross-encoder service for ``settings.rerank_model`` (``model``: an already loaded
    ``LoadedReranker``; ``spec``: its served name and token limit)."""
    from .cross_encoder import LoadedReranker, LocalReranker, build_rerank_runner
    from .tei import TeiReranker

    model = _as_specified(model or _built(lambda: LoadedReranker(settings.rerank_model, _local_device(settings, binary),
                                                                 settings.rerank_model_revision)), spec)
    local = LocalReranker(model, *build_rerank_runner(model, settings))
    service: ModelService = local
    if binary is not None:
        service = _supervised(settings, binary, settings.rerank_model, settings.rerank_model_revision,
                              settings.rerank_tei_port, local,
                              lambda url: TeiReranker(url, model_id=local.model_id,
                                                      max_input_tokens=local.max_input_tokens),
                              FailoverReranker)
    return BuiltService(service, _profile(model.device, binary, settings.rerank_max_batch_tokens), model)


def build_sparse(settings: Settings, binary: str | None, model: Any = None,
                 spec: ModelSpec | None = None) -> BuiltService:
    """The SPLADE service for ``settings.sparse_model`` (``model``: an already loaded
    ``LoadedSparseEncoder``; ``spec``: its served name and token limit); its TEI is launched with
    ``--pooling splade``."""
    from .sparse import LoadedSparseEncoder, LocalSparseEncoder
    from .tei import TeiSparseEncoder

    model = _as_specified(model or _built(lambda: LoadedSparseEncoder(
        settings.sparse_model, _local_device(settings, binary), settings.sparse_model_revision)), spec)
    local = LocalSparseEncoder(model)
    service: ModelService = local
    if binary is not None:
        service = _supervised(settings, binary, settings.sparse_model, settings.sparse_model_revision,
                              settings.sparse_tei_port, local,
                              lambda url: TeiSparseEncoder(url, model_id=local.model_id,
                                                           max_input_tokens=local.max_input_tokens,
                                                           vocab_size=local.vocab_size),
                              FailoverSparseEncoder, pooling="splade")
    return BuiltService(service, _profile(model.device, binary, settings.sparse_max_batch_tokens), model)


# Every kind of model service, by the name the engine and the settings use for it.
BUILDERS: dict[str, Callable[..., BuiltService]] = {"embedder": build_embedder, "reranker": build_reranker,
                                                    "sparse": build_sparse}


def build_service(kind: str, settings: Settings, binary: str | None, model: Any = None,
                  spec: ModelSpec | None = None) -> BuiltService:
    """The model service of ``kind`` ("embedder", "reranker", "sparse") for ``settings``; ``model``:
    its already loaded local model, to reuse; ``spec``: the entry of ``EMBEDDINGS_MODELS`` it serves
    (``settings`` is then ``spec.settings_for(...)``)."""
    return BUILDERS[kind](settings, binary, model, spec)


def _supervised(settings: Settings, binary: str, model: str, revision: str | None, port: int, local: Any,
                client: Callable[[str], Any], failover: Callable[..., Any], pooling: str | None = None) -> Any:
    """Launch TEI for ``model`` and put it in front of ``local`` (returns at once: the local model
    serves until TEI is healthy; see ``wait_for_tei``)."""
    from .tei_process import TeiLaunch, TeiSupervisor, free_port

    supervisor = TeiSupervisor(
        TeiLaunch(
            binary=binary, model=model, port=port or free_port(), revision=revision,
            max_batch_tokens=settings.tei_max_batch_tokens, max_client_batch_size=settings.tei_max_client_batch_size,
            max_concurrent_requests=settings.tei_max_concurrent_requests,
            fallback_cache=str(settings.data_path / "hub"), pooling=pooling,
        )
    )
    supervisor.start()
    return failover(client(supervisor.url), local, supervisor)


def wait_for_tei(services: list[ModelService], timeout_s: float) -> None:
    """Wait (at most ``timeout_s`` in all) for the TEI processes behind ``backends`` to be healthy
    and read their /info; those still down are logged and served locally until they come up."""
    from .tei import TeiUnavailable

    deadline = time.monotonic() + timeout_s
    for backend in services:
        if not isinstance(backend, FailoverService):
            continue
        if backend.supervisor.wait_ready(max(0.0, deadline - time.monotonic())):
            try:
                backend.primary.refresh_info()
            except TeiUnavailable as exc:
                logger.warning("TEI for {} is up but /info failed ({}); it will be read on first use",
                               backend.model_id, exc)
        else:
            logger.warning("TEI for {} not healthy after {:.0f} s: serving from the local model until it is",
                           backend.model_id, timeout_s)
