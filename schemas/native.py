"""The service's own API: its requests, its responses and its error body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, WithJsonSchema, model_validator

from chutes_embeddings.engine.results import DEFAULT_LEG_CANDIDATES, DEFAULT_RRF_K, Retrieval
from chutes_embeddings.engine.windows import LONG_INPUTS, ONE_VECTOR

from .common import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_RERANK_CANDIDATES,
    DEFAULT_SEARCH_TOP_K,
    MAX_BATCH_SIZE,
    MAX_BATCH_TEXTS,
    MAX_CLUSTER_TEXTS,
    MAX_CLUSTERS,
    MAX_EMBED_INPUTS,
    MAX_LEG_CANDIDATES,
    MAX_RERANK_TEXTS,
    MAX_SEARCH_CORPUS,
    MAX_SEARCH_TOP_K,
    MAX_SIMILARITY_TARGETS,
    MIN_CLUSTER_TEXTS,
    MIN_CLUSTERS,
    ClusterMethod,
    Dimensions,
    EmbeddingTypes,
    Fusion,
    ModelName,
    Pooling,
    PromptName,
    RerankCandidates,
    Score,
    SearchLeg,
    SearchMode,
    StrictRequest,
    Text,
    TypedEmbeddings,
)
from .sparse import SparseModel

EmbedTexts = Annotated[list[Text], Field(min_length=1, max_length=MAX_EMBED_INPUTS)]
_ONE_VECTOR_HELP = ("a text over the model's window: truncate (cut it; the service's default unless "
                    "EMBEDDINGS_LONG_INPUT says pool), pool (one vector: the token-weighted mean of its overlapping "
                    "windows' vectors, normalised)")
LongInput = Annotated[Literal[LONG_INPUTS], Field(  # type: ignore[valid-type]
    description=_ONE_VECTOR_HELP + " or windows (each window's vector and character span)")]
# the routes that compare one vector per text take the same option less ``windows``
OneVectorLongInput = Annotated[Literal[ONE_VECTOR], Field(description=_ONE_VECTOR_HELP)]  # type: ignore[valid-type]
WindowOverlap = Annotated[int, Field(ge=0, description=(
    "tokens consecutive windows share, 0..half the window (default: EMBEDDINGS_WINDOW_OVERLAP, at most half)"))]


class EmbedRequest(StrictRequest):
    """POST /embed: one text (answered with one vector) or a list of texts."""

    # a bare string is read as a list of one (``_accept_single_string``); the schema says both
    model: ModelName = None
    inputs: Annotated[EmbedTexts, WithJsonSchema(TypeAdapter(Text | EmbedTexts).json_schema())]
    normalize: bool = True
    truncate: bool = True
    pooling: Pooling | None = None
    dimensions: Dimensions | None = None
    prompt_name: PromptName = None
    embedding_types: EmbeddingTypes | None = None  # more than ["float"]: `embeddings` is an object by type
    long_input: LongInput | None = None  # README, "Long inputs"
    window_overlap: WindowOverlap | None = None
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


class EmbedBatchRequest(StrictRequest):
    """POST /embed/batch."""

    model: ModelName = None
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_BATCH_TEXTS)]
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)] = DEFAULT_BATCH_SIZE
    normalize: bool = True
    dimensions: Dimensions | None = None
    prompt_name: PromptName = None
    long_input: LongInput | None = None
    window_overlap: WindowOverlap | None = None


class OneVectorRequest(StrictRequest):
    """The long-input options of a route that compares one vector per text (README, "Long inputs")."""

    long_input: OneVectorLongInput | None = None
    window_overlap: WindowOverlap | None = None

    def long_inputs(self) -> dict[str, Any]:
        """These options as the engine's verbs take them (keywords)."""
        return {"long_input": self.long_input, "window_overlap": self.window_overlap}


class SimilarityRequest(OneVectorRequest):
    """POST /similarity: one source text against many targets."""

    model: ModelName = None
    source_text: Text
    target_texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_SIMILARITY_TARGETS)]
    normalize: bool = True


class RerankRequest(StrictRequest):
    """POST /rerank: order texts by relevance to a query (a cross-encoder's scores when one is
    configured; ``raw_scores``: its logits rather than its activation)."""

    model: ModelName = None
    query: Text
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_RERANK_TEXTS)]
    top_k: Annotated[int, Field(ge=1, le=MAX_RERANK_TEXTS)] | None = None
    raw_scores: bool = False
    truncate: bool = True


class RetrievalRequest(StrictRequest):
    """How a search finds its candidates (``/search`` and ``/store/search``): ``mode`` picks the legs
    (dense vectors, lexical BM25, the sparse model, or all of them fused: ``hybrid``), the rest
    say how hybrid fuses them (README, "Hybrid search")."""

    mode: SearchMode = "dense"
    fusion: Fusion = "rrf"
    alpha: Annotated[float, Field(ge=0.0, le=1.0, description=(
        "the dense leg's weight in a hybrid fusion (1: dense only, 0: the other legs only; they share 1 - alpha); "
        "unset: every leg weighs the same"))] | None = None
    rrf_k: Annotated[int, Field(ge=1, le=1000, description="reciprocal rank fusion's rank constant")] = DEFAULT_RRF_K
    leg_candidates: Annotated[int, Field(ge=1, le=MAX_LEG_CANDIDATES, description=(
        "candidates each leg of a hybrid search brings to the fusion (at least top_k are taken)"))] = (
        DEFAULT_LEG_CANDIDATES)

    def retrieval(self) -> Retrieval:
        """These options as the engine takes them."""
        return Retrieval(self.mode, self.fusion, self.alpha, self.rrf_k, self.leg_candidates)


class SearchRequest(RetrievalRequest, OneVectorRequest):
    """POST /search: the top matches of a query in a corpus sent with it."""

    model: ModelName = None
    query: Text
    corpus: Annotated[list[Text], Field(min_length=1, max_length=MAX_SEARCH_CORPUS)]
    top_k: Annotated[int, Field(ge=1, le=MAX_SEARCH_TOP_K)] = DEFAULT_SEARCH_TOP_K
    threshold: Score | None = None
    rerank: bool = False  # two-stage: the best rerank_candidates by vector, reordered by the reranker
    rerank_candidates: RerankCandidates = DEFAULT_RERANK_CANDIDATES


class ClusterRequest(OneVectorRequest):
    """POST /cluster: group texts by meaning."""

    model: ModelName = None
    texts: Annotated[list[Text], Field(min_length=MIN_CLUSTER_TEXTS, max_length=MAX_CLUSTER_TEXTS)]
    n_clusters: Annotated[int, Field(ge=MIN_CLUSTERS, le=MAX_CLUSTERS)] | None = None
    method: ClusterMethod = "kmeans"


class WindowSpan(BaseModel):
    """One window of a long text (``long_input: windows``): the row of ``embeddings`` at the same
    place is its vector."""

    index: int  # the text's position in the request
    start: int  # its characters in the text: text[start:end]
    end: int
    tokens: int  # the text's tokens it holds (its weight when pooled)


class EmbedUsage(BaseModel):
    """Every token embedded, all windows and their prompt and special tokens included."""

    prompt_tokens: int
    total_tokens: int


class EmbedResponse(BaseModel):
    embeddings: list[float] | list[list[float]] | dict[str, TypedEmbeddings]
    model: str
    dimension: int
    count: int | None = None
    windows: list[WindowSpan] | None = None  # long_input windows: one per row of embeddings
    usage: EmbedUsage | None = None  # long_input pool or windows


class EmbedBatchResponse(BaseModel):
    embeddings: list[list[float]]
    processed_count: int
    batch_size: int
    model: str
    dimension: int
    windows: list[WindowSpan] | None = None
    usage: EmbedUsage | None = None


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


class LegResult(BaseModel):
    score: float  # the leg's own: cosine (dense), BM25 (lexical), dot product (sparse)
    rank: int


# A hit's place in each leg that found it (every mode but dense)
HitLegs = dict[SearchLeg, LegResult]


class SearchResult(BaseModel):
    text: str
    corpus_index: int
    score: float  # dense: the cosine; lexical, sparse: the leg's score; hybrid: the fused score
    rank: int
    rerank_score: float | None = None  # with rerank: the reranker's score, which the rank follows
    legs: HitLegs | None = None


class SearchResponse(BaseModel):
    query: str
    results: list[SearchResult]
    total_corpus_size: int
    results_returned: int
    model: str
    threshold: float | None
    reranker: Reranker | None = None
    mode: SearchMode = "dense"
    skipped_legs: dict[str, str] | None = None  # hybrid: legs it ran without, each with the reason


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


class ServedModelState(BaseModel):
    """One configured model in /health and /info (``status`` failed: it did not load, ``error`` says why,
    and its requests get 503 while the others serve)."""

    name: str
    kind: Literal["embedder", "reranker", "sparse"]
    default: bool  # its kind's default: what a request naming no model gets
    status: Literal["ready", "failed"]
    names: list[str]  # what a request's ``model`` may say to pick it
    backend: str | None = None  # tei or local; None when it failed
    runtime: str | None = None
    max_input_tokens: int | None = None
    dimension: int | None = None  # an embedder's vectors
    queue: HealthQueue | None = None
    tei: dict[str, Any] | None = None  # /info only
    error: str | None = None


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded", "overloaded"]
    backend: Literal["tei", "local"]
    model: str
    dimension: int
    queue: HealthQueue
    reranker: Reranker
    reasons: list[str]
    sparse: SparseModel | None = None
    models: list[ServedModelState] = []  # every configured model, each kind's default first


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
    long_input: Literal["truncate", "pool"] = "truncate"  # a text over the window, when a request does not choose
    tei: dict[str, Any] | None = None
    reranker: Reranker
    sparse: SparseModel | None = None
    version: str
    prompts: dict[str, str] = {}  # the model's prompts: name -> the text prepended
    default_prompt_name: str | None = None  # applied when a request names none
    retrieval_prompts: dict[Literal["query", "document"], str | None] = {}  # a search's prompts (None: the default)
    models: list[ServedModelState] = []  # every configured model, each kind's default first


class ErrorBody(BaseModel):
    """The ``detail`` of every 4xx/5xx answer."""

    error_type: str
    message: str
    field: str | None = None
    limit: Any = None


class NativeError(BaseModel):
    """The body of every 4xx/5xx answer of the service's own API."""

    detail: ErrorBody
