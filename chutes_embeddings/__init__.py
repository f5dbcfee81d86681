"""chutes-embeddings: the engine, the HTTP edge, the store and the client of the embeddings chute.

A request's path, outside in (the store beside the engine):

    my_embeddings.py        the chute: one named cord per route, nothing else
    schemas/                request and response models, one module per wire format
    chutes_embeddings/
      http/                 the HTTP edge
        guard.py              every request first: host, size, media type, early 429
        boundary.py           errors of every kind, rendered in the route's dialect
        cords.py              parse the body once, run the dialect function in an engine thread
        routes.py             the route table (dialect, models used, labels)
        dialects/             native, openai, tei, cohere: request -> engine verb -> answer
        payload.py, limits.py, openapi.py, metrics.py
      engine/               the verbs, returning data
        core.py               Engine: embed, rerank, search, similarity, cluster, health, info
        results.py            the options and typed results the verbs take and return
        embedding.py          texts -> vectors: cache, admission, tokenising once, batching
        reranking.py          the cross-encoder's pipeline, or the bi-encoder stand-in
        batcher.py            cross-request batching and admission (429)
        startup.py            build the engine for the settings
        cache.py, caller.py, similarity.py, cluster.py, vectors.py
      backends/             model services of one shape (protocols.py), built by factory.py
        local.py, cross_encoder.py, onnx.py   in this process (torch or ONNX Runtime)
        tei.py, tei_process.py, failover.py   a supervised TEI, the local model behind it
      store/                the vector store: embedded (SQLite + FAISS) or Postgres (pgvector)
        service.py            the store verbs over the engine and a store
      client/               EmbeddingsClient and AsyncEmbeddingsClient over one I/O-free base
      integrations/         LangChain and LlamaIndex
      tools/                developer tools nothing in the runtime imports (dev server, smoke test)
      errors.py, settings.py, logs.py

Names are imported lazily so that ``from chutes_embeddings import EmbeddingsClient`` needs only
httpx, tenacity and tqdm (no torch, numpy or scikit-learn).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "EmbeddingsClient": "client",
    "AsyncEmbeddingsClient": "client",
    "EmbeddingsConnectionError": "errors",
    "EmbeddingsTimeout": "errors",
    "Settings": "settings",
    "Engine": "engine.core",
    "start_engine": "engine.startup",
    "EmbeddingsError": "errors",
    "InvalidInput": "errors",
    "MalformedRequest": "errors",
    "PayloadTooLarge": "errors",
    "UnsupportedMediaType": "errors",
    "Forbidden": "errors",
    "MethodNotAllowed": "errors",
    "RequestTimeout": "errors",
    "NotFound": "errors",
    "Conflict": "errors",
    "Overloaded": "errors",
    "BackendUnavailable": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chutes_embeddings' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
