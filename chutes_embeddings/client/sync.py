"""``EmbeddingsClient``: the synchronous twin (``ClientBase`` plus sending over ``httpx.Client``)."""

from __future__ import annotations

from typing import Any, Sequence

import httpx
from tenacity import Retrying
from tqdm.auto import tqdm

from ..errors import EmbeddingsError
from .base import Call, ClientBase, one_vector_each, shift_text_indices, transport_error
from .documents import DocumentUpload


class EmbeddingsClient(ClientBase):
    """Synchronous client. Use as a context manager or call ``close()``.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` or the chute's public URL.
        api_key: sent as ``Authorization: Bearer <api_key>``.
        timeout: seconds per request.
        max_retries: retries at most (see the module docstring for which failures are retried).
        transport: an httpx transport (tests inject ``httpx.MockTransport``).
        retry_budget_s: no retry starts once waiting for it would pass this many seconds.
        store_token: the service's store access token, sent in every request body (``token``).
        model: the served embedder every embedding, search and store request names (unset: the default).
        rerank_model: the served reranker ``rerank`` names (unset: the default).
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 10, backoff_s: float = 0.5, transport: httpx.BaseTransport | None = None,
                 retry_budget_s: float = 60.0, store_token: str | None = None,
                 model: str | None = None, rerank_model: str | None = None) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, backoff_s, retry_budget_s, store_token,
                         model, rerank_model)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport)

    def __enter__(self) -> "EmbeddingsClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, call: Call) -> Any:
        for attempt in Retrying(**self._retry_kwargs(call)):
            with attempt:
                try:
                    response = self._http.request(call.method, call.path, json=self._body(call))
                except httpx.TransportError as exc:
                    raise transport_error(call, exc) from exc
                return self._decode(response)

    def embed(self, inputs: str | Sequence[str], normalize: bool = True, truncate: bool = True,
              pooling: str | None = None, *, long_input: str | None = None,
              window_overlap: int | None = None) -> dict[str, Any]:
        """POST /embed. A str gives ``embeddings`` as one vector; a list gives a list of vectors.

        ``long_input`` (None: the server's setting): a text over the model's window cut (``truncate``),
        pooled from its windows (``pool``; ``usage`` then counts every token embedded), or answered
        window by window (``windows``): ``embeddings`` has one row per window and ``windows`` says each row's text
        (``index``) and characters (``start``, ``end``), even for a single str. ``window_overlap``:
        tokens consecutive windows share (None: the server's setting).
        """
        return self._send(self._embed(inputs, normalize, truncate, pooling, long_input=long_input,
                                      window_overlap=window_overlap))

    def embed_batch(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True,
                    progress: bool = False, resume_from: Sequence[list[float]] | None = None, *,
                    long_input: str | None = None, window_overlap: int | None = None) -> list[list[float]]:
        """Embed any number of texts through /embed/batch, split to the server's limit, in input order.

        Args:
            resume_from: vectors of ``texts[:len(resume_from)]`` from an earlier call (an error's
                ``partial``); only the rest is sent.
            long_input: ``truncate`` or ``pool`` a text over the model's window (None: the server's
                setting); one vector per text, so ``windows`` is ``embed``'s.
            window_overlap: tokens consecutive windows share (None: the server's setting).

        Raises:
            InvalidInput: ``long_input`` ``windows`` (nothing is sent).
            EmbeddingsError: naming the failing text by its index in ``texts``, with the vectors
                computed before it in ``err.partial``.
        """
        one_vector_each(long_input, "embed_batch")
        limit = self._batch_limit or self.info()["limits"]["max_batch_texts"]
        self._batch_limit = limit
        vectors: list[list[float]] = list(resume_from or [])
        with tqdm(total=len(texts), initial=len(vectors), disable=not progress, unit="text") as bar:
            for offset, chunk in self._chunks(texts, limit, len(vectors)):
                try:
                    body = self._send(self._embed_batch_chunk(chunk, batch_size, normalize, long_input=long_input,
                                                              window_overlap=window_overlap))
                except EmbeddingsError as err:
                    raise shift_text_indices(err, offset, vectors) from None
                vectors.extend(body["embeddings"])
                bar.update(len(chunk))
        return vectors

    def similarity(self, source_text: str, target_texts: Sequence[str], normalize: bool = True, *,
                   long_input: str | None = None, window_overlap: int | None = None) -> dict[str, Any]:
        """POST /similarity (``long_input``: ``truncate`` or ``pool`` a text over the model's window;
        None: the server's setting)."""
        return self._send(self._similarity(source_text, target_texts, normalize, long_input=long_input,
                                           window_overlap=window_overlap))

    def rerank(self, query: str, texts: Sequence[str], top_k: int | None = None,
               raw_scores: bool = False) -> dict[str, Any]:
        """POST /rerank: texts by relevance (``reranker`` in the answer says what scored them)."""
        return self._send(self._rerank(query, texts, top_k, raw_scores))

    def search(self, query: str, corpus: Sequence[str], top_k: int = 10, threshold: float | None = None,
               rerank: bool = False, rerank_candidates: int | None = None, *, mode: str | None = None,
               fusion: str | None = None, alpha: float | None = None, rrf_k: int | None = None,
               leg_candidates: int | None = None, long_input: str | None = None,
               window_overlap: int | None = None) -> dict[str, Any]:
        """POST /search (``mode``: dense, lexical, sparse or hybrid, fused by ``fusion``; ``rerank``: the best
        ``rerank_candidates`` of that first stage, reordered by the reranker; ``long_input``: ``truncate`` or
        ``pool`` a long query or corpus text for the dense leg, None: the server's setting)."""
        return self._send(self._search(query, corpus, top_k, threshold, rerank, rerank_candidates, mode=mode,
                                       fusion=fusion, alpha=alpha, rrf_k=rrf_k, leg_candidates=leg_candidates,
                                       long_input=long_input, window_overlap=window_overlap))

    def cluster(self, texts: Sequence[str], n_clusters: int | None = None, method: str = "kmeans", *,
                long_input: str | None = None, window_overlap: int | None = None) -> dict[str, Any]:
        """POST /cluster (``long_input``: ``truncate`` or ``pool`` a text over the model's window;
        None: the server's setting)."""
        return self._send(self._cluster(texts, n_clusters, method, long_input=long_input,
                                        window_overlap=window_overlap))

    def health(self) -> dict[str, Any]:
        """GET /health."""
        return self._send(Call("GET", "/health"))

    def info(self) -> dict[str, Any]:
        """GET /info."""
        return self._send(Call("GET", "/info"))

    def store_add(self, texts: Sequence[str] | None = None, collection: str = "default",
                  ids: Sequence[str] | None = None, metadata: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
                  vectors: Sequence[Sequence[float]] | None = None, vector_model: str | None = None, *,
                  documents: Sequence[dict[str, Any]] | None = None,
                  chunking: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST /store/add: upsert texts (ids default to a hash of the text); with ``vectors``, yours;
        or ``documents`` (``{"id", "text", "metadata"?}``), each stored as its chunks (``chunking``:
        ``{"max_tokens", "overlap"}``; re-adding a document replaces all its chunks)."""
        if documents is not None:
            return self._send(self._store_add_documents(documents, collection, chunking))
        return self._send(self._store_add(texts or [], collection, ids, metadata, vectors, vector_model))

    def store_add_documents(self, documents: Sequence[dict[str, Any]], collection: str = "default",
                            chunking: dict[str, Any] | None = None, progress: bool = True,
                            resume_from: int = 0) -> dict[str, Any]:
        """Store any number of documents (``{"id", "text", "metadata"?}``) as chunks through
        /store/add, in batches within the server's limits (``/info``), in order, one after another.

        Idempotent by document id (re-adding a document replaces its chunks), so a job can be run
        again, or resumed.

        Args:
            chunking: ``{"max_tokens", "overlap"}`` (default: the model's window, no overlap).
            progress: a tqdm progress bar, in documents.
            resume_from: how many documents (the first ones) an earlier call stored: ``err.committed``.

        Returns:
            ``documents`` and ``chunks`` stored by this call, and ``total_in_collection``.

        Raises:
            EmbeddingsError: naming the failing document (``err.document_id``; ``documents[i]`` by its
                index in ``documents``), with ``err.committed``: the documents stored before it.
        """
        upload = DocumentUpload(documents, collection, chunking, (self.info())["limits"], resume_from, progress)
        for batch in upload:
            try:
                body = self._send(batch.call)
            except EmbeddingsError as err:
                upload.failed(batch, err)  # the batch halved and queued again, or the error raised
                continue
            upload.stored(batch, body)
        return upload.result

    def store_search(self, query: str | None = None, collection: str = "default", top_k: int = 10,
                     filter_metadata: dict[str, Any] | None = None, threshold: float | None = None,
                     query_vector: Sequence[float] | None = None, rerank: bool = False,
                     rerank_candidates: int | None = None, *, mode: str | None = None, fusion: str | None = None,
                     alpha: float | None = None, rrf_k: int | None = None, leg_candidates: int | None = None,
                     query_sparse: dict[int, float] | None = None, group_by: str | None = None) -> dict[str, Any]:
        """POST /store/search, by a query text or by your ``query_vector`` / ``query_sparse`` (``{id: weight}``)
        (``mode``: dense, lexical, sparse or hybrid, fused by ``fusion``; ``rerank``: two-stage;
        ``group_by="document"``: the best chunk of each document, ``top_k`` counting documents)."""
        return self._send(self._store_search(query, collection, top_k, filter_metadata, threshold, query_vector,
                                             rerank, rerank_candidates, mode=mode, fusion=fusion, alpha=alpha,
                                             rrf_k=rrf_k, leg_candidates=leg_candidates,
                                             query_sparse=self._sparse_query(query_sparse), group_by=group_by))

    def store_get(self, ids: Sequence[str] | None = None, collection: str = "default", include_vectors: bool = False,
                  filter_metadata: dict[str, Any] | None = None, limit: int | None = None,
                  document_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """POST /store/get: by ids, every chunk of ``document_ids``, or up to ``limit`` records a filter matches."""
        return self._send(self._store_get(ids, collection, include_vectors, filter_metadata, limit, document_ids))

    def add_to_store(self, texts: Sequence[str], collection: str = "default", **options: Any) -> dict[str, Any]:
        """``store_add`` under the name the original chute's documentation uses."""
        return self.store_add(texts, collection, **options)

    def search_store(self, query: str, collection: str = "default", top_k: int = 10, **options: Any) -> dict[str, Any]:
        """``store_search`` under the name the original chute's documentation uses."""
        return self.store_search(query, collection, top_k, **options)

    def store_delete(self, collection: str = "default", ids: Sequence[str] | None = None,
                     filter_metadata: dict[str, Any] | None = None,
                     document_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """POST /store/delete: by ids, by filter, or every chunk of ``document_ids``."""
        return self._send(self._store_delete(collection, ids, filter_metadata, document_ids))

    def store_drop(self, collection: str) -> dict[str, Any]:
        """POST /store/drop."""
        return self._send(self._store_drop(collection))

    def store_collections(self) -> dict[str, Any]:
        """The collections the client may see (``POST /store/collections`` with a store token, else GET)."""
        return self._send(self._store_collections())
