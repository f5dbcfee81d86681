"""What the engine's verbs take and return: options and typed data, never a wire format.

Each dialect (``http/dialects``) maps its request onto these options and shapes these results
into its own response; the engine never knows which dialect called it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the dialects import this module, and the chute file imports them with the SDK only
    import numpy as np

    from ..store import SparseVector
    from .fusion import LegScore
    from .windows import Window

EMBEDDER = "embedder"  # the model services a request can use (and the embedder's kind)
RERANKER = "reranker"
SPARSE = "sparse"
SPARSE_ENCODER = "sparse-encoder"
CROSS_ENCODER = "cross-encoder"
BI_ENCODER = "bi-encoder"

# Hybrid retrieval (``fusion``): the legs a search can run, the modes that choose them, how legs fuse.
DENSE, LEXICAL, HYBRID = "dense", "lexical", "hybrid"  # and SPARSE, the sparse encoder's leg
LEGS = (DENSE, LEXICAL, SPARSE)
MODES = (*LEGS, HYBRID)
FUSIONS = ("rrf", "relative_score", "dbsf")
DEFAULT_RRF_K = 60
DEFAULT_LEG_CANDIDATES = 100


@dataclass(frozen=True)
class Retrieval:
    """How a search finds its candidates (every field has the service's default).

    Attributes:
        mode: ``dense`` (vectors; the default), ``lexical`` (BM25), ``sparse`` (the sparse model's
            vectors) or ``hybrid`` (every leg the collection or corpus has, fused).
        fusion: how hybrid fuses its legs: ``rrf``, ``relative_score`` or ``dbsf`` (``fusion``).
        alpha: the dense leg's weight in the fusion (0..1; the other legs share the rest); None:
            every leg weighs the same.
        rrf_k: RRF's rank constant.
        leg_candidates: how many candidates each leg brings to the fusion (at least ``top_k``).
    """

    mode: str = DENSE
    fusion: str = "rrf"
    alpha: float | None = None
    rrf_k: int = DEFAULT_RRF_K
    leg_candidates: int = DEFAULT_LEG_CANDIDATES


@dataclass(frozen=True)
class BatcherStats:
    """A batcher's limits, queue and counters, for /info, /health and metrics."""

    max_batch_tokens: int
    max_batch_size: int
    max_queue: int
    max_queue_wait_s: float
    queue_depth: int
    estimated_wait_s: float
    overloaded: bool
    batches_run: int
    items_run: int
    items_dropped: int
    refused: int


@dataclass(frozen=True)
class EmbedOptions:
    """How to embed texts (every field has the service's default).

    Attributes:
        pooling: a mode from ``POOLINGS``; None uses the model's own.
        normalize: L2-normalise the vectors (after ``dimensions``).
        truncate: cut texts at the model's token limit; when False such a text is an error.
        truncation_direction: "right" keeps a long text's start, "left" its end.
        dimensions: keep only the first this many dimensions (Matryoshka), 1..dimension.
        max_batch: at most this many of these texts per forward pass.
        count_tokens: also count every text's tokens as embedded (usage reports); costs a
            tokenisation of cached texts and of texts TEI would tokenise anyway.
        prompt_name: the model's prompt to prepend to every text (``engine.prompts``); None: the
            model's default prompt, if it has one. Counts include the prompt's tokens.
        long_input: what to do with a text longer than the model's window (``engine.windows``):
            ``truncate`` (cut it, as ``truncate`` and ``truncation_direction`` say), ``pool`` (one
            vector pooled from overlapping windows) or ``windows`` (each window's vector and span);
            None: the service's ``long_input`` setting.
        window_overlap: tokens consecutive windows share (0..half the window); None: the
            service's ``window_overlap`` setting (at most half the window).
    """

    pooling: str | None = None
    normalize: bool = True
    truncate: bool = True
    truncation_direction: str = "right"
    dimensions: int | None = None
    max_batch: int | None = None
    count_tokens: bool = False
    prompt_name: str | None = None
    long_input: str | None = None
    window_overlap: int | None = None


@dataclass(frozen=True)
class Embedded:
    """Vectors in input order and, when counted, each text's tokens as embedded (after any cut).

    With ``long_input="windows"``, one row per window (``windows`` says which text and span each
    row is, in order) and one token count per window; with ``pool``, one row per text and its
    tokens over all its windows (always counted).
    """

    vectors: np.ndarray
    token_counts: list[int] | None = None
    windows: list[Window] | None = None

    @property
    def tokens(self) -> int:
        """All the tokens embedded (0 when not counted)."""
        return sum(self.token_counts or ())


@dataclass(frozen=True)
class SparseEmbedded:
    """One learned-sparse vector per text, in input order (ascending indices, values > 0), each
    text's tokens as encoded (after any cut), and the model that encoded them."""

    vectors: list[SparseVector]
    token_counts: list[int]
    model: ModelState

    @property
    def tokens(self) -> int:
        """All the tokens encoded."""
        return sum(self.token_counts)


@dataclass(frozen=True)
class RerankOptions:
    """How to read query-document pairs.

    Attributes:
        truncate: cut a pair over the model's token limit; False makes such a pair an error.
        truncation_direction: "right" keeps the start of what is cut, "left" its end.
        max_tokens_per_doc: first cut each document to this many tokens (a cross-encoder's option;
            the bi-encoder reads each text on its own, up to its own limit).
    """

    truncate: bool = True
    truncation_direction: str = "right"
    max_tokens_per_doc: int | None = None


@dataclass(frozen=True)
class ModelState:
    """One model service as answers, /info and /health describe it.

    ``kind`` is what the model is (``embedder``, ``cross-encoder``, ``bi-encoder``,
    ``sparse-encoder``); ``backend``
    who serves it now (``local`` or ``tei``); ``tei`` the supervised TEI's state, when one stands
    behind it; ``batching`` its batcher's state (None for the bi-encoder stand-in, which uses the
    embedder's).
    """

    model: str
    kind: str
    backend: str
    runtime: str
    max_input_tokens: int
    activation: str | None = None
    tei: dict[str, Any] | None = None
    batching: BatcherStats | None = None
    note: str | None = None

    @property
    def tei_serving(self) -> bool | None:
        """Whether the TEI behind the model answers now (None: there is none)."""
        return None if self.tei is None else bool(self.tei.get("serving"))


@dataclass(frozen=True)
class Reranked:
    """One query's relevance to each text, in input order.

    ``logits`` order the texts (a model's activation saturates into ties where its logits do
    not); ``activated()`` is the model's own activation (what ``CrossEncoder.predict`` gives; the
    cosine for the bi-encoder) and ``relevance()`` a score in [0, 1] (the sigmoid of the logit, as
    TEI and Cohere give it; ``(cosine + 1) / 2`` for the bi-encoder). Each form is computed only
    when a dialect asks for it.
    """

    logits: np.ndarray
    tokens: int
    reranker: ModelState
    activation: Callable[[np.ndarray], np.ndarray]
    to_relevance: Callable[[np.ndarray], np.ndarray]

    def activated(self) -> np.ndarray:
        """The model's own scores."""
        return self.activation(self.logits)

    def relevance(self) -> np.ndarray:
        """Scores in [0, 1]."""
        return self.to_relevance(self.logits)

    def order(self, k: int | None = None) -> list[int]:
        """The indices of the best ``k`` texts (all when None), best first: the one ranking rule."""
        from .similarity import top_k

        return top_k(self.logits, k)


@dataclass(frozen=True)
class Hit:
    """One result of a search: its index among the candidates, its score (a dense search's
    cosine, a single leg's own score, or the fused score), its rank, its reranker score when a
    second stage reordered the candidates, and (hybrid) its score and rank in each leg that found it."""

    index: int
    score: float
    rank: int
    rerank_score: float | None = None
    legs: dict[str, LegScore] | None = None


@dataclass(frozen=True)
class Ranking:
    """Hits best first, and what reranked them (None: the first stage alone). ``mode``: the
    retrieval mode; ``skipped``: legs a hybrid search ran without, each with the reason."""

    hits: list[Hit]
    reranker: ModelState | None = None
    mode: str = DENSE
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Cluster:
    """One group of texts: its label (-1: HDBSCAN's noise), members and the most central one."""

    label: int
    indices: list[int]
    central: int


@dataclass(frozen=True)
class Clustering:
    """Groups of texts, the method, and the silhouette of the labelling (None when undefined)."""

    clusters: list[Cluster]
    method: str
    silhouette: float | None


@dataclass(frozen=True)
class EngineHealth:
    """Whether the engine can serve, and why not fully: ``ok``, ``degraded`` (a fallback answers
    or a service reports itself unhealthy) or ``overloaded`` (new work is refused with 429)."""

    status: str
    embedder: ModelState
    reranker: ModelState
    dimension: int
    reasons: list[str] = field(default_factory=list)
    sparse: ModelState | None = None  # None: no sparse model configured
    models: list["ModelReport"] = field(default_factory=list)  # every configured model


@dataclass(frozen=True)
class ModelReport:
    """One configured model as /health, /info and /v1/models list it: ``state`` None when it failed
    to load (``error`` says why)."""

    name: str
    kind: str  # embedder, reranker or sparse (the configured kind; ``state.kind`` is what it is)
    default: bool
    names: tuple[str, ...]
    state: ModelState | None
    error: str | None = None
    dimension: int | None = None  # an embedder's


@dataclass(frozen=True)
class EngineInfo:
    """What /info and TEI's /info report: the models, their limits, the cache, the batching and the
    embedding model's prompts."""

    embedder: ModelState
    reranker: ModelState
    dimension: int
    pooling: str
    poolings: tuple[str, ...]
    cache: dict[str, Any]
    batch_wait_ms: float
    limits: dict[str, Any]
    version: str
    started_at: float
    sparse: ModelState | None = None  # None: no sparse model configured
    prompts: dict[str, str] = field(default_factory=dict)  # the embedding model's: name -> text
    default_prompt_name: str | None = None
    models: list[ModelReport] = field(default_factory=list)  # every configured model
