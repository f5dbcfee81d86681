"""The store verbs: embed with the engine, keep in the vector store, answer with typed data.

``StoreService`` is what the store cords call: it checks what the store cannot (ids and metadata
per text, callers' vectors, the collection's model against the engine's), embeds through the
engine, runs two-stage retrieval through the engine's one ``two_stage``, and times each store
operation for the metrics. The native dialect shapes its results.
"""

from __future__ import annotations

import copy
import hashlib
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..documents import Document, grouping, ingest
from ..documents.chunking import Chunker, Chunking
from ..engine.core import EMBEDDER, RERANKER, Engine, two_stage
from ..engine.hybrid import Candidates, candidates_by_leg, first_stage, legs_for
from ..engine.results import DENSE, HYBRID, LEXICAL, SPARSE, Hit, Ranking, Retrieval
from ..errors import Conflict, InvalidInput, naming
from ..lexical.analyzer import analyzer
from . import CollectionInfo, Legs, Record, SparseVector, VectorStore
from .answers import Added, Deleted, Found, Got
from .filters import Filter, parse_filter
from .metadata import encode_metadata

EXTERNAL_MODEL = "external"  # what a collection of callers' vectors records when they name no model


def _caller_vectors(vectors: Sequence[Sequence[float]], expected: int, field: str = "vectors") -> np.ndarray:
    """Callers' vectors as unit-length float32 rows (cosine search), checked.

    Raises:
        InvalidInput: not one per text, of unequal lengths, or a zero vector.
    """
    if len(vectors) != expected:
        raise InvalidInput(f"{field} has {len(vectors)} entries for {expected} texts; send one per text",
                           field=field, limit=expected)
    if len({len(v) for v in vectors}) != 1:
        raise InvalidInput(f"{field}: every vector must have the same length", field=field)
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        bad = int(np.argmin(np.where(np.isfinite(norms), norms, 0)))
        where = field if field == "query_vector" else f"{field}[{bad}]"
        raise InvalidInput(f"{where}: a zero (or overflowing) vector has no direction to search by", field=where)
    return rows / norms[:, None]


def text_id(text: str) -> str:
    """The default id of a text: a stable hash of it, so adding a text twice replaces it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _metadata_per_text(metadata: dict[str, Any] | Sequence[dict[str, Any]] | None, n: int) -> list[dict[str, Any]]:
    """One metadata object per text (one for all is copied), each checked."""
    if isinstance(metadata, (list, tuple)):
        if len(metadata) != n:
            raise InvalidInput(f"metadata has {len(metadata)} entries for {n} texts; send one per text "
                               "or one object for all", field="metadata", limit=n)
        metas = [dict(m) for m in metadata]
        for i, meta in enumerate(metas):
            encode_metadata(meta, ("metadata", i))
        return metas
    encode_metadata(metadata or {}, ("metadata",))
    return [dict(metadata or {}) for _ in range(n)]


def _exactly_one(ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None,
                 document_ids: Sequence[str] | None = None) -> None:
    if sum(x is not None for x in (ids, filter_metadata, document_ids)) != 1:
        raise InvalidInput("send ids, document_ids or filter_metadata (exactly one)", field="ids")


def collection_legs(legs: Legs) -> list[str]:
    """The legs a collection can be searched by: dense, and its lexical and sparse legs."""
    return [DENSE] + ([LEXICAL] if legs.lexical else []) + ([SPARSE] if legs.sparse_model else [])


class StoreService:
    """Store cords' logic over an ``Engine`` and a ``VectorStore`` (see module docstring).

    Args:
        engine: embeds texts and queries, reranks.
        store: keeps the collections.
        lexical_language: the analyzer of the lexical leg of collections created from now on.
    """

    def __init__(self, engine: Engine, store: VectorStore, lexical_language: str = "english") -> None:
        self.engine = engine
        self.store = store
        self.new_legs = Legs(lexical=lexical_language)
        self.observer: Callable[[str, bool, float], None] | None = None  # (operation, succeeded, seconds)
        self._chunker: Chunker | None = None

    @property
    def kind(self) -> str:
        """Which store keeps the collections (``embedded`` or ``postgres``)."""
        return self.store.kind

    def close(self) -> None:
        """Close the store (the engine is closed by its owner)."""
        self.store.close()

    @contextmanager
    def _operation(self, op: str) -> Iterator[None]:
        """Time a store operation for the observer (metrics)."""
        started, ok = time.perf_counter(), False
        try:
            yield
            ok = True
        finally:
            if self.observer is not None:
                self.observer(op, ok, time.perf_counter() - started)

    def add(self, collection: str, texts: Sequence[str], ids: Sequence[str] | None,
            metadata: dict[str, Any] | Sequence[dict[str, Any]] | None,
            vectors: Sequence[Sequence[float]] | None = None, vector_model: str | None = None,
            model: str | None = None) -> Added:
        """Upsert texts (ids default to a hash of the text); returns after the store commits.

        With ``vectors`` (one per text) the caller's vectors are stored as given (normalised) and
        the collection is one of ``vector_model``'s (default ``external``) at their dimension;
        without, the server embeds the texts (with the model's document prompt, when it defines
        one: ``engine.prompts``). A collection refuses vectors of another model or
        dimension (409). ``model``: the served embedder that embeds (None: the default).
        """
        engine = self.engine.using(EMBEDDER, model, "POST /store/add")
        if engine is not self.engine:
            return self._with(engine).add(collection, texts, ids, metadata, vectors, vector_model)
        if ids is not None and len(ids) != len(texts):
            raise InvalidInput(f"ids has {len(ids)} entries for {len(texts)} texts; send one id per text",
                               field="ids", limit=len(texts))
        metas = _metadata_per_text(metadata, len(texts))
        record_ids = list(ids) if ids is not None else [text_id(t) for t in texts]
        if vectors is not None:
            rows = _caller_vectors(vectors, len(texts))
            sparse_model = self._writable(collection, vector_model or EXTERNAL_MODEL, rows.shape[1])
        else:
            # fail fast on a model/dimension conflict, before spending a forward pass
            sparse_model = self._writable(collection, self.engine.model_id, self.engine.dimension)
        with naming("texts"):
            if vectors is None:
                rows = self.engine.embed_documents(texts).vectors  # with the model's document prompt
            sparse = self.engine.embed_sparse(texts).vectors if sparse_model else [None] * len(texts)
        records = [Record(i, t, m, v, sp) for i, t, m, v, sp in zip(record_ids, texts, metas, rows, sparse)]
        with self._operation("upsert"):
            total = self.store.upsert(collection, records)
        return Added(len(dict.fromkeys(record_ids)), record_ids, total)

    def _writable(self, collection: str, model: str, dimension: int) -> str | None:
        """Create the collection or check its model and dimension (409), and check its sparse
        model is this server's (409); returns the sparse model (None: no sparse leg)."""
        legs = Legs(self.new_legs.lexical, self.engine.sparse_model_id)
        self.store.ensure_collection(collection, model, dimension, legs)
        sparse_model = self.store.legs(collection).sparse_model
        if sparse_model is not None and sparse_model != self.engine.sparse_model_id:
            raise Conflict(f"collection {collection!r} keeps sparse vectors of {sparse_model!r}; this server encodes "
                           f"with {self.engine.sparse_model_id!r}: add to it from a server with that sparse model",
                           field="collection")
        return sparse_model

    def chunker(self) -> Chunker:
        """The embedding model's ``Chunker``: its tokenizer, its window, its document prompt."""
        self._chunker = self._chunker or ingest.chunker_of(self.engine)
        return self._chunker

    def add_documents(self, collection: str, documents: Sequence[Document], chunking: Chunking | None = None,
                      model: str | None = None) -> Added:
        """Store each document as its chunks (``documents.chunking``), embedded as ``add`` embeds
        texts, each chunk with the document's metadata; a document already stored has all its
        chunks replaced, in the same transaction. Returns after the store commits.

        Raises:
            InvalidInput: bad chunking (named ``chunking.max_tokens``/``chunking.overlap`` with the
                limit), a document id twice, bad metadata, more chunks than a request may embed
                (``max_store_add_chunks``), or ids colliding within the request.
            Conflict: a document id that is a stored record's id, or a collection of another model.

        ``model``: the served embedder that embeds and whose tokenizer cuts (None: the default).
        """
        engine = self.engine.using(EMBEDDER, model, "POST /store/add")
        if engine is not self.engine:
            return self._with(engine).add_documents(collection, documents, chunking)
        pieces = ingest.chunked(self.chunker(), documents, chunking or Chunking(),
                                self.engine.limits.get("max_store_add_chunks"))
        sparse_model = self._writable(collection, self.engine.model_id, self.engine.dimension)
        texts = [p.text for doc_pieces in pieces for p in doc_pieces]
        rows = self.engine.embed_documents(texts).vectors  # with the model's document prompt
        sparse = self.engine.embed_sparse(texts).vectors if sparse_model else [None] * len(texts)
        records = ingest.records_of(documents, pieces, rows, sparse)
        with self._operation("upsert"):
            total = self.store.upsert(collection, records, [d.id for d in documents])
        return Added(len(records), [r.id for r in records], total,
                     [(d.id, len(p)) for d, p in zip(documents, pieces)])

    def search(self, collection: str, query: str | None, top_k: int, filter_metadata: dict[str, Any] | None,
               threshold: float | None, query_vector: Sequence[float] | None = None, *, rerank: bool = False,
               rerank_candidates: int = 50, retrieval: Retrieval = Retrieval(),
               query_sparse: SparseVector | None = None, group_by: str | None = None,
               query_model: str | None = None) -> Found:
        """The best matches of one query (a text the server embeds, or the caller's vectors).

        ``retrieval.mode`` picks the legs (``engine.hybrid``): ``dense`` (the collection's vectors,
        the query embedded with the model's query prompt; ``threshold`` drops hits below that
        cosine), ``lexical`` (BM25 of the query's terms),
        ``sparse`` (the sparse model's vectors) or ``hybrid`` (every leg the collection has, each
        bringing ``leg_candidates``, fused; ``threshold`` applies to the dense leg). The filter
        applies inside every leg. With ``rerank`` (two-stage retrieval) the best
        ``rerank_candidates`` of that first stage are reordered by the engine's reranker (it reads
        ``query`` with each text); the best ``top_k`` come back with their first-stage ``score``
        and their ``rerank_score``. ``query_vector`` serves the dense leg and ``query_sparse`` the
        sparse leg instead of the query text; the lexical leg reads the text. With ``group_by``
        ``"document"`` each leg reads more candidates (``grouping.candidates``), and after fusion
        and rerank the best chunk of each document comes back (``documents.grouping``): ``top_k``
        counts documents.

        Raises:
            InvalidInput: rerank or a lexical/sparse leg without a query text, a mode the collection
                has no leg for, a threshold without a dense leg, a bad filter or query vector.
            NotFound: no such collection.
            Conflict: the collection holds another model's vectors and no ``query_vector`` came, or
                another sparse model's.
            Overloaded: a model queue the search needs is full (asked before any work).
        """
        if rerank and query is None:
            raise InvalidInput("rerank reads the query text with each candidate: send query, not query_vector",
                               field="rerank")
        where = parse_filter(filter_metadata)
        model, dimension = self.store.model_of(collection)  # NotFound (404) for an unknown collection
        engine = self.engine.for_collection(collection, model, query_model)  # Conflict: another model named
        if engine is not self.engine:  # another served embedder's collection: searched with that embedder
            return self._with(engine).search(collection, query, top_k, filter_metadata, threshold, query_vector,
                                             rerank=rerank, rerank_candidates=rerank_candidates,
                                             retrieval=retrieval, query_sparse=query_sparse, group_by=group_by)
        # a dense search (the default) needs no legs: no second lookup on its path
        stored_legs = self.store.legs(collection) if retrieval.mode != DENSE else Legs()
        legs = legs_for(retrieval.mode, collection_legs(stored_legs), f"collection {collection!r}")
        if query is None and (LEXICAL in legs or (SPARSE in legs and query_sparse is None)
                              or (DENSE in legs and query_vector is None)):
            raise InvalidInput(f"mode {retrieval.mode!r} reads the query text for its "
                               f"{'lexical' if LEXICAL in legs else 'sparse'} leg: send query", field="query")
        if query_sparse is not None:
            self._check_sparse_query(collection, stored_legs, query_sparse)
        if threshold is not None and DENSE not in legs:
            raise InvalidInput(f"threshold bounds the dense leg's cosine; mode {retrieval.mode!r} has none",
                               field="threshold")
        if SPARSE in legs and query_sparse is None and stored_legs.sparse_model != self.engine.sparse_model_id:
            raise Conflict(f"collection {collection!r} holds sparse vectors of {stored_legs.sparse_model!r}; this "
                           f"server encodes with {self.engine.sparse_model_id!r}", field="mode")
        self.engine.check_admission(([EMBEDDER] if DENSE in legs and query_vector is None else [])
                                    + ([SPARSE] if SPARSE in legs and query_sparse is None else [])
                                    + ([RERANKER] if rerank else []))
        # checked now; the query is embedded inside the dense leg, beside the other legs
        vector = self._query_vector(collection, model, dimension, query, query_vector) if DENSE in legs else None
        grouped = group_by is not None
        wanted = grouping.candidates(top_k, self.engine.limits.get("max_group_candidates", 1000)) if grouped else top_k
        keep = max(top_k, rerank_candidates) if rerank else wanted  # a rerank reads what was asked, grouped or not
        depth = max(keep, retrieval.leg_candidates) if retrieval.mode == HYBRID else keep
        texts: dict[str, Record] = {}

        def collect(hits: list[Any]) -> Candidates:
            for h in hits:
                texts.setdefault(h.id, Record(h.id, h.text, h.metadata, None, chunk=h.chunk))
            return [(h.id, h.score) for h in hits]

        runs = {
            DENSE: lambda: collect(self.store.search(collection, vector(), depth, where, threshold)[0]),
            LEXICAL: lambda: self._lexical(collection, stored_legs, query or "", depth, where, collect),
            SPARSE: lambda: self._sparse(collection, query or "", query_sparse, depth, where, collect),
        }
        with self._operation("search"):
            found, skipped = candidates_by_leg(retrieval.mode, legs, runs)
        keys, hits = first_stage(retrieval.mode, found, retrieval, keep)
        records = [texts[k] for k in keys]
        if rerank:
            scores = np.asarray([h.score for h in hits], dtype=np.float64)  # as the first stage gave them
            staged = two_stage(self.engine.reranker, query or "", [r.text for r in records], scores,
                               len(records) if grouped else top_k,
                               cosines=retrieval.mode == DENSE and query_vector is None)
            ranking = Ranking([Hit(h.index, h.score, h.rank, h.rerank_score, hits[h.index].legs)
                               for h in staged.hits], staged.reranker, retrieval.mode, skipped)
        else:
            ranking = Ranking(hits, None, retrieval.mode, skipped)
        if not grouped:
            return Found(ranking, records, model)
        keys = [("document", r.chunk.document_id) if r.chunk else ("record", r.id) for r in records]
        best, others = grouping.by_document(ranking.hits, keys, top_k)
        return Found(replace(ranking, hits=best), records, model, others)

    def _with(self, engine: Engine) -> "StoreService":
        """This service over ``engine`` (an ``Engine.using`` view: another served embedder)."""
        view = copy.copy(self)
        view.engine = engine
        view._chunker = None  # the chunker is the embedder's: its tokenizer, window and prompt
        return view

    def _query_vector(self, collection: str, model: str, dimension: int, query: str | None,
                      query_vector: Sequence[float] | None) -> Callable[[], np.ndarray]:
        """The dense leg's query, checked now and given when called: the caller's vector, or the
        query embedded by the collection's model."""
        if query_vector is not None:
            vector = _caller_vectors([query_vector], 1, "query_vector")
            if vector.shape[1] != dimension:
                raise InvalidInput(f"query_vector has {vector.shape[1]} dimensions; collection {collection!r} holds "
                                   f"{dimension}", field="query_vector", limit=dimension)
            return lambda: vector
        if (model, dimension) != (self.engine.model_id, self.engine.dimension):
            raise Conflict(f"collection {collection!r} holds vectors of {model!r} ({dimension}); this server "
                           f"embeds with {self.engine.model_id!r}: send query_vector made by {model!r}",
                           field="query")
        return lambda: self.engine.embed_queries([query or ""]).vectors  # with the model's query prompt

    def _lexical(self, collection: str, legs: Legs, query: str, depth: int, where: Filter,
                 collect: Callable[[list[Any]], Candidates]) -> Candidates | None:
        terms = analyzer(legs.lexical or "none").terms(query)
        return collect(self.store.search_lexical(collection, terms, depth, where)) if terms else None

    def _sparse(self, collection: str, query: str, given: SparseVector | None, depth: int, where: Filter,
                collect: Callable[[list[Any]], Candidates]) -> Candidates | None:
        encoded = given if given is not None else self.engine.embed_sparse([query]).vectors[0]
        return collect(self.store.search_sparse(collection, encoded, depth, where)) if encoded.indices else None

    def _check_sparse_query(self, collection: str, legs: Legs, query: SparseVector) -> None:
        """A caller's sparse query: as long as its weights, ascending distinct ids, and ids within the
        vocabulary of the collection's sparse model when this server serves that model."""
        if len(query.indices) != len(query.values):
            raise InvalidInput(f"query_sparse has {len(query.indices)} indices and {len(query.values)} values; send "
                               "one value per index", field="query_sparse.values", limit=len(query.indices))
        if any(b <= a for a, b in zip(query.indices, query.indices[1:])):
            raise InvalidInput("query_sparse.indices must be ascending and distinct", field="query_sparse.indices")
        vocabulary = self.engine.sparse_vocab_size if legs.sparse_model == self.engine.sparse_model_id else None
        if vocabulary is not None and query.indices[-1] >= vocabulary:
            at = next(i for i, index in enumerate(query.indices) if index >= vocabulary)
            raise InvalidInput(f"query_sparse.indices[{at}] is {query.indices[at]}: the sparse model "
                               f"{legs.sparse_model!r} has {vocabulary} ids (0..{vocabulary - 1})",
                               field=f"query_sparse.indices[{at}]", limit=vocabulary - 1)

    def get(self, collection: str, ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None = None,
            limit: int | None = None, document_ids: Sequence[str] | None = None) -> Got:
        """Records by id (in the order asked, with the ids not found), every chunk of
        ``document_ids`` (by document, then chunk; ``missing_ids``: the documents not found), or up
        to ``limit`` that a filter matches (the request model supplies its default)."""
        _exactly_one(ids, filter_metadata, document_ids)
        if document_ids is not None:
            with self._operation("get"):
                records = self.store.get_documents(collection, document_ids)
            present = {r.chunk.document_id for r in records if r.chunk}
            return Got(records, [d for d in dict.fromkeys(document_ids) if d not in present])
        with self._operation("get"):
            if ids is not None:
                records = self.store.get(collection, ids)
            elif limit is None or limit < 1:
                raise InvalidInput("a filtered get needs a limit of 1 or more", field="limit", limit=1)
            else:
                records = self.store.find(collection, parse_filter(filter_metadata), limit)
        present = {r.id for r in records}
        return Got(records, [i for i in ids if i not in present] if ids is not None else [])

    def delete(self, collection: str, ids: Sequence[str] | None, filter_metadata: dict[str, Any] | None,
               document_ids: Sequence[str] | None = None) -> Deleted:
        """Records by id, every chunk of ``document_ids`` (at once), or by a (non-empty) metadata
        filter; ``NotFound`` for an unknown collection."""
        _exactly_one(ids, filter_metadata, document_ids)
        where = parse_filter(filter_metadata) if filter_metadata is not None else None
        if where is not None and not where:
            raise InvalidInput("an empty filter would delete everything; use /store/drop", field="filter_metadata")
        self.store.describe(collection)
        with self._operation("delete"):
            deleted = self.store.delete(collection, ids, where, document_ids)
        return Deleted(deleted, self.store.describe(collection).size)

    def drop(self, collection: str) -> None:
        """A collection and everything in it."""
        with self._operation("drop"):
            self.store.drop(collection)

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection with its size, dimension, model and a few sample texts."""
        return self.store.collections()
