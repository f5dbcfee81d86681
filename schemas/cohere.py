"""Cohere's rerank API (``/v1/rerank``: Cohere v1 and Jina; ``/v2/rerank``: Cohere v2)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from chutes_embeddings.errors import InvalidInput

from .common import (
    INT64_MAX,
    MAX_RERANK_TEXTS,
    MAX_RERANK_TOKENS_PER_DOC,
    MAX_TEXT_CHARS,
    LaxRequest,
    Text,
)
from .native import (
    Reranker,
)


# --- Cohere's rerank API (/v1/rerank: Cohere v1 and Jina; /v2/rerank: Cohere v2) ------------------
class TextDocument(BaseModel):
    """Cohere v1's document object: its ``text`` is what is ranked (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")
    text: Text


def rerank_documents(field: str, objects: bool = True) -> Any:
    """Cohere's and Jina's ``documents``: 1..MAX_RERANK_TEXTS strings or (``objects``) ``{"text": str}``
    objects (Cohere v1's form), read as their texts; errors name ``documents[i]``. The type, whose
    JSON Schema states the forms and limits."""

    def check(value: Any) -> list[str]:
        if not isinstance(value, list):
            raise InvalidInput(f"{field} must be a list of strings", field=field)
        if not value:
            raise InvalidInput(f"{field} is empty; send 1..{MAX_RERANK_TEXTS} documents", field=field, limit=1,
                               reason="empty")
        if len(value) > MAX_RERANK_TEXTS:
            raise InvalidInput(f"{field} has {len(value)} documents; at most {MAX_RERANK_TEXTS} are accepted",
                               field=field, limit=MAX_RERANK_TEXTS)
        texts = []
        for i, item in enumerate(value):
            where = f"{field}[{i}]"
            if isinstance(item, dict) and objects:
                item, where = item.get("text"), f"{where}.text"
            if not isinstance(item, str):
                raise InvalidInput(f"{where} must be a string" + (" (or an object with a string `text`)" if objects
                                                                  else ""), field=where)
            if not 1 <= len(item) <= MAX_TEXT_CHARS:
                raise InvalidInput(f"{where} has {len(item)} characters; send 1..{MAX_TEXT_CHARS}", field=where,
                                   limit=MAX_TEXT_CHARS, **({} if item else {"reason": "empty"}))
            texts.append(item)
        return texts

    item = Text | TextDocument if objects else Text
    return Annotated[list[item], Field(min_length=1, max_length=MAX_RERANK_TEXTS), BeforeValidator(check)]


RerankDocuments = rerank_documents("documents")
StringDocuments = rerank_documents("documents", objects=False)
TopN = Annotated[int, Field(ge=1, le=INT64_MAX)]


class CohereV2RerankRequest(LaxRequest):
    """POST /v2/rerank (Cohere v2; any ``model`` name is accepted and answered by the served reranker)."""

    model: str | None = None
    query: Text
    documents: RerankDocuments
    top_n: TopN | None = None
    max_tokens_per_doc: Annotated[int, Field(ge=1, le=MAX_RERANK_TOKENS_PER_DOC)] | None = None


class CohereV1RerankRequest(LaxRequest):
    """POST /v1/rerank (Cohere v1 and Jina): documents as strings or ``{"text": ...}``."""

    model: str | None = None
    query: Text
    documents: RerankDocuments
    top_n: TopN | None = None
    return_documents: bool = False
    max_tokens_per_doc: Annotated[int, Field(ge=1, le=MAX_RERANK_TOKENS_PER_DOC)] | None = None


class CohereRerankResult(BaseModel):
    index: int
    relevance_score: float  # in [0, 1]
    document: dict[str, str] | None = None  # /v1 with return_documents: {"text": ...}


class CohereRerankResponse(BaseModel):
    """POST /v2/rerank's answer (and /v1/rerank's, which adds ``usage``)."""

    id: str
    model: str
    results: list[CohereRerankResult]
    meta: dict[str, Any]
    usage: dict[str, int] | None = None
    reranker: Reranker


class CohereError(BaseModel):
    """The body of every 4xx/5xx answer under /v1/rerank and /v2/rerank: Cohere's ``message``,
    the same text as Jina's ``detail``, and the field and limit at fault."""

    message: str
    detail: str
    error_type: str
    field: str | None = None
    limit: Any = None
