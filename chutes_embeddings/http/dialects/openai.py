"""OpenAI's embeddings API: ``POST /v1/embeddings``, ``GET /v1/models``, errors as ``{"error": {...}}``.

What the real clients send decides the details (``shared/guide/compat-facts.md`` §1): the
``openai`` SDK asks for ``encoding_format="base64"`` unless told otherwise and decodes
little-endian float32; any ``model`` name is accepted (LangChain and LlamaIndex default to
OpenAI's names) and answered with the served model's id; ``dimensions`` keeps the first
dimensions and re-normalises (as TEI does); token-id input is refused with a hint (LangChain
sends tiktoken ids unless ``check_embedding_ctx_length=False``). Bad input is 400 (never 5xx, which
the SDK would retry) and 429 carries ``Retry-After``.
"""

from __future__ import annotations

import base64
from typing import Any

from ...engine.results import EmbedOptions
from ...errors import EmbeddingsError, InvalidInput, naming

name = "openai"
ERROR_STATUSES = (400, 403, 404, 405, 408, 409, 413, 415, 429, 500, 503)  # what its routes can answer besides 200
OWNED_BY = "chutes-embeddings"
_ERROR_TYPES = {400: "invalid_request_error", 403: "permission_error", 404: "not_found_error",
                405: "invalid_request_error", 408: "timeout_error", 409: "conflict_error",
                413: "invalid_request_error", 415: "invalid_request_error", 429: "rate_limit_error"}


def embeddings(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /v1/embeddings``: the texts' vectors (floats or base64), with real token counts."""
    texts = [request.input] if isinstance(request.input, str) else list(request.input)
    with naming("input"):
        embedded = engine.embed(texts, EmbedOptions(dimensions=request.dimensions, count_tokens=True))
    vectors = embedded.vectors
    if request.encoding_format == "base64":
        encoded: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in vectors]
    else:
        encoded = vectors.tolist()
    tokens = embedded.tokens
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
        "model": engine.model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models(engine: Any) -> dict[str, Any]:
    """``GET /v1/models``: the one model served (``created``: when this process started)."""
    return {"object": "list", "data": [{"id": engine.model_id, "object": "model",
                                        "created": int(engine.started_at), "owned_by": OWNED_BY}]}


def render_error(err: EmbeddingsError) -> tuple[int, Any]:
    """OpenAI's error shape; a request the service cannot accept is 400, as OpenAI answers it."""
    status = 400 if isinstance(err, InvalidInput) and err.status == 422 else err.status
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return status, {"error": {"message": err.message, "type": kind, "param": err.field, "code": err.error_type}}
