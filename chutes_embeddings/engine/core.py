"""The engine: every verb of the service, synchronous and thread-safe.

Cords call these methods from many worker threads. Vectors come from the embedding pipeline
(cache, then one forward pass shared by concurrent callers); the verbs turn them into plain dicts
(lists and floats only) so a cord can return them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..backends import Backend
from .cluster import cluster as run_clustering
from ..errors import InvalidInput
from ..http.payload import MAX_JSON_DEPTH
from .embedding import EmbeddingPipeline
from .reranking import BI_ENCODER, RerankPipeline
from ..settings import Settings
from .similarity import scores, top_k
from ..store.filters import MAX_FILTER_KEYS, MAX_IN_VALUES
from ..store.metadata import MAX_METADATA_BYTES, MAX_METADATA_KEYS
from .vectors import POOLINGS




@dataclass
class RerankScores:
    """One query's scores for its documents, in input order, in every form a caller may want.

    ``scores``: what the reranker's users expect (a cross-encoder's own activation, as
    ``CrossEncoder.predict`` gives it; cosine for the bi-encoder); ``raw``: logits (cosine for the
    bi-encoder); ``relevance``: in [0, 1] (sigmoid of the logit, as TEI and Cohere give it;
    ``(cosine + 1) / 2`` for the bi-encoder).
    """

    scores: np.ndarray
    raw: np.ndarray
    relevance: np.ndarray
    tokens: int
    reranker: dict[str, Any]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


class Engine(EmbeddingPipeline):
    """Embedding service over one model: the pipeline plus the verbs (see module docstring).

    Args:
        settings, backend, tokenizer, batches_in_flight, batch_overhead_tokens: see
            ``EmbeddingPipeline``.
        limits: request limits to report in /info.
        reranker: the cross-encoder's pipeline; None: rerank by the embedding model's cosine.
    """

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        tokenizer: Any,
        limits: dict[str, int] | None = None,
        batches_in_flight: int = 1,
        batch_overhead_tokens: int | None = None,
        reranker: RerankPipeline | None = None,
    ) -> None:
        super().__init__(settings, backend, tokenizer, batches_in_flight, batch_overhead_tokens)
        self.limits = dict(limits or {})
        self.reranker = reranker

    def close(self) -> None:
        """Stop the batchers and the backends."""
        super().close()
        if self.reranker is not None:
            self.reranker.close()

    def refuse_if_overloaded(self, model: str = "embedder") -> None:
        """Raise ``Overloaded`` now if new work for ``model`` ("embedder" or "reranker": the
        cross-encoder when there is one, else the embedder scores) would be refused."""
        if model == "reranker" and self.reranker is not None:
            self.reranker.batcher.admit(0, 0)
        else:
            super().refuse_if_overloaded()

    @property
    def reranker_info(self) -> dict[str, Any]:
        """What scores rerank requests: ``{model, kind, ...}``."""
        if self.reranker is not None:
            return self.reranker.describe()
        return {"model": self.model_id, "kind": BI_ENCODER, "backend": self.backend.kind,
                "note": "no EMBEDDINGS_RERANK_MODEL configured: scored by the embedding model's cosine"}

    # --- verbs ----------------------------------------------------------------------------
    def embed(
        self, inputs: Sequence[str], *, single: bool, normalize: bool, truncate: bool, pooling: str | None,
        dimensions: int | None = None,
    ) -> dict[str, Any]:
        """/embed: one vector for a single text, a list of vectors (with count) for a list."""
        vecs = self.embed_vectors(inputs, pooling=pooling, normalize=normalize, truncate=truncate, dimensions=dimensions)
        body: dict[str, Any] = {"model": self.model_id, "dimension": int(vecs.shape[1])}
        if single:
            body["embeddings"] = vecs[0].tolist()
        else:
            body["embeddings"] = vecs.tolist()
            body["count"] = len(inputs)
        return body

    def embed_batch(self, texts: Sequence[str], *, batch_size: int, normalize: bool,
                    dimensions: int | None = None) -> dict[str, Any]:
        """/embed/batch: vectors in input order; ``batch_size`` caps texts per forward pass."""
        vecs = self.embed_vectors(texts, normalize=normalize, max_batch=batch_size, field="texts", dimensions=dimensions)
        return {
            "embeddings": vecs.tolist(),
            "processed_count": len(texts),
            "batch_size": batch_size,
            "model": self.model_id,
            "dimension": int(vecs.shape[1]),
        }

    def similarity(self, source_text: str, target_texts: Sequence[str], *, normalize: bool) -> dict[str, Any]:
        """/similarity: cosine (dot product when ``normalize`` is False) of the source to each target."""
        vecs = self.embed_vectors([source_text, *target_texts], normalize=normalize, field="target_texts")
        row = scores(vecs[:1], vecs[1:])[0]
        order = top_k(row)
        results = [
            {"text": target_texts[i], "index": i, "similarity": float(row[i]), "rank": r}
            for r, i in enumerate(order, start=1)
        ]
        return {"source_text": source_text, "results": results, "model": self.model_id}

    def rerank_scores(self, query: str, texts: Sequence[str], *, truncate: bool = True,
                      truncation_direction: str = "right", max_tokens_per_doc: int | None = None,
                      field: str = "texts") -> RerankScores:
        """Every text's relevance to the query, in input order (the one rerank verb every shape uses).

        With a cross-encoder configured, each (query, text) pair is scored by it; otherwise by
        the embedding model's cosine (and ``reranker.kind`` says ``bi-encoder``). Options as for
        ``RerankPipeline.logits``; ``max_tokens_per_doc`` applies to the cross-encoder only (the
        bi-encoder reads each text on its own, up to its own limit). Callers order by ``raw``.
        """
        if self.reranker is not None:
            logits, counts = self.reranker.logits(query, texts, truncate=truncate,
                                                  truncation_direction=truncation_direction,
                                                  max_tokens_per_doc=max_tokens_per_doc, field=field)
            return RerankScores(self.reranker.activate(logits), logits, _sigmoid(logits), sum(counts),
                                self.reranker_info)
        options = {"truncate": truncate, "truncation_direction": truncation_direction}
        if truncate:
            vecs, counts = self.embed_counted([query, *texts], field=field, **options)
        else:  # separately, so that a text over the limit is named by its own index
            q, q_counts = self.embed_counted([query], field="query", **options)
            t, t_counts = self.embed_counted(texts, field=field, **options)
            vecs, counts = np.vstack([q, t]), q_counts + t_counts
        cosine = scores(vecs[:1], vecs[1:])[0]
        return RerankScores(cosine, cosine, ((cosine + 1.0) / 2.0).astype(np.float32), sum(counts), self.reranker_info)

    def rerank(self, query: str, texts: Sequence[str], *, top_k_: int | None, raw_scores: bool = False,
               truncate: bool = True) -> dict[str, Any]:
        """/rerank: texts ordered by relevance to the query, best first (see ``rerank_scores``)."""
        ranked = self.rerank_scores(query, texts, truncate=truncate)
        row = ranked.raw if raw_scores else ranked.scores
        order = top_k(ranked.raw, top_k_)  # by logit: the activation saturates (ties) where logits do not
        results = [
            {"text": texts[i], "index": i, "score": float(row[i]), "rank": r} for r, i in enumerate(order, start=1)
        ]
        return {"query": query, "results": results, "total_results": len(results),
                "model": ranked.reranker["model"], "reranker": ranked.reranker}

    def rerank_hits(self, query: str, hits: list[dict[str, Any]], *, top_k_: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Two-stage retrieval's second stage: ``hits`` (vector candidates with ``text`` and
        ``score``) reordered by the reranker, the best ``top_k_`` kept, each with its
        ``rerank_score`` and new ``rank``; and what reranked them."""
        if not hits:
            return [], self.reranker_info
        ranked = self.rerank_scores(query, [h["text"] for h in hits], field="candidates")
        order = top_k(ranked.raw, top_k_)
        return ([{**hits[i], "rerank_score": float(ranked.scores[i]), "rank": r} for r, i in enumerate(order, start=1)],
                ranked.reranker)

    def search(
        self, query: str, corpus: Sequence[str], *, top_k_: int, threshold: float | None, rerank: bool = False,
        rerank_candidates: int = 50,
    ) -> dict[str, Any]:
        """/search: the best ``top_k`` corpus entries for the query, optionally above a threshold
        (on the vector score); with ``rerank`` the best ``rerank_candidates`` by vector are
        reordered by the reranker first."""
        vecs = self.embed_vectors([query, *corpus], field="corpus")
        row = scores(vecs[:1], vecs[1:])[0]
        order = top_k(row, max(top_k_, rerank_candidates) if rerank else top_k_, threshold)
        results = [
            {"text": corpus[i], "corpus_index": i, "score": float(row[i]), "rank": r}
            for r, i in enumerate(order, start=1)
        ]
        body: dict[str, Any] = {}
        if rerank:
            results, body["reranker"] = self.rerank_hits(query, results, top_k_=top_k_)
        return {
            "query": query,
            "results": results,
            "total_corpus_size": len(corpus),
            "results_returned": len(results),
            "model": self.model_id,
            "threshold": threshold,
            **body,
        }

    def cluster(self, texts: Sequence[str], *, n_clusters: int | None, method: str, max_clusters: int) -> dict[str, Any]:
        """/cluster: groups of texts; without ``n_clusters`` the number is chosen by silhouette."""
        vecs = self.embed_vectors(texts, field="texts")
        try:
            result = run_clustering(vecs, method, n_clusters, max_clusters)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="n_clusters", limit=len(texts)) from None
        clusters = []
        for label in sorted(set(result.labels.tolist())):
            idx = np.nonzero(result.labels == label)[0]
            centre = vecs[idx].mean(axis=0)
            central = int(idx[int(np.argmax(vecs[idx] @ centre))])
            clusters.append(
                {
                    "cluster_id": int(label),
                    "size": int(idx.size),
                    "centroid_text": texts[central],
                    "texts": [texts[i] for i in idx],
                    "indices": idx.tolist(),
                }
            )
        return {
            "clusters": clusters,
            "n_clusters": sum(1 for c in clusters if c["cluster_id"] >= 0),
            "method": method,
            "total_texts": len(texts),
            "silhouette": result.silhouette,
        }

    def service_limits(self) -> dict[str, int]:
        """Limits the engine, the store and the HTTP layer enforce (request models' come in ``limits``)."""
        return {
            "max_body_bytes": self.settings.max_body_bytes,
            "max_json_depth": MAX_JSON_DEPTH,
            "max_filter_keys": MAX_FILTER_KEYS,
            "max_in_values": MAX_IN_VALUES,
            "max_metadata_bytes": MAX_METADATA_BYTES,
            "max_metadata_keys": MAX_METADATA_KEYS,
        }

    def health(self) -> dict[str, Any]:
        """/health: whether we can serve, from which backend, and why not fully when we cannot.

        ``status`` is ``ok``; ``degraded`` when a backend is down and a fallback answers (TEI not
        serving) or the backend reports itself unhealthy; ``overloaded`` while new work is refused
        with 429. The HTTP status stays 200: the process is alive and answers what it can.
        """
        reasons: list[str] = []
        status = "ok"
        if not self.backend.healthy():
            status = "degraded"
            reasons.append("the backend reports itself unhealthy")
        if getattr(self.backend, "serving_tei", None) is False:
            status = "degraded"
            reasons.append("TEI is not serving (down, restarting or its circuit is open); the local model answers")
        if self.reranker is not None and getattr(self.reranker.backend, "serving_tei", None) is False:
            status = "degraded"
            reasons.append("the reranker's TEI is not serving; the local cross-encoder answers")
        reranker = self._reranker_health()
        if self.reranker is not None and self.reranker.batcher.overloaded:
            status = "overloaded"
            reasons.append("the reranker's queue is full: new rerank work is refused with 429")
        wait_s = self.batcher.estimated_wait_s
        if self.batcher.overloaded:
            status = "overloaded"
            reasons.append(f"the queue needs about {wait_s:.1f} s of model time to drain (more than "
                           f"{self.settings.max_queue_wait_s:g} s): new work is refused with 429")
        return {
            "status": status,
            "backend": self.backend.kind,
            "model": self.model_id,
            "dimension": self.dimension,
            "queue": {"depth": self.batcher.queue_depth, "estimated_wait_s": round(wait_s, 3)},
            "reranker": reranker,
            "reasons": reasons,
        }

    def _reranker_health(self) -> dict[str, Any]:
        state = dict(self.reranker_info)
        if self.reranker is not None:
            batcher = self.reranker.batcher
            state["queue"] = {"depth": batcher.queue_depth, "estimated_wait_s": round(batcher.estimated_wait_s, 3)}
        return state

    def info(self) -> dict[str, Any]:
        """/info: model, limits, cache and batching state."""
        return {
            "model": self.model_id,
            "dimension": self.dimension,
            "max_input_tokens": self.backend.max_input_tokens,
            "pooling": self.backend.default_pooling,
            "poolings": list(POOLINGS),
            "backend": self.backend.kind,
            "local_runtime": self.backend.runtime,
            "cache": self.cache.stats(),
            "batching": {
                "max_batch_tokens": self.settings.max_batch_tokens,
                "max_batch_size": self.settings.max_batch_size,
                "batch_wait_ms": self.settings.batch_wait_ms,
                "max_queue": self.settings.max_queue,
                "max_queue_wait_s": self.settings.max_queue_wait_s,
                "queue_depth": self.batcher.queue_depth,
                "estimated_wait_s": round(self.batcher.estimated_wait_s, 3),
                "batches_run": self.batcher.batches_run,
                "texts_run": self.batcher.items_run,
                "texts_dropped": self.batcher.items_dropped,
                "requests_refused": self.batcher.refused,
            },
            "limits": {**self.limits, **self.service_limits()},
            "tei": self.backend.status() if hasattr(self.backend, "status") else None,
            "reranker": self._reranker_info(),
            "version": __version__,
        }

    def _reranker_info(self) -> dict[str, Any]:
        state = dict(self.reranker_info)
        if self.reranker is not None:
            backend, batcher = self.reranker.backend, self.reranker.batcher
            state.update({
                "local_runtime": backend.runtime,
                "batching": {"max_batch_tokens": batcher.max_batch_tokens, "max_batch_size": batcher.max_batch_size,
                             "queue_depth": batcher.queue_depth, "batches_run": batcher.batches_run,
                             "pairs_run": batcher.items_run, "requests_refused": batcher.refused},
                "tei": backend.status() if hasattr(backend, "status") else None,
            })
        return state
