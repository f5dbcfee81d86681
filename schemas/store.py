"""The store's API (``/store/*``): its requests and responses (its errors are the native ones)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from chutes_embeddings.errors import InvalidInput
from chutes_embeddings.store.names import MAX_SPARSE_INDEX, MAX_SPARSE_NONZEROS

from .common import (
    DEFAULT_FIND_LIMIT,
    DEFAULT_RERANK_CANDIDATES,
    DEFAULT_STORE_TOP_K,
    MAX_DOCUMENT_CHARS,
    MAX_ID_CHARS,
    MAX_STORE_ADD_DOCUMENTS,
    MAX_STORE_ADD_TEXTS,
    MAX_STORE_IDS,
    MAX_STORE_TOP_K,
    Access,
    CollectionName,
    Metadata,
    MetadataFilter,
    ModelName,
    RecordId,
    RerankCandidates,
    SearchMode,
    StrictObject,
    StrictRequest,
    Text,
    Vector,
    at_least_one_of,
    exactly_one_of,
)
from .native import HitLegs, Reranker, RetrievalRequest


class StoreDocument(StrictObject):
    """A document to store as chunks: its id (each chunk's record id is ``{id}#{index}``), its text
    (any length: it is cut into chunks that fit the model) and its metadata (every chunk's)."""

    # room for a chunk's "#index" within a record id's length
    id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS - 8)]
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_DOCUMENT_CHARS)]
    metadata: Metadata | None = None


class ChunkingOption(StrictObject):
    """How documents are cut: at most ``max_tokens`` tokens of the model's tokenizer a chunk
    (default: as many as the model's window holds; at least ``min_chunk_tokens``), consecutive
    chunks sharing ``overlap`` tokens (under ``max_tokens``); breaks at paragraphs, then
    sentences, where they can."""

    max_tokens: int | None = None
    overlap: int = 0


class StoreAddRequest(StrictRequest):
    """POST /store/add: upsert texts into a collection (ids default to a hash of the text), or
    ``documents``, each stored as its chunks (re-adding a document replaces all its chunks).

    With ``vectors`` (one per text) the caller's vectors are stored instead of the server's, and
    the collection records ``vector_model`` (default ``external``) and their dimension.
    """

    model_config = exactly_one_of(("texts", "array"), ("documents", "array"))
    access: ClassVar[Access] = "write"

    collection: CollectionName = "default"
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_STORE_ADD_TEXTS)] | None = None
    ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_ADD_TEXTS)] | None = None
    metadata: Metadata | list[Metadata] | None = None
    vectors: Annotated[list[Vector], Field(min_length=1, max_length=MAX_STORE_ADD_TEXTS)] | None = None
    vector_model: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    model: ModelName = None  # the served embedder that embeds the texts (a new collection keeps it)
    documents: Annotated[list[StoreDocument], Field(min_length=1, max_length=MAX_STORE_ADD_DOCUMENTS)] | None = None
    chunking: ChunkingOption | None = None

    @model_validator(mode="after")
    def _texts_or_documents(self) -> "StoreAddRequest":
        if (self.texts is None) == (self.documents is None):
            raise InvalidInput("send texts or documents (exactly one)", field="texts")
        if self.documents is not None:
            for extra in ("ids", "metadata", "vectors", "vector_model"):
                if getattr(self, extra) is not None:
                    raise InvalidInput(f"{extra} goes with texts; a document carries its own id and metadata, "
                                       "and its chunks are embedded here", field=extra)
        elif self.chunking is not None:
            raise InvalidInput("chunking goes with documents", field="chunking")
        return self


class SparseQuery(StrictObject):
    """A caller's learned-sparse query vector: vocabulary ids (ascending, distinct, below the sparse
    model's vocabulary size) and their weights (positive)."""

    indices: Annotated[list[Annotated[int, Field(ge=0, le=MAX_SPARSE_INDEX - 1)]],
                       Field(min_length=1, max_length=MAX_SPARSE_NONZEROS)]
    values: Annotated[list[Annotated[float, Field(gt=0.0)]], Field(min_length=1, max_length=MAX_SPARSE_NONZEROS)]


class StoreSearchRequest(RetrievalRequest):
    """POST /store/search: a query text (the server embeds it for the dense and sparse legs and
    analyzes it for the lexical leg), or the caller's ``query_vector`` (dense) or ``query_sparse``
    (sparse) in their modes; in hybrid mode any of them together, each serving its leg."""

    model_config = at_least_one_of(("query", "string"), ("query_vector", "array"), ("query_sparse", "object"))
    access: ClassVar[Access] = "read"

    collection: CollectionName = "default"
    query: Text | None = None
    query_vector: Vector | None = None
    query_sparse: SparseQuery | None = None
    model: ModelName = None  # must be the collection's model (unset: the collection's, when served here)
    top_k: Annotated[int, Field(ge=1, le=MAX_STORE_TOP_K)] = DEFAULT_STORE_TOP_K
    filter_metadata: MetadataFilter | None = None
    threshold: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None
    rerank: bool = False  # two-stage: the best rerank_candidates by vector, reordered by the reranker
    rerank_candidates: RerankCandidates = DEFAULT_RERANK_CANDIDATES
    # "document": the best chunk of each document (a plain record is a document of its own), with
    # the count of its other chunks among the candidates; top_k counts documents
    group_by: Literal["document"] | None = None

    @model_validator(mode="after")
    def _queries_for_the_mode(self) -> "StoreSearchRequest":
        if self.query is None and self.query_vector is None and self.query_sparse is None:
            raise InvalidInput("send query, query_vector or query_sparse (several, in hybrid mode)", field="query")
        if self.mode == "hybrid":
            return self
        for field, leg in (("query_vector", "dense"), ("query_sparse", "sparse")):
            if getattr(self, field) is not None and self.mode != leg:
                raise InvalidInput(f"{field} serves the {leg} leg: send it in {leg} or hybrid mode",
                                   field=field, limit=[leg, "hybrid"])
            if getattr(self, field) is not None and self.query is not None:
                raise InvalidInput(f"query and {field} together only in hybrid mode; otherwise send one", field=field)
        return self


class StoreGetRequest(StrictRequest):
    """POST /store/get: records by ``ids``, every chunk of ``document_ids`` (by document, then
    chunk), or up to ``limit`` records a filter matches (exactly one)."""

    model_config = exactly_one_of(("ids", "array"), ("filter_metadata", "object"), ("document_ids", "array"))
    access: ClassVar[Access] = "read"

    collection: CollectionName = "default"
    ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_IDS)] | None = None
    document_ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_IDS)] | None = None
    filter_metadata: MetadataFilter | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_STORE_IDS)] = DEFAULT_FIND_LIMIT
    include_vectors: bool = False


class StoreDeleteRequest(StrictRequest):
    """POST /store/delete: by ids, by documents (every chunk of each, at once) or by a metadata
    filter (exactly one; an empty filter, which would delete everything, is refused: /store/drop
    does that)."""

    model_config = exactly_one_of(("ids", "array"), ("filter_metadata", "object"), ("document_ids", "array"))
    access: ClassVar[Access] = "write"

    collection: CollectionName = "default"
    ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_IDS)] | None = None
    document_ids: Annotated[list[RecordId], Field(min_length=1, max_length=MAX_STORE_IDS)] | None = None
    filter_metadata: Annotated[MetadataFilter | None, Field(json_schema_extra={"minProperties": 1})] = None


class StoreDropRequest(StrictRequest):
    """POST /store/drop: delete a collection."""

    access: ClassVar[Access] = "admin"

    collection: CollectionName


class StoreCollectionsRequest(StrictRequest):
    """POST /store/collections (and GET, whose body is empty): the collections the token may see."""

    access: ClassVar[Access] = "read"


# --- responses (documentation and tests; cords return plain dicts of these shapes) ------------


class ChunkFields(BaseModel):
    """Where a record sits in its document (absent for a plain record)."""

    document_id: str | None = None
    chunk: int | None = None  # its index in the document, from 0
    span: list[int] | None = None  # [start, end): its characters in the document's text


class AddedDocument(BaseModel):
    id: str
    chunks: int


class StoreAddResponse(BaseModel):
    collection: str
    added_count: int  # records written (a document's: its chunks)
    ids: list[str]  # their ids, in input order (a document's chunks: {id}#{index})
    total_in_collection: int
    documents: list[AddedDocument] | None = None  # with documents: each one's chunk count, in input order


class StoreHit(ChunkFields):
    id: str
    text: str
    score: float  # dense: the cosine; lexical, sparse: the leg's score; hybrid: the fused score
    rank: int
    metadata: Metadata
    rerank_score: float | None = None
    legs: HitLegs | None = None
    other_chunks: int | None = None  # group_by "document": its document's other chunks among the candidates


class StoreSearchResponse(BaseModel):
    collection: str
    query: str | None
    results: list[StoreHit]
    results_returned: int
    model: str
    reranker: Reranker | None = None
    mode: SearchMode = "dense"
    skipped_legs: dict[str, str] | None = None  # hybrid: legs it ran without, each with the reason


class StoreRecord(ChunkFields):
    id: str
    text: str
    metadata: Metadata
    vector: list[float] | None = None


class StoreGetResponse(BaseModel):
    collection: str
    records: list[StoreRecord]
    missing_ids: list[str]


class StoreDeleteResponse(BaseModel):
    collection: str
    deleted_count: int
    total_in_collection: int


class StoreDropResponse(BaseModel):
    collection: str
    dropped: bool


class CollectionSummary(BaseModel):
    name: str
    size: int
    dimension: int
    model: str
    sample_texts: list[str]
    lexical: str | None = None  # its lexical leg's language (None: no lexical leg)
    sparse_model: str | None = None  # its sparse leg's model (None: no sparse leg)


class CollectionsResponse(BaseModel):
    collections: list[CollectionSummary]
    total: int
    store: str
