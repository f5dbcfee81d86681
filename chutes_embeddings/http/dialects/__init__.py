"""The wire formats the service speaks: one engine, several dialects.

Each dialect module translates a parsed request into an engine verb and the verb's result into its
own response shape, and renders every error (``render_error(err) -> (status, body)``) in its own
error shape; the engine never knows which dialect called it, and the chute file only says which
dialect each route speaks.

- ``native``: the service's own API, errors as ``{"detail": {...}}``;
- ``openai``: OpenAI's embeddings API (``/v1/embeddings``, ``/v1/models``), errors as ``{"error": {...}}``;
- ``tei``: text-embeddings-inference's API under ``/tei``, errors as ``{"error", "error_type"}``;
- ``cohere``: Cohere's rerank API (``/v2/rerank``; ``/v1/rerank``, which Jina shares), errors as
  ``{"message", "detail", ...}``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Protocol

from ...errors import EmbeddingsError


class Dialect(Protocol):
    """What the HTTP layer needs from a dialect module."""

    name: str

    def render_error(self, err: EmbeddingsError) -> tuple[int, Any]:
        """(HTTP status, JSON body) for a service error, in this dialect's shape."""
        ...


def picks(kind: str) -> Callable[[Callable[[Any, Any], Any]], Callable[[Any, Any], Any]]:
    """A dialect function's model choice: it runs with the engine of the model of ``kind``
    (``engine.results.EMBEDDER``, ``RERANKER``, ``SPARSE``) that the request's ``model`` names
    (``Engine.using``, the one place names resolve; no ``model``: the kind's default)."""

    def wrap(func: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        @functools.wraps(func)
        def chosen(engine: Any, request: Any) -> Any:
            return func(engine.using(kind, getattr(request, "model", None), func.__doc__.split(":")[0].strip("`")
                                     if func.__doc__ else "this route"), request)

        return chosen

    return wrap
