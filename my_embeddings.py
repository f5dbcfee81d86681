"""chutes-embeddings: a text-embeddings chute (TEI with a local fallback) and its cords.

Deploy: ``chutes deploy my_embeddings:chute``. Run locally:
``CHUTES_EXECUTION_CONTEXT=REMOTE chutes run my_embeddings:chute --dev --host 127.0.0.1 --port 8000``.

Only this file is uploaded on deploy; ``schemas.py``, ``image.py`` and ``chutes_embeddings/``
live in the image's WORKDIR. Module-level imports need only the ``chutes`` SDK: the engine
(torch, numpy, ...) is imported by the startup hook. Each cord takes the raw JSON body,
validates it and calls the engine (``cord_call``) and returns a plain dict; the request guard
installed by ``install_boundary`` sees every request first.
"""

from __future__ import annotations

import os
from typing import Any

from chutes.chute import Chute, NodeSelector

import schemas as S
from chutes_embeddings.boundary import cord_call, install_boundary, run_cord
from image import image

chute = Chute(
    username=os.getenv("CHUTES_USERNAME", "chutes"),
    name="chutes-embeddings",
    tagline="Text embeddings with similarity, rerank, search, clustering and a vector store",
    readme="Text embeddings service: TEI on the GPU with a local sentence-transformers fallback.",
    image=image,
    node_selector=NodeSelector(gpu_count=1, min_vram_gb_per_gpu=16),
    concurrency=64,
)
# Routes (public and the SDK's internal cord paths) whose requests queue forward passes: while
# the engine is overloaded the request guard refuses them before their bodies are parsed.
MODEL_WORK_PATHS: set[str] = set()
install_boundary(chute, MODEL_WORK_PATHS)


def _post(path: str, request_model: type, response_model: type, uses_model: bool = True) -> Any:
    """The cord decorator for a POST route: the SDK sees a JSON schema, not a model to validate."""
    cord = chute.cord(
        public_api_path=path,
        public_api_method="POST",
        input_schema=request_model.model_json_schema(),
        output_schema=response_model.model_json_schema(),
        output_content_type="application/json",
    )

    def register(func: Any) -> Any:
        declared = cord(func)  # sets cord.path, the SDK's internal path for this cord
        if uses_model:
            MODEL_WORK_PATHS.update((path, cord.path))
        return declared

    return register


def _get(path: str, response_model: type) -> Any:
    return chute.cord(
        public_api_path=path,
        public_api_method="GET",
        output_schema=response_model.model_json_schema(),
        output_content_type="application/json",
    )


@chute.on_startup()
async def start(self: Any) -> None:
    """Load the model and start the engine (and the store, when configured)."""
    from chutes_embeddings.collections import Collections
    from chutes_embeddings.engine import start_engine
    from chutes_embeddings.logs import configure_logging
    from chutes_embeddings.settings import Settings
    from chutes_embeddings.store import open_store

    settings = Settings.from_env()
    configure_logging(settings)
    self.settings = settings  # read by the request guard (body limits, local-server rules)
    self.engine = start_engine(settings, S.LIMITS)
    store = open_store(settings.store_url, settings.data_path, **settings.store_options())
    self.collections = Collections(self.engine, store)


@chute.on_shutdown()
async def stop(self: Any) -> None:
    """Stop TEI and the batcher (TEI also dies with this process: see tei_process.py)."""
    if hasattr(self, "collections"):
        self.collections.store.close()
    if hasattr(self, "engine"):
        self.engine.close()


@_post("/embed", S.EmbedRequest, S.EmbedResponse)
async def embed(self: Any, body: Any = None) -> dict:
    """Embed one text (one vector back) or a list of texts."""
    return await cord_call(
        S.EmbedRequest,
        body,
        lambda r: self.engine.embed(r.inputs, single=r.single, normalize=r.normalize, truncate=r.truncate, pooling=r.pooling),
    )


@_post("/embed/batch", S.EmbedBatchRequest, S.EmbedBatchResponse)
async def embed_batch(self: Any, body: Any = None) -> dict:
    """Embed up to 1000 texts; ``batch_size`` caps texts per forward pass."""
    return await cord_call(
        S.EmbedBatchRequest,
        body,
        lambda r: self.engine.embed_batch(r.texts, batch_size=r.batch_size, normalize=r.normalize),
    )


@_post("/similarity", S.SimilarityRequest, S.SimilarityResponse)
async def similarity(self: Any, body: Any = None) -> dict:
    """Similarity of one source text to each target, best first."""
    return await cord_call(
        S.SimilarityRequest,
        body,
        lambda r: self.engine.similarity(r.source_text, r.target_texts, normalize=r.normalize),
    )


@_post("/rerank", S.RerankRequest, S.RerankResponse)
async def rerank(self: Any, body: Any = None) -> dict:
    """Texts ordered by relevance to the query."""
    return await cord_call(S.RerankRequest, body, lambda r: self.engine.rerank(r.query, r.texts, top_k_=r.top_k))


@_post("/search", S.SearchRequest, S.SearchResponse)
async def search(self: Any, body: Any = None) -> dict:
    """The best matches of a query in a corpus sent with it."""
    return await cord_call(
        S.SearchRequest,
        body,
        lambda r: self.engine.search(r.query, r.corpus, top_k_=r.top_k, threshold=r.threshold),
    )


@_post("/cluster", S.ClusterRequest, S.ClusterResponse)
async def cluster(self: Any, body: Any = None) -> dict:
    """Group texts by meaning (k-means, agglomerative or HDBSCAN)."""
    return await cord_call(
        S.ClusterRequest,
        body,
        lambda r: self.engine.cluster(r.texts, n_clusters=r.n_clusters, method=r.method, max_clusters=S.MAX_CLUSTERS),
    )


@_get("/health", S.HealthResponse)
async def health(self: Any) -> dict:
    """Whether the service can answer, and which backend answers."""
    return run_cord(self.engine.health)


@_get("/info", S.InfoResponse)
async def info(self: Any) -> dict:
    """Model, limits, cache and batching state."""
    return run_cord(self.engine.info)


@_post("/store/add", S.StoreAddRequest, S.StoreAddResponse)
async def store_add(self: Any, body: Any = None) -> dict:
    """Upsert texts into a collection; answered after the store has committed them."""
    return await cord_call(S.StoreAddRequest, body,
                     lambda r: self.collections.add(r.collection, r.texts, r.ids, r.metadata))


@_post("/store/search", S.StoreSearchRequest, S.StoreSearchResponse)
async def store_search(self: Any, body: Any = None) -> dict:
    """Search a stored collection, optionally filtered by metadata."""
    return await cord_call(S.StoreSearchRequest, body,
                     lambda r: self.collections.search(r.collection, r.query, r.top_k, r.filter_metadata, r.threshold))


@_post("/store/get", S.StoreGetRequest, S.StoreGetResponse, uses_model=False)
async def store_get(self: Any, body: Any = None) -> dict:
    """Fetch records by id."""
    return await cord_call(S.StoreGetRequest, body,
                     lambda r: self.collections.get(r.collection, r.ids, r.include_vectors))


@_post("/store/delete", S.StoreDeleteRequest, S.StoreDeleteResponse, uses_model=False)
async def store_delete(self: Any, body: Any = None) -> dict:
    """Delete records by id or by a metadata filter."""
    return await cord_call(S.StoreDeleteRequest, body,
                     lambda r: self.collections.delete(r.collection, r.ids, r.filter_metadata))


@_post("/store/drop", S.StoreDropRequest, S.StoreDropResponse, uses_model=False)
async def store_drop(self: Any, body: Any = None) -> dict:
    """Delete a collection and everything in it."""
    return await cord_call(S.StoreDropRequest, body, lambda r: self.collections.drop(r.collection))


@_get("/store/collections", S.CollectionsResponse)
async def store_collections(self: Any) -> dict:
    """Every collection with its size, dimension, model and a few sample texts."""
    return run_cord(self.collections.collections)
