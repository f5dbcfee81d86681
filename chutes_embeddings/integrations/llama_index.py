"""LlamaIndex adapters over the service's HTTP API: embeddings, a vector store, a reranker.

    pip install "chutes-embeddings[llama-index]"

    from llama_index.core import StorageContext, VectorStoreIndex
    from chutes_embeddings.integrations.llama_index import ChutesEmbedding, ChutesVectorStore
    store = ChutesVectorStore("http://127.0.0.1:8000", collection="docs")
    index = VectorStoreIndex.from_documents(documents, embed_model=ChutesEmbedding("http://127.0.0.1:8000"),
                                            storage_context=StorageContext.from_defaults(vector_store=store))

LlamaIndex embeds nodes before it adds them, so the store keeps the callers' vectors (the
collection records ``vector_model``; with ``ChutesEmbedding`` that is the served model, so
server-side text search works too). Each record keeps the node's text, its metadata at the top
level (filterable) and LlamaIndex's node fields (``_node_content``, ``ref_doc_id``, ``node_id``).
``MetadataFilters`` map to the service's grammar: ``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``,
``in``, ``nin`` under ``AND``/``OR``/``NOT``; other operators raise ``ValueError``.
"""

from __future__ import annotations

from typing import Any, List, Literal, Optional, Sequence

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import (
    BaseNode,
    MetadataMode,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from ..client import AsyncEmbeddingsClient, EmbeddingsClient, one_vector_each, served_model
from ..errors import NotFound

_OPERATORS = {FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.GT: "$gt",
              FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte",
              FilterOperator.IN: "$in", FilterOperator.NIN: "$nin"}
FIND_LIMIT = 1000  # records per get_nodes(filters=...) call


def to_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` as the service's ``filter_metadata`` (None: no filter).

    Raises:
        ValueError: an operator the service's filters do not have (any, all, contains, text_match...).
    """
    if filters is None or not filters.filters:
        return None
    parts: list[dict[str, Any]] = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            nested = to_filter(item)
            if nested is not None:
                parts.append(nested)
            continue
        op = _OPERATORS.get(FilterOperator(item.operator))
        if op is None:
            raise ValueError(f"filter operator {item.operator!r} on {item.key!r} is not supported by this store; "
                             f"use one of {[o.value for o in _OPERATORS]}")
        value = list(item.value) if op in ("$in", "$nin") else item.value
        parts.append({item.key: {op: value}})
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition == FilterCondition.NOT:
        return {"$not": {"$and": parts}}
    return {"$or": parts} if condition == FilterCondition.OR else {"$and": parts}


def _restrict(where: dict[str, Any] | None, key: str, values: Sequence[str] | None) -> dict[str, Any] | None:
    if not values:
        return where
    extra = {key: {"$in": list(values)}}
    return extra if where is None else {"$and": [where, extra]}


class ChutesEmbedding(BaseEmbedding):
    """LlamaIndex embeddings served by the service; ``model_name`` is the served model's id.
    ``store_token``: the service's access token, where it requires one for every route; ``model``:
    which of the service's embedders (``GET /v1/models``; None: its default); ``long_input``: a text
    over the model's window ``truncate``d or ``pool``ed from its windows (README, "Long inputs");
    None: the service's setting."""

    base_url: str
    api_key: Optional[str] = None
    # the store access token: never serialised (a persisted index config) nor in a repr
    store_token: Optional[str] = Field(default=None, repr=False, exclude=True)
    model: Optional[str] = None
    long_input: Optional[Literal["truncate", "pool"]] = None  # one vector per text: windows is the client's embed's
    _client: EmbeddingsClient = PrivateAttr()

    def __init__(self, base_url: str, api_key: Optional[str] = None, store_token: Optional[str] = None,
                 model: Optional[str] = None, long_input: Optional[str] = None, **kwargs: Any) -> None:
        one_vector_each(long_input, "ChutesEmbedding")
        client = EmbeddingsClient(base_url, api_key, store_token=store_token, model=model)
        kwargs.setdefault("model_name", served_model(client.info(), model))
        super().__init__(base_url=base_url, api_key=api_key, store_token=store_token, model=model,
                         long_input=long_input, **kwargs)
        self._client = client

    def _async(self) -> AsyncEmbeddingsClient:
        return AsyncEmbeddingsClient(self.base_url, self.api_key, store_token=self.store_token, model=self.model)

    def _get_query_embedding(self, query: str) -> List[float]:
        return self._client.embed(query, long_input=self.long_input)["embeddings"]

    def _get_text_embedding(self, text: str) -> List[float]:
        return self._client.embed(text, long_input=self.long_input)["embeddings"]

    def _get_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        return self._client.embed_batch(texts, long_input=self.long_input)

    async def _aget_query_embedding(self, query: str) -> List[float]:
        async with self._async() as client:
            return (await client.embed(query, long_input=self.long_input))["embeddings"]

    async def _aget_text_embedding(self, text: str) -> List[float]:
        return await self._aget_query_embedding(text)

    async def _aget_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        async with self._async() as client:
            return await client.embed_batch(texts, long_input=self.long_input)


# LlamaIndex's query modes this store answers, and the store search mode of each.
QUERY_MODES = {VectorStoreQueryMode.DEFAULT: "dense", VectorStoreQueryMode.TEXT_SEARCH: "lexical",
               VectorStoreQueryMode.SPARSE: "sparse", VectorStoreQueryMode.HYBRID: "hybrid"}


class ChutesVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store over one collection of the service's store (see module docstring).

    Args:
        base_url: the service's URL.
        collection: the collection (created on the first add).
        api_key: sent as a bearer token (the platform's key).
        store_token: the service's store access token (README, "Sharing a chute"), sent in every body.
        vector_model: what made the nodes' vectors (default: the served model's id, right when the
            index embeds with ``ChutesEmbedding``).
        model: the served embedder that embeds on the server's side, ``ChutesEmbedding``'s ``model``
            (None: the default; a search of an existing collection uses the collection's own model).
    """

    stores_text: bool = True
    flat_metadata: bool = False
    base_url: str
    collection: str
    api_key: Optional[str] = None
    # the store access token: never serialised (a persisted index config) nor in a repr
    store_token: Optional[str] = Field(default=None, repr=False, exclude=True)
    vector_model: Optional[str] = None
    model: Optional[str] = None
    _client: EmbeddingsClient = PrivateAttr()

    def __init__(self, base_url: str, collection: str, api_key: Optional[str] = None,
                 vector_model: Optional[str] = None, store_token: Optional[str] = None,
                 model: Optional[str] = None, **kwargs: Any) -> None:
        client = EmbeddingsClient(base_url, api_key, store_token=store_token, model=model)
        super().__init__(base_url=base_url, collection=collection, api_key=api_key, store_token=store_token,
                         vector_model=vector_model or served_model(client.info(), model), model=model, **kwargs)
        self._client = client

    @property
    def client(self) -> EmbeddingsClient:
        return self._client

    def _async(self) -> AsyncEmbeddingsClient:
        return AsyncEmbeddingsClient(self.base_url, self.api_key, store_token=self.store_token, model=self.model)

    # --- request parts shared by the sync and async methods ------------------------------------
    @staticmethod
    def _records(nodes: Sequence[BaseNode]) -> tuple[list[str], list[str], list[dict[str, Any]], list[list[float]]]:
        texts, ids, metas, vectors = [], [], [], []
        for node in nodes:
            meta = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
            meta["node_id"] = node.node_id
            texts.append(node.get_content(metadata_mode=MetadataMode.NONE))
            ids.append(node.node_id)
            metas.append(meta)
            vectors.append(node.get_embedding())
        return texts, ids, metas, vectors

    @staticmethod
    def _search_args(query: VectorStoreQuery) -> dict[str, Any]:
        """The store search for a LlamaIndex query: its mode (``DEFAULT`` dense, ``TEXT_SEARCH``
        lexical, ``SPARSE``, ``HYBRID`` with ``alpha``, and ``sparse_top_k`` as each leg's depth) and
        filters; the query's vector serves the dense leg, its text the others."""
        where = _restrict(_restrict(to_filter(query.filters), "ref_doc_id", query.doc_ids), "node_id", query.node_ids)
        mode = QUERY_MODES.get(query.mode)
        if mode is None:
            raise ValueError(f"query mode {query.mode!r}: this store answers {', '.join(m.value for m in QUERY_MODES)}")
        args: dict[str, Any] = {"top_k": query.similarity_top_k, "filter_metadata": where, "mode": mode}
        if mode == "hybrid":
            args.update(alpha=query.alpha, leg_candidates=query.sparse_top_k,
                        top_k=query.hybrid_top_k or query.similarity_top_k)
        vector = query.query_embedding if mode in ("dense", "hybrid") else None
        text = query.query_str if mode != "dense" or vector is None else None
        if vector is None and not text:
            raise ValueError("a query needs query_embedding or query_str")
        return {**args, "query": text or None, "query_vector": vector}

    @staticmethod
    def _node(record: dict[str, Any]) -> BaseNode:
        """A record as a node: a node this store was given, or a chunk the server cut from a
        document (``add_documents``: its document is its source, its span its characters)."""
        meta = record["metadata"]
        if "_node_content" in meta or not record.get("document_id"):
            return metadata_dict_to_node(meta, text=record["text"])
        start, end = record["span"]
        return TextNode(id_=record["id"], text=record["text"], start_char_idx=start, end_char_idx=end,
                        metadata={k: v for k, v in meta.items() if k != "ref_doc_id"},
                        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=record["document_id"])})

    @classmethod
    def _result(cls, found: dict[str, Any]) -> VectorStoreQueryResult:
        results = found["results"]
        return VectorStoreQueryResult(nodes=[cls._node(r) for r in results],
                                      similarities=[r["score"] for r in results], ids=[r["id"] for r in results])

    @classmethod
    def _nodes(cls, records: list[dict[str, Any]]) -> List[BaseNode]:
        return [cls._node(r) for r in records]

    @staticmethod
    def _store_documents(documents: Sequence[BaseNode]) -> list[dict[str, Any]]:
        """LlamaIndex documents as store documents: by ``doc_id``, with ``ref_doc_id`` in each chunk's
        metadata so ``delete(ref_doc_id)`` and ``doc_ids`` filters reach the chunks."""
        return [{"id": d.node_id, "text": d.get_content(metadata_mode=MetadataMode.NONE),
                 "metadata": {**d.metadata, "ref_doc_id": d.node_id}} for d in documents]

    def add_documents(self, documents: Sequence[BaseNode], chunking: Optional[dict[str, Any]] = None,
                      progress: bool = False) -> List[str]:
        """Store whole documents, cut into chunks and embedded by the server (``chunking``:
        ``{"max_tokens", "overlap"}``); re-adding a document replaces all its chunks. Returns their ids."""
        self._client.store_add_documents(self._store_documents(documents), self.collection, chunking, progress)
        return [d.node_id for d in documents]

    async def async_add_documents(self, documents: Sequence[BaseNode], chunking: Optional[dict[str, Any]] = None,
                                  progress: bool = False) -> List[str]:
        """``add_documents``, awaited."""
        async with self._async() as client:
            await client.store_add_documents(self._store_documents(documents), self.collection, chunking, progress)
        return [d.node_id for d in documents]

    # --- sync ----------------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        texts, ids, metas, vectors = self._records(nodes)
        limit = int(self._client.info()["limits"]["max_store_add_texts"])
        for start in range(0, len(texts), limit):
            part = slice(start, start + limit)
            self._client.store_add(texts[part], self.collection, ids=ids[part], metadata=metas[part],
                                   vectors=vectors[part], vector_model=self.vector_model)
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        self.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="ref_doc_id", value=ref_doc_id)]))

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        try:
            return self._result(self._client.store_search(collection=self.collection, **self._search_args(query)))
        except NotFound:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])

    def get_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                  **kwargs: Any) -> List[BaseNode]:
        try:
            if node_ids is not None:
                return self._nodes(self._client.store_get(node_ids, self.collection)["records"]) if node_ids else []
            return self._nodes(self._client.store_get(None, self.collection, filter_metadata=to_filter(filters) or {},
                                                      limit=FIND_LIMIT)["records"])
        except NotFound:
            return []

    def delete_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                     **delete_kwargs: Any) -> None:
        where = to_filter(filters)
        if node_ids is None and where is None:
            raise ValueError("delete_nodes needs node_ids or filters (clear() deletes everything)")
        try:
            if node_ids:
                self._client.store_delete(self.collection, ids=node_ids)
            if where is not None:
                self._client.store_delete(self.collection, filter_metadata=where)
        except NotFound:  # nothing stored yet: nothing to delete
            return

    def clear(self) -> None:
        try:
            self._client.store_drop(self.collection)
        except NotFound:
            return

    # --- async ---------------------------------------------------------------------------------
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        texts, ids, metas, vectors = self._records(nodes)
        async with self._async() as client:
            limit = int((await client.info())["limits"]["max_store_add_texts"])
            for start in range(0, len(texts), limit):
                part = slice(start, start + limit)
                await client.store_add(texts[part], self.collection, ids=ids[part], metadata=metas[part],
                                       vectors=vectors[part], vector_model=self.vector_model)
        return ids

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        async with self._async() as client:
            try:
                await client.store_delete(self.collection, filter_metadata={"ref_doc_id": ref_doc_id})
            except NotFound:
                return

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        async with self._async() as client:
            try:
                return self._result(await client.store_search(collection=self.collection, **self._search_args(query)))
            except NotFound:
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])

    async def aget_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                         **kwargs: Any) -> List[BaseNode]:
        async with self._async() as client:
            try:
                if node_ids is not None:
                    return (
                        self._nodes((await client.store_get(node_ids, self.collection))["records"]) if node_ids else []
                    )
                found = await client.store_get(None, self.collection, filter_metadata=to_filter(filters) or {},
                                               limit=FIND_LIMIT)
                return self._nodes(found["records"])
            except NotFound:
                return []

    async def adelete_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                            **delete_kwargs: Any) -> None:
        where = to_filter(filters)
        if node_ids is None and where is None:
            raise ValueError("delete_nodes needs node_ids or filters (clear() deletes everything)")
        async with self._async() as client:
            try:
                if node_ids:
                    await client.store_delete(self.collection, ids=node_ids)
                if where is not None:
                    await client.store_delete(self.collection, filter_metadata=where)
            except NotFound:
                return

    async def aclear(self) -> None:
        async with self._async() as client:
            try:
                await client.store_drop(self.collection)
            except NotFound:
                return


class ChutesRerank(BaseNodePostprocessor):
    """LlamaIndex node postprocessor: the ``top_n`` nodes by the service's ``/rerank`` score."""

    base_url: str
    api_key: Optional[str] = None
    # the store access token: never serialised (a persisted index config) nor in a repr
    store_token: Optional[str] = Field(default=None, repr=False, exclude=True)
    top_n: int = 3
    model: Optional[str] = None  # which of the service's rerankers (None: its default)

    @classmethod
    def class_name(cls) -> str:
        return "ChutesRerank"

    def _postprocess_nodes(self, nodes: List[NodeWithScore],
                           query_bundle: Optional[QueryBundle] = None) -> List[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("ChutesRerank needs the query (a QueryBundle)")
        if not nodes:
            return []
        with EmbeddingsClient(self.base_url, self.api_key, store_token=self.store_token,
                              rerank_model=self.model) as client:
            per_call = int(client.info()["limits"]["max_rerank_texts"])
            scored: list[tuple[float, int]] = []
            for start in range(0, len(nodes), per_call):
                part = nodes[start : start + per_call]
                answer = client.rerank(query_bundle.query_str,
                                       [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in part])
                scored += [(r["score"], start + r["index"]) for r in answer["results"]]
        scored.sort(key=lambda s: -s[0])
        return [NodeWithScore(node=nodes[i].node, score=score) for score, i in scored[: self.top_n]]
