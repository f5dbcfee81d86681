"""What every wire format shares: the limits (the only place they are written), the field types,
the text-input check, and the two request bases (strict for the native API, lax for compatible ones)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from chutes_embeddings.errors import InvalidInput
from chutes_embeddings.store.names import COLLECTION_NAME_PATTERN

# --- limits (the only place they are written) ---------------------------------------------
MAX_TEXT_CHARS = 100_000
MAX_EMBED_INPUTS = 1000
MAX_BATCH_TEXTS = 1000
MAX_BATCH_SIZE = 128
DEFAULT_BATCH_SIZE = 32
MAX_SIMILARITY_TARGETS = 100
MAX_RERANK_TEXTS = 1000
MAX_RERANK_CANDIDATES = 200
DEFAULT_RERANK_CANDIDATES = 50
MAX_RERANK_TOKENS_PER_DOC = 100_000
MAX_SEARCH_CORPUS = 1000
MAX_SEARCH_TOP_K = 100
DEFAULT_SEARCH_TOP_K = 10
MIN_CLUSTER_TEXTS = 2
MAX_CLUSTER_TEXTS = 500
MIN_CLUSTERS = 2
MAX_CLUSTERS = 20
MAX_STORE_ADD_TEXTS = 1000
MAX_STORE_TOP_K = 100
DEFAULT_STORE_TOP_K = 10
MAX_ID_CHARS = 256
MAX_STORE_IDS = 1000
MAX_OPENAI_INPUTS = 2048
MAX_VECTOR_DIMENSION = 8192
DEFAULT_FIND_LIMIT = 100

LIMITS: dict[str, int] = {
    name.lower(): value for name, value in dict(globals()).items() if name.startswith(("MAX_", "MIN_", "DEFAULT_"))
}

Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
Pooling = Literal["cls", "mean", "max", "mean_sqrt_len", "lasttoken", "weightedmean"]
ClusterMethod = Literal["kmeans", "agglomerative", "hdbscan"]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
CollectionName = Annotated[str, StringConstraints(pattern=COLLECTION_NAME_PATTERN)]
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Metadata = dict[str, Any]
Vector = Annotated[list[float], Field(min_length=1, max_length=MAX_VECTOR_DIMENSION)]
Dimensions = Annotated[int, Field(ge=1)]  # at most the model's dimension: checked by the engine

TOKEN_IDS_HINT = ("token-id input is not supported: this service tokenises with its own model's tokenizer, so "
                  "ids from another tokenizer would embed the wrong text; send the text instead (LangChain's "
                  "OpenAIEmbeddings: pass check_embedding_ctx_length=False)")


def text_inputs(field: str, max_items: int) -> BeforeValidator:
    """OpenAI's ``input`` / TEI's ``inputs``: one text or a list of 1..``max_items`` texts.

    Checked before pydantic sees the union, so an error names ``field[i]`` and the limit (a
    union's own errors name its members); token ids, which both APIs define, get a hint.
    """

    def check(value: Any) -> Any:
        single = isinstance(value, str)
        if not single and not isinstance(value, list):
            raise InvalidInput(f"{field} must be a string or a list of strings", field=field)
        items = [value] if single else value
        if not items:
            raise InvalidInput(f"{field} is empty; send 1..{max_items} texts", field=field, limit=1, reason="empty")
        if len(items) > max_items:
            raise InvalidInput(f"{field} has {len(items)} items; at most {max_items} are accepted", field=field,
                               limit=max_items)
        for i, item in enumerate(items):
            where = field if single else f"{field}[{i}]"
            if isinstance(item, (int, list)) and not isinstance(item, bool):
                raise InvalidInput(f"{where}: {TOKEN_IDS_HINT}", field=where, reason="token_ids")
            if not isinstance(item, str):
                raise InvalidInput(f"{where} must be a string", field=where)
            if not 1 <= len(item) <= MAX_TEXT_CHARS:
                raise InvalidInput(f"{where} has {len(item)} characters; send 1..{MAX_TEXT_CHARS}", field=where,
                                   limit=MAX_TEXT_CHARS, **({} if item else {"reason": "empty"}))
        return value

    return BeforeValidator(check)


class StrictRequest(BaseModel):
    # strict: no silent "5" -> 5 or 1 -> True; forbid: a misspelt option is an error, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class LaxRequest(BaseModel):
    # Compatible clients send fields we do not use (OpenAI's extra_body, TEI's newer options):
    # ignored, as the originals ignore them. Lax, as the originals are (JSON has no int/float split).
    model_config = ConfigDict(extra="ignore", frozen=True)
