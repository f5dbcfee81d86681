"""Every request and response model of the chute, and the limits they enforce.

The limits are named constants below and enter the models only as ``Field`` constraints, so a
broken limit is reported by pydantic with the field and the limit value; ``GET /info`` serves
them (``LIMITS``) and the client reads them from there. This module needs only pydantic and the
service's error classes (``chutes_embeddings.errors``, which imports nothing heavy).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, StringConstraints, model_validator

from chutes_embeddings.errors import InvalidInput

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
CollectionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Metadata = dict[str, Any]
Vector = Annotated[list[float], Field(min_length=1, max_length=MAX_VECTOR_DIMENSION)]
Dimensions = Annotated[int, Field(ge=1)]  # at most the model's dimension: checked by the engine

TOKEN_IDS_HINT = ("token-id input is not supported: this service tokenises with its own model's tokenizer, so "
                  "ids from another tokenizer would embed the wrong text; send the text instead (LangChain's "
                  "OpenAIEmbeddings: pass check_embedding_ctx_length=False)")


def _text_inputs(field: str, max_items: int) -> BeforeValidator:
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


class _Request(BaseModel):
    # strict: no silent "5" -> 5 or 1 -> True; forbid: a misspelt option is an error, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class EmbedRequest(_Request):
    """POST /embed: one text (answered with one vector) or a list of texts."""

    inputs: Annotated[list[Text], Field(min_length=1, max_length=MAX_EMBED_INPUTS)]
    normalize: bool = True
    truncate: bool = True
    pooling: Pooling | None = None
    dimensions: Dimensions | None = None
    _single: bool = False

    @model_validator(mode="wrap")
    @classmethod
    def _accept_single_string(cls, data: Any, handler: Any) -> "EmbedRequest":
        single = isinstance(data, dict) and isinstance(data.get("inputs"), str)
        if single:
            data = {**data, "inputs": [data["inputs"]]}
        model = handler(data)
        object.__setattr__(model, "__pydantic_private__", {"_single": single})
        return model

    @property
    def single(self) -> bool:
        """True when ``inputs`` was a bare string (the answer is then one vector)."""
        return bool(self._single)


class EmbedBatchRequest(_Request):
    """POST /embed/batch."""

    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_BATCH_TEXTS)]
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)] = DEFAULT_BATCH_SIZE
    normalize: bool = True
    dimensions: Dimensions | None = None


class SimilarityRequest(_Request):
    """POST /similarity: one source text against many targets."""

    source_text: Text
    target_texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_SIMILARITY_TARGETS)]
    normalize: bool = True


class RerankRequest(_Request):
    """POST /rerank: order texts by relevance to a query (a cross-encoder's scores when one is
    configured; ``raw_scores``: its logits rather than its activation)."""

    query: Text
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_RERANK_TEXTS)]
    top_k: Annotated[int, Field(ge=1, le=MAX_RERANK_TEXTS)] | None = None
    raw_scores: bool = False
    truncate: bool = True


RerankCandidates = Annotated[int, Field(ge=1, le=MAX_RERANK_CANDIDATES)]


class SearchRequest(_Request):
    """POST /search: the top matches of a query in a corpus sent with it."""

    query: Text
    corpus: Annotated[list[Text], Field(min_length=1, max_length=MAX_SEARCH_CORPUS)]
    top_k: Annotated[int, Field(ge=1, le=MAX_SEARCH_TOP_K)] = DEFAULT_SEARCH_TOP_K
    threshold: Score | None = None
    rerank: bool = False  # two-stage: the best rerank_candidates by vector, reordered by the reranker
    rerank_candidates: RerankCandidates = DEFAULT_RERANK_CANDIDATES


class ClusterRequest(_Request):
    """POST /cluster: group texts by meaning."""

    texts: Annotated[list[Text], Field(min_length=MIN_CLUSTER_TEXTS, max_length=MAX_CLUSTER_TEXTS)]
    n_clusters: Annotated[int, Field(ge=MIN_CLUSTERS, le=MAX_CLUSTERS)] | None = None
    method: ClusterMethod = "kmeans"


class StoreAddRequest(_Request):
    """POST /store/add: upsert texts into a collection (ids default to a hash of the text).

    With ``vectors`` (one per text) the caller's vectors are stored instead of the server's, and
    the collection records ``vector_model`` (default ``external``) and their dimension.
    """

    collection: CollectionName = "default"
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_STORE_ADD_TEXTS)]
    ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_ADD_TEXTS)] | None = None
    metadata: Metadata | list[Metadata] | None = None
    vectors: Annotated[list[Vector], Field(min_length=1, max_length=MAX_STORE_ADD_TEXTS)] | None = None
    vector_model: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


class StoreSearchRequest(_Request):
    """POST /store/search: a query text (embedded by the server) or ``query_vector`` (exactly one)."""

    collection: CollectionName = "default"
    query: Text | None = None
    query_vector: Vector | None = None
    top_k: Annotated[int, Field(ge=1, le=MAX_STORE_TOP_K)] = DEFAULT_STORE_TOP_K
    filter_metadata: Metadata | None = None
    threshold: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None
    rerank: bool = False  # two-stage: the best rerank_candidates by vector, reordered by the reranker
    rerank_candidates: RerankCandidates = DEFAULT_RERANK_CANDIDATES

    @model_validator(mode="after")
    def _one_query(self) -> "StoreSearchRequest":
        if (self.query is None) == (self.query_vector is None):
            raise InvalidInput("send either query or query_vector (exactly one)", field="query")
        return self


class StoreGetRequest(_Request):
    """POST /store/get: records by ``ids``, or up to ``limit`` records a filter matches (exactly one)."""

    collection: CollectionName = "default"
    ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_IDS)] | None = None
    filter_metadata: Metadata | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_STORE_IDS)] = DEFAULT_FIND_LIMIT
    include_vectors: bool = False


class StoreDeleteRequest(_Request):
    """POST /store/delete: by ids or by a metadata filter (exactly one)."""

    collection: CollectionName = "default"
    ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_IDS)] | None = None
    filter_metadata: Metadata | None = None


class StoreDropRequest(_Request):
    """POST /store/drop: delete a collection."""

    collection: CollectionName


# --- OpenAI's embeddings API (/v1/*) -----------------------------------------------------------
class _CompatRequest(BaseModel):
    # Compatible clients send fields we do not use (OpenAI's extra_body, TEI's newer options):
    # ignored, as the originals ignore them. Lax, as the originals are (JSON has no int/float split).
    model_config = ConfigDict(extra="ignore", frozen=True)


class OpenAIEmbeddingsRequest(_CompatRequest):
    """POST /v1/embeddings (OpenAI's request; ``model`` is accepted whatever it names)."""

    input: Annotated[str | list[str], _text_inputs("input", MAX_OPENAI_INPUTS)]
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


# --- TEI's API (/tei/*), as text-embeddings-inference 1.9.3 documents it -----------------------
TeiInputs = Annotated[str | list[str], _text_inputs("inputs", MAX_EMBED_INPUTS)]
TruncationDirection = Literal["Left", "Right", "left", "right"]


class TeiEmbedRequest(_CompatRequest):
    """POST /tei and /tei/embed."""

    inputs: TeiInputs
    normalize: bool = True
    truncate: bool | None = None  # None: the server's auto_truncate (true)
    truncation_direction: TruncationDirection = "Right"
    prompt_name: str | None = None
    dimensions: Annotated[int, Field(ge=0)] | None = None


class TeiEmbedAllRequest(_CompatRequest):
    """POST /tei/embed_all."""

    inputs: TeiInputs
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "Right"
    prompt_name: str | None = None


class TeiTokenizeRequest(_CompatRequest):
    """POST /tei/tokenize."""

    inputs: TeiInputs
    add_special_tokens: bool = True
    prompt_name: str | None = None


class TeiRerankRequest(_CompatRequest):
    """POST /tei/rerank."""

    query: Text
    texts: Annotated[list[Text], Field(max_length=MAX_RERANK_TEXTS)]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "Right"


# --- Cohere's rerank API (/v1/rerank: Cohere v1 and Jina; /v2/rerank: Cohere v2) ------------------
def _rerank_documents(field: str) -> BeforeValidator:
    """Cohere's and Jina's ``documents``: 1..MAX_RERANK_TEXTS strings or ``{"text": str}`` objects
    (Cohere v1's form), read as their texts; errors name ``documents[i]``."""

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
            if isinstance(item, dict):
                item, where = item.get("text"), f"{where}.text"
            if not isinstance(item, str):
                raise InvalidInput(f"{where} must be a string (or an object with a string `text`)", field=where)
            if not 1 <= len(item) <= MAX_TEXT_CHARS:
                raise InvalidInput(f"{where} has {len(item)} characters; send 1..{MAX_TEXT_CHARS}", field=where,
                                   limit=MAX_TEXT_CHARS, **({} if item else {"reason": "empty"}))
            texts.append(item)
        return texts

    return BeforeValidator(check)


RerankDocuments = Annotated[list[str], _rerank_documents("documents")]
TopN = Annotated[int, Field(ge=1)]


class CohereV2RerankRequest(_CompatRequest):
    """POST /v2/rerank (Cohere v2; any ``model`` name is accepted and answered by the served reranker)."""

    model: str | None = None
    query: Text
    documents: RerankDocuments
    top_n: TopN | None = None
    max_tokens_per_doc: Annotated[int, Field(ge=1, le=MAX_RERANK_TOKENS_PER_DOC)] | None = None


class CohereV1RerankRequest(_CompatRequest):
    """POST /v1/rerank (Cohere v1 and Jina): documents as strings or ``{"text": ...}``."""

    model: str | None = None
    query: Text
    documents: RerankDocuments
    top_n: TopN | None = None
    return_documents: bool = False
    max_tokens_per_doc: Annotated[int, Field(ge=1, le=MAX_RERANK_TOKENS_PER_DOC)] | None = None


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


# --- responses (documentation and tests; cords return plain dicts of these shapes) ------------
class EmbedResponse(BaseModel):
    embeddings: list[float] | list[list[float]]
    model: str
    dimension: int
    count: int | None = None


class EmbedBatchResponse(BaseModel):
    embeddings: list[list[float]]
    processed_count: int
    batch_size: int
    model: str
    dimension: int


class SimilarityResult(BaseModel):
    text: str
    index: int
    similarity: float
    rank: int


class SimilarityResponse(BaseModel):
    source_text: str
    results: list[SimilarityResult]
    model: str


class RerankResult(BaseModel):
    text: str
    index: int
    score: float
    rank: int


class Reranker(BaseModel):
    """What scored a rerank: a cross-encoder, or the embedding model's cosine (bi-encoder)."""

    model_config = ConfigDict(extra="allow")
    model: str
    kind: Literal["cross-encoder", "bi-encoder"]
    backend: str | None = None


class RerankResponse(BaseModel):
    query: str
    results: list[RerankResult]
    total_results: int
    model: str
    reranker: Reranker


class SearchResult(BaseModel):
    text: str
    corpus_index: int
    score: float  # the vector similarity
    rank: int
    rerank_score: float | None = None  # with rerank: the reranker's score, which the rank follows


class SearchResponse(BaseModel):
    query: str
    results: list[SearchResult]
    total_corpus_size: int
    results_returned: int
    model: str
    threshold: float | None
    reranker: Reranker | None = None


class Cluster(BaseModel):
    cluster_id: int
    size: int
    centroid_text: str
    texts: list[str]
    indices: list[int]


class ClusterResponse(BaseModel):
    clusters: list[Cluster]
    n_clusters: int
    method: str
    total_texts: int
    silhouette: float | None


class HealthQueue(BaseModel):
    depth: int
    estimated_wait_s: float


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded", "overloaded"]
    backend: Literal["tei", "local"]
    model: str
    dimension: int
    queue: HealthQueue
    reranker: Reranker
    reasons: list[str]


class InfoResponse(BaseModel):
    model: str
    dimension: int
    max_input_tokens: int
    pooling: str
    poolings: list[str]
    backend: str
    local_runtime: str
    cache: dict[str, Any]
    batching: dict[str, Any]
    limits: dict[str, int]
    tei: dict[str, Any] | None = None
    reranker: Reranker
    version: str


class StoreAddResponse(BaseModel):
    collection: str
    added_count: int
    ids: list[str]
    total_in_collection: int


class StoreHit(BaseModel):
    id: str
    text: str
    score: float
    rank: int
    metadata: Metadata
    rerank_score: float | None = None


class StoreSearchResponse(BaseModel):
    collection: str
    query: str | None
    results: list[StoreHit]
    results_returned: int
    model: str
    reranker: Reranker | None = None


class StoreRecord(BaseModel):
    id: str
    text: str
    metadata: Metadata
    vector: list[float] | None = None


class StoreGetResponse(BaseModel):
    collection: str
    records: list[StoreRecord]
    missing_ids: list[str]


class StoreDeleteResponse(BaseModel):
    collection: str
    deleted_count: int
    total_in_collection: int


class StoreDropResponse(BaseModel):
    collection: str
    dropped: bool


class CollectionSummary(BaseModel):
    name: str
    size: int
    dimension: int
    model: str
    sample_texts: list[str]


class CollectionsResponse(BaseModel):
    collections: list[CollectionSummary]
    total: int
    store: str


class ErrorBody(BaseModel):
    """The ``detail`` of every 4xx/5xx answer."""

    error_type: str
    message: str
    field: str | None = None
    limit: Any = None


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


class NativeError(BaseModel):
    """The body of every 4xx/5xx answer of the service's own API."""

    detail: ErrorBody
