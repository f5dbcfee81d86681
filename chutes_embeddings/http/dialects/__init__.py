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

from typing import Any, Protocol

from ...errors import EmbeddingsError


class Dialect(Protocol):
    """What the HTTP layer needs from a dialect module."""

    name: str

    def render_error(self, err: EmbeddingsError) -> tuple[int, Any]:
        """(HTTP status, JSON body) for a service error, in this dialect's shape."""
        ...
