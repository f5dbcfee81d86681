"""Every request and response model of the chute, and the limits they enforce.

The limits are named constants below and enter the models only as ``Field`` constraints, so a
broken limit is reported by pydantic with the field and the limit value; ``GET /info`` serves
them (``LIMITS``) and the client reads them from there. This module needs only pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# --- limits (the only place they are written) ---------------------------------------------
MAX_TEXT_CHARS = 100_000
MAX_EMBED_INPUTS = 1000
MAX_BATCH_TEXTS = 1000
MAX_BATCH_SIZE = 128
DEFAULT_BATCH_SIZE = 32
MAX_SIMILARITY_TARGETS = 100
MAX_RERANK_TEXTS = 50
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


class _Request(BaseModel):
    # strict: no silent "5" -> 5 or 1 -> True; forbid: a misspelt option is an error, not ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class EmbedRequest(_Request):
    """POST /embed: one text (answered with one vector) or a list of texts."""

    inputs: Annotated[list[Text], Field(min_length=1, max_length=MAX_EMBED_INPUTS)]
    normalize: bool = True
    truncate: bool = True
    pooling: Pooling | None = None
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


class SimilarityRequest(_Request):
    """POST /similarity: one source text against many targets."""

    source_text: Text
    target_texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_SIMILARITY_TARGETS)]
    normalize: bool = True


class RerankRequest(_Request):
    """POST /rerank: order texts by relevance to a query."""

    query: Text
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_RERANK_TEXTS)]
    top_k: Annotated[int, Field(ge=1, le=MAX_RERANK_TEXTS)] | None = None


class SearchRequest(_Request):
    """POST /search: the top matches of a query in a corpus sent with it."""

    query: Text
    corpus: Annotated[list[Text], Field(min_length=1, max_length=MAX_SEARCH_CORPUS)]
    top_k: Annotated[int, Field(ge=1, le=MAX_SEARCH_TOP_K)] = DEFAULT_SEARCH_TOP_K
    threshold: Score | None = None


class ClusterRequest(_Request):
    """POST /cluster: group texts by meaning."""

    texts: Annotated[list[Text], Field(min_length=MIN_CLUSTER_TEXTS, max_length=MAX_CLUSTER_TEXTS)]
    n_clusters: Annotated[int, Field(ge=MIN_CLUSTERS, le=MAX_CLUSTERS)] | None = None
    method: ClusterMethod = "kmeans"


class StoreAddRequest(_Request):
    """POST /store/add: upsert texts into a collection (ids default to a hash of the text)."""

    collection: CollectionName = "default"
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_STORE_ADD_TEXTS)]
    ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_ADD_TEXTS)] | None = None
    metadata: Metadata | list[Metadata] | None = None


class StoreSearchRequest(_Request):
    """POST /store/search: a query against a stored collection."""

    collection: CollectionName = "default"
    query: Text
    top_k: Annotated[int, Field(ge=1, le=MAX_STORE_TOP_K)] = DEFAULT_STORE_TOP_K
    filter_metadata: Metadata | None = None
    threshold: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None


class StoreGetRequest(_Request):
    """POST /store/get: records by id."""

    collection: CollectionName = "default"
    ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_IDS)]
    include_vectors: bool = False


class StoreDeleteRequest(_Request):
    """POST /store/delete: by ids or by a metadata filter (exactly one)."""

    collection: CollectionName = "default"
    ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_IDS)] | None = None
    filter_metadata: Metadata | None = None


class StoreDropRequest(_Request):
    """POST /store/drop: delete a collection."""

    collection: CollectionName


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


class RerankResponse(BaseModel):
    query: str
    results: list[RerankResult]
    total_results: int
    model: str


class SearchResult(BaseModel):
    text: str
    corpus_index: int
    score: float
    rank: int


class SearchResponse(BaseModel):
    query: str
    results: list[SearchResult]
    total_corpus_size: int
    results_returned: int
    model: str
    threshold: float | None


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


class StoreSearchResponse(BaseModel):
    collection: str
    query: str
    results: list[StoreHit]
    results_returned: int
    model: str


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
