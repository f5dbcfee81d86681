"""The engine: every verb of the service, synchronous and thread-safe, returning data.

Cords call these methods from many worker threads. The engine composes its model services: the
embedding pipeline (cache, then one forward pass shared by concurrent callers), a reranker
(a cross-encoder's pipeline, or the bi-encoder stand-in over the embedder) and, when one is
configured, a learned-sparse (SPLADE) encoder's pipeline. Verbs return arrays
and the typed results of ``results``; each dialect shapes them into its own answer.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..errors import InvalidInput, NotConfigured
from ..lexical.analyzer import analyzer
from ..lexical.memory import bm25_matches
from . import similarity
from .cluster import cluster as run_clustering
from .embedding import EmbeddingPipeline
from .hybrid import Candidates, candidates_by_leg, first_stage, legs_for
from .models import ModelRegistry, choose, for_collection
from .reranking import BiEncoderReranker, RerankService
from .results import (
    DENSE,
    EMBEDDER,
    HYBRID,
    LEXICAL,
    RERANKER,
    SPARSE,
    Cluster,
    Clustering,
    Embedded,
    EmbedOptions,
    EngineHealth,
    EngineInfo,
    Hit,
    ModelReport,
    Ranking,
    Reranked,
    RerankOptions,
    Retrieval,
    SparseEmbedded,
)
from .sparse import SparsePipeline
from .vectors import POOLINGS
from .windows import one_vector

NO_SPARSE_MODEL = "EMBEDDINGS_SPARSE_MODEL"  # the setting that configures the sparse encoder


def two_stage(reranker: RerankService, query: str, texts: Sequence[str], vector_scores: np.ndarray,
              k: int, *, cosines: bool = True) -> Ranking:
    """Retrieval's second stage, for a corpus search and a store search alike: candidates of the
    first stage (best first) reordered by the reranker; the best ``k`` kept, each with its
    first-stage ``score``, its ``rerank_score`` (the reranker's own activation) and its new rank.

    ``cosines``: the first-stage scores are the embedding model's cosines (a dense search), which
    the bi-encoder stand-in reuses; fused or lexical scores are not, and the reranker reads the
    texts. ``index`` in each hit is the candidate's position in ``texts``.
    """
    if not texts:
        return Ranking([], reranker.describe())
    ranked = reranker.rescore(query, texts, vector_scores) if cosines else reranker.rerank(query, texts)
    scores = ranked.activated()
    hits = [Hit(index=i, score=float(vector_scores[i]), rank=rank, rerank_score=float(scores[i]))
            for rank, i in enumerate(ranked.order(k), start=1)]
    return Ranking(hits, ranked.reranker)


class Engine:
    """The service's verbs over its model services (see module docstring).

    Args:
        embedder: the embedding pipeline.
        reranker: the cross-encoder's pipeline, or ``BiEncoderReranker(embedder)``.
        limits: every request limit the service enforces, for /info (assembled at start-up).
        max_clusters: the most clusters ``cluster`` chooses among without ``n_clusters``.
        sparse: the sparse encoder's pipeline, or None when no sparse model is configured.
        lexical_language: the analyzer of a corpus search's lexical leg (``lexical.analyzer``).
        models: every served model by name (``engine.models``), the three above its kinds' defaults;
            None: those three are the only ones.

    ``using(kind, name)`` is an engine whose model of ``kind`` is the one a request named: every verb
    and property (``dimension``, ``prompts``, ``model_id``) then answers for that model.
    """

    def __init__(self, embedder: EmbeddingPipeline, reranker: RerankService, limits: dict[str, Any] | None = None,
                 max_clusters: int = 20, sparse: SparsePipeline | None = None, *,
                 lexical_language: str = "english", models: ModelRegistry | None = None) -> None:
        self.embedder = embedder
        self.reranker = reranker
        self.sparse = sparse
        self.models = models or ModelRegistry.of_services(
            embedder=embedder, reranker=None if isinstance(reranker, BiEncoderReranker) else reranker, sparse=sparse)
        self.limits = dict(limits or {})
        self.max_clusters = max_clusters
        self.analyzer = analyzer(lexical_language)
        self.started_at = time.time()
        self._admit()

    def _admit(self) -> None:
        self._admission = {EMBEDDER: self.embedder.check_admission, RERANKER: self.reranker.check_admission,
                           # without a model the verb answers NotConfigured: nothing queues
                           SPARSE: self.sparse.check_admission if self.sparse is not None else lambda: None}

    def using(self, kind: str, name: str | None, route: str = "this route") -> "Engine":
        """This engine with the model of ``kind`` (``EMBEDDER``, ``RERANKER``, ``SPARSE``) that ``name``
        picks (None: the kind's default): ``models.choose`` (its docstring says how, and what it raises)."""
        return choose(self, kind, name, route)

    def for_collection(self, collection: str, stored: str, requested: str | None) -> "Engine":
        """The engine that searches a stored collection of model ``stored`` (``models.for_collection``)."""
        return for_collection(self, collection, stored, requested)

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def dimension(self) -> int:
        return self.embedder.dimension

    @property
    def prompts(self) -> dict[str, str]:
        """The embedding model's prompts (name -> text); ``EmbedOptions.prompt_name`` picks one."""
        return self.embedder.prompts

    @property
    def default_prompt_name(self) -> str | None:
        """The prompt applied when a request names none (None: no prompt)."""
        return self.embedder.default_prompt_name

    @property
    def vocab_size(self) -> int:
        """How many token ids the embedding model's tokenizer knows."""
        return self.embedder.tokenizer.vocab_size

    @property
    def sparse_model_id(self) -> str | None:
        """The sparse encoder's model (None: none configured)."""
        return self.sparse.model_id if self.sparse is not None else None

    @property
    def sparse_vocab_size(self) -> int | None:
        """The sparse vectors' dimension: every index is below it (None: no sparse model)."""
        return self.sparse.vocab_size if self.sparse is not None else None

    def close(self) -> None:
        """Stop the batchers and the model services (every served model's)."""
        self.models.close()
        if all(m.service is not self.reranker for m in self.models.models):
            self.reranker.close()  # the bi-encoder stand-in: nothing of its own

    def check_admission(self, models: Sequence[str]) -> None:
        """Raise ``Overloaded`` now if any of ``models`` (``EMBEDDER``, ``RERANKER``, ``SPARSE``) would refuse
        new work: asked before a request's body is read, and before any work of a verb that uses
        several models. Reserves nothing."""
        for model in models:
            self._admission[model]()

    # --- verbs ----------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], options: EmbedOptions = EmbedOptions()) -> Embedded:
        """Vectors in input order (and token counts with ``options.count_tokens``).

        Raises:
            InvalidInput: a bad option, or a text over the limit with ``truncate`` False (its index).
            Overloaded: the queue is full.
            BackendUnavailable: no answer in time.
        """
        return self.embedder.embed(texts, options)

    def embed_queries(self, texts: Sequence[str], options: EmbedOptions = EmbedOptions()) -> Embedded:
        """Search queries' vectors: embedded with the model's query prompt (``prompts.query_prompt``;
        the default prompt when it has none), as ``SentenceTransformer.encode_query``; other options as given."""
        return self.embedder.embed(texts, replace(options, prompt_name=self.embedder.model_prompts.query_name))

    def embed_sparse(self, texts: Sequence[str], *, truncate: bool = True,
                     truncation_direction: str = "right") -> SparseEmbedded:
        """Each text's learned-sparse vector (ascending indices, values > 0), in input order, with
        its tokens as encoded.

        Raises:
            NotConfigured: no sparse model is configured (names ``EMBEDDINGS_SPARSE_MODEL``).
            InvalidInput: a bad option, or a text over the limit with ``truncate`` False (its index).
            Overloaded: the sparse encoder's queue is full.
            BackendUnavailable: no answer in time.
        """
        if self.sparse is None:
            raise NotConfigured(f"no sparse model is serving: set {NO_SPARSE_MODEL} to a SPLADE model (hub id or "
                                "folder); a configured one that failed to load is named in the start-up log",
                                setting=NO_SPARSE_MODEL)
        return self.sparse.encode(texts, truncate=truncate, truncation_direction=truncation_direction)

    def embed_documents(self, texts: Sequence[str], options: EmbedOptions = EmbedOptions()) -> Embedded:
        """Searched texts' vectors: embedded with the model's document prompt
        (``prompts.document_prompt``; the default prompt when it has none); other options as given."""
        return self.embedder.embed(texts, replace(options, prompt_name=self.embedder.model_prompts.document_name))

    def embed_tokens(self, texts: Sequence[str], *, truncate: bool = True, truncation_direction: str = "right",
                     prompt_name: str | None = None) -> list[np.ndarray]:
        """Each text's token embeddings (not pooled, not normalised), the prompt's included."""
        return self.embedder.embed_tokens(texts, truncate=truncate, truncation_direction=truncation_direction,
                                          prompt_name=prompt_name)

    def tokenize(self, texts: Sequence[str], *, add_special_tokens: bool = True,
                 prompt_name: str | None = None) -> list[list[dict[str, Any]]]:
        """Each text's tokens (id, text, special, start, stop), as the model's tokenizer sees them
        (after the prompt, when the model has one)."""
        return self.embedder.tokenize(texts, add_special_tokens=add_special_tokens, prompt_name=prompt_name)

    def decode(self, ids: Sequence[Sequence[int]], *, skip_special_tokens: bool = True) -> list[str]:
        """Each id sequence as text, by the embedding model's tokenizer.

        Raises:
            InvalidInput: an id outside the tokenizer's vocabulary (its place, ``ids[i][j]``).
        """
        return self.embedder.decode(ids, skip_special_tokens=skip_special_tokens)

    def similarity(self, source: str, targets: Sequence[str], *, normalize: bool = True,
                   prompt_name: str | None = None, long_input: str | None = None,
                   window_overlap: int | None = None) -> Ranking:
        """Every target by its cosine to the source (dot product when ``normalize`` is False),
        best first; ``Hit.index`` is the target's position. Every text is read with the same
        prompt (``prompt_name``), a long one cut or pooled (``long_input`` ``truncate`` or ``pool``,
        ``window_overlap``: as in ``EmbedOptions``; ``windows`` is ``InvalidInput``), never refused.
        """
        options = EmbedOptions(normalize=normalize, prompt_name=prompt_name, long_input=one_vector(long_input),
                               window_overlap=window_overlap)
        vectors = self.embedder.embed([source, *targets], options).vectors
        row = similarity.scores(vectors[:1], vectors[1:])[0]
        return Ranking([Hit(i, float(row[i]), rank) for rank, i in enumerate(similarity.top_k(row), start=1)])

    def rerank(self, query: str, texts: Sequence[str], options: RerankOptions = RerankOptions()) -> Reranked:
        """Each text's relevance to the query, in input order: logits, and the activations on demand.

        Scored by the cross-encoder when one is configured, else by the embedding model's cosine
        (``reranker.kind`` says which).

        Raises:
            InvalidInput: a bad option, or a pair over the limit with ``truncate`` False (its index).
            Overloaded: the reranker's queue is full.
            BackendUnavailable: no answer in time.
        """
        return self.reranker.rerank(query, texts, options)

    def search(self, query: str, corpus: Sequence[str], *, top_k: int, threshold: float | None = None,
               rerank: bool = False, rerank_candidates: int = 50, retrieval: Retrieval = Retrieval(),
               long_input: str | None = None, window_overlap: int | None = None) -> Ranking:
        """The best ``top_k`` corpus entries for the query (``Hit.index``: the corpus position).

        ``retrieval.mode`` picks the legs: ``dense`` (cosine; ``threshold`` drops hits below it),
        ``lexical`` (BM25 over the corpus, ``lexical.memory``), ``sparse`` (the sparse model) or
        ``hybrid`` (those legs fused, ``engine.hybrid``; ``threshold`` applies to the dense leg).
        With ``rerank`` the best ``rerank_candidates`` of that first stage are reordered by the
        reranker. The dense leg embeds the query with the model's query prompt and the corpus
        with its document prompt, when it defines them (``embed_queries``, ``embed_documents``), each
        cut or pooled as ``long_input`` says (``similarity``); the other legs read the whole texts.

        Raises:
            InvalidInput: a mode the corpus cannot be searched by, a threshold without a dense leg,
                a query with no searchable terms in ``lexical`` mode, ``long_input`` ``windows``.
            Overloaded: a queue the request needs is full (every one is asked before any work).
        """
        long = EmbedOptions(long_input=one_vector(long_input), window_overlap=window_overlap)
        legs = legs_for(retrieval.mode, self.corpus_legs(), "a corpus search")
        if threshold is not None and DENSE not in legs:
            raise InvalidInput(f"threshold bounds the dense leg's cosine; mode {retrieval.mode!r} has none",
                               field="threshold")
        self.check_admission(self._models_for(legs, rerank))
        keep = max(top_k, rerank_candidates) if rerank else top_k
        depth = max(keep, retrieval.leg_candidates) if retrieval.mode == HYBRID else keep
        runs = {DENSE: lambda: self._dense_leg(query, corpus, depth, threshold, long),
                LEXICAL: lambda: self._lexical_leg(query, corpus, depth),
                SPARSE: lambda: self._sparse_leg(query, corpus, depth)}
        found, skipped = candidates_by_leg(retrieval.mode, legs, runs)
        keys, hits = first_stage(retrieval.mode, found, retrieval, keep)
        positions = [int(k) for k in keys]
        if not rerank:
            return Ranking([Hit(positions[h.index], h.score, h.rank, legs=h.legs) for h in hits],
                           mode=retrieval.mode, skipped=skipped)
        staged = two_stage(self.reranker, query, [corpus[i] for i in positions],
                           np.asarray([h.score for h in hits], dtype=np.float64), top_k,
                           cosines=retrieval.mode == DENSE)
        return Ranking([Hit(positions[h.index], h.score, h.rank, h.rerank_score, hits[h.index].legs)
                        for h in staged.hits], staged.reranker, retrieval.mode, skipped)

    def corpus_legs(self) -> list[str]:
        """The legs a corpus search can run: dense and lexical, and sparse with a sparse model."""
        return [DENSE, LEXICAL] + ([SPARSE] if self.sparse is not None else [])

    @staticmethod
    def _models_for(legs: Sequence[str], rerank: bool) -> list[str]:
        return [leg if leg != DENSE else EMBEDDER for leg in legs if leg != LEXICAL] + ([RERANKER] if rerank else [])

    def _sparse_leg(self, query: str, corpus: Sequence[str], depth: int) -> Candidates | None:
        vectors = self.embed_sparse([query, *corpus]).vectors
        if not vectors[0].indices:
            return None
        row = similarity.sparse_scores(vectors[0], vectors[1:])
        return [(str(i), float(row[i])) for i in similarity.top_k(row, depth) if row[i] > 0]

    def _dense_leg(self, query: str, corpus: Sequence[str], depth: int, threshold: float | None,
                   long: EmbedOptions) -> Candidates:
        if self.embedder.model_prompts.symmetric:  # one prompt (or none) for both: one pass
            vectors = self.embedder.embed([query, *corpus], long).vectors
            queries, documents = vectors[:1], vectors[1:]
        else:
            queries, documents = self.embed_queries([query], long).vectors, self.embed_documents(corpus, long).vectors
        row = similarity.scores(queries, documents)[0]
        return [(str(i), float(row[i])) for i in similarity.top_k(row, depth, threshold)]

    def _lexical_leg(self, query: str, corpus: Sequence[str], depth: int) -> Candidates | None:
        terms = self.analyzer.terms(query)
        if not terms:
            return None
        return [(str(i), score) for i, score in bm25_matches(self.analyzer, terms, corpus)[:depth]]

    def cluster(self, texts: Sequence[str], *, n_clusters: int | None = None, method: str = "kmeans",
                long_input: str | None = None, window_overlap: int | None = None) -> Clustering:
        """Groups of texts; without ``n_clusters`` the number (up to ``max_clusters``) is chosen
        by silhouette. Each cluster names its most central text (closest to its mean). Long texts:
        ``long_input`` (``similarity``).

        Raises:
            InvalidInput: ``n_clusters`` out of range for these texts, ``long_input`` ``windows``.
        """
        vectors = self.embedder.embed(texts, EmbedOptions(long_input=one_vector(long_input),
                                                          window_overlap=window_overlap)).vectors
        try:
            result = run_clustering(vectors, method, n_clusters, self.max_clusters)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="n_clusters", limit=len(texts)) from None
        clusters = []
        for label in sorted(set(result.labels.tolist())):
            idx = np.nonzero(result.labels == label)[0]
            centre = vectors[idx].mean(axis=0)
            clusters.append(Cluster(int(label), idx.tolist(), int(idx[int(np.argmax(vectors[idx] @ centre))])))
        return Clustering(clusters, method, result.silhouette)

    # --- state ----------------------------------------------------------------------------
    def health(self) -> EngineHealth:
        """Whether the engine can serve, from which backend, and why not fully when it cannot.

        ``degraded`` when a model's TEI is not serving (a local model answers) or a service
        reports itself unhealthy; ``overloaded`` while a queue refuses new work with 429.
        """
        embedder, reranker = self.embedder.describe(), self.reranker.describe()
        status, reasons = "ok", []
        if not self.embedder.backend.is_healthy():
            status = "degraded"
            reasons.append("the backend reports itself unhealthy")
        if embedder.tei_serving is False:
            status = "degraded"
            reasons.append("TEI is not serving (down, restarting or its circuit is open); the local model answers")
        if reranker.tei_serving is False:
            status = "degraded"
            reasons.append("the reranker's TEI is not serving; the local cross-encoder answers")
        sparse = self.sparse.describe() if self.sparse is not None else None
        if sparse is not None and sparse.tei_serving is False:
            status = "degraded"
            reasons.append("the sparse model's TEI is not serving; the local sparse encoder answers")
        if reranker.batching is not None and reranker.batching.overloaded:
            status = "overloaded"
            reasons.append("the reranker's queue is full: new rerank work is refused with 429")
        if sparse is not None and sparse.batching is not None and sparse.batching.overloaded:
            status = "overloaded"
            reasons.append("the sparse encoder's queue is full: new sparse work is refused with 429")
        queue = embedder.batching
        if queue is not None and queue.overloaded:
            status = "overloaded"
            reasons.append(f"the queue needs about {queue.estimated_wait_s:.1f} s of model time to drain (more than "
                           f"{queue.max_queue_wait_s:g} s): new work is refused with 429")
        for problem, reason in self.models.problems(skip=(self.embedder, self.reranker, self.sparse)):
            status = problem if status == "ok" or problem == "overloaded" else status
            reasons.append(reason)
        return EngineHealth(status, embedder, reranker, self.dimension, reasons, sparse, self.served_models())

    def served_models(self) -> list[ModelReport]:
        """Every configured model: its name, kind, whether it is its kind's default, and its state
        (None with the error when it failed to load)."""
        return self.models.reports()

    def is_healthy(self) -> bool:
        """Whether the embedder can answer now."""
        return self.embedder.backend.is_healthy()

    def info(self) -> EngineInfo:
        """The models, limits, cache and batching state, and the embedding model's prompts."""
        return EngineInfo(
            embedder=self.embedder.describe(), reranker=self.reranker.describe(), dimension=self.dimension,
            pooling=self.embedder.backend.default_pooling, poolings=tuple(POOLINGS), cache=self.embedder.cache.stats(),
            batch_wait_ms=self.embedder.settings.batch_wait_ms, limits=dict(self.limits), version=__version__,
            started_at=self.started_at, sparse=self.sparse.describe() if self.sparse is not None else None,
            prompts=self.prompts, default_prompt_name=self.default_prompt_name, models=self.served_models(),
        )
