"""The client's I/O-free half: configuration, request building, response decoding and the retry policy.

``EmbeddingsClient`` and ``AsyncEmbeddingsClient`` (``sync.py``, ``aio.py``) are twins over
``ClientBase``: each adds only the sending, so a rule is written once for both. Which failures are
retried is read from the error classes (``retryable``, ``acted_on`` in ``chutes_embeddings.errors``).

A store access token (``store_token``, see ``chutes_embeddings/access.py``) is given once, at
construction, and sent as the ``token`` field of every request body: on Chutes the gateway forwards
the body and none of the caller's headers. ``api_key`` is the platform's key, sent as a header for
the gateway. ``model`` (and ``rerank_model``), also given once, pick one of the service's models
(``GET /v1/models``) for every request that uses an embedder (a reranker); unset, the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import httpx
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, stop_any, stop_before_delay

from ..access import TOKEN_FIELD
from ..errors import EmbeddingsConnectionError, EmbeddingsError, EmbeddingsTimeout, InvalidInput, for_status

MAX_BACKOFF_S = 8.0
# The routes whose ``model`` names an embedder, and those whose names a reranker.
EMBEDDER_PATHS = frozenset({"/embed", "/embed/batch", "/similarity", "/search", "/cluster", "/store/add",
                            "/store/search"})
RERANKER_PATHS = frozenset({"/rerank"})
_TEXT_INDEX = re.compile(r"\btexts\[(\d+)\]")
_DOCUMENT_INDEX = re.compile(r"\bdocuments\[(\d+)\]")
# a document's text travels as JSON: at most this many bytes a character, escapes included
BODY_BYTES_PER_CHAR = 4
# the ``long_input`` choices that answer one vector per text (``windows`` answers one per window)
ONE_VECTOR = ("truncate", "pool")


@dataclass(frozen=True)
class Call:
    """One request to send: what the twins' ``_send`` needs, and whether a retry is always safe."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    idempotent: bool = True  # False: retried only when the server surely did not act on it


def _drop_none(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def one_vector_each(long_input: str | None, caller: str) -> None:
    """Refuse ``long_input`` ``windows`` for ``caller``, which answers one vector per text (the client's
    ``embed`` answers windows, with each one's span), before anything is sent, as the server refuses
    it on such routes: ``InvalidInput`` naming the field and the choices."""
    if long_input is not None and long_input not in ONE_VECTOR:
        raise InvalidInput(f"long_input {long_input!r} is not one of {list(ONE_VECTOR)} for {caller}, which answers "
                           "one vector per text; the client's embed answers windows with their spans",
                           field="long_input", limit=list(ONE_VECTOR))


def served_model(info: dict[str, Any], wanted: str | None) -> str:
    """The served name of the model ``wanted`` names, read from ``GET /info`` (its ``models``); the
    default embedder's for None or a name no model claims (the default may answer it: ``*``)."""
    found = (m["name"] for m in info.get("models", ()) if wanted is not None and wanted in m["names"])
    return next(found, info["model"])


def may_retry(exc: BaseException, idempotent: bool) -> bool:
    """Whether a failed call may be sent again: the error must be ``retryable``, and one the server may
    have ``acted_on`` (a 503, a dropped connection) is sent again only for an idempotent call.

    For an answer, the class its status names decides, whatever class its body names (a proxy's 503
    is retried however it is worded); a connection error, which has no answer, decides for itself.
    """
    if not isinstance(exc, EmbeddingsError):
        return False
    rule = exc if isinstance(exc, EmbeddingsConnectionError) else for_status(exc.status)
    return rule.retryable and (idempotent or not rule.acted_on)


def transport_error(call: Call, exc: httpx.TransportError) -> EmbeddingsError:
    """The service error for an httpx transport failure: a timeout, or a connection error that says
    whether the request can have reached the server (``acted_on``)."""
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        return EmbeddingsTimeout(f"{call.method} {call.path}: no answer in time ({type(exc).__name__})")
    err = EmbeddingsConnectionError(f"{call.method} {call.path}: {exc!r}")
    err.acted_on = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    return err


def shift_text_indices(err: EmbeddingsError, offset: int, partial: list[list[float]],
                       pattern: re.Pattern[str] = _TEXT_INDEX, name: str = "texts") -> EmbeddingsError:
    """Rename ``texts[i]`` (``name[i]``) to ``texts[i + offset]`` in an error from one chunk of a
    larger job, and attach the vectors computed before it (``err.partial``)."""
    def shift(text: Any) -> Any:
        return pattern.sub(lambda m: f"{name}[{int(m.group(1)) + offset}]", text) if isinstance(text, str) else text

    err.message = shift(err.message)
    err.args = (err.message,)
    err.field = shift(err.field)
    if isinstance(err.extra.get("errors"), list):
        err.extra["errors"] = [{**e, "field": shift(e.get("field"))} if isinstance(e, dict) else e
                               for e in err.extra["errors"]]
    match = pattern.search(err.field or "")
    err.index = int(match.group(1)) if match else None  # type: ignore[attr-defined]
    err.partial = partial  # type: ignore[attr-defined]
    return err


class ClientBase:
    """Everything without I/O: configuration, request building, response decoding, retry policy."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 10,
        backoff_s: float = 0.5,
        retry_budget_s: float = 60.0,
        store_token: str | None = None,
        model: str | None = None,
        rerank_model: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.rerank_model = rerank_model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._store_token = store_token  # never in a repr, a log line or an error message
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.retry_budget_s = retry_budget_s
        self._batch_limit: int | None = None

    def _retry_kwargs(self, call: Call) -> dict[str, Any]:
        return {
            "retry": retry_if_exception(lambda exc: may_retry(exc, call.idempotent)),
            "stop": stop_any(stop_after_attempt(self.max_retries + 1), stop_before_delay(self.retry_budget_s)),
            "wait": self._wait_s,
            "reraise": True,
        }

    def _wait_s(self, state: RetryCallState) -> float:
        """The server's Retry-After when it sent one, else exponential backoff."""
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after_s", None)
        if hint:
            return float(hint)
        return min(self.backoff_s * 2 ** (state.attempt_number - 1), MAX_BACKOFF_S)

    def _body(self, call: Call) -> dict[str, Any] | None:
        """The JSON body ``call`` sends: its own, with the client's model for its route and the store
        token when the client has them."""
        if call.json is None:
            return None
        model = self.model if call.path in EMBEDDER_PATHS else None
        model = self.rerank_model if call.path in RERANKER_PATHS else model
        extra = {**({"model": model} if model and "model" not in call.json else {}),
                 **({TOKEN_FIELD: self._store_token} if self._store_token is not None else {})}
        return {**call.json, **extra} if extra else call.json

    def _store_collections(self) -> Call:
        # a GET has no body, and on Chutes no header of the caller's arrives: with a token, POST it
        return Call("POST", "/store/collections", {}) if self._store_token else Call("GET", "/store/collections")

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.is_error:
            err = EmbeddingsError.from_body(response.status_code, body)
            retry_after = response.headers.get("Retry-After", "")
            err.retry_after_s = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else None  # type: ignore[attr-defined]
            raise err
        return body

    # request builders shared by both clients ---------------------------------------------
    # ``long`` below: ``long_input`` and ``window_overlap`` (README, "Long inputs"); None: the server's setting
    @staticmethod
    def _embed(inputs: str | Sequence[str], normalize: bool, truncate: bool, pooling: str | None,
               **long: Any) -> Call:
        payload = inputs if isinstance(inputs, str) else list(inputs)
        return Call("POST", "/embed", _drop_none(inputs=payload, normalize=normalize, truncate=truncate,
                                                 pooling=pooling, **long))

    @staticmethod
    def _embed_batch_chunk(texts: Sequence[str], batch_size: int, normalize: bool, **long: Any) -> Call:
        return Call("POST", "/embed/batch", _drop_none(texts=list(texts), batch_size=batch_size, normalize=normalize,
                                                       **long))

    @staticmethod
    def _similarity(source_text: str, target_texts: Sequence[str], normalize: bool, **long: Any) -> Call:
        return Call("POST", "/similarity", _drop_none(source_text=source_text, target_texts=list(target_texts),
                                                      normalize=normalize, **long))

    @staticmethod
    def _rerank(query: str, texts: Sequence[str], top_k: int | None, raw_scores: bool = False) -> Call:
        return Call("POST", "/rerank", _drop_none(query=query, texts=list(texts), top_k=top_k,
                                                  raw_scores=raw_scores or None))

    @staticmethod
    def _search(query: str, corpus: Sequence[str], top_k: int, threshold: float | None, rerank: bool = False,
                rerank_candidates: int | None = None, **retrieval: Any) -> Call:
        return Call("POST", "/search", _drop_none(query=query, corpus=list(corpus), top_k=top_k, threshold=threshold,
                                                  rerank=rerank or None, rerank_candidates=rerank_candidates,
                                                  **retrieval))

    @staticmethod
    def _cluster(texts: Sequence[str], n_clusters: int | None, method: str, **long: Any) -> Call:
        return Call("POST", "/cluster", _drop_none(texts=list(texts), n_clusters=n_clusters, method=method, **long))

    @staticmethod
    def _store_add(texts: Sequence[str], collection: str, ids: Sequence[str] | None,
                   metadata: dict[str, Any] | Sequence[dict[str, Any]] | None,
                   vectors: Sequence[Sequence[float]] | None = None, vector_model: str | None = None) -> Call:
        meta = metadata if metadata is None or isinstance(metadata, dict) else list(metadata)
        return Call("POST", "/store/add", _drop_none(
            collection=collection, texts=list(texts), ids=None if ids is None else list(ids), metadata=meta,
            vectors=None if vectors is None else [list(map(float, v)) for v in vectors], vector_model=vector_model))

    @staticmethod
    def _store_search(query: str | None, collection: str, top_k: int, filter_metadata: dict[str, Any] | None,
                      threshold: float | None, query_vector: Sequence[float] | None = None, rerank: bool = False,
                      rerank_candidates: int | None = None, **retrieval: Any) -> Call:
        # retrieval: mode, fusion, alpha, rrf_k, leg_candidates, query_sparse, group_by
        return Call("POST", "/store/search", _drop_none(
            collection=collection, query=query, top_k=top_k, filter_metadata=filter_metadata, threshold=threshold,
            query_vector=None if query_vector is None else list(map(float, query_vector)),
            rerank=rerank or None, rerank_candidates=rerank_candidates, **retrieval))

    @staticmethod
    def _sparse_query(query_sparse: dict[int, float] | None) -> dict[str, list[Any]] | None:
        """``{id: weight}`` as the service takes a sparse query (ids ascending)."""
        if query_sparse is None:
            return None
        ids = sorted(query_sparse)
        return {"indices": [int(i) for i in ids], "values": [float(query_sparse[i]) for i in ids]}

    @staticmethod
    def _store_get(ids: Sequence[str] | None, collection: str, include_vectors: bool,
                   filter_metadata: dict[str, Any] | None = None, limit: int | None = None,
                   document_ids: Sequence[str] | None = None) -> Call:
        return Call("POST", "/store/get", _drop_none(
            collection=collection, ids=None if ids is None else list(ids), include_vectors=include_vectors,
            filter_metadata=filter_metadata, limit=limit,
            document_ids=None if document_ids is None else list(document_ids)))

    @staticmethod
    def _store_delete(collection: str, ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None,
                      document_ids: Sequence[str] | None = None) -> Call:
        return Call("POST", "/store/delete", _drop_none(
            collection=collection, ids=None if ids is None else list(ids), filter_metadata=filter_metadata,
            document_ids=None if document_ids is None else list(document_ids)))

    @staticmethod
    def _store_drop(collection: str) -> Call:
        # a retry after the drop happened would answer 404: only retried when surely not sent
        return Call("POST", "/store/drop", {"collection": collection}, idempotent=False)

    @staticmethod
    def _store_add_documents(documents: Sequence[dict[str, Any]], collection: str,
                             chunking: dict[str, Any] | None) -> Call:
        # re-adding a document replaces all its chunks: always safe to send again
        return Call("POST", "/store/add", _drop_none(
            collection=collection, chunking=chunking,
            documents=[_drop_none(id=d["id"], text=d["text"], metadata=d.get("metadata")) for d in documents]))

    @staticmethod
    def _chunks(texts: Sequence[str], size: int, start: int = 0) -> list[tuple[int, Sequence[str]]]:
        """(offset, chunk) pairs covering ``texts[start:]``."""
        return [(i, texts[i : i + size]) for i in range(start, len(texts), size)]
