"""The engine: every verb of the service, synchronous and thread-safe.

Cords call these methods from many worker threads. Vectors come from the cache or from the
batcher (one forward pass shared by concurrent callers); the verbs turn them into plain dicts
(lists and floats only) so a cord can return them as they are.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
from typing import Any, Sequence

import numpy as np
from loguru import logger

from . import __version__
from .backends import Backend
from .batcher import Admission, Batcher
from .cache import EmbeddingCache
from .caller import current_scope
from .cluster import cluster as run_clustering
from .errors import BackendUnavailable, EmbeddingsError, InvalidInput
from .payload import MAX_JSON_DEPTH
from .settings import Settings
from .store.filters import MAX_FILTER_KEYS, MAX_IN_VALUES
from .store.metadata import MAX_METADATA_BYTES, MAX_METADATA_KEYS
from .similarity import scores, top_k
from .vectors import POOLINGS, normalize as l2_normalize


CHARS_PER_TOKEN = 4  # admission's estimate of a text's cost before it is tokenised


class Engine:
    """Embedding service over one model (see module docstring).

    Args:
        settings: the service settings.
        backend: what serves forward passes (local, TEI, or TEI with local fallback).
        tokenizer: tokenises texts once: (ids cut at the model's limit, full token counts).
        limits: request limits to report in /info.
        batches_in_flight: forward passes the batcher runs at once (1 for a local model).
        batch_overhead_tokens: the cost of one more pass in padded tokens (default: the setting).
    """

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        tokenizer: Any,
        limits: dict[str, int] | None = None,
        batches_in_flight: int = 1,
        batch_overhead_tokens: int | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self._tokenize = tokenizer
        self.limits = dict(limits or {})
        self.cache = EmbeddingCache(settings.cache_size)
        self.batcher = Batcher(
            backend.embed,
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            max_queue_wait_s=settings.max_queue_wait_s,
            workers=batches_in_flight,
            overhead_tokens=settings.batch_overhead_tokens if batch_overhead_tokens is None else batch_overhead_tokens,
        )

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def dimension(self) -> int:
        return self.backend.dimension

    def close(self) -> None:
        """Stop the batcher and the backend."""
        self.batcher.close()
        self.backend.close()

    # --- the one path every text takes ---------------------------------------------------
    def embed_vectors(
        self,
        texts: Sequence[str],
        *,
        pooling: str | None = None,
        normalize: bool = True,
        truncate: bool = True,
        max_batch: int | None = None,
        field: str = "inputs",
    ) -> np.ndarray:
        """Embed texts (cache first, then shared forward passes), in input order.

        The steps, in this order: check the options; look each text up in the cache; admit the
        misses (``Overloaded`` at once when the queue is full, before any tokenising); tokenise
        once (the misses, and with ``truncate=False`` every text, so a cached vector never
        answers an input over the limit); queue the misses, with their token ids, for shared
        forward passes; normalise.

        Args:
            texts: the texts, as given (nothing is rewritten).
            pooling: a mode from ``POOLINGS``; None uses the model's own.
            normalize: L2-normalise the vectors.
            truncate: cut texts at the model's token limit; when False such a text is an error.
            max_batch: at most this many of these texts per forward pass.
            field: the request field the texts came from, for error messages.

        Returns:
            (len(texts), dimension) float32 array.

        Raises:
            InvalidInput: a text is over the token limit and ``truncate`` is False.
            Overloaded: the batch queue is full.
            BackendUnavailable: no answer within ``request_timeout_s``.
        """
        mode = pooling or self.backend.default_pooling
        if mode not in POOLINGS:
            raise InvalidInput(f"pooling {mode!r} is not one of {list(POOLINGS)}", field="pooling", limit=list(POOLINGS))
        found = self.cache.get_many([(self.model_id, mode, text) for text in texts])
        missing: dict[str, list[int]] = {}
        for i, (text, vec) in enumerate(zip(texts, found)):
            if vec is None:
                missing.setdefault(text, []).append(i)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, vec in enumerate(found):
            if vec is not None:
                out[i] = vec
        with self._admit(missing) as admitted:
            first_seen: dict[str, int] = {}
            if not truncate:
                for i, text in enumerate(texts):
                    first_seen.setdefault(text, i)
            to_tokenize = list(first_seen) if not truncate else list(missing)
            ids, counts = self._tokenize(to_tokenize) if to_tokenize else ([], [])
            if not truncate:
                self._check_token_limit(to_tokenize, counts, first_seen, field)
            if missing:
                unique = list(missing)
                encoded = dict(zip(to_tokenize, zip(ids, counts)))
                vectors = self._compute(unique, [encoded[t] for t in unique], mode, truncate, max_batch, admitted)
                self.cache.put_many([(self.model_id, mode, t) for t in unique], vectors)
                for text, row in zip(unique, vectors):
                    out[missing[text]] = row
        return l2_normalize(out) if normalize else out

    def refuse_if_overloaded(self) -> None:
        """Raise ``Overloaded`` (with ``retry_after_s``) if new model work would be refused now;
        the HTTP guard asks before parsing a request's body."""
        self.batcher.admit(0, 0)

    def _admit(self, texts: Sequence[str]) -> Any:
        """A place in the batch queue for these texts (``Overloaded`` now if there is none), sized
        before tokenising by a cheap estimate: ~4 characters a token, at most the model's limit."""
        if not texts:
            return contextlib.nullcontext()
        limit = self.backend.max_input_tokens
        return self.batcher.admit(len(texts), sum(min(limit, len(t) // CHARS_PER_TOKEN + 2) for t in texts))

    def _check_token_limit(self, texts: list[str], counts: list[int], position: dict[str, int], field: str) -> None:
        limit = self.backend.max_input_tokens
        for text, n in zip(texts, counts):
            if n > limit:
                pos = position[text]
                raise InvalidInput(
                    f"{field}[{pos}] has {n} tokens; the model accepts at most {limit}. "
                    "Send truncate=true to embed its first tokens, or split the text.",
                    field=f"{field}[{pos}]",
                    limit=limit,
                    tokens=n,
                )

    def _compute(
        self, texts: list[str], encoded: list[tuple[list[int], int]], mode: str, truncate: bool, max_batch: int | None,
        admitted: Admission | None,
    ) -> np.ndarray:
        token_ids = [ids for ids, _ in encoded]
        futures = self.batcher.submit(texts, [mode] * len(texts), [len(ids) for ids in token_ids], max_batch, truncate,
                                      token_ids, admitted)
        scope = current_scope()
        if scope is not None:
            scope.track(futures)
        deadline = time.monotonic() + self.settings.request_timeout_s
        try:
            rows = [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
        except cf.TimeoutError:
            for f in futures:
                f.cancel()
            raise BackendUnavailable(
                f"no answer from the model within {self.settings.request_timeout_s:.0f} s; retry later"
            ) from None
        except (EmbeddingsError, cf.CancelledError):
            for f in futures:
                f.cancel()
            raise
        return np.stack(rows)

    # --- verbs ----------------------------------------------------------------------------
    def embed(
        self, inputs: Sequence[str], *, single: bool, normalize: bool, truncate: bool, pooling: str | None
    ) -> dict[str, Any]:
        """/embed: one vector for a single text, a list of vectors (with count) for a list."""
        vecs = self.embed_vectors(inputs, pooling=pooling, normalize=normalize, truncate=truncate)
        body: dict[str, Any] = {"model": self.model_id, "dimension": self.dimension}
        if single:
            body["embeddings"] = vecs[0].tolist()
        else:
            body["embeddings"] = vecs.tolist()
            body["count"] = len(inputs)
        return body

    def embed_batch(self, texts: Sequence[str], *, batch_size: int, normalize: bool) -> dict[str, Any]:
        """/embed/batch: vectors in input order; ``batch_size`` caps texts per forward pass."""
        vecs = self.embed_vectors(texts, normalize=normalize, max_batch=batch_size, field="texts")
        return {
            "embeddings": vecs.tolist(),
            "processed_count": len(texts),
            "batch_size": batch_size,
            "model": self.model_id,
            "dimension": self.dimension,
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

    def rerank(self, query: str, texts: Sequence[str], *, top_k_: int | None) -> dict[str, Any]:
        """/rerank: texts ordered by cosine similarity to the query (bi-encoder), best first."""
        vecs = self.embed_vectors([query, *texts], field="texts")
        row = scores(vecs[:1], vecs[1:])[0]
        order = top_k(row, top_k_)
        results = [
            {"text": texts[i], "index": i, "score": float(row[i]), "rank": r} for r, i in enumerate(order, start=1)
        ]
        return {"query": query, "results": results, "total_results": len(results), "model": self.model_id}

    def search(
        self, query: str, corpus: Sequence[str], *, top_k_: int, threshold: float | None
    ) -> dict[str, Any]:
        """/search: the best ``top_k`` corpus entries for the query, optionally above a threshold."""
        vecs = self.embed_vectors([query, *corpus], field="corpus")
        row = scores(vecs[:1], vecs[1:])[0]
        order = top_k(row, top_k_, threshold)
        results = [
            {"text": corpus[i], "corpus_index": i, "score": float(row[i]), "rank": r}
            for r, i in enumerate(order, start=1)
        ]
        return {
            "query": query,
            "results": results,
            "total_corpus_size": len(corpus),
            "results_returned": len(results),
            "model": self.model_id,
            "threshold": threshold,
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
            "reasons": reasons,
        }

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
            "version": __version__,
        }


# A TEI server batches again on its side; a few requests in flight keep its GPU busy.
TEI_BATCHES_IN_FLIGHT = 4
# On a GPU a pass costs mostly its launch overhead: padding is cheap, extra passes are not.
GPU_BATCH_OVERHEAD_TOKENS = 2048


def start_engine(settings: Settings, limits: dict[str, int] | None = None, model: Any = None) -> Engine:
    """Build the engine for ``settings`` (the startup hook calls this).

    When the TEI binary is found, TEI is launched and supervised and serves requests, with the
    local model as a fallback nobody notices; the local model then stays on the CPU (with
    ``EMBEDDINGS_DEVICE=auto``) so the GPU holds the model once, in TEI. Start-up waits at most
    ``tei_startup_timeout_s`` for TEI and otherwise goes on with the fallback.

    Args:
        settings: the service settings.
        limits: request limits reported by /info.
        model: an already loaded ``LoadedModel`` to reuse (tests share one).
    """
    from .backends.local import LoadedModel, build_local_backend
    from .backends.tei_process import find_binary

    started = time.monotonic()
    binary = find_binary(settings.tei_binary) if settings.tei_binary else None
    if binary is None:
        logger.info("TEI binary {!r} not found: serving with the local backend only", settings.tei_binary)
    device = "cpu" if binary and settings.device == "auto" else settings.device
    model = model or LoadedModel(settings, device)
    local = build_local_backend(settings, model)
    backend: Backend = local
    in_flight, overhead = 1, None
    if model.device != "cpu":
        overhead = GPU_BATCH_OVERHEAD_TOKENS
    if binary is not None:
        backend = _start_tei(settings, binary, local)
        in_flight, overhead = TEI_BATCHES_IN_FLIGHT, settings.max_batch_tokens  # TEI re-batches: send big batches
    engine = Engine(settings, backend, model.tokenize, limits, in_flight, overhead)
    logger.info(
        "engine ready: model={} backend={} runtime={} dim={} in {:.1f}s",
        engine.model_id, backend.kind, backend.runtime, engine.dimension, time.monotonic() - started,
    )
    return engine


def _start_tei(settings: Settings, binary: str, local: Backend) -> Backend:
    from .backends.failover import FailoverBackend
    from .backends.tei import TeiBackend, TeiUnavailable
    from .backends.tei_process import TeiLaunch, TeiSupervisor
    from .devserver import free_port

    supervisor = TeiSupervisor(
        TeiLaunch(
            binary=binary, model=settings.model, port=settings.tei_port or free_port(), revision=settings.model_revision,
            max_batch_tokens=settings.tei_max_batch_tokens, max_client_batch_size=settings.tei_max_client_batch_size,
            max_concurrent_requests=settings.tei_max_concurrent_requests,
            fallback_cache=str(settings.data_path / "hub"),
        )
    )
    supervisor.start()
    tei = TeiBackend(supervisor.url, model_id=local.model_id, dimension=local.dimension,
                     max_input_tokens=local.max_input_tokens, default_pooling=local.default_pooling)
    if supervisor.wait_ready(settings.tei_startup_timeout_s):
        try:
            tei.refresh_info()
        except TeiUnavailable as exc:
            logger.warning("TEI is up but /info failed ({}); it will be read on first use", exc)
    else:
        logger.warning("TEI not healthy after {:.0f} s: serving from the local model until it is",
                       settings.tei_startup_timeout_s)
    return FailoverBackend(tei, local, supervisor)
