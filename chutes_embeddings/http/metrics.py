"""Prometheus metrics of one service, served at ``GET /metrics``.

Names follow TEI's ``te_*`` metrics where the meaning is the same, so dashboards built for TEI
work whichever backend serves (``prometheus_client`` adds ``_total`` to counters, which TEI's
exporter does not); the rest are ``embeddings_*``. Recorded on the request path: requests
(by route, method and status) and their durations (by the request guard), per-batch and per-text
figures (by the batcher's observer), store operations (by ``StoreService``). Read at scrape time
from the engine, so they cost nothing per request: queue, cache, TEI and failover state.

| name | type | meaning |
|---|---|---|
| ``embeddings_requests_total{route,method,status}`` | counter | HTTP answers |
| ``embeddings_request_duration_seconds{route}`` | histogram | time to answer |
| ``te_queue_size`` | gauge | texts waiting for the model |
| ``embeddings_queue_wait_seconds`` | gauge | model time the waiting texts need (admission's estimate) |
| ``te_batch_next_size`` / ``te_batch_next_tokens`` | histogram | texts / tokens per forward pass |
| ``te_embed_queue_duration`` / ``te_embed_inference_duration`` | histogram | per text: queue wait, its pass |
| ``te_request_input_length`` | histogram | tokens per text embedded |
| ``te_embed_count_total`` | counter | texts the model embedded |
| ``embeddings_cache_hits_total`` / ``_misses_total`` | counter | vector cache |
| ``embeddings_texts_dropped_total`` | counter | queued texts whose caller had gone |
| ``embeddings_requests_refused_total`` | counter | requests refused at admission (429) |
| ``embeddings_backend_info{backend,runtime,model}`` | gauge | 1 for what serves now |
| ``embeddings_tei_restarts_total``, ``embeddings_failovers_total`` | counter | TEI supervision |
| ``embeddings_served_texts_total{backend}`` | counter | texts by who served them (TEI, local) |
| ``embeddings_reranker_info{kind,backend,model}`` | gauge | 1 for what scores rerank requests now |
| ``embeddings_rerank_pairs_total`` | counter | pairs the cross-encoder scored |
| ``embeddings_rerank_queue_size`` | gauge | pairs waiting for the cross-encoder |
| ``embeddings_rerank_requests_refused_total`` | counter | rerank requests refused at admission (429) |
| ``embeddings_rerank_tei_restarts_total``, ``embeddings_rerank_failovers_total`` | counter | the reranker's TEI |
| ``embeddings_sparse_info{backend,model}`` | gauge | 1 for what encodes sparse requests now (absent: no sparse model) |
| ``embeddings_sparse_texts_total`` | counter | texts the sparse encoder encoded |
| ``embeddings_sparse_queue_size`` | gauge | texts waiting for the sparse encoder |
| ``embeddings_sparse_requests_refused_total`` | counter | sparse requests refused at admission (429) |
| ``embeddings_sparse_tei_restarts_total``, ``embeddings_sparse_failovers_total`` | counter | the sparse model's TEI |
| ``embeddings_model_info{model,kind,backend,runtime,status}`` | gauge | 1 per configured model (ready, failed) |
| ``embeddings_model_queue_size{model,kind}`` | gauge | items waiting for that model |
| ``embeddings_model_items_total{model,kind}`` | counter | texts (pairs) that model ran |
| ``embeddings_model_requests_refused_total{model,kind}`` | counter | its requests refused at admission (429) |
| ``embeddings_model_tei_restarts_total``, ``embeddings_model_failovers_total`` ``{model,kind}`` | counter | its TEI |
| ``embeddings_store_operations_total{op,status}`` | counter | vector store operations |
| ``embeddings_store_operation_duration_seconds{op}`` | histogram | vector store operation time |
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..engine.results import ModelState

# TEI's duration buckets: 1.5e-5 s x 1.5^k up to ~14.6 s.
DURATION_BUCKETS = tuple(1e-5 * 1.5 ** k for k in range(1, 36))
POWERS_OF_TWO = tuple(float(2 ** k) for k in range(0, 21))


class Metrics:
    """The metrics of one engine, its store and its routes (see module docstring)."""

    def __init__(self, engine: Any, store: Any, routes: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("embeddings_requests", "HTTP answers", ["route", "method", "status"], registry=r)
        self.request_duration = Histogram("embeddings_request_duration_seconds", "time to answer", ["route"],
                                          buckets=DURATION_BUCKETS, registry=r)
        self.batch_size = Histogram("te_batch_next_size", "texts per forward pass", buckets=POWERS_OF_TWO[:13],
                                    registry=r)
        self.batch_tokens = Histogram("te_batch_next_tokens", "tokens per forward pass", buckets=POWERS_OF_TWO,
                                      registry=r)
        self.queue_duration = Histogram("te_embed_queue_duration", "seconds a text waited for its forward pass",
                                        buckets=DURATION_BUCKETS, registry=r)
        self.inference_duration = Histogram("te_embed_inference_duration", "seconds of the pass that embedded a text",
                                            buckets=DURATION_BUCKETS, registry=r)
        self.input_length = Histogram("te_request_input_length", "tokens per text embedded",
                                      buckets=POWERS_OF_TWO, registry=r)
        self.store_operations = Counter("embeddings_store_operations", "vector store operations", ["op", "status"],
                                        registry=r)
        self.store_duration = Histogram("embeddings_store_operation_duration_seconds", "vector store operation time",
                                        ["op"], buckets=DURATION_BUCKETS, registry=r)
        r.register(_EngineState(engine))
        engine.embedder.batcher.observer = self.observe_batch
        store.observer = self.observe_store

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP answer (the request guard calls this)."""
        self.requests.labels(route, method, str(status)).inc()
        self.request_duration.labels(route).observe(seconds)

    def observe_batch(self, tokens: Sequence[int], waits: Sequence[float], seconds: float) -> None:
        """One forward pass: each text's tokens and queue wait, and the pass's duration."""
        self.batch_size.observe(len(tokens))
        self.batch_tokens.observe(sum(tokens))
        for n, wait in zip(tokens, waits):
            self.input_length.observe(n)
            self.queue_duration.observe(wait)
            self.inference_duration.observe(seconds)

    def observe_store(self, op: str, ok: bool, seconds: float) -> None:
        """One vector-store operation."""
        self.store_operations.labels(op, "ok" if ok else "error").inc()
        self.store_duration.labels(op).observe(seconds)

    def render(self) -> bytes:
        """The text exposition format (``text/plain; version=0.0.4``)."""
        return generate_latest(self.registry)


class _EngineState:
    """Counters and gauges read from the engine at scrape time."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        state = self.engine.info()
        embedder, batching = state.embedder, state.embedder.batching
        yield GaugeMetricFamily("te_queue_size", "texts waiting for the model", value=batching.queue_depth)
        yield GaugeMetricFamily("embeddings_queue_wait_seconds", "model time the waiting texts need",
                                value=batching.estimated_wait_s)
        yield CounterMetricFamily("te_embed_count", "texts the model embedded", value=batching.items_run)
        yield CounterMetricFamily("embeddings_cache_hits", "vector cache hits", value=state.cache["hits"])
        yield CounterMetricFamily("embeddings_cache_misses", "vector cache misses", value=state.cache["misses"])
        yield CounterMetricFamily("embeddings_texts_dropped", "queued texts whose caller had gone",
                                  value=batching.items_dropped)
        yield CounterMetricFamily("embeddings_requests_refused", "requests refused at admission (429)",
                                  value=batching.refused)
        info = GaugeMetricFamily("embeddings_backend_info", "what serves now", labels=["backend", "runtime", "model"])
        info.add_metric([embedder.backend, embedder.runtime, embedder.model], 1)
        yield info
        if embedder.tei is not None:
            tei = embedder.tei
            yield CounterMetricFamily("embeddings_tei_restarts", "TEI restarts by the supervisor",
                                      value=tei.get("restarts", 0))
            yield CounterMetricFamily("embeddings_failovers", "TEI calls answered by the local model instead",
                                      value=tei.get("failovers", 0))
            served = CounterMetricFamily("embeddings_served_texts", "texts by the backend that embedded them",
                                         labels=["backend"])
            for backend, n in tei.get("served_texts", {}).items():
                served.add_metric([backend], n)
            yield served
        yield from self._reranker(state.reranker)
        if state.sparse is not None:
            yield from self._sparse(state.sparse)
        yield from self._models(state.models)

    @staticmethod
    def _models(reports: Sequence[Any]) -> Iterator[Metric]:
        """Every configured model, labelled by its name and kind (the unlabelled families above are
        each kind's default's, as TEI's describe its one model)."""
        labels = ["model", "kind"]
        info = GaugeMetricFamily("embeddings_model_info", "1 per configured model",
                                 labels=[*labels, "backend", "runtime", "status"])
        queue = GaugeMetricFamily("embeddings_model_queue_size", "items waiting for the model", labels=labels)
        items = CounterMetricFamily("embeddings_model_items", "texts (pairs) the model ran", labels=labels)
        refused = CounterMetricFamily("embeddings_model_requests_refused", "its requests refused at admission (429)",
                                      labels=labels)
        restarts = CounterMetricFamily("embeddings_model_tei_restarts", "restarts of its TEI", labels=labels)
        failovers = CounterMetricFamily("embeddings_model_failovers", "its TEI calls answered by its local model",
                                        labels=labels)
        for report in reports:
            state, names = report.state, [report.name, report.kind]
            info.add_metric([*names, state.backend if state else "", state.runtime if state else "",
                             "ready" if state else "failed"], 1)
            if state is None:
                continue
            if state.batching is not None:
                queue.add_metric(names, state.batching.queue_depth)
                items.add_metric(names, state.batching.items_run)
                refused.add_metric(names, state.batching.refused)
            if state.tei is not None:
                restarts.add_metric(names, state.tei.get("restarts", 0))
                failovers.add_metric(names, state.tei.get("failovers", 0))
        yield from (info, queue, items, refused, restarts, failovers)

    @staticmethod
    def _reranker(reranker: ModelState) -> Iterator[Metric]:
        info = GaugeMetricFamily("embeddings_reranker_info", "what scores rerank requests now",
                                 labels=["kind", "backend", "model"])
        info.add_metric([reranker.kind, reranker.backend, reranker.model], 1)
        yield info
        batching = reranker.batching
        if batching is None:  # the bi-encoder stand-in: its work is the embedder's
            return
        yield CounterMetricFamily("embeddings_rerank_pairs", "pairs the cross-encoder scored", value=batching.items_run)
        yield GaugeMetricFamily("embeddings_rerank_queue_size", "pairs waiting for the cross-encoder",
                                value=batching.queue_depth)
        yield CounterMetricFamily("embeddings_rerank_requests_refused", "rerank requests refused at admission (429)",
                                  value=batching.refused)
        if reranker.tei is not None:
            yield CounterMetricFamily("embeddings_rerank_tei_restarts", "restarts of the reranker's TEI",
                                      value=reranker.tei.get("restarts", 0))
            yield CounterMetricFamily("embeddings_rerank_failovers",
                                      "reranker TEI calls answered by the local cross-encoder",
                                      value=reranker.tei.get("failovers", 0))

    @staticmethod
    def _sparse(sparse: ModelState) -> Iterator[Metric]:
        info = GaugeMetricFamily("embeddings_sparse_info", "what encodes sparse requests now",
                                 labels=["backend", "model"])
        info.add_metric([sparse.backend, sparse.model], 1)
        yield info
        batching = sparse.batching
        assert batching is not None, "this is a bug: the sparse encoder always has a batcher"
        yield CounterMetricFamily("embeddings_sparse_texts", "texts the sparse encoder encoded",
                                  value=batching.items_run)
        yield GaugeMetricFamily("embeddings_sparse_queue_size", "texts waiting for the sparse encoder",
                                value=batching.queue_depth)
        yield CounterMetricFamily("embeddings_sparse_requests_refused", "sparse requests refused at admission (429)",
                                  value=batching.refused)
        if sparse.tei is not None:
            yield CounterMetricFamily("embeddings_sparse_tei_restarts", "restarts of the sparse model's TEI",
                                      value=sparse.tei.get("restarts", 0))
            yield CounterMetricFamily("embeddings_sparse_failovers",
                                      "sparse model TEI calls answered by the local sparse encoder",
                                      value=sparse.tei.get("failovers", 0))
