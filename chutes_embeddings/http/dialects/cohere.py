"""Cohere's rerank API, which Jina's shares: ``POST /v2/rerank`` (Cohere v2) and ``POST /v1/rerank``
(Cohere v1 and Jina), so ``cohere.ClientV2(base_url=<service>)``, LangChain's ``CohereRerank``,
LlamaIndex's ``CohereRerank`` and ``JinaRerank`` work unchanged (``shared/guide/compat-facts.md`` §2);
and Cohere's embed API, ``POST /v2/embed`` and ``POST /v1/embed`` (``cohere.ClientV2.embed``,
``cohere.Client.embed``, LangChain's ``CohereEmbeddings``, Haystack's ``CohereTextEmbedder``).

Embed: any ``model`` name is accepted. ``embedding_types`` are made by ``engine.quantize`` (v2's
default and v1's with types: ``response_type: embeddings_by_type``; v1 without them answers
``embeddings_floats``). ``truncate`` END cuts a long text's end, START its start, NONE refuses it;
``max_tokens`` first cuts each text to that many tokens the same way; ``output_dimension`` keeps
the first dimensions, re-normalised. ``meta.billed_units.input_tokens`` counts the tokens embedded.
``input_type`` picks the model's prompt (``engine.prompts.prompt_for_input_type``): its query
prompt for ``search_query``, its document prompt for ``search_document``, a prompt named
``classification`` or ``clustering`` for those; none of them, the model's default prompt.

Any ``model`` name is accepted and answered with the served reranker's id. ``relevance_score`` is
in [0, 1] as Cohere documents it: the sigmoid of a cross-encoder's logit, ``(cosine + 1) / 2`` when
no cross-encoder is configured (``reranker.kind`` says which). Results are best first, cut to
``top_n``. Errors are ``{"message", "detail", "error_type", "field", "limit"}``: Cohere's clients read
``message``, Jina's ``detail``; bad input is 400 (Cohere's status for it) and 429 carries
``Retry-After``.
"""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from ...engine.prompts import prompt_for_input_type
from ...engine.results import EMBEDDER, RERANKER, EmbedOptions, RerankOptions
from ...errors import EmbeddingsError, InvalidInput, bad_request_status, naming
from . import picks
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


@picks(RERANKER)
def rerank_v2(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /v2/rerank``: ``{id, results: [{index, relevance_score}], meta}``, best first."""
    return _answer(engine, request, "2", with_documents=False)[0]


@picks(RERANKER)
def rerank_v1(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /v1/rerank``: Cohere v1's and Jina's answer (``document: {text}`` with
    ``return_documents``), with Jina's ``usage``."""
    body, tokens = _answer(engine, request, "1", with_documents=request.return_documents)
    body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return body


FLOAT = "float"  # engine.quantize.FLOAT (imported where used: numpy, and the chute file imports this module)
# Cohere's truncate -> the engine's (truncate, truncation_direction): START drops the start, so keeps the end
_TRUNCATION = {"END": (True, "right"), "START": (True, "left"), "NONE": (False, "right")}


def _cut_to(engine: Any, texts: Sequence[str], max_tokens: int, truncate: str, field: str) -> list[str]:
    """Each text cut to ``max_tokens`` tokens of the model (its end dropped, or with START its start),
    by the tokenizer's character offsets; with NONE a longer text is refused by its place."""
    out = list(texts)
    for i, tokens in enumerate(engine.tokenize(texts, add_special_tokens=False)):
        if len(tokens) <= max_tokens:
            continue
        if truncate == "NONE":
            raise InvalidInput(f"{field}[{i}] has {len(tokens)} tokens, over max_tokens={max_tokens}; send "
                               "truncate END or START to cut it", field=f"{field}[{i}]", limit=max_tokens)
        text = texts[i]
        out[i] = text[tokens[-max_tokens]["start"]:] if truncate == "START" else text[:tokens[max_tokens - 1]["stop"]]
    return out


def _embed(engine: Any, request: Any, version: str) -> tuple[dict[str, Any], Any]:
    """The answer both versions share (without its embeddings), and the unit vectors."""
    field = "inputs" if getattr(request, "inputs", None) is not None else "texts"
    texts = request.input_texts()
    dims = getattr(request, "output_dimension", None)
    if dims is not None and dims > engine.dimension:
        raise InvalidInput(f"output_dimension must be 1..{engine.dimension} (the model's dimension), got {dims}",
                           field="output_dimension", limit=engine.dimension)
    mode = request.truncate or "END"
    truncate, direction = _TRUNCATION[mode]
    max_tokens = getattr(request, "max_tokens", None)
    to_embed = _cut_to(engine, texts, max_tokens, mode, field) if max_tokens is not None else texts
    prompt = prompt_for_input_type(request.input_type, engine.prompts) if request.input_type is not None else None
    # Cohere has no knob for long inputs: END/START cut them; NONE or none sent follow the service's
    # long_input setting (truncate by default: END as Cohere's default, NONE a 400; pool: pooled)
    long_input = "truncate" if request.truncate in ("END", "START") else None
    options = EmbedOptions(truncate=truncate, truncation_direction=direction, dimensions=dims, count_tokens=True,
                           prompt_name=prompt, long_input=long_input)
    with naming(field):
        embedded = engine.embed(to_embed, options)
    body = {"id": str(uuid.uuid4()), "texts": texts,
            "meta": {"api_version": {"version": version}, "billed_units": {"input_tokens": embedded.tokens}}}
    return body, embedded.vectors


@picks(EMBEDDER)
def embed_v2(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /v2/embed``: ``{id, embeddings: {type: [...]}, texts, meta, response_type}`` (float by default)."""
    from ...engine.quantize import by_type

    kinds = request.embedding_types or [FLOAT]
    body, vectors = _embed(engine, request, "2")
    return {**body, "embeddings": by_type(vectors, kinds), "response_type": "embeddings_by_type"}


@picks(EMBEDDER)
def embed_v1(engine: Any, request: Any) -> dict[str, Any]:
    """``POST /v1/embed``: ``embeddings_floats`` (a list of vectors), or with ``embedding_types``
    ``embeddings_by_type`` as v2 answers."""
    from ...engine.quantize import by_type

    kinds = request.embedding_types
    body, vectors = _embed(engine, request, "1")
    if kinds is None:
        return {**body, "embeddings": vectors.tolist(), "response_type": "embeddings_floats"}
    return {**body, "embeddings": by_type(vectors, kinds), "response_type": "embeddings_by_type"}


def render_error(err: EmbeddingsError) -> tuple[int, Any]:
    """Cohere's ``message`` and Jina's ``detail`` (same text), with the field and the limit."""
    status = bad_request_status(err)
    return status, {"message": err.message, "detail": err.message, "error_type": err.error_type,
                    "field": err.field, "limit": err.limit}
