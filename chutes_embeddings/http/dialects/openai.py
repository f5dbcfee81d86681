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

from typing import Any

from ...engine.results import EMBEDDER, EmbedOptions
from ...errors import (
    Conflict,
    EmbeddingsError,
    Forbidden,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    RequestTimeout,
    bad_request_status,
    naming,
)
from . import picks

name = "openai"
OWNED_BY = "chutes-embeddings"
# OpenAI's error ``type`` for each of our errors (the nearest class in the tree decides)
_ERROR_TYPES: dict[type[EmbeddingsError], str] = {
    InvalidInput: "invalid_request_error", Forbidden: "permission_error", NotFound: "not_found_error",
    MethodNotAllowed: "invalid_request_error", RequestTimeout: "timeout_error", Conflict: "conflict_error",
    Overloaded: "rate_limit_error",
}


@picks(EMBEDDER)
def embeddings(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /v1/embeddings``: the texts' vectors (floats or base64), with real token counts."""
    return embeddings_answer(engine, request.input, request.dimensions, request.encoding_format)


def embeddings_answer(engine: Any, inputs: str | list[str], dimensions: int | None,
                      encoding_format: str) -> dict[str, Any]:
    """OpenAI's embeddings answer (which Infinity's extends) for one text or a list."""
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    with naming("input"):
        embedded = engine.embed(texts, EmbedOptions(dimensions=dimensions, count_tokens=True))
    vectors = embedded.vectors
    if encoding_format == "base64":
        from ...engine.quantize import to_base64  # numpy: the chute file imports the dialects with the SDK only

        encoded: list[Any] = to_base64(vectors)
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
    """``GET /v1/models``: every configured model, each kind's default first (``created``: when this
    process started; ``kind``, ``default`` and ``status``, ``ready`` or ``failed``, are ours)."""
    return {"object": "list", "data": [_model(engine, m) for m in engine.served_models()]}


def model(engine: Any, model_id: str) -> dict[str, Any]:
    """``GET /v1/models/{model}`` (the SDK's ``models.retrieve``): the model of that name or alias, or 404
    listing the served ones."""
    served = engine.served_models()
    found = next((m for m in served if model_id in m.names), None)
    if found is None:
        names = [m.name for m in served]
        raise NotFound(f"the model {model_id!r} does not exist here; this service serves {names}",
                       field="model", limit=names)
    return _model(engine, found)


def _model(engine: Any, report: Any) -> dict[str, Any]:
    return {"id": report.name, "object": "model", "created": int(engine.started_at), "owned_by": OWNED_BY,
            "kind": report.kind, "default": report.default, "status": "ready" if report.state else "failed"}


def render_error(err: EmbeddingsError) -> tuple[int, Any]:
    """OpenAI's error shape; a request the service cannot accept is 400, as OpenAI answers it."""
    status = bad_request_status(err)
    kind = next((_ERROR_TYPES[c] for c in type(err).__mro__ if c in _ERROR_TYPES),
                "server_error" if err.server_side else "invalid_request_error")
    return status, {"error": {"message": err.message, "type": kind, "param": err.field, "code": err.error_type}}
