"""TEI's API under ``/tei``, as text-embeddings-inference 1.9.3 documents it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, RootModel

from chutes_embeddings.errors import InvalidInput

from .common import (
    MAX_DECODE_IDS,
    MAX_EMBED_INPUTS,
    MAX_RERANK_TEXTS,
    MAX_SIMILARITY_TARGETS,
    Dimensions,
    LaxObject,
    LaxRequest,
    PromptName,
    Text,
    text_inputs,
)

# --- TEI's API (/tei/*), as text-embeddings-inference 1.9.3 documents it -----------------------
TeiInputs = text_inputs("inputs", MAX_EMBED_INPUTS)
TruncationDirection = Literal["Left", "Right", "left", "right"]


class TeiEmbedRequest(LaxRequest):
    """POST /tei and /tei/embed."""

    inputs: TeiInputs
    normalize: bool = True
    truncate: bool | None = None  # None: the server's auto_truncate (true)
    truncation_direction: TruncationDirection = "Right"
    prompt_name: PromptName = None
    dimensions: Dimensions | None = None


class TeiEmbedAllRequest(LaxRequest):
    """POST /tei/embed_all."""

    inputs: TeiInputs
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "Right"
    prompt_name: PromptName = None


class TeiEmbedSparseRequest(LaxRequest):
    """POST /tei/embed_sparse (a SPLADE model's weights over its vocabulary)."""

    inputs: TeiInputs
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "Right"
    prompt_name: str | None = None


class TeiTokenizeRequest(LaxRequest):
    """POST /tei/tokenize."""

    inputs: TeiInputs
    add_special_tokens: bool = True
    prompt_name: PromptName = None


def _texts_not_empty(value: Any) -> Any:
    if value == []:  # TEI's own answer to an empty batch: 400 Empty
        raise InvalidInput("`texts` cannot be empty", field="texts", limit=1, reason="empty")
    return value


class TeiRerankRequest(LaxRequest):
    """POST /tei/rerank."""

    query: Text
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_RERANK_TEXTS), BeforeValidator(_texts_not_empty)]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "Right"


MAX_TOKEN_ID = 2**32 - 1  # TEI's ids are u32


def token_id_inputs(field: str) -> BeforeValidator:
    """TEI's ``InputIds``: one sequence of ids or a list of 1..MAX_EMBED_INPUTS of them, each of
    1..MAX_DECODE_IDS integers in 0..2**32-1. Checked before pydantic sees the union, so an error
    names ``ids[i]`` or ``ids[i][j]`` and the limit (a union's own errors name its members)."""

    def check_row(row: Any, where: str) -> None:
        if not isinstance(row, list):
            raise InvalidInput(f"{where} must be a list of token ids", field=where)
        if not 1 <= len(row) <= MAX_DECODE_IDS:
            raise InvalidInput(f"{where} has {len(row)} ids; send 1..{MAX_DECODE_IDS}", field=where,
                               limit=MAX_DECODE_IDS, **({} if row else {"reason": "empty"}))
        for j, token_id in enumerate(row):
            if isinstance(token_id, float) and token_id.is_integer():
                token_id = row[j] = int(token_id)
            if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id <= MAX_TOKEN_ID:
                raise InvalidInput(f"{where}[{j}] must be a token id, an integer in 0..{MAX_TOKEN_ID}",
                                   field=f"{where}[{j}]", limit=MAX_TOKEN_ID)

    def check(value: Any) -> Any:
        if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
            if len(value) > MAX_EMBED_INPUTS:
                raise InvalidInput(f"{field} has {len(value)} sequences; at most {MAX_EMBED_INPUTS} are accepted",
                                   field=field, limit=MAX_EMBED_INPUTS)
            for i, row in enumerate(value):
                check_row(row, f"{field}[{i}]")
        else:
            check_row(value, field)
        return value

    return BeforeValidator(check)


TokenIds = Annotated[list[Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]], Field(min_length=1, max_length=MAX_DECODE_IDS)]


class TeiDecodeRequest(LaxRequest):
    """POST /tei/decode: one id sequence or a list of them."""

    ids: Annotated[TokenIds | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_EMBED_INPUTS)],
                   token_id_inputs("ids")]
    skip_special_tokens: bool = True


TeiDecodeResponse = RootModel[list[str]]


class TeiSimilarityInput(LaxObject):
    """The sentences TEI's ``/similarity`` compares."""

    source_sentence: Text
    sentences: Annotated[list[Text], Field(min_length=1, max_length=MAX_SIMILARITY_TARGETS)]


class TeiSimilarityParameters(LaxObject):
    prompt_name: PromptName = None


class TeiSimilarityRequest(LaxRequest):
    """POST /tei/similarity (what ``huggingface_hub``'s ``sentence_similarity`` sends)."""

    inputs: TeiSimilarityInput
    parameters: TeiSimilarityParameters | None = None


TeiSimilarityResponse = RootModel[list[float]]


class TeiRootRequest(RootModel[TeiEmbedRequest | TeiSimilarityRequest]):
    """POST /tei: TEI's ``POST /``, an embed request, or a similarity request (``inputs`` an object):
    ``huggingface_hub.InferenceClient(model=<service>/tei)`` sends both there."""


TeiRootResponse = RootModel[list[list[float]] | list[float]]
TeiEmbedResponse = RootModel[list[list[float]]]
TeiEmbedAllResponse = RootModel[list[list[list[float]]]]


class TeiSparseValue(BaseModel):
    index: Annotated[int, Field(ge=0)]
    value: float


TeiEmbedSparseResponse = RootModel[list[list[TeiSparseValue]]]


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
