"""text-embeddings-inference's API under ``/tei``, so any TEI client pointed at ``<service>/tei`` works.

Routes and shapes follow TEI 1.9.3's OpenAPI document (``shared/reference/tei-openapi.json``):
``POST /tei`` and ``/tei/embed`` (``[[float]]``), ``/tei/embed_all`` (``[[[float]]]``),
``/tei/embed_sparse`` (``[[{index, value}]]``: the sparse model's non-zero weights),
``/tei/tokenize``, ``/tei/rerank`` (``[{index, score, text?}]`` best first), ``/tei/similarity``
(``[float]``: each sentence's cosine to the source, in input order), ``GET /tei/info`` and
``/tei/health`` (``/tei/v1/embeddings`` and ``/tei/metrics``, which TEI serves too, are the OpenAI
dialect's route and the Prometheus text under this prefix). Errors are TEI's ``{"error": str,
"error_type": ...}``: an empty batch is 400 ``Empty``, bad input 422 ``Validation`` (413 for a
body over the size limit), a full queue 429 ``Overloaded``, no backend 503 ``Unhealthy``, and
``/tei/embed_sparse`` without a sparse model 424 ``Backend`` (TEI's answer when its model is not
SPLADE). Token-id inputs (which TEI decodes with its own tokenizer) are refused as ``Validation``,
and so is a ``prompt_name`` the model's sentence-transformers config does not define (the message
names those it does); an omitted ``prompt_name`` is the model's default prompt, if it has one
(TEI's ``--default-prompt-name``). ``auto_truncate`` is true: an omitted ``truncate`` cuts long inputs,
unless the service pools them (``EMBEDDINGS_LONG_INPUT=pool``; an explicit ``truncate: true`` still cuts).
"""

from __future__ import annotations

from typing import Any

from ...engine.results import EMBEDDER, RERANKER, SPARSE, EmbedOptions, RerankOptions
from ...errors import (
    BackendUnavailable,
    EmbeddingsError,
    InvalidInput,
    MalformedRequest,
    NotConfigured,
    Overloaded,
    naming,
)
from . import picks

name = "tei"
AUTO_TRUNCATE = True


def _texts(inputs: str | list[str]) -> list[str]:
    return [inputs] if isinstance(inputs, str) else list(inputs)


def _truncation(request: Any) -> dict[str, Any]:
    truncate = AUTO_TRUNCATE if request.truncate is None else request.truncate
    return {"truncate": truncate, "truncation_direction": request.truncation_direction.lower()}


@picks(EMBEDDER)
def embed(engine: Any, request: Any) -> list[list[float]]:
    """``POST /tei/embed``: one vector per input, always a list of vectors. TEI has no knob for long
    inputs: an explicit ``truncate: true`` cuts them, otherwise the service's ``long_input`` setting
    decides (``truncate`` by default: auto-truncate, or with ``truncate: false`` a 422 as TEI's)."""
    options = EmbedOptions(normalize=request.normalize, dimensions=request.dimensions,
                           prompt_name=request.prompt_name, long_input="truncate" if request.truncate else None,
                           **_truncation(request))
    with naming("inputs"):
        return engine.embed(_texts(request.inputs), options).vectors.tolist()


@picks(EMBEDDER)
def embed_all(engine: Any, request: Any) -> list[list[list[float]]]:
    """``POST /tei/embed_all``: every input's token embeddings."""
    with naming("inputs"):
        return [t.tolist() for t in engine.embed_tokens(_texts(request.inputs), prompt_name=request.prompt_name,
                                                        **_truncation(request))]


@picks(SPARSE)
def embed_sparse(engine: Any, request: Any) -> list[list[dict[str, Any]]]:
    """``POST /tei/embed_sparse``: each input's non-zero SPLADE weights as ``{index, value}``,
    indices ascending."""
    if request.prompt_name is not None:  # prompts are the embedding model's; the sparse model has none
        raise InvalidInput(f"prompt_name {request.prompt_name!r}: the sparse model defines no prompts",
                           field="prompt_name", limit=[])
    with naming("inputs"):
        encoded = engine.embed_sparse(_texts(request.inputs), **_truncation(request))
    return [[{"index": i, "value": v} for i, v in zip(vector.indices, vector.values)] for vector in encoded.vectors]


@picks(EMBEDDER)
def tokenize(engine: Any, request: Any) -> list[list[dict[str, Any]]]:
    """``POST /tei/tokenize``: each input's tokens with their character offsets."""
    return engine.tokenize(_texts(request.inputs), add_special_tokens=request.add_special_tokens,
                           prompt_name=request.prompt_name)


@picks(EMBEDDER)
def decode(engine: Any, request: Any) -> list[str]:
    """``POST /tei/decode``: each id sequence as text (one string for one sequence, in a list)."""
    flat = isinstance(request.ids[0], int)
    try:
        return engine.decode([request.ids] if flat else request.ids, skip_special_tokens=request.skip_special_tokens)
    except InvalidInput as err:
        if flat and err.field and err.field.startswith("ids[0]"):  # name the place as it was sent
            place = "ids" + err.field[len("ids[0]"):]
            err.message = err.message.replace(err.field, place, 1)
            err.field, err.args = place, (err.message,)
        raise


def is_similarity(body: Any) -> bool:
    """Whether a body sent to TEI's ``POST /`` is a similarity request (its ``inputs`` an object)."""
    return isinstance(body, dict) and isinstance(body.get("inputs"), dict)


@picks(EMBEDDER)
def similarity(engine: Any, request: Any) -> list[float]:
    """``POST /tei/similarity``: each sentence's cosine to the source sentence, in input order
    (every sentence read with ``parameters.prompt_name``)."""
    prompt_name = request.parameters.prompt_name if request.parameters else None
    with naming("inputs.sentences"):
        ranking = engine.similarity(request.inputs.source_sentence, request.inputs.sentences, prompt_name=prompt_name)
    scores = [0.0] * len(request.inputs.sentences)
    for hit in ranking.hits:
        scores[hit.index] = hit.score
    return scores


@picks(RERANKER)
def rerank(engine: Any, request: Any) -> list[dict[str, Any]]:
    """``POST /tei/rerank``: every text with its score, best first (TEI has no top_n).

    As TEI: the sigmoid of the cross-encoder's logit, or the logit itself with ``raw_scores``
    (without a cross-encoder: ``(cosine + 1) / 2``, or the cosine).
    """
    with naming("texts"):
        ranked = engine.rerank(request.query, request.texts, RerankOptions(**_truncation(request)))
    row = ranked.logits if request.raw_scores else ranked.relevance()
    return [{"index": i, "score": float(row[i]), **({"text": request.texts[i]} if request.return_text else {})}
            for i in ranked.order()]


def info(engine: Any) -> dict[str, Any]:
    """``GET /tei/info``: TEI's ``Info`` for the served model and this service's limits."""
    state = engine.info()
    embedder, stats = state.embedder, state.embedder.batching
    return {
        "model_id": embedder.model,
        "model_sha": None,
        "model_dtype": "int8" if embedder.runtime.endswith("int8") else "float32",
        "served_model_name": embedder.model,
        "model_type": {"embedding": {"pooling": state.pooling}},
        "max_concurrent_requests": stats.max_queue,
        "max_input_length": embedder.max_input_tokens,
        "max_batch_tokens": stats.max_batch_tokens,
        "max_batch_requests": stats.max_batch_size,
        "max_client_batch_size": state.limits["max_embed_inputs"],
        "auto_truncate": AUTO_TRUNCATE,
        "tokenization_workers": 1,
        "version": state.version,
        "sha": None,
        "docker_label": None,
    }


def health(engine: Any) -> None:
    """``GET /tei/health``: returns when the service can embed (an empty 200), else raises.

    Raises:
        BackendUnavailable: no backend can answer (503 ``Unhealthy``).
    """
    if not engine.is_healthy():
        raise BackendUnavailable("unhealthy")


def model_info(engine: Any, model: str) -> dict[str, Any]:
    """``GET /tei/{model}/info``: ``info`` of the served embedder ``model``."""
    return info(engine.using(EMBEDDER, model, "GET /tei/{model}/info"))


def model_health(engine: Any, model: str) -> None:
    """``GET /tei/{model}/health``: ``health`` of the served embedder ``model``."""
    health(engine.using(EMBEDDER, model, "GET /tei/{model}/health"))


def render_error(err: EmbeddingsError) -> tuple[int, Any]:
    """TEI's ``{"error", "error_type"}`` with TEI's status for the same failure."""
    if isinstance(err, InvalidInput):
        if err.extra.get("reason") == "empty":
            return MalformedRequest.status, {"error": err.message, "error_type": "Empty"}
        return err.status, {"error": err.message, "error_type": "Validation"}
    if isinstance(err, Overloaded):
        return err.status, {"error": err.message, "error_type": "Overloaded"}
    if isinstance(err, BackendUnavailable):
        return err.status, {"error": err.message, "error_type": "Unhealthy"}
    if isinstance(err, NotConfigured):  # TEI: 424 Backend for a route its model cannot serve
        return err.status, {"error": err.message, "error_type": "Backend"}
    return err.status, {"error": err.message, "error_type": "Backend" if err.server_side else "Validation"}
