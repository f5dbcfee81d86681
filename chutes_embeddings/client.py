"""HTTP client for the embeddings service: ``EmbeddingsClient`` and ``AsyncEmbeddingsClient``.

Needs only httpx, tenacity and tqdm (no torch). Every cord has a method; errors raise the
service's own exception classes (``chutes_embeddings.errors``) rebuilt from the response body,
carrying ``status`` and the server's message. 429, 503 and connection failures are retried with
exponential backoff. ``embed_batch`` takes any number of texts and splits them to the server's
limit (read once from ``/info``).

    >>> client = EmbeddingsClient("http://127.0.0.1:8000")
    >>> client.embed("hello")["dimension"]
    384
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Sequence

import httpx
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tqdm.auto import tqdm

from .errors import EmbeddingsError

RETRY_STATUSES = (429, 503)


class EmbeddingsConnectionError(EmbeddingsError):
    """The server could not be reached (after retries). ``status`` is 0: no answer came."""

    status = 0
    error_type = "connection"


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    json: dict[str, Any] | None = None


def _drop_none(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, EmbeddingsConnectionError) or (
        isinstance(exc, EmbeddingsError) and exc.status in RETRY_STATUSES
    )


class _ClientBase:
    """Everything without I/O: configuration, request building, response decoding, retry policy."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._batch_limit: int | None = None

    def _retry_kwargs(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception(_retryable),
            "stop": stop_after_attempt(self.max_retries + 1),
            "wait": wait_exponential(multiplier=self.backoff_s, max=8.0),
            "reraise": True,
        }

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise EmbeddingsError.from_body(response.status_code, body)
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
    def _rerank(query: str, texts: Sequence[str], top_k: int | None) -> _Call:
        return _Call("POST", "/rerank", _drop_none(query=query, texts=list(texts), top_k=top_k))

    @staticmethod
    def _search(query: str, corpus: Sequence[str], top_k: int, threshold: float | None) -> _Call:
        return _Call("POST", "/search", _drop_none(query=query, corpus=list(corpus), top_k=top_k, threshold=threshold))

    @staticmethod
    def _cluster(texts: Sequence[str], n_clusters: int | None, method: str) -> _Call:
        return _Call("POST", "/cluster", _drop_none(texts=list(texts), n_clusters=n_clusters, method=method))

    @staticmethod
    def _store_add(texts: Sequence[str], collection: str, ids: Sequence[str] | None,
                   metadata: dict[str, Any] | Sequence[dict[str, Any]] | None) -> _Call:
        meta = metadata if metadata is None or isinstance(metadata, dict) else list(metadata)
        return _Call("POST", "/store/add", _drop_none(collection=collection, texts=list(texts),
                                                      ids=None if ids is None else list(ids), metadata=meta))

    @staticmethod
    def _store_search(query: str, collection: str, top_k: int, filter_metadata: dict[str, Any] | None,
                      threshold: float | None) -> _Call:
        return _Call("POST", "/store/search", _drop_none(collection=collection, query=query, top_k=top_k,
                                                         filter_metadata=filter_metadata, threshold=threshold))

    @staticmethod
    def _store_get(ids: Sequence[str], collection: str, include_vectors: bool) -> _Call:
        return _Call("POST", "/store/get", {"collection": collection, "ids": list(ids), "include_vectors": include_vectors})

    @staticmethod
    def _store_delete(collection: str, ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None) -> _Call:
        return _Call("POST", "/store/delete", _drop_none(collection=collection, ids=None if ids is None else list(ids),
                                                         filter_metadata=filter_metadata))

    @staticmethod
    def _chunks(texts: Sequence[str], size: int) -> list[Sequence[str]]:
        return [texts[i : i + size] for i in range(0, len(texts), size)]


class EmbeddingsClient(_ClientBase):
    """Synchronous client. Use as a context manager or call ``close()``.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` or the chute's public URL.
        api_key: sent as ``Authorization: Bearer <api_key>``.
        timeout: seconds per request.
        max_retries: retries of 429/503/connection failures.
        transport: an httpx transport (tests inject ``httpx.MockTransport``).
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 4, backoff_s: float = 0.5, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, backoff_s)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport)

    def __enter__(self) -> "EmbeddingsClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call) -> Any:
        for attempt in Retrying(**self._retry_kwargs()):
            with attempt:
                try:
                    response = self._http.request(call.method, call.path, json=call.json)
                except httpx.TransportError as exc:
                    raise EmbeddingsConnectionError(f"{call.method} {call.path}: {exc!r}") from exc
                return self._decode(response)

    def embed(self, inputs: str | Sequence[str], normalize: bool = True, truncate: bool = True,
              pooling: str | None = None) -> dict[str, Any]:
        """POST /embed. A str gives ``embeddings`` as one vector; a list gives a list of vectors."""
        return self._send(self._embed(inputs, normalize, truncate, pooling))

    def embed_batch(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True,
                    progress: bool = False) -> list[list[float]]:
        """Embed any number of texts through /embed/batch, split to the server's limit, in input order."""
        limit = self._batch_limit or self.info()["limits"]["max_batch_texts"]
        self._batch_limit = limit
        vectors: list[list[float]] = []
        with tqdm(total=len(texts), disable=not progress, unit="text") as bar:
            for chunk in self._chunks(texts, limit):
                vectors.extend(self._send(self._embed_batch_chunk(chunk, batch_size, normalize))["embeddings"])
                bar.update(len(chunk))
        return vectors

    def similarity(self, source_text: str, target_texts: Sequence[str], normalize: bool = True) -> dict[str, Any]:
        """POST /similarity."""
        return self._send(self._similarity(source_text, target_texts, normalize))

    def rerank(self, query: str, texts: Sequence[str], top_k: int | None = None) -> dict[str, Any]:
        """POST /rerank."""
        return self._send(self._rerank(query, texts, top_k))

    def search(self, query: str, corpus: Sequence[str], top_k: int = 10, threshold: float | None = None) -> dict[str, Any]:
        """POST /search."""
        return self._send(self._search(query, corpus, top_k, threshold))

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
                  metadata: dict[str, Any] | Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        """POST /store/add: upsert texts (ids default to a hash of the text)."""
        return self._send(self._store_add(texts, collection, ids, metadata))

    def store_search(self, query: str, collection: str = "default", top_k: int = 10,
                     filter_metadata: dict[str, Any] | None = None, threshold: float | None = None) -> dict[str, Any]:
        """POST /store/search."""
        return self._send(self._store_search(query, collection, top_k, filter_metadata, threshold))

    def store_get(self, ids: Sequence[str], collection: str = "default", include_vectors: bool = False) -> dict[str, Any]:
        """POST /store/get."""
        return self._send(self._store_get(ids, collection, include_vectors))

    def store_delete(self, collection: str = "default", ids: Sequence[str] | None = None,
                     filter_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST /store/delete: by ids or by filter."""
        return self._send(self._store_delete(collection, ids, filter_metadata))

    def store_drop(self, collection: str) -> dict[str, Any]:
        """POST /store/drop."""
        return self._send(_Call("POST", "/store/drop", {"collection": collection}))

    def store_collections(self) -> dict[str, Any]:
        """GET /store/collections."""
        return self._send(_Call("GET", "/store/collections"))


class AsyncEmbeddingsClient(_ClientBase):
    """The asyncio twin of ``EmbeddingsClient`` (same methods, awaited)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 4, backoff_s: float = 0.5, transport: httpx.AsyncBaseTransport | None = None,
                 max_concurrency: int = 4) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, backoff_s)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport)
        self.max_concurrency = max_concurrency

    async def __aenter__(self) -> "AsyncEmbeddingsClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call) -> Any:
        async for attempt in AsyncRetrying(**self._retry_kwargs()):
            with attempt:
                try:
                    response = await self._http.request(call.method, call.path, json=call.json)
                except httpx.TransportError as exc:
                    raise EmbeddingsConnectionError(f"{call.method} {call.path}: {exc!r}") from exc
                return self._decode(response)

    async def embed(self, inputs: str | Sequence[str], normalize: bool = True, truncate: bool = True,
                    pooling: str | None = None) -> dict[str, Any]:
        return await self._send(self._embed(inputs, normalize, truncate, pooling))

    async def embed_batch(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True,
                          progress: bool = False) -> list[list[float]]:
        """Like the sync version; up to ``max_concurrency`` chunks are in flight at once."""
        limit = self._batch_limit or (await self.info())["limits"]["max_batch_texts"]
        self._batch_limit = limit
        gate = asyncio.Semaphore(self.max_concurrency)
        with tqdm(total=len(texts), disable=not progress, unit="text") as bar:

            async def one(chunk: Sequence[str]) -> list[list[float]]:
                async with gate:
                    body = await self._send(self._embed_batch_chunk(chunk, batch_size, normalize))
                bar.update(len(chunk))
                return body["embeddings"]

            parts = await asyncio.gather(*(one(c) for c in self._chunks(texts, limit)))
        return [vec for part in parts for vec in part]

    async def similarity(self, source_text: str, target_texts: Sequence[str], normalize: bool = True) -> dict[str, Any]:
        return await self._send(self._similarity(source_text, target_texts, normalize))

    async def rerank(self, query: str, texts: Sequence[str], top_k: int | None = None) -> dict[str, Any]:
        return await self._send(self._rerank(query, texts, top_k))

    async def search(self, query: str, corpus: Sequence[str], top_k: int = 10,
                     threshold: float | None = None) -> dict[str, Any]:
        return await self._send(self._search(query, corpus, top_k, threshold))

    async def cluster(self, texts: Sequence[str], n_clusters: int | None = None, method: str = "kmeans") -> dict[str, Any]:
        return await self._send(self._cluster(texts, n_clusters, method))

    async def health(self) -> dict[str, Any]:
        return await self._send(_Call("GET", "/health"))

    async def info(self) -> dict[str, Any]:
        return await self._send(_Call("GET", "/info"))

    async def store_add(self, texts: Sequence[str], collection: str = "default", ids: Sequence[str] | None = None,
                        metadata: dict[str, Any] | Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        return await self._send(self._store_add(texts, collection, ids, metadata))

    async def store_search(self, query: str, collection: str = "default", top_k: int = 10,
                           filter_metadata: dict[str, Any] | None = None, threshold: float | None = None) -> dict[str, Any]:
        return await self._send(self._store_search(query, collection, top_k, filter_metadata, threshold))

    async def store_get(self, ids: Sequence[str], collection: str = "default",
                        include_vectors: bool = False) -> dict[str, Any]:
        return await self._send(self._store_get(ids, collection, include_vectors))

    async def store_delete(self, collection: str = "default", ids: Sequence[str] | None = None,
                           filter_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._send(self._store_delete(collection, ids, filter_metadata))

    async def store_drop(self, collection: str) -> dict[str, Any]:
        return await self._send(_Call("POST", "/store/drop", {"collection": collection}))

    async def store_collections(self) -> dict[str, Any]:
        return await self._send(_Call("GET", "/store/collections"))
