"""Cohere's rerank API (``/v1/rerank``: Cohere v1 and Jina; ``/v2/rerank``: Cohere v2) and its embed
API (``/v1/embed``, ``/v2/embed``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, model_validator

from chutes_embeddings.errors import InvalidInput

from .common import (
    INT64_MAX,
    MAX_COHERE_EMBED_TEXTS,
    MAX_COHERE_INPUT_PARTS,
    MAX_RERANK_TEXTS,
    MAX_RERANK_TOKENS_PER_DOC,
    MAX_TEXT_CHARS,
    Dimensions,
    EmbeddingTypes,
    LaxObject,
    LaxRequest,
    Text,
    exactly_one_of,
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
    """The body of every 4xx/5xx answer of Cohere's routes (rerank and embed): Cohere's ``message``,
    the same text as Jina's ``detail``, and the field and limit at fault."""

    message: str
    detail: str
    error_type: str
    field: str | None = None
    limit: Any = None


# --- Cohere's embed API (/v1/embed: cohere.Client; /v2/embed: cohere.ClientV2) ---------------------
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")


def _input_type(value: Any) -> Any:
    """Cohere's ``input_type``: one of ``INPUT_TYPES`` (Cohere's ``image`` is refused: text only)."""
    if value is not None and value not in INPUT_TYPES:
        what = "images are not embedded here (this service embeds text)" if value == "image" else \
            f"{value!r} is not one of {list(INPUT_TYPES)}"
        raise InvalidInput(f"input_type: {what}", field="input_type", limit=list(INPUT_TYPES))
    return value


def _no_images(value: Any) -> Any:
    if value is not None:
        raise InvalidInput("images: images are not embedded here (this service embeds text); send texts",
                           field="images")
    return value


InputType = Annotated[Literal["search_document", "search_query", "classification", "clustering"],
                      BeforeValidator(_input_type)]
Truncate = Literal["NONE", "START", "END"]


class TextContent(LaxObject):
    """One text part of a Cohere v2 input (``{"type": "text", "text": ...}``)."""

    type: Literal["text"]
    text: Text


def _text_parts(value: Any) -> Any:
    """Refuse an image part by its place (``inputs[i].content[j]``) before pydantic reads the union."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            content = item.get("content") if isinstance(item, dict) else None
            for j, part in enumerate(content if isinstance(content, list) else []):
                if isinstance(part, dict) and part.get("type") == "image_url":
                    where = f"inputs[{i}].content[{j}]"
                    raise InvalidInput(f"{where}: images are not embedded here (this service embeds text); send "
                                       "text parts", field=where)
    return value


class EmbedInput(LaxObject):
    """One Cohere v2 input: its text parts, embedded as one text (joined by newlines)."""

    content: Annotated[list[TextContent], Field(min_length=1, max_length=MAX_COHERE_INPUT_PARTS)]

    @property
    def text(self) -> str:
        return "\n".join(part.text for part in self.content)


CohereTexts = Annotated[list[Text], Field(min_length=1, max_length=MAX_COHERE_EMBED_TEXTS)]


class _CohereEmbedOptions(LaxRequest):
    """What both versions take besides the texts: any ``model`` name is accepted and answered by
    the served model; ``input_type`` is checked (prompts: see the dialect)."""

    model: str | None = None
    images: Annotated[Any, BeforeValidator(_no_images)] = None
    input_type: InputType | None = None
    embedding_types: EmbeddingTypes | None = None
    truncate: Truncate | None = None  # END (null too: langchain-cohere sends it)


class CohereV1EmbedRequest(_CohereEmbedOptions):
    """POST /v1/embed (``cohere.Client.embed``): ``texts``."""

    texts: CohereTexts

    def input_texts(self) -> list[str]:
        """The texts to embed, in order."""
        return list(self.texts)


class CohereV2EmbedRequest(_CohereEmbedOptions):
    """POST /v2/embed (``cohere.ClientV2.embed``): ``texts`` or ``inputs`` (text parts), and
    ``output_dimension`` (the first dimensions, re-normalised) and ``max_tokens`` (per text)."""

    model_config = exactly_one_of(("texts", "array"), ("inputs", "array"))
    texts: CohereTexts | None = None
    inputs: Annotated[list[EmbedInput], Field(min_length=1, max_length=MAX_COHERE_EMBED_TEXTS),
                      BeforeValidator(_text_parts)] | None = None
    output_dimension: Dimensions | None = None
    max_tokens: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None

    @model_validator(mode="after")
    def _texts_or_inputs(self) -> "CohereV2EmbedRequest":
        if self.texts is not None and self.inputs is not None:
            raise InvalidInput("inputs: send texts or inputs, not both", field="inputs")
        if self.texts is None and self.inputs is None:
            raise InvalidInput(f"texts: send texts (or inputs): 1..{MAX_COHERE_EMBED_TEXTS} of them", field="texts",
                               limit=MAX_COHERE_EMBED_TEXTS)
        return self

    def input_texts(self) -> list[str]:
        """The texts to embed, in order (an input's text parts joined by newlines)."""
        return [i.text for i in self.inputs] if self.inputs is not None else list(self.texts or ())


class CohereEmbeddingsByType(BaseModel):
    """Each requested type's vectors, one per text (``float`` is a JSON key, hence the alias)."""

    model_config = ConfigDict(populate_by_name=True)
    float_: list[list[float]] | None = Field(default=None, alias="float")
    int8: list[list[int]] | None = None
    uint8: list[list[int]] | None = None
    binary: list[list[int]] | None = None
    ubinary: list[list[int]] | None = None
    base64: list[str] | None = None


class CohereEmbedByTypeResponse(BaseModel):
    """POST /v2/embed's answer (and /v1/embed's with ``embedding_types``)."""

    response_type: Literal["embeddings_by_type"]
    id: str
    embeddings: CohereEmbeddingsByType
    texts: list[str]
    meta: dict[str, Any]


class CohereEmbedFloatsResponse(BaseModel):
    """POST /v1/embed's answer without ``embedding_types``: float vectors."""

    response_type: Literal["embeddings_floats"]
    id: str
    embeddings: list[list[float]]
    texts: list[str]
    meta: dict[str, Any]


CohereV1EmbedResponse = RootModel[CohereEmbedFloatsResponse | CohereEmbedByTypeResponse]
