"""Infinity's API (``/infinity/embeddings``, ``/infinity/rerank``, ``/infinity/models``): requests,
responses, errors, as Infinity 0.0.78 defines them (``infinity_emb/fastapi_schemas/pymodels.py``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from .cohere import StringDocuments, TopN
from .common import INT64_MAX, MAX_OPENAI_INPUTS, LaxRequest, Text, text_inputs

InfinityInputs = text_inputs("input", MAX_OPENAI_INPUTS)


class InfinityEmbeddingsRequest(LaxRequest):
    """POST /infinity/embeddings (Infinity's text embeddings; ``dimensions: 0`` is the full vector)."""

    input: InfinityInputs
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=0, le=INT64_MAX)] = 0
    modality: Literal["text"] = "text"
    user: str | None = None


class InfinityRerankRequest(LaxRequest):
    """POST /infinity/rerank (Infinity's, Cohere-like; documents are strings and come back as strings)."""

    query: Text
    documents: StringDocuments
    return_documents: bool = False
    raw_scores: bool = False
    model: str | None = None
    top_n: TopN | None = None


class InfinityUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class InfinityEmbedding(BaseModel):
    object: Literal["embedding"]
    embedding: list[float] | str  # str: base64 of little-endian float32
    index: int


class InfinityEmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[InfinityEmbedding]
    model: str
    usage: InfinityUsage
    id: str
    created: int


class InfinityRerankResult(BaseModel):
    relevance_score: float
    index: int
    document: str | None = None


class InfinityRerankResponse(BaseModel):
    object: Literal["rerank"]
    results: list[InfinityRerankResult]
    model: str
    usage: InfinityUsage
    id: str
    created: int


class InfinityModel(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    backend: str
    capabilities: list[str]
    stats: dict[str, Any]


class InfinityModelsResponse(BaseModel):
    object: Literal["list"]
    data: list[InfinityModel]


class InfinityErrorDetail(BaseModel):
    message: str
    type: str | None = None
    param: str | None = None
    code: int


class InfinityError(BaseModel):
    """The body of every 4xx/5xx answer under /infinity (Infinity's ``OpenAIException``: ``code`` is the status)."""

    error: InfinityErrorDetail
