"""OpenAI's embeddings API (``/v1/embeddings``, ``/v1/models``): requests, responses, errors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from .common import (
    MAX_OPENAI_INPUTS,
    Dimensions,
    LaxRequest,
    text_inputs,
)

OpenAIInputs = text_inputs("input", MAX_OPENAI_INPUTS)


class OpenAIEmbeddingsRequest(LaxRequest):
    """POST /v1/embeddings (OpenAI's request; ``model`` is accepted whatever it names)."""

    input: OpenAIInputs
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Dimensions | None = None
    user: str | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    kind: Literal["embedder", "reranker", "sparse"]  # ours, beside OpenAI's fields
    default: bool  # the default of its kind: what a request naming no model gets
    status: Literal["ready", "failed"]  # failed: it did not load, its requests get 503


class OpenAIModelsResponse(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModel]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """The body of every 4xx/5xx answer under /v1."""

    error: OpenAIErrorDetail
