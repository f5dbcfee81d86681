"""What every wire format shares: the limits (the only place they are written), the field types,
the text-input check, and the two request bases (both strict about values; the native API's also
refuses unknown fields, the compatible ones ignore them). Every request takes a store access token
in its ``token`` field (``chutes_embeddings/access.py``); ``access`` says what its route needs."""

from __future__ import annotations

import functools
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from chutes_embeddings.access import COMPUTE, MAX_TOKEN_CHARS
from chutes_embeddings.documents.chunking import MIN_CHUNK_TOKENS as _MIN_CHUNK_TOKENS
from chutes_embeddings.engine.results import FUSIONS, LEGS, MODES
from chutes_embeddings.errors import InvalidInput
from chutes_embeddings.http.payload import INT64_MAX, INT64_MIN  # every integer of a body fits in 64 bits
from chutes_embeddings.store.names import (
    COLLECTION_NAME_PATTERN,
    FILTER_KEY_PATTERN,
    FILTER_OPERATORS,
    MAX_FILTER_KEYS,
    MAX_IN_VALUES,
)

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
MAX_COHERE_EMBED_TEXTS = 96  # Cohere's own cap per embed call (its SDKs split longer lists by it)
MAX_COHERE_INPUT_PARTS = 16  # text parts of one Cohere v2 `inputs` item
MAX_DECODE_IDS = 100_000  # ids per sequence on TEI's /decode
MAX_VECTOR_DIMENSION = 8192
DEFAULT_FIND_LIMIT = 100
MAX_LEG_CANDIDATES = 1000
MAX_STORE_ADD_DOCUMENTS = 1000
MAX_DOCUMENT_CHARS = 1_000_000
MAX_STORE_ADD_CHUNKS = 1000  # a request embeds at most as many chunks as it may send texts
MIN_CHUNK_TOKENS = _MIN_CHUNK_TOKENS
MAX_GROUP_CANDIDATES = 1000  # group_by "document": the hits searched per leg at most

LIMITS: dict[str, int] = {
    name.lower(): value for name, value in dict(globals()).items() if name.startswith(("MAX_", "MIN_", "DEFAULT_"))
}


Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
Pooling = Literal["cls", "mean", "max", "mean_sqrt_len", "lasttoken", "weightedmean"]
ClusterMethod = Literal["kmeans", "agglomerative", "hdbscan"]
SearchMode = Literal[MODES]  # type: ignore[valid-type]
Fusion = Literal[FUSIONS]  # type: ignore[valid-type]
SearchLeg = Literal[LEGS]  # type: ignore[valid-type]
EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]  # engine.quantize.EMBEDDING_TYPES
Score = Annotated[float, Field(ge=0.0, le=1.0)]
CollectionName = Annotated[str, StringConstraints(pattern=COLLECTION_NAME_PATTERN)]
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Metadata = dict[str, Any]
Vector = Annotated[list[float], Field(min_length=1, max_length=MAX_VECTOR_DIMENSION)]
Dimensions = Annotated[int, Field(ge=1, le=INT64_MAX)]  # at most the model's dimension: checked by the engine
# One of the model's prompts or None (the engine checks; GET /info lists them); the served document states them
PromptName = Annotated[Annotated[str, StringConstraints(min_length=1, max_length=256)] | None, Field(description=(
    "a prompt of the model's sentence-transformers config (GET /info lists them), prepended to every text; "
    "unset: the model's default prompt, if it has one"))]
ModelName = Annotated[Annotated[str, StringConstraints(min_length=1, max_length=256)] | None, Field(description=(
    "the served model that answers (GET /v1/models lists them); unset: the default of the route's kind"))]
EmbeddingTypes = Annotated[list[EmbeddingType], Field(min_length=1, max_length=6, description=(
    "the forms of each vector to answer (engine/quantize.py): float, int8 and uint8 (over the fixed range "
    "[-5/sqrt(d), 5/sqrt(d)] of unit vectors), binary and ubinary (signs packed 8 a byte), base64 (float32 bytes)"))]
# each type's vectors in an answer (ints: int8, uint8, binary, ubinary; strings: base64), one or a list
TypedEmbeddings = list[int] | list[list[int]] | str | list[str] | list[float] | list[list[float]]

# A metadata filter (chutes_embeddings/store/filters.py has the grammar and checks it): the JSON
# Schema states its top level (keys, logical operators, conditions); nested filters are objects.
_SCALAR = {"anyOf": [{"type": "string"}, {"type": "boolean"}, {"type": "null"},
                     {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX}, {"type": "number"}]}
_OPERAND = {op: _SCALAR for op in ("$eq", "$ne")} | {
    op: {"anyOf": [{"type": "string"}, {"type": "number"}]} for op in ("$gt", "$gte", "$lt", "$lte")} | {
    op: {"type": "array", "minItems": 1, "maxItems": MAX_IN_VALUES, "items": _SCALAR} for op in ("$in", "$nin")}
assert set(_OPERAND) == set(FILTER_OPERATORS), "this is a bug: the filter schema misses an operator"
_CONDITION = {"anyOf": [_SCALAR, {"type": "object", "minProperties": 1, "additionalProperties": False,
                                  "properties": _OPERAND}]}
FILTER_JSON_SCHEMA = {
    "type": "object", "maxProperties": MAX_FILTER_KEYS, "additionalProperties": False,
    "patternProperties": {
        FILTER_KEY_PATTERN: _CONDITION,
        "^\\$(and|or)$": {"type": "array", "minItems": 1, "items": {"type": "object", "minProperties": 1}},
        "^\\$not$": {"type": "object", "minProperties": 1},
    },
}
MetadataFilter = Annotated[dict[str, Any], WithJsonSchema(FILTER_JSON_SCHEMA)]
# A secret: pydantic masks it in every repr, and no answer ever carries it back
StoreToken = Annotated[SecretStr, Field(min_length=1, max_length=MAX_TOKEN_CHARS, description=(
    "store access token: needed on the store routes (and, where the service requires it, on every route) "
    "when the service has tokens configured; on the local server also accepted as Authorization: Bearer"))]
Access = Literal["compute", "read", "write", "admin"]

TOKEN_IDS_HINT = ("token-id input is not supported: this service tokenises with its own model's tokenizer, so "
                  "ids from another tokenizer would embed the wrong text; send the text instead (LangChain's "
                  "OpenAIEmbeddings: pass check_embedding_ctx_length=False)")


RerankCandidates = Annotated[int, Field(ge=1, le=MAX_RERANK_CANDIDATES)]  # two-stage search's first stage


def text_inputs(field: str, max_items: int) -> Any:
    """OpenAI's ``input`` / TEI's ``inputs``: one text or a list of 1..``max_items`` texts (the type,
    whose JSON Schema states both forms and their limits).

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

    return Annotated[Text | Annotated[list[Text], Field(min_length=1, max_length=max_items)], BeforeValidator(check)]


def exactly_one_of(*fields: tuple[str, str]) -> ConfigDict:
    """The JSON Schema of a request taking exactly one of some fields, each given as (name, JSON
    type): ``oneOf`` a branch per field, each requiring its field with a value (a null is no value)."""
    return ConfigDict(json_schema_extra={"oneOf": [
        {"required": [name], "properties": {name: {"type": kind}}} for name, kind in fields]})


def at_least_one_of(*fields: tuple[str, str]) -> ConfigDict:
    """The JSON Schema of a request taking one or more of some fields, each given as (name, JSON
    type): ``anyOf`` a branch per field, each requiring its field with a value."""
    return ConfigDict(json_schema_extra={"anyOf": [
        {"required": [name], "properties": {name: {"type": kind}}} for name, kind in fields]})


@functools.cache
def _int_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names (as sent) of ``model``'s fields that hold an integer, optional or not."""
    names = set()
    for name, info in model.model_fields.items():
        kinds = get_args(info.annotation) if get_origin(info.annotation) in (Union, UnionType) else (info.annotation,)
        kinds = tuple(get_args(k)[0] if get_origin(k) is Annotated else k for k in kinds)
        if int in kinds and bool not in kinds:
            names.add(info.alias or name)
    return frozenset(names)


class _JsonNumbers(BaseModel):
    """One rule for numbers on every route. JSON has one number type: ``2.0`` is the integer 2 (as
    JSON Schema says), while ``2.5``, ``true`` and ``"2"`` are no integers (the models are strict:
    no ``"5"`` -> 5 or 1 -> True either)."""

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers_are_integers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            whole = [k for k in _int_fields(cls) if isinstance(data.get(k), float) and data[k].is_integer()]
            if whole:
                data = {**data, **{k: int(data[k]) for k in whole}}
        return data



class StrictRequest(_JsonNumbers):
    # strict values (``_JsonNumbers``); forbid: a misspelt option is an error, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    access: ClassVar[Access] = COMPUTE  # what the route needs (``access.StoreAccess.authorize``)
    token: StoreToken | None = None


class StrictObject(_JsonNumbers):
    # a nested object of the service's own API: unknown fields refused, values strict
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class LaxObject(_JsonNumbers):
    # Compatible clients send fields we do not use (OpenAI's extra_body, TEI's newer options):
    # ignored, as the originals ignore them. Lax about fields, strict about values, as the
    # originals are (OpenAI, TEI's serde and Cohere refuse true or "3" for an integer).
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class LaxRequest(LaxObject):
    # A compatible API's request (``LaxObject``: its nested objects). Their SDKs send the token as
    # an extra body field (the OpenAI SDK's ``extra_body={"token": ...}``).
    access: ClassVar[Access] = COMPUTE
    token: StoreToken | None = None
    model: ModelName = None  # TEI's routes: the model of the /tei/{model}/... prefix (http/guard.py)
