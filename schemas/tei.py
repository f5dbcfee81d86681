"""TEI's API under ``/tei``, as text-embeddings-inference 1.9.3 documents it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, RootModel

from .common import (
    MAX_EMBED_INPUTS,
    MAX_RERANK_TEXTS,
    MAX_SIMILARITY_TARGETS,
    LaxObject,
    LaxRequest,
    Text,
    text_inputs,
)

# --- TEI's API (/tei/*), as text-embeddings-inference 1.9.3 documents it -----------------------
TeiInputs = Annotated[str | list[str], text_inputs("inputs", MAX_EMBED_INPUTS)]
TruncationDirection = Literal["Left", "Right", "left", "right"]


class TeiEmbedRequest(LaxRequest):
    """POST /tei and /tei/embed."""

    inputs: TeiInputs
    normalize: bool = True
    truncate: bool | None = None  # None: the server's auto_truncate (true)
    truncation_direction: TruncationDirection = "Right"
    prompt_name: str | None = None
    dimensions: Annotated[int, Field(ge=0)] | None = None


class TeiEmbedAllRequest(LaxRequest):
    """POST /tei/embed_all."""

    inputs: TeiInputs
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "Right"
    prompt_name: str | None = None


class TeiTokenizeRequest(LaxRequest):
    """POST /tei/tokenize."""

    inputs: TeiInputs
    add_special_tokens: bool = True
    prompt_name: str | None = None


class TeiRerankRequest(LaxRequest):
    """POST /tei/rerank."""

    query: Text
    texts: Annotated[list[Text], Field(max_length=MAX_RERANK_TEXTS)]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "Right"


class TeiSimilarityInput(LaxObject):
    """The sentences TEI's ``/similarity`` compares."""

    source_sentence: Text
    sentences: Annotated[list[Text], Field(min_length=1, max_length=MAX_SIMILARITY_TARGETS)]


class TeiSimilarityParameters(LaxObject):
    prompt_name: str | None = None


class TeiSimilarityRequest(LaxRequest):
    """POST /tei/similarity (what ``huggingface_hub``'s ``sentence_similarity`` sends)."""

    inputs: TeiSimilarityInput
    parameters: TeiSimilarityParameters | None = None


TeiSimilarityResponse = RootModel[list[float]]
TeiEmbedResponse = RootModel[list[list[float]]]
TeiEmbedAllResponse = RootModel[list[list[list[float]]]]


class TeiToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = None
    stop: int | None = None


TeiTokenizeResponse = RootModel[list[list[TeiToken]]]


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None


TeiRerankResponse = RootModel[list[TeiRank]]


class TeiInfoResponse(BaseModel):
    model_id: str
    model_sha: str | None = None
    model_dtype: str
    served_model_name: str
    model_type: dict[str, Any]
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None = None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    version: str
    sha: str | None = None
    docker_label: str | None = None


class TeiError(BaseModel):
    """The body of every 4xx/5xx answer under /tei."""

    error: str
    error_type: Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]
