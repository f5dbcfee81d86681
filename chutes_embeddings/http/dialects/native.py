"""The service's own API: each cord's request -> an engine or store verb -> its answer.

Errors are ``{"detail": {error_type, message, field?, limit?, ...}}`` with the error's status.
Every function takes the parsed request model and returns plain lists, dicts, floats and strings
(what the SDK serialises with orjson).
"""

from __future__ import annotations

from typing import Any

from ...engine.prompts import document_prompt, query_prompt
from ...engine.results import (
    EMBEDDER,
    RERANKER,
    SPARSE,
    EmbedOptions,
    EngineHealth,
    EngineInfo,
    ModelState,
    RerankOptions,
)
from ...errors import EmbeddingsError, naming
from . import picks

name = "native"


# --- engine verbs ---------------------------------------------------------------------------
@picks(EMBEDDER)
def embed(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /embed``: one vector for a single text, a list of vectors (with count) for a list.

    With ``embedding_types`` other than ``["float"]``, ``embeddings`` is an object by type
    (``engine.quantize``), each value shaped as the float answer would be (one vector, or a list).
    """
    from ...engine import quantize  # numpy: the chute file imports the dialects with the SDK only

    kinds = request.embedding_types
    if kinds is not None:
        quantize.check_types(kinds, normalized=request.normalize)
    options = EmbedOptions(pooling=request.pooling, normalize=request.normalize, truncate=request.truncate,
                           dimensions=request.dimensions, prompt_name=request.prompt_name,
                           long_input=request.long_input, window_overlap=request.window_overlap)
    with naming("inputs"):
        embedded = engine.embed(request.inputs, options)
    vectors = embedded.vectors
    single = request.single and embedded.windows is None  # a text's windows are a list, even for one text
    body: dict[str, Any] = {"model": engine.model_id, "dimension": int(vectors.shape[1])}
    if kinds is None or list(kinds) == [quantize.FLOAT]:
        body["embeddings"] = vectors[0].tolist() if single else vectors.tolist()
    else:
        typed = quantize.by_type(vectors, kinds)
        body["embeddings"] = {kind: rows[0] for kind, rows in typed.items()} if single else typed
    if not request.single:
        body["count"] = len(request.inputs)
    return {**body, **_long_input_parts(embedded)}


def _long_input_parts(embedded: Any) -> dict[str, Any]:
    """A pooled or windowed answer's ``usage`` (every token embedded: the engine counts them for
    these) and, windowed, ``windows``: which text and span each row of ``embeddings`` is."""
    parts: dict[str, Any] = {}
    if embedded.windows is not None:
        parts["windows"] = [{"index": w.index, "start": w.start, "end": w.end, "tokens": w.tokens}
                            for w in embedded.windows]
    if embedded.token_counts is not None:
        parts["usage"] = {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens}
    return parts


@picks(EMBEDDER)
def embed_batch(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /embed/batch``: vectors in input order (with ``long_input: windows``, one per window,
    described by ``windows``); ``batch_size`` caps texts per forward pass."""
    options = EmbedOptions(normalize=request.normalize, max_batch=request.batch_size, dimensions=request.dimensions,
                           prompt_name=request.prompt_name, long_input=request.long_input,
                           window_overlap=request.window_overlap)
    with naming("texts"):
        embedded = engine.embed(request.texts, options)
    vectors = embedded.vectors
    return {"embeddings": vectors.tolist(), "processed_count": len(request.texts), "batch_size": request.batch_size,
            "model": engine.model_id, "dimension": int(vectors.shape[1]),
            **_long_input_parts(embedded)}


@picks(SPARSE)
def embed_sparse(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /embed/sparse``: one sparse vector (``indices`` ascending, ``values`` > 0) per input,
    in input order, with the model, its vocabulary size (the vectors' dimension) and token usage."""
    texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
    with naming("inputs"):
        encoded = engine.embed_sparse(texts, truncate=request.truncate,
                                      truncation_direction=request.truncation_direction)
    data = [{"index": i, "indices": list(v.indices), "values": list(v.values)} for i, v in enumerate(encoded.vectors)]
    return {"data": data, "model": encoded.model.model, "vocab_size": engine.sparse_vocab_size,
            "usage": {"prompt_tokens": encoded.tokens, "total_tokens": encoded.tokens}}


@picks(EMBEDDER)
def similarity(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /similarity``: every target by its similarity to the source, best first (a long text
    cut or pooled as ``long_input`` says)."""
    ranking = engine.similarity(request.source_text, request.target_texts, normalize=request.normalize,
                                **request.long_inputs())
    results = [{"text": request.target_texts[h.index], "index": h.index, "similarity": h.score, "rank": h.rank}
               for h in ranking.hits]
    return {"source_text": request.source_text, "results": results, "model": engine.model_id}


@picks(RERANKER)
def rerank(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /rerank``: texts by relevance to the query, best first (the model's activation, or
    the logit with ``raw_scores``)."""
    with naming("texts"):
        ranked = engine.rerank(request.query, request.texts, RerankOptions(truncate=request.truncate))
    row = ranked.logits if request.raw_scores else ranked.activated()
    results = [{"text": request.texts[i], "index": i, "score": float(row[i]), "rank": rank}
               for rank, i in enumerate(ranked.order(request.top_k), start=1)]
    return {"query": request.query, "results": results, "total_results": len(results),
            "model": ranked.reranker.model, "reranker": reranker_summary(ranked.reranker)}


def _hit_extras(hit: Any) -> dict[str, Any]:
    """A hit's optional parts: its reranker score, and its score and rank in each leg that found it."""
    extras: dict[str, Any] = {}
    if hit.rerank_score is not None:
        extras["rerank_score"] = hit.rerank_score
    if hit.legs is not None:
        extras["legs"] = {leg: {"score": s.score, "rank": s.rank} for leg, s in hit.legs.items()}
    return extras


def _ranking_extras(ranking: Any) -> dict[str, Any]:
    """A search answer's parts about its stages: the mode, the legs skipped, the reranker."""
    extras: dict[str, Any] = {"mode": ranking.mode}
    if ranking.skipped:
        extras["skipped_legs"] = dict(ranking.skipped)
    if ranking.reranker is not None:
        extras["reranker"] = reranker_summary(ranking.reranker)
    return extras


@picks(EMBEDDER)
def search(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /search``: the best matches of a query in a corpus sent with it."""
    ranking = engine.search(request.query, request.corpus, top_k=request.top_k, threshold=request.threshold,
                            rerank=request.rerank, rerank_candidates=request.rerank_candidates,
                            retrieval=request.retrieval(), **request.long_inputs())
    results = [{"text": request.corpus[h.index], "corpus_index": h.index, "score": h.score, "rank": h.rank,
                **_hit_extras(h)} for h in ranking.hits]
    return {"query": request.query, "results": results, "total_corpus_size": len(request.corpus),
            "results_returned": len(results), "model": engine.model_id, "threshold": request.threshold,
            **_ranking_extras(ranking)}


@picks(EMBEDDER)
def cluster(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /cluster``: groups of texts, each with its most central text."""
    clustering = engine.cluster(request.texts, n_clusters=request.n_clusters, method=request.method,
                                **request.long_inputs())
    clusters = [{"cluster_id": c.label, "size": len(c.indices), "centroid_text": request.texts[c.central],
                 "texts": [request.texts[i] for i in c.indices], "indices": c.indices} for c in clustering.clusters]
    return {"clusters": clusters, "n_clusters": sum(1 for c in clustering.clusters if c.label >= 0),
            "method": clustering.method, "total_texts": len(request.texts), "silhouette": clustering.silhouette}


# --- state ----------------------------------------------------------------------------------
def reranker_summary(state: ModelState) -> dict[str, Any]:
    """What scores rerank requests, as answers name it."""
    body: dict[str, Any] = {"model": state.model, "kind": state.kind, "backend": state.backend}
    if state.activation is not None:
        body.update(activation=state.activation, max_input_tokens=state.max_input_tokens)
    if state.note is not None:
        body["note"] = state.note
    return body


def health(engine: Any) -> dict[str, Any]:
    """``GET /health``: whether the service can answer, from which backend, and why not fully."""
    state: EngineHealth = engine.health()
    reranker = reranker_summary(state.reranker)
    if state.reranker.batching is not None:
        reranker["queue"] = _queue(state.reranker)
    return {"status": state.status, "backend": state.embedder.backend, "model": state.embedder.model,
            "dimension": state.dimension, "queue": _queue(state.embedder),
            "reranker": reranker, "reasons": state.reasons,
            "sparse": _sparse_summary(state.sparse, engine.sparse_vocab_size, queue=True),
            "models": [served_model(m) for m in state.models]}


def served_model(report: Any, full: bool = False) -> dict[str, Any]:
    """One configured model as /health (and, with ``full``, /info with its TEI) lists it."""
    body: dict[str, Any] = {"name": report.name, "kind": report.kind, "default": report.default,
                            "status": "ready" if report.state is not None else "failed", "names": list(report.names)}
    if report.state is None:
        return {**body, "error": report.error}
    state = report.state
    body.update(backend=state.backend, runtime=state.runtime, max_input_tokens=state.max_input_tokens,
                dimension=report.dimension)
    if state.batching is not None:
        body["queue"] = _queue(state)
    if full:
        body["tei"] = state.tei
    return body


def _queue(state: ModelState) -> dict[str, Any]:
    stats = state.batching
    assert stats is not None, "this is a bug: a model without a batcher has no queue"
    return {"depth": stats.queue_depth, "estimated_wait_s": round(stats.estimated_wait_s, 3)}


def info(engine: Any) -> dict[str, Any]:
    """``GET /info``: the model, limits, cache and batching state, and the model's prompts (with
    those a search embeds its query and the searched texts with)."""
    state: EngineInfo = engine.info()
    embedder, stats = state.embedder, state.embedder.batching
    assert stats is not None, "this is a bug: the embedder always has a batcher"
    return {
        "model": embedder.model,
        "dimension": state.dimension,
        "max_input_tokens": embedder.max_input_tokens,
        "pooling": state.pooling,
        "poolings": list(state.poolings),
        "backend": embedder.backend,
        "local_runtime": embedder.runtime,
        "cache": state.cache,
        "batching": {
            "max_batch_tokens": stats.max_batch_tokens,
            "max_batch_size": stats.max_batch_size,
            "batch_wait_ms": state.batch_wait_ms,
            "max_queue": stats.max_queue,
            "max_queue_wait_s": stats.max_queue_wait_s,
            "queue_depth": stats.queue_depth,
            "estimated_wait_s": round(stats.estimated_wait_s, 3),
            "batches_run": stats.batches_run,
            "texts_run": stats.items_run,
            "texts_dropped": stats.items_dropped,
            "requests_refused": stats.refused,
        },
        "limits": state.limits,
        "long_input": engine.embedder.settings.long_input,  # what a request that does not choose gets
        "tei": embedder.tei,
        "reranker": _reranker_info(state.reranker),
        "sparse": _sparse_info(state.sparse, engine.sparse_vocab_size),
        "version": state.version,
        "prompts": state.prompts,
        "default_prompt_name": state.default_prompt_name,
        "retrieval_prompts": {"query": query_prompt(state.prompts), "document": document_prompt(state.prompts)},
        "models": [served_model(m, full=True) for m in state.models],
    }


def _sparse_summary(state: ModelState | None, vocab_size: int | None, queue: bool = False) -> dict[str, Any] | None:
    """The sparse encoder as /health names it (None: no sparse model is configured)."""
    if state is None:
        return None
    body = {"model": state.model, "kind": state.kind, "backend": state.backend,
            "max_input_tokens": state.max_input_tokens, "vocab_size": vocab_size}
    if queue:
        body["queue"] = _queue(state)
    return body


def _sparse_info(state: ModelState | None, vocab_size: int | None) -> dict[str, Any] | None:
    """The sparse encoder as /info describes it: /health's summary, its runtime, batching and TEI."""
    body = _sparse_summary(state, vocab_size)
    if state is None or body is None:
        return None
    assert state.batching is not None, "this is a bug: the sparse encoder always has a batcher"
    return {**body, **_service_info(state, "texts_run")}


def _reranker_info(state: ModelState) -> dict[str, Any]:
    body = reranker_summary(state)
    return {**body, **_service_info(state, "pairs_run")} if state.batching is not None else body


def _service_info(state: ModelState, items_run: str) -> dict[str, Any]:
    """A batched model service's runtime, batching counters (its items counted as ``items_run``) and TEI."""
    stats = state.batching
    return {"local_runtime": state.runtime,
            "batching": {"max_batch_tokens": stats.max_batch_tokens, "max_batch_size": stats.max_batch_size,
                         "queue_depth": stats.queue_depth, "batches_run": stats.batches_run,
                         items_run: stats.items_run, "requests_refused": stats.refused},
            "tei": state.tei}


# --- the store ------------------------------------------------------------------------------
def store_add(store: Any, request: Any) -> dict[str, Any]:
    """``POST /store/add``: upsert texts, or documents as their chunks; answered after the store
    has committed them."""
    if request.documents is not None:
        from ...documents import Document
        from ...documents.chunking import Chunking

        option = request.chunking
        chunking = Chunking() if option is None else Chunking(option.max_tokens, option.overlap)
        added = store.add_documents(request.collection, [Document(d.id, d.text, d.metadata or {})
                                                         for d in request.documents], chunking,
                                    model=request.model)
    else:
        added = store.add(request.collection, request.texts, request.ids, request.metadata, request.vectors,
                          request.vector_model, model=request.model)
    body = {"collection": request.collection, "added_count": added.added, "ids": added.ids,
            "total_in_collection": added.total}
    if added.documents is not None:
        body["documents"] = [{"id": doc_id, "chunks": n} for doc_id, n in added.documents]
    return body


def _chunk_fields(chunk: Any) -> dict[str, Any]:
    """A record's place in its document, as the store routes report it (nothing for a plain record)."""
    if chunk is None:
        return {}
    return {"document_id": chunk.document_id, "chunk": chunk.index, "span": [chunk.start, chunk.end]}


def _sparse_query(query: Any) -> Any:
    """The request's ``query_sparse`` as the store takes it (None when absent)."""
    from ...store import SparseVector

    return None if query is None else SparseVector(tuple(query.indices), tuple(query.values))


def store_search(store: Any, request: Any) -> dict[str, Any]:
    """``POST /store/search``: the best matches of one query in a collection."""
    found = store.search(request.collection, request.query, request.top_k, request.filter_metadata,
                         request.threshold, request.query_vector, rerank=request.rerank,
                         rerank_candidates=request.rerank_candidates, retrieval=request.retrieval(),
                         query_sparse=_sparse_query(request.query_sparse), group_by=request.group_by,
                         query_model=request.model)
    records = [found.records[h.index] for h in found.ranking.hits]
    results = [{"id": r.id, "text": r.text, "score": h.score, "rank": h.rank, "metadata": r.metadata,
                **_chunk_fields(r.chunk), **_hit_extras(h)} for h, r in zip(found.ranking.hits, records)]
    if found.other_chunks is not None:
        for result, others in zip(results, found.other_chunks):
            result["other_chunks"] = others
    return {"collection": request.collection, "query": request.query, "results": results,
            "results_returned": len(results), "model": found.model, **_ranking_extras(found.ranking)}


def store_get(store: Any, request: Any) -> dict[str, Any]:
    """``POST /store/get``: records by id (in the order asked, with the ids not found), or those a
    filter matches."""
    got = store.get(request.collection, request.ids, request.filter_metadata, request.limit, request.document_ids)
    records = [{"id": r.id, "text": r.text, "metadata": r.metadata, **_chunk_fields(r.chunk),
                **({"vector": r.vector.tolist()} if request.include_vectors and r.vector is not None else {})}
               for r in got.records]
    return {"collection": request.collection, "records": records, "missing_ids": got.missing_ids}


def store_delete(store: Any, request: Any) -> dict[str, Any]:
    """``POST /store/delete``: records by id or by a metadata filter."""
    deleted = store.delete(request.collection, request.ids, request.filter_metadata, request.document_ids)
    return {"collection": request.collection, "deleted_count": deleted.deleted, "total_in_collection": deleted.total}


def store_drop(store: Any, request: Any) -> dict[str, Any]:
    """``POST /store/drop``: a collection and everything in it."""
    store.drop(request.collection)
    return {"collection": request.collection, "dropped": True}


def store_collections(store: Any, request: Any) -> dict[str, Any]:
    """``GET``/``POST /store/collections``: every collection the caller may see, with its size,
    dimension, model and samples."""
    infos = store.list_collections()
    return {"collections": [{"name": i.name, "size": i.size, "dimension": i.dimension, "model": i.model,
                             "sample_texts": i.sample_texts, "lexical": i.legs.lexical,
                             "sparse_model": i.legs.sparse_model} for i in infos],
            "total": len(infos), "store": store.kind}


def render_error(err: EmbeddingsError) -> tuple[int, Any]:
    """The documented ``{"detail": {error_type, message, field?, limit?, ...}}`` with the error's status."""
    return err.status, {"detail": err.to_body()}
