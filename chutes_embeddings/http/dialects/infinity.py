"""Infinity's API under ``/infinity``: ``POST /embeddings``, ``POST /rerank``, ``GET /models``, errors
as Infinity's ``{"error": {"message", "type", "param", "code"}}`` (``code``: the status).

So Infinity's own Python client (``infinity_client.Client(base_url=<service>/infinity)``) and litellm's
``infinity/`` provider (``api_base=<service>/infinity``) work unchanged. Under a prefix, because
Infinity's ``/rerank`` would take the native ``/rerank`` (Infinity itself serves under a prefix with
``--url-prefix``). Infinity 0.0.78's shapes (``shared/guide/compat-facts.md`` §1.8, §2.4): embeddings as
OpenAI's plus ``id`` and ``created``, ``dimensions: 0`` for the whole vector; rerank results best first
with ``document`` as a string and ``usage``; ``raw_scores`` gives the logits, else the sigmoid. One
difference, on purpose: a vector cut to ``dimensions`` is re-normalised, as on every other route here
(Infinity leaves it unnormalised; cosines are the same either way).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ...engine.results import EMBEDDER, RERANKER, SPARSE, RerankOptions
from ...errors import EmbeddingsError, naming
from . import picks
from .openai import embeddings_answer

name = "infinity"


def _stamp(body: dict[str, Any]) -> dict[str, Any]:
    body["id"] = f"infinity-{uuid.uuid4()}"
    body["created"] = int(time.time())
    return body


@picks(EMBEDDER)
def embeddings(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /infinity/embeddings``: OpenAI's answer with Infinity's ``id`` and ``created``."""
    return _stamp(embeddings_answer(engine, request.input, request.dimensions or None, request.encoding_format))


@picks(RERANKER)
def rerank(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /infinity/rerank``: ``{object, results: [{relevance_score, index, document?}], model, usage}``,
    best first, cut to ``top_n``."""
    with naming("documents"):
        ranked = engine.rerank(request.query, request.documents, RerankOptions())
    scores = ranked.logits if request.raw_scores else ranked.relevance()
    results = [{"relevance_score": float(scores[i]), "index": i,
                **({"document": request.documents[i]} if request.return_documents else {})}
               for i in ranked.order(request.top_n)]
    usage = {"prompt_tokens": ranked.tokens, "total_tokens": ranked.tokens}
    return _stamp({"object": "rerank", "results": results, "model": ranked.reranker.model, "usage": usage})


def models(engine: Any) -> dict[str, Any]:
    """``GET /infinity/models``: every loaded embedder and cross-encoder, with Infinity's
    ``capabilities`` and queue ``stats`` (without a cross-encoder, the embedders rerank)."""
    loaded = [m for m in engine.served_models() if m.state is not None and m.kind != SPARSE]
    own_reranker = any(m.kind == RERANKER for m in loaded)
    capabilities = {EMBEDDER: ["embed"] if own_reranker else ["embed", "rerank"], RERANKER: ["rerank"]}
    created = int(engine.started_at)
    return {"object": "list", "data": [_model(m.state, capabilities[m.kind], created) for m in loaded]}


def _model(state: Any, capabilities: list[str], created: int) -> dict[str, Any]:
    stats = state.batching
    return {"id": state.model, "object": "model", "created": created, "backend": state.backend,
            "capabilities": capabilities,
            "stats": {"queue_fraction": round(stats.queue_depth / max(1, stats.max_queue), 4),
                      "queue_absolute": stats.queue_depth, "results_pending": stats.queue_depth,
                      "batch_size": stats.max_batch_size}}


def render_error(err: EmbeddingsError) -> tuple[int, Any]:
    """Infinity's error shape: OpenAI's, with the HTTP status as ``code``."""
    return err.status, {"error": {"message": err.message, "type": err.error_type, "param": err.field,
                                  "code": err.status}}
