"""HTTP client for the embeddings service: ``EmbeddingsClient`` and ``AsyncEmbeddingsClient``.

Needs only httpx, tenacity and tqdm (no torch). Every cord has a method; errors raise the
service's own exception classes (``chutes_embeddings.errors``) rebuilt from the response body,
carrying ``status`` and the server's message.

Retries: a request the server surely did not act on (connection refused, 429) is retried for any
call; a failure after the request may have been acted on (503, a dropped connection) only for
idempotent calls (all but ``store_drop``). The wait honours the server's ``Retry-After``, else
backs off exponentially, and retries stop at ``max_retries`` or when the next wait would pass
``retry_budget_s`` (default 60 s: longer than a server restart). A read timeout is not retried:
``timeout`` is how long you are willing to wait for an answer.

``embed_batch`` takes any number of texts and splits them to the server's limit (read once from
``/info``); an error names the text by its index in your list and carries the vectors computed
before it (``err.partial``), which ``embed_batch(..., resume_from=err.partial)`` continues from.

    >>> client = EmbeddingsClient("http://127.0.0.1:8000")
    >>> client.embed("hello")["dimension"]
    384
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Sequence

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    stop_before_delay,
)
from tqdm.auto import tqdm

from .errors import EmbeddingsError

MAX_BACKOFF_S = 8.0
_TEXT_INDEX = re.compile(r"\btexts\[(\d+)\]")


class EmbeddingsConnectionError(EmbeddingsError):
    """The server could not be reached or dropped the connection (after retries). ``status`` is 0."""

    status = 0
    error_type = "connection"


class EmbeddingsTimeout(EmbeddingsConnectionError):
    """No answer within the client's ``timeout`` (not retried: the server may still be working)."""

    error_type = "timeout"


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    json: dict[str, Any] | None = None
    idempotent: bool = True  # False: retried only when the server surely did not act on it


def _drop_none(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def _not_sent(exc: BaseException) -> bool:
    """True when the server cannot have acted on the request."""
    return isinstance(exc, EmbeddingsError) and (exc.status == 429 or getattr(exc, "not_sent", False))


def _may_retry(exc: BaseException, idempotent: bool) -> bool:
    if isinstance(exc, EmbeddingsTimeout) or not isinstance(exc, EmbeddingsError):
        return False
    if _not_sent(exc):
        return True
    return idempotent and (exc.status == 503 or isinstance(exc, EmbeddingsConnectionError))


def _transport_error(call: _Call, exc: httpx.TransportError) -> EmbeddingsError:
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        return EmbeddingsTimeout(f"{call.method} {call.path}: no answer in time ({type(exc).__name__})")
    err = EmbeddingsConnectionError(f"{call.method} {call.path}: {exc!r}")
    err.not_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))  # type: ignore[attr-defined]
    return err


def shift_text_indices(err: EmbeddingsError, offset: int, partial: list[list[float]]) -> EmbeddingsError:
    """Rename ``texts[i]`` to ``texts[i + offset]`` in an error from one chunk of a larger job,
    and attach the vectors computed before it (``err.partial``)."""
    def shift(text: Any) -> Any:
        return _TEXT_INDEX.sub(lambda m: f"texts[{int(m.group(1)) + offset}]", text) if isinstance(text, str) else text

    err.message = shift(err.message)
    err.args = (err.message,)
    err.field = shift(err.field)
    if isinstance(err.extra.get("errors"), list):
        err.extra["errors"] = [{**e, "field": shift(e.get("field"))} if isinstance(e, dict) else e
                               for e in err.extra["errors"]]
    match = _TEXT_INDEX.search(err.field or "")
    err.index = int(match.group(1)) if match else None  # type: ignore[attr-defined]
    err.partial = partial  # type: ignore[attr-defined]
    return err


class _ClientBase:
    """Everything without I/O: configuration, request building, response decoding, retry policy."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 10,
        backoff_s: float = 0.5,
        retry_budget_s: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.retry_budget_s = retry_budget_s
        self._batch_limit: int | None = None

    def _retry_kwargs(self, call: _Call) -> dict[str, Any]:
        return {
            "retry": retry_if_exception(lambda exc: _may_retry(exc, call.idempotent)),
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

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            err = EmbeddingsError.from_body(response.status_code, body)
            retry_after = response.headers.get("Retry-After", "")
            err.retry_after_s = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else None  # type: ignore[attr-defined]
            raise err
        return body

    # request builders shared by both clients ---------------------------------------------
    @staticmethod
    def _embed(inputs: str | Sequence[str], normalize: bool, truncate: bool, pooling: str | None) -> _Call:
        payload = inputs if isinstance(inputs, str) else list(inputs)
        return _Call("POST", "/embed", _drop_none(inputs=payload, normalize=normalize, truncate=truncate, pooling=pooling))

    @staticmethod
    def _embed_batch_chunk(texts: Sequence[str], batch_size: int, normalize: bool) -> _Call:
        return _Call("POST", "/embed/batch", {"texts": list(texts), "batch_size": batch_size, "normalize": normalize})

    @staticmethod
    def _similarity(source_text: str, target_texts: Sequence[str], normalize: bool) -> _Call:
        return _Call("POST", "/similarity", {"source_text": source_text, "target_texts": list(target_texts), "normalize": normalize})

    @staticmethod
    def _rerank(query: str, texts: Sequence[str], top_k: int | None, raw_scores: bool = False) -> _Call:
        return _Call("POST", "/rerank", _drop_none(query=query, texts=list(texts), top_k=top_k,
                                                   raw_scores=raw_scores or None))

    @staticmethod
    def _search(query: str, corpus: Sequence[str], top_k: int, threshold: float | None, rerank: bool = False,
                rerank_candidates: int | None = None) -> _Call:
        return _Call("POST", "/search", _drop_none(query=query, corpus=list(corpus), top_k=top_k, threshold=threshold,
                                                   rerank=rerank or None, rerank_candidates=rerank_candidates))

    @staticmethod
    def _cluster(texts: Sequence[str], n_clusters: int | None, method: str) -> _Call:
        return _Call("POST", "/cluster", _drop_none(texts=list(texts), n_clusters=n_clusters, method=method))

    @staticmethod
    def _store_add(texts: Sequence[str], collection: str, ids: Sequence[str] | None,
                   metadata: dict[str, Any] | Sequence[dict[str, Any]] | None,
                   vectors: Sequence[Sequence[float]] | None = None, vector_model: str | None = None) -> _Call:
        meta = metadata if metadata is None or isinstance(metadata, dict) else list(metadata)
        return _Call("POST", "/store/add", _drop_none(
            collection=collection, texts=list(texts), ids=None if ids is None else list(ids), metadata=meta,
            vectors=None if vectors is None else [list(map(float, v)) for v in vectors], vector_model=vector_model))

    @staticmethod
    def _store_search(query: str | None, collection: str, top_k: int, filter_metadata: dict[str, Any] | None,
                      threshold: float | None, query_vector: Sequence[float] | None = None, rerank: bool = False,
                      rerank_candidates: int | None = None) -> _Call:
        return _Call("POST", "/store/search", _drop_none(
            collection=collection, query=query, top_k=top_k, filter_metadata=filter_metadata, threshold=threshold,
            query_vector=None if query_vector is None else list(map(float, query_vector)),
            rerank=rerank or None, rerank_candidates=rerank_candidates))

    @staticmethod
    def _store_get(ids: Sequence[str] | None, collection: str, include_vectors: bool,
                   filter_metadata: dict[str, Any] | None = None, limit: int | None = None) -> _Call:
        return _Call("POST", "/store/get", _drop_none(
            collection=collection, ids=None if ids is None else list(ids), include_vectors=include_vectors,
            filter_metadata=filter_metadata, limit=limit))

    @staticmethod
    def _store_delete(collection: str, ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None) -> _Call:
        return _Call("POST", "/store/delete", _drop_none(collection=collection, ids=None if ids is None else list(ids),
                                                         filter_metadata=filter_metadata))

    @staticmethod
    def _store_drop(collection: str) -> _Call:
        # a retry after the drop happened would answer 404: only retried when surely not sent
        return _Call("POST", "/store/drop", {"collection": collection}, idempotent=False)

    @staticmethod
    def _chunks(texts: Sequence[str], size: int, start: int = 0) -> list[tuple[int, Sequence[str]]]:
        """(offset, chunk) pairs covering ``texts[start:]``."""
        return [(i, texts[i : i + size]) for i in range(start, len(texts), size)]


class EmbeddingsClient(_ClientBase):
    """Synchronous client. Use as a context manager or call ``close()``.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` or the chute's public URL.
        api_key: sent as ``Authorization: Bearer <api_key>``.
        timeout: seconds per request.
        max_retries: retries at most (see the module docstring for which failures are retried).
        transport: an httpx transport (tests inject ``httpx.MockTransport``).
        retry_budget_s: no retry starts once waiting for it would pass this many seconds.
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 10, backoff_s: float = 0.5, transport: httpx.BaseTransport | None = None,
                 retry_budget_s: float = 60.0) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, backoff_s, retry_budget_s)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport)

    def __enter__(self) -> "EmbeddingsClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call) -> Any:
        for attempt in Retrying(**self._retry_kwargs(call)):
            with attempt:
                try:
                    response = self._http.request(call.method, call.path, json=call.json)
                except httpx.TransportError as exc:
                    raise _transport_error(call, exc) from exc
                return self._decode(response)

    def embed(self, inputs: str | Sequence[str], normalize: bool = True, truncate: bool = True,
              pooling: str | None = None) -> dict[str, Any]:
        """POST /embed. A str gives ``embeddings`` as one vector; a list gives a list of vectors."""
        return self._send(self._embed(inputs, normalize, truncate, pooling))

    def embed_batch(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True,
                    progress: bool = False, resume_from: Sequence[list[float]] | None = None) -> list[list[float]]:
        """Embed any number of texts through /embed/batch, split to the server's limit, in input order.

        Args:
            resume_from: vectors of ``texts[:len(resume_from)]`` from an earlier call (an error's
                ``partial``); only the rest is sent.

        Raises:
            EmbeddingsError: naming the failing text by its index in ``texts``, with the vectors
                computed before it in ``err.partial``.
        """
        limit = self._batch_limit or self.info()["limits"]["max_batch_texts"]
        self._batch_limit = limit
        vectors: list[list[float]] = list(resume_from or [])
        with tqdm(total=len(texts), initial=len(vectors), disable=not progress, unit="text") as bar:
            for offset, chunk in self._chunks(texts, limit, len(vectors)):
                try:
                    body = self._send(self._embed_batch_chunk(chunk, batch_size, normalize))
                except EmbeddingsError as err:
                    raise shift_text_indices(err, offset, vectors) from None
                vectors.extend(body["embeddings"])
                bar.update(len(chunk))
        return vectors

    def similarity(self, source_text: str, target_texts: Sequence[str], normalize: bool = True) -> dict[str, Any]:
        """POST /similarity."""
        return self._send(self._similarity(source_text, target_texts, normalize))

    def rerank(self, query: str, texts: Sequence[str], top_k: int | None = None,
               raw_scores: bool = False) -> dict[str, Any]:
        """POST /rerank: texts by relevance (``reranker`` in the answer says what scored them)."""
        return self._send(self._rerank(query, texts, top_k, raw_scores))

    def search(self, query: str, corpus: Sequence[str], top_k: int = 10, threshold: float | None = None,
               rerank: bool = False, rerank_candidates: int | None = None) -> dict[str, Any]:
        """POST /search (``rerank``: the best ``rerank_candidates`` by vector, reordered by the reranker)."""
        return self._send(self._search(query, corpus, top_k, threshold, rerank, rerank_candidates))

    def cluster(self, texts: Sequence[str], n_clusters: int | None = None, method: str = "kmeans") -> dict[str, Any]:
        """POST /cluster."""
        return self._send(self._cluster(texts, n_clusters, method))

    def health(self) -> dict[str, Any]:
        """GET /health."""
        return self._send(_Call("GET", "/health"))

    def info(self) -> dict[str, Any]:
        """GET /info."""
        return self._send(_Call("GET", "/info"))

    def store_add(self, texts: Sequence[str], collection: str = "default", ids: Sequence[str] | None = None,
                  metadata: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
                  vectors: Sequence[Sequence[float]] | None = None, vector_model: str | None = None) -> dict[str, Any]:
        """POST /store/add: upsert texts (ids default to a hash of the text); with ``vectors``, yours."""
        return self._send(self._store_add(texts, collection, ids, metadata, vectors, vector_model))

    def store_search(self, query: str | None = None, collection: str = "default", top_k: int = 10,
                     filter_metadata: dict[str, Any] | None = None, threshold: float | None = None,
                     query_vector: Sequence[float] | None = None, rerank: bool = False,
                     rerank_candidates: int | None = None) -> dict[str, Any]:
        """POST /store/search, by a query text or by your ``query_vector`` (``rerank``: two-stage)."""
        return self._send(self._store_search(query, collection, top_k, filter_metadata, threshold, query_vector,
                                             rerank, rerank_candidates))

    def store_get(self, ids: Sequence[str] | None = None, collection: str = "default", include_vectors: bool = False,
                  filter_metadata: dict[str, Any] | None = None, limit: int | None = None) -> dict[str, Any]:
        """POST /store/get: by ids, or up to ``limit`` records a filter matches."""
        return self._send(self._store_get(ids, collection, include_vectors, filter_metadata, limit))

    def add_to_store(self, texts: Sequence[str], collection: str = "default", **options: Any) -> dict[str, Any]:
        """``store_add`` under the name the original chute's documentation uses."""
        return self.store_add(texts, collection, **options)

    def search_store(self, query: str, collection: str = "default", top_k: int = 10, **options: Any) -> dict[str, Any]:
        """``store_search`` under the name the original chute's documentation uses."""
        return self.store_search(query, collection, top_k, **options)

    def store_delete(self, collection: str = "default", ids: Sequence[str] | None = None,
                     filter_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST /store/delete: by ids or by filter."""
        return self._send(self._store_delete(collection, ids, filter_metadata))

    def store_drop(self, collection: str) -> dict[str, Any]:
        """POST /store/drop."""
        return self._send(self._store_drop(collection))

    def store_collections(self) -> dict[str, Any]:
        """GET /store/collections."""
        return self._send(_Call("GET", "/store/collections"))


class AsyncEmbeddingsClient(_ClientBase):
    """The asyncio twin of ``EmbeddingsClient`` (same methods, awaited)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 10, backoff_s: float = 0.5, transport: httpx.AsyncBaseTransport | None = None,
                 max_concurrency: int = 4, retry_budget_s: float = 60.0) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, backoff_s, retry_budget_s)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport)
        self.max_concurrency = max_concurrency

    async def __aenter__(self) -> "AsyncEmbeddingsClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call) -> Any:
        async for attempt in AsyncRetrying(**self._retry_kwargs(call)):
            with attempt:
                try:
                    response = await self._http.request(call.method, call.path, json=call.json)
                except httpx.TransportError as exc:
                    raise _transport_error(call, exc) from exc
                return self._decode(response)

    async def embed(self, inputs: str | Sequence[str], normalize: bool = True, truncate: bool = True,
                    pooling: str | None = None) -> dict[str, Any]:
        return await self._send(self._embed(inputs, normalize, truncate, pooling))

    async def embed_batch(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True,
                          progress: bool = False, resume_from: Sequence[list[float]] | None = None) -> list[list[float]]:
        """Like the sync version; up to ``max_concurrency`` chunks are in flight at once. On an
        error, ``err.partial`` holds the vectors of the chunks before the first failed one."""
        limit = self._batch_limit or (await self.info())["limits"]["max_batch_texts"]
        self._batch_limit = limit
        vectors: list[list[float]] = list(resume_from or [])
        gate = asyncio.Semaphore(self.max_concurrency)
        with tqdm(total=len(texts), initial=len(vectors), disable=not progress, unit="text") as bar:

            async def one(chunk: Sequence[str]) -> list[list[float]]:
                async with gate:
                    body = await self._send(self._embed_batch_chunk(chunk, batch_size, normalize))
                bar.update(len(chunk))
                return body["embeddings"]

            chunks = self._chunks(texts, limit, len(vectors))
            parts = await asyncio.gather(*(one(c) for _, c in chunks), return_exceptions=True)
        for (offset, _), part in zip(chunks, parts):
            if isinstance(part, BaseException):
                if isinstance(part, EmbeddingsError):
                    raise shift_text_indices(part, offset, vectors) from None
                raise part
            vectors.extend(part)
        return vectors

    async def similarity(self, source_text: str, target_texts: Sequence[str], normalize: bool = True) -> dict[str, Any]:
        return await self._send(self._similarity(source_text, target_texts, normalize))

    async def rerank(self, query: str, texts: Sequence[str], top_k: int | None = None,
                     raw_scores: bool = False) -> dict[str, Any]:
        return await self._send(self._rerank(query, texts, top_k, raw_scores))

    async def search(self, query: str, corpus: Sequence[str], top_k: int = 10, threshold: float | None = None,
                     rerank: bool = False, rerank_candidates: int | None = None) -> dict[str, Any]:
        return await self._send(self._search(query, corpus, top_k, threshold, rerank, rerank_candidates))

    async def cluster(self, texts: Sequence[str], n_clusters: int | None = None, method: str = "kmeans") -> dict[str, Any]:
        return await self._send(self._cluster(texts, n_clusters, method))

    async def health(self) -> dict[str, Any]:
        return await self._send(_Call("GET", "/health"))

    async def info(self) -> dict[str, Any]:
        return await self._send(_Call("GET", "/info"))

    async def store_add(self, texts: Sequence[str], collection: str = "default", ids: Sequence[str] | None = None,
                        metadata: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
                        vectors: Sequence[Sequence[float]] | None = None,
                        vector_model: str | None = None) -> dict[str, Any]:
        return await self._send(self._store_add(texts, collection, ids, metadata, vectors, vector_model))

    async def store_search(self, query: str | None = None, collection: str = "default", top_k: int = 10,
                           filter_metadata: dict[str, Any] | None = None, threshold: float | None = None,
                           query_vector: Sequence[float] | None = None, rerank: bool = False,
                           rerank_candidates: int | None = None) -> dict[str, Any]:
        return await self._send(self._store_search(query, collection, top_k, filter_metadata, threshold, query_vector,
                                                   rerank, rerank_candidates))

    async def store_get(self, ids: Sequence[str] | None = None, collection: str = "default",
                        include_vectors: bool = False, filter_metadata: dict[str, Any] | None = None,
                        limit: int | None = None) -> dict[str, Any]:
        return await self._send(self._store_get(ids, collection, include_vectors, filter_metadata, limit))

    async def add_to_store(self, texts: Sequence[str], collection: str = "default", **options: Any) -> dict[str, Any]:
        return await self.store_add(texts, collection, **options)

    async def search_store(self, query: str, collection: str = "default", top_k: int = 10,
                           **options: Any) -> dict[str, Any]:
        return await self.store_search(query, collection, top_k, **options)

    async def store_delete(self, collection: str = "default", ids: Sequence[str] | None = None,
                           filter_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._send(self._store_delete(collection, ids, filter_metadata))

    async def store_drop(self, collection: str) -> dict[str, Any]:
        return await self._send(self._store_drop(collection))

    async def store_collections(self) -> dict[str, Any]:
        return await self._send(_Call("GET", "/store/collections"))
