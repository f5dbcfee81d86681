"""Cohere's rerank API, which Jina's shares: ``POST /v2/rerank`` (Cohere v2) and ``POST /v1/rerank``
(Cohere v1 and Jina), so ``cohere.ClientV2(base_url=<service>)``, LangChain's ``CohereRerank``,
LlamaIndex's ``CohereRerank`` and ``JinaRerank`` work unchanged (``shared/guide/compat-facts.md`` §2).

Any ``model`` name is accepted and answered with the served reranker's id. ``relevance_score`` is
in [0, 1] as Cohere documents it: the sigmoid of a cross-encoder's logit, ``(cosine + 1) / 2`` when
no cross-encoder is configured (``reranker.kind`` says which). Results are best first, cut to
``top_n``. Errors are ``{"message", "detail", "error_type", "field", "limit"}``: Cohere's clients read
``message``, Jina's ``detail``; bad input is 400 (Cohere's status for it) and 429 carries
``Retry-After``.
"""

from __future__ import annotations

import uuid
from typing import Any

from ...engine.results import RerankOptions
from ...errors import EmbeddingsError, bad_request_status, naming
from .native import reranker_summary

name = "cohere"


def _answer(engine: Any, request: Any, version: str, with_documents: bool) -> tuple[dict[str, Any], int]:
    """The answer both versions share, and the tokens scored."""
    with naming("documents"):
        ranked = engine.rerank(request.query, request.documents,
                               RerankOptions(max_tokens_per_doc=request.max_tokens_per_doc))
    relevance = ranked.relevance()
    results = [{"index": i, "relevance_score": float(relevance[i]),
                **({"document": {"text": request.documents[i]}} if with_documents else {})}
               for i in ranked.order(request.top_n)]
    return {
        "id": str(uuid.uuid4()),
        "model": ranked.reranker.model,
        "results": results,
        "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1},
                 "tokens": {"input_tokens": ranked.tokens, "output_tokens": 0}},
        "reranker": reranker_summary(ranked.reranker),
    }, ranked.tokens


def rerank_v2(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /v2/rerank``: ``{id, results: [{index, relevance_score}], meta}``, best first."""
    return _answer(engine, request, "2", with_documents=False)[0]


def rerank_v1(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /v1/rerank``: Cohere v1's and Jina's answer (``document: {text}`` with
    ``return_documents``), with Jina's ``usage``."""
    body, tokens = _answer(engine, request, "1", with_documents=request.return_documents)
    body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return body


def render_error(err: EmbeddingsError) -> tuple[int, Any]:
    """Cohere's ``message`` and Jina's ``detail`` (same text), with the field and the limit."""
    status = bad_request_status(err)
    return status, {"message": err.message, "detail": err.message, "error_type": err.error_type,
                    "field": err.field, "limit": err.limit}
