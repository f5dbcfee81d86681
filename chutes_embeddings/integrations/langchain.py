"""LangChain adapters over the service's HTTP API: embeddings, a vector store, a reranker.

    pip install "chutes-embeddings[langchain]"

    from chutes_embeddings.integrations.langchain import ChutesEmbeddings, ChutesRerank, ChutesVectorStore
    store = ChutesVectorStore("http://127.0.0.1:8000", collection="docs")        # the server embeds
    store.add_texts(["Paris is in France"], metadatas=[{"lang": "en"}])
    store.as_retriever(search_kwargs={"k": 3, "filter": {"lang": "en"}}).invoke("capital of France")

``ChutesVectorStore`` with ``embedding=`` embeds on the caller's side and sends the vectors (the
collection then records that embedding's name and dimension); without it the server embeds texts
and queries. Filters are the service's ``filter_metadata`` grammar (``$eq`` ... ``$nin``, ``$and``,
``$or``, ``$not``). Scores are cosine similarities; relevance scores map them to [0, 1]. Every
call goes through ``EmbeddingsClient`` (retries, typed errors); async methods use
``AsyncEmbeddingsClient``.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterable, Sequence

import numpy as np
from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.documents.compressor import BaseDocumentCompressor
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from pydantic import ConfigDict, Field, PrivateAttr

from ..client import AsyncEmbeddingsClient, EmbeddingsClient, one_vector_each, served_model
from ..errors import NotFound


class ChutesEmbeddings(Embeddings):
    """LangChain ``Embeddings`` served by the service (``/embed/batch`` and ``/embed``).

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` or the chute's URL.
        api_key: sent as a bearer token (the platform's key).
        store_token: the service's access token, where it requires one for every route.
        model: which of the service's embedders (``GET /v1/models``); None: its default.
        long_input: a text over the model's window ``truncate``d or ``pool``ed from its windows
            (README, "Long inputs"); None: the service's setting.
        **client_options: passed to ``EmbeddingsClient`` (``timeout``, ``max_retries``, ...).
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, store_token: str | None = None,
                 model: str | None = None, long_input: str | None = None, **client_options: Any) -> None:
        one_vector_each(long_input, "ChutesEmbeddings")
        self.long_input = long_input
        self._args = (base_url, api_key)
        self._options = {**client_options, "store_token": store_token, "model": model}
        self._client = EmbeddingsClient(base_url, api_key, **self._options)
        self._wanted = model
        self._model: str | None = None

    @property
    def model(self) -> str:
        """The served model's id (what a vector store records for these vectors)."""
        if self._model is None:
            self._model = served_model(self._client.info(), self._wanted)
        return self._model

    def _async(self) -> AsyncEmbeddingsClient:
        return AsyncEmbeddingsClient(*self._args, **self._options)  # one per event loop

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._client.embed_batch(list(texts), long_input=self.long_input) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._client.embed(text, long_input=self.long_input)["embeddings"]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        async with self._async() as client:
            return await client.embed_batch(list(texts), long_input=self.long_input)

    async def aembed_query(self, text: str) -> list[float]:
        async with self._async() as client:
            return (await client.embed(text, long_input=self.long_input))["embeddings"]


# The store search's retrieval options a search's kwargs may carry (README, "Hybrid search"; group_by: "Documents").
RETRIEVAL_OPTIONS = ("mode", "fusion", "alpha", "rrf_k", "leg_candidates", "group_by")


def _retrieval(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The retrieval options among a search's kwargs."""
    return {name: kwargs[name] for name in RETRIEVAL_OPTIONS if kwargs.get(name) is not None}


def _query_text(query: str, vector: list[float] | None, retrieval: dict[str, Any]) -> str | None:
    """The query text to send: none when the caller's vector alone serves a dense search."""
    return None if vector is not None and retrieval.get("mode") in (None, "dense") else query


class ChutesVectorStore(VectorStore):
    """A LangChain ``VectorStore`` over one collection of the service's store (see module docstring).

    Args:
        base_url: the service's URL.
        collection: the collection (created on the first add).
        embedding: embed on the caller's side and send vectors; None lets the server embed.
        api_key: sent as a bearer token (the platform's key).
        store_token: the service's store access token (README, "Sharing a chute"), sent in every body.
        model: the served embedder that embeds on the server's side (None: the default; a search
            of an existing collection uses the collection's own model).
        **client_options: passed to ``EmbeddingsClient``.
    """

    def __init__(self, base_url: str, collection: str, embedding: Embeddings | None = None,
                 api_key: str | None = None, *, store_token: str | None = None, model: str | None = None,
                 **client_options: Any) -> None:
        self.collection = collection
        self._embedding = embedding
        self._args = (base_url, api_key)
        self._options = {**client_options, "store_token": store_token, "model": model}
        self._client = EmbeddingsClient(base_url, api_key, **self._options)
        self._add_limit: int | None = None

    @property
    def embeddings(self) -> Embeddings | None:
        return self._embedding

    def _async(self) -> AsyncEmbeddingsClient:
        return AsyncEmbeddingsClient(*self._args, **self._options)

    # --- request parts shared by the sync and async methods ------------------------------------
    def _vector_model(self) -> str | None:
        if self._embedding is None:
            return None
        if isinstance(self._embedding, ChutesEmbeddings):
            return self._embedding.model  # the server's own model: server-side queries stay possible
        return f"{type(self._embedding).__module__}.{type(self._embedding).__qualname__}"

    def _prepare(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None,
                 ids: Sequence[str | None] | None) -> tuple[list[str], list[dict[str, Any]], list[str]]:
        texts = list(texts)
        metas = [dict(m or {}) for m in metadatas] if metadatas is not None else [{} for _ in texts]
        given = list(ids) if ids is not None else [None] * len(texts)
        return texts, metas, [i or str(uuid.uuid4()) for i in given]  # never the callers' objects

    def _chunks(self, n: int) -> list[slice]:
        if self._add_limit is None:
            self._add_limit = int(self._client.info()["limits"]["max_store_add_texts"])
        return [slice(i, i + self._add_limit) for i in range(0, n, self._add_limit)]

    @staticmethod
    def _document(r: dict[str, Any]) -> Document:
        """A record as a LangChain ``Document``; a document's chunk carries ``document_id``,
        ``chunk`` and ``span`` in its metadata too."""
        place = {k: r[k] for k in ("document_id", "chunk", "span") if r.get(k) is not None}
        return Document(page_content=r["text"], metadata={**r["metadata"], **place}, id=r["id"])

    @classmethod
    def _scored(cls, results: list[dict[str, Any]]) -> list[tuple[Document, float]]:
        return [(cls._document(r), float(r["score"])) for r in results]

    @classmethod
    def _documents(cls, records: list[dict[str, Any]]) -> list[Document]:
        return [cls._document(r) for r in records]

    def _as_documents(self, texts: list[str], metas: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
        """``add_texts(..., chunking=...)``: each text a store document (cut into chunks by the
        server, which embeds them: not with a caller-side ``embedding``)."""
        if self._embedding is not None:
            raise ValueError("chunking: the server cuts and embeds the chunks; use a store without `embedding`")
        return [{"id": i, "text": t, "metadata": m} for t, m, i in zip(texts, metas, ids)]

    # --- writes ---------------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Upsert texts by id (ids default to new UUIDs); with ``embedding``, with its vectors.

        With ``chunking`` (``{"max_tokens", "overlap"}``, or ``{}`` for the defaults) each text is a
        document the server stores as chunks (``store_add_documents``; re-adding an id replaces
        all its chunks; ``delete(ids)`` deletes them); hits are chunks, with ``document_id``,
        ``chunk`` and ``span`` in their metadata.
        """
        texts, metas, record_ids = self._prepare(texts, metadatas, ids)
        if kwargs.get("chunking") is not None:
            self._client.store_add_documents(self._as_documents(texts, metas, record_ids), self.collection,
                                             kwargs["chunking"] or None, progress=False)
            return record_ids
        for part in self._chunks(len(texts)):
            vectors = self._embedding.embed_documents(texts[part]) if self._embedding else None
            self._client.store_add(texts[part], self.collection, ids=record_ids[part], metadata=metas[part],
                                   vectors=vectors, vector_model=self._vector_model())
        return record_ids

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                         ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        texts, metas, record_ids = self._prepare(texts, metadatas, ids)
        async with self._async() as client:
            if kwargs.get("chunking") is not None:
                await client.store_add_documents(self._as_documents(texts, metas, record_ids), self.collection,
                                                 kwargs["chunking"] or None, progress=False)
                return record_ids
            for part in self._chunks(len(texts)):
                vectors = await self._embedding.aembed_documents(texts[part]) if self._embedding else None
                await client.store_add(texts[part], self.collection, ids=record_ids[part], metadata=metas[part],
                                       vectors=vectors, vector_model=self._vector_model())
        return record_ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by ids (records, and the chunks of documents of these ids); without ids, delete
        everything (the collection)."""
        try:
            if ids is None:
                self._client.store_drop(self.collection)
            elif ids:
                self._client.store_delete(self.collection, ids=list(ids))
                self._client.store_delete(self.collection, document_ids=list(ids))
        except NotFound:  # nothing stored yet: nothing to delete
            return True
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        async with self._async() as client:
            try:
                if ids is None:
                    await client.store_drop(self.collection)
                elif ids:
                    await client.store_delete(self.collection, ids=list(ids))
                    await client.store_delete(self.collection, document_ids=list(ids))
            except NotFound:
                return True
        return True

    # --- reads ----------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        try:
            return self._documents(self._client.store_get(list(ids), self.collection)["records"]) if ids else []
        except NotFound:
            return []

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        if not ids:
            return []
        async with self._async() as client:
            try:
                return self._documents((await client.store_get(list(ids), self.collection))["records"])
            except NotFound:
                return []

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """The ``k`` best documents with their score (the cosine in the default dense mode), optionally
        filtered by metadata. ``mode`` (``dense``, ``lexical``, ``sparse``, ``hybrid``), ``fusion``,
        ``alpha``, ``rrf_k`` and ``leg_candidates`` in ``kwargs`` (or ``as_retriever(search_kwargs=...)``)
        choose the store's retrieval legs; hybrid scores are the fused ones."""
        retrieval = _retrieval(kwargs)
        vector = (self._embedding.embed_query(query)
                  if self._embedding is not None and retrieval.get("mode") in (None, "dense", "hybrid") else None)
        return self._search(_query_text(query, vector, retrieval), vector, k, filter, retrieval)

    async def asimilarity_search_with_score(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                                            **kwargs: Any) -> list[tuple[Document, float]]:
        retrieval = _retrieval(kwargs)
        vector = (await self._embedding.aembed_query(query)
                  if self._embedding is not None and retrieval.get("mode") in (None, "dense", "hybrid") else None)
        async with self._async() as client:
            try:
                found = await client.store_search(_query_text(query, vector, retrieval), self.collection, k, filter,
                                                  query_vector=vector, **retrieval)
            except NotFound:
                return []
        return self._scored(found["results"])

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None,
                                    **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self._search(None, embedding, k, filter)]

    async def asimilarity_search_by_vector(self, embedding: list[float], k: int = 4,
                                           filter: dict[str, Any] | None = None, **kwargs: Any) -> list[Document]:
        async with self._async() as client:
            try:
                found = await client.store_search(None, self.collection, k, filter, query_vector=embedding)
            except NotFound:
                return []
        return [doc for doc, _ in self._scored(found["results"])]

    def _search(self, query: str | None, vector: list[float] | None, k: int,
                filter: dict[str, Any] | None, retrieval: dict[str, Any] | None = None) -> list[tuple[Document, float]]:
        try:
            found = self._client.store_search(query, self.collection, k, filter, query_vector=vector,
                                              **(retrieval or {}))
        except NotFound:  # nothing stored yet
            return []
        return self._scored(found["results"])

    def _select_relevance_score_fn(self) -> Any:
        return lambda cosine: (cosine + 1.0) / 2.0  # cosine similarity in [-1, 1] -> [0, 1]

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      filter: dict[str, Any] | None = None, **kwargs: Any) -> list[Document]:
        vector = (self._embedding.embed_query(query) if self._embedding is not None
                  else self._client.embed(query)["embeddings"])
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter=filter)

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, filter: dict[str, Any] | None = None,
                                                **kwargs: Any) -> list[Document]:
        """``k`` documents among the ``fetch_k`` nearest, chosen for relevance and diversity."""
        candidates = [doc for doc, _ in self._search(None, embedding, fetch_k, filter)]
        if not candidates:
            return []
        records = self._client.store_get([d.id for d in candidates], self.collection, include_vectors=True)["records"]
        vectors = {r["id"]: r["vector"] for r in records}
        kept = [d for d in candidates if d.id in vectors]
        chosen = maximal_marginal_relevance(np.asarray(embedding, dtype=np.float32),
                                            [vectors[d.id] for d in kept], k=k, lambda_mult=lambda_mult)
        return [kept[i] for i in chosen]

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                   metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
                   base_url: str = "http://127.0.0.1:8000", collection: str = "default", api_key: str | None = None,
                   **kwargs: Any) -> "ChutesVectorStore":
        """A store over ``collection`` holding ``texts`` (``embedding=None``: the server embeds)."""
        store = cls(base_url, collection, embedding, api_key, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store


class ChutesRerank(BaseDocumentCompressor):
    """LangChain's rerank hook (``ContextualCompressionRetriever``) served by ``/rerank``.

    The ``top_n`` best documents come back as copies with ``metadata["relevance_score"]``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_url: str
    api_key: str | None = None
    # the service's access token, where it requires one for every route: never serialised nor shown
    store_token: str | None = Field(default=None, repr=False, exclude=True)
    top_n: int | None = 3
    model: str | None = None  # which of the service's rerankers (None: its default)
    client_options: dict[str, Any] = Field(default_factory=dict)
    _per_call: int | None = PrivateAttr(default=None)

    def _client_args(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "api_key": self.api_key, "store_token": self.store_token,
                "rerank_model": self.model, **self.client_options}

    def _parts(self, documents: Sequence[Document], client: EmbeddingsClient) -> list[slice]:
        """Calls of at most the service's ``max_rerank_texts`` (each pair is scored on its own, so
        scores compare across calls)."""
        if self._per_call is None:
            self._per_call = int(client.info()["limits"]["max_rerank_texts"])
        return [slice(i, i + self._per_call) for i in range(0, len(documents), self._per_call)]

    def _ranked(self, documents: Sequence[Document], answers: list[dict[str, Any]],
                parts: list[slice]) -> list[Document]:
        scored: list[tuple[float, int]] = []
        for part, answer in zip(parts, answers):
            scored += [(r["score"], part.start + r["index"]) for r in answer["results"]]
        scored.sort(key=lambda s: -s[0])
        return [Document(page_content=documents[i].page_content, id=documents[i].id,
                         metadata={**documents[i].metadata, "relevance_score": score})
                for score, i in scored[: self.top_n]]

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        if not documents:
            return []
        with EmbeddingsClient(**self._client_args()) as client:
            parts = self._parts(documents, client)
            answers = [client.rerank(query, [d.page_content for d in documents[p]]) for p in parts]
        return self._ranked(documents, answers, parts)

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Callbacks | None = None) -> Sequence[Document]:
        if not documents:
            return []
        with EmbeddingsClient(**self._client_args()) as limits:
            parts = self._parts(documents, limits)
        async with AsyncEmbeddingsClient(**self._client_args()) as client:
            answers = [await client.rerank(query, [d.page_content for d in documents[p]]) for p in parts]
        return self._ranked(documents, answers, parts)
