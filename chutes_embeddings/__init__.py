"""chutes-embeddings: the engine and the HTTP client of the embeddings chute.

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
