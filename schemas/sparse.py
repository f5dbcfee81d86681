"""The service's own learned-sparse (SPLADE) API: ``POST /embed/sparse`` and the sparse model's
summary in ``/health`` and ``/info``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from .common import MAX_EMBED_INPUTS, ModelName, StrictRequest, text_inputs


class SparseEmbedRequest(StrictRequest):
    """POST /embed/sparse: one text or a list of texts, each encoded by the sparse (SPLADE) model.

    ``truncate`` cuts a text over the model's token limit (keeping its start, or with
    ``truncation_direction`` ``left`` its end); false makes such a text an error.
    """

    model: ModelName = None
    inputs: text_inputs("inputs", MAX_EMBED_INPUTS)  # type: ignore[valid-type]
    truncate: bool = True
    truncation_direction: Literal["right", "left"] = "right"


class SparseEmbedding(BaseModel):
    """One text's sparse vector: the vocabulary ids with a weight (ascending) and those weights (> 0)."""

    index: int  # the text's position in ``inputs``
    indices: list[int]
    values: list[float]


class SparseUsage(BaseModel):
    prompt_tokens: int  # every text's tokens as encoded (after any cut)
    total_tokens: int


class SparseEmbedResponse(BaseModel):
    """One sparse vector per input, in input order (a bare string is a list of one)."""

    data: list[SparseEmbedding]
    model: str
    vocab_size: int  # the vectors' dimension: every index is below it
    usage: SparseUsage


class SparseModel(BaseModel):
    """The sparse encoder in /health and /info (absent or null: no sparse model configured)."""

    model_config = ConfigDict(extra="allow")
    model: str
    kind: Literal["sparse-encoder"]
    backend: str
    max_input_tokens: int
    vocab_size: int
