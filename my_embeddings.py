"""chutes-embeddings: a text-embeddings chute (TEI with a local fallback) and its cords.

Deploy: ``chutes deploy my_embeddings:chute``. Run locally:
``CHUTES_EXECUTION_CONTEXT=REMOTE chutes run my_embeddings:chute --dev --host 127.0.0.1 --port 8000``.

Only this file is uploaded on deploy; ``schemas.py``, ``image.py`` and ``chutes_embeddings/``
live in the image's WORKDIR. Module-level imports need only the ``chutes`` SDK and light modules
of the package: the engine (torch, numpy, ...) is imported by the startup hook. Each cord is one
named function: ``cord_call`` parses the raw JSON body with the route's request model and runs
the route's dialect function (``http/dialects``) with the engine or the store service; the route
table says which dialect each route speaks, and the request guard installed by
``install_boundary`` sees every request first.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from chutes.chute import Chute, NodeSelector
from starlette.responses import Response

import schemas as S
from chutes_embeddings.engine.results import EMBEDDER, RERANKER, SPARSE
from chutes_embeddings.http.boundary import install_boundary
from chutes_embeddings.http.cords import cord_call, run_cord
from chutes_embeddings.http.dialects import cohere, infinity, native, openai, tei
from chutes_embeddings.http.openapi import ServedModel, build_openapi
from chutes_embeddings.http.routes import RouteTable
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
ROUTES = RouteTable(error_models={"native": S.NativeError, "openai": S.OpenAIError, "tei": S.TeiError,
                                  "cohere": S.CohereError, "infinity": S.InfinityError})
install_boundary(chute, ROUTES)


def _route(method: str, path: str, request: type | None, response: type | None, *, dialect: Any = native,
           uses_model: str | None = None, media_type: str = "application/json", access: str | None = None) -> Any:
    """Declare a cord (the SDK sees JSON schemas, not models to validate) and record the route.

    ``access``: what the route needs of a caller's token (``chutes_embeddings/access.py``), by
    default its request model's; a GET that takes a token (on the local server, from its
    ``Authorization`` header) names it.
    """
    access = access or getattr(request, "access", None)
    cord = chute.cord(
        public_api_path=path,
        public_api_method=method,
        **({"input_schema": request.model_json_schema()} if request else {}),
        output_schema=response.model_json_schema() if response else {"type": "string"},
        output_content_type=media_type,
    )

    def register(func: Any) -> Any:
        declared = cord(func)  # sets cord.path, the SDK's internal path for this cord
        ROUTES.add(method, path, cord.path, func.__doc__ or "", request, response, dialect, uses_model, media_type,
                   access)
        return declared

    return register


def _post(path: str, request: type, response: type | None, **options: Any) -> Any:
    return _route("POST", path, request, response, **options)


def _get(path: str, response: type | None, **options: Any) -> Any:
    return _route("GET", path, None, response, **options)


@chute.on_startup()
async def start(self: Any) -> None:
    """Load the models and start the engine and the store.

    Settings or an engine set on the chute before start-up (tests, or an application embedding the
    chute) are used as they are.
    """
    from chutes_embeddings.engine.startup import start_engine
    from chutes_embeddings.http.limits import service_limits
    from chutes_embeddings.http.metrics import Metrics
    from chutes_embeddings.logs import configure_logging
    from chutes_embeddings.settings import Settings
    from chutes_embeddings.store import open_store
    from chutes_embeddings.store.service import StoreService

    settings = getattr(self, "settings", None) or Settings.from_env()
    configure_logging(settings)
    self.settings = settings  # read by the request guard (body limits, local-server rules) and the cords
    if getattr(self, "engine", None) is None:
        self.engine = start_engine(settings, service_limits(settings, S.LIMITS), max_clusters=S.MAX_CLUSTERS)
    store = open_store(settings.store_url, settings.data_path, **settings.store_options())
    self.store = StoreService(self.engine, store, settings.lexical_language)
    self.metrics = Metrics(self.engine, self.store, ROUTES)


@chute.on_shutdown()
async def stop(self: Any) -> None:
    """Stop TEI and the batchers (TEI also dies with this process: see tei_process.py), close the store."""
    if getattr(self, "store", None) is not None:
        self.store.close()
    if getattr(self, "engine", None) is not None:
        self.engine.close()


# --- the service's own API ------------------------------------------------------------------
@_post("/embed", S.EmbedRequest, S.EmbedResponse, uses_model=EMBEDDER)
async def embed(self: Any, body: Any = None) -> dict:
    """Embed one text (one vector back) or a list of texts."""
    return await cord_call(self, S.EmbedRequest, body, native.embed, self.engine)


@_post("/embed/batch", S.EmbedBatchRequest, S.EmbedBatchResponse, uses_model=EMBEDDER)
async def embed_batch(self: Any, body: Any = None) -> dict:
    """Embed up to 1000 texts; ``batch_size`` caps texts per forward pass."""
    return await cord_call(self, S.EmbedBatchRequest, body, native.embed_batch, self.engine)


@_post("/embed/sparse", S.SparseEmbedRequest, S.SparseEmbedResponse, uses_model=SPARSE)
async def embed_sparse(self: Any, body: Any = None) -> dict:
    """Learned-sparse (SPLADE) vectors: per text its vocabulary ids and weights (``EMBEDDINGS_SPARSE_MODEL``)."""
    return await cord_call(self, S.SparseEmbedRequest, body, native.embed_sparse, self.engine)


@_post("/similarity", S.SimilarityRequest, S.SimilarityResponse, uses_model=EMBEDDER)
async def similarity(self: Any, body: Any = None) -> dict:
    """Similarity of one source text to each target, best first."""
    return await cord_call(self, S.SimilarityRequest, body, native.similarity, self.engine)


@_post("/rerank", S.RerankRequest, S.RerankResponse, uses_model=RERANKER)
async def rerank(self: Any, body: Any = None) -> dict:
    """Texts ordered by relevance to the query (the cross-encoder's scores when one is configured)."""
    return await cord_call(self, S.RerankRequest, body, native.rerank, self.engine)


@_post("/search", S.SearchRequest, S.SearchResponse, uses_model=EMBEDDER)
async def search(self: Any, body: Any = None) -> dict:
    """The best matches of a query in a corpus sent with it (``rerank``: reordered by the reranker)."""
    return await cord_call(self, S.SearchRequest, body, native.search, self.engine)


@_post("/cluster", S.ClusterRequest, S.ClusterResponse, uses_model=EMBEDDER)
async def cluster(self: Any, body: Any = None) -> dict:
    """Group texts by meaning (k-means, agglomerative or HDBSCAN)."""
    return await cord_call(self, S.ClusterRequest, body, native.cluster, self.engine)


@_get("/health", S.HealthResponse)
async def health(self: Any) -> dict:
    """Whether the service can answer, and which backend answers."""
    return run_cord(native.health, self.engine)


@_get("/info", S.InfoResponse)
async def info(self: Any) -> dict:
    """Model, limits, cache and batching state."""
    return run_cord(native.info, self.engine)


@_post("/store/add", S.StoreAddRequest, S.StoreAddResponse, uses_model=EMBEDDER)
async def store_add(self: Any, body: Any = None) -> dict:
    """Upsert texts into a collection; answered after the store has committed them."""
    return await cord_call(self, S.StoreAddRequest, body, native.store_add, self.store)


@_post("/store/search", S.StoreSearchRequest, S.StoreSearchResponse, uses_model=EMBEDDER)
async def store_search(self: Any, body: Any = None) -> dict:
    """Search a stored collection, optionally filtered by metadata (``rerank``: two-stage)."""
    return await cord_call(self, S.StoreSearchRequest, body, native.store_search, self.store)


@_post("/store/get", S.StoreGetRequest, S.StoreGetResponse)
async def store_get(self: Any, body: Any = None) -> dict:
    """Fetch records by id, or those a metadata filter matches."""
    return await cord_call(self, S.StoreGetRequest, body, native.store_get, self.store)


@_post("/store/delete", S.StoreDeleteRequest, S.StoreDeleteResponse)
async def store_delete(self: Any, body: Any = None) -> dict:
    """Delete records by id or by a metadata filter."""
    return await cord_call(self, S.StoreDeleteRequest, body, native.store_delete, self.store)


@_post("/store/drop", S.StoreDropRequest, S.StoreDropResponse)
async def store_drop(self: Any, body: Any = None) -> dict:
    """Delete a collection and everything in it."""
    return await cord_call(self, S.StoreDropRequest, body, native.store_drop, self.store)


@_get("/store/collections", S.CollectionsResponse, access=S.StoreCollectionsRequest.access)
async def store_collections(self: Any, body: Any = None) -> dict:
    """Every collection the caller may see, with its size, dimension, model and a few sample texts
    (with tokens configured: POST it with the token, or GET it with ``Authorization: Bearer`` locally)."""
    return await cord_call(self, S.StoreCollectionsRequest, body, native.store_collections, self.store)


@_post("/store/collections", S.StoreCollectionsRequest, S.CollectionsResponse)
async def store_collections_post(self: Any, body: Any = None) -> dict:
    """Every collection the caller's token may see (``GET /store/collections`` with the token in the body)."""
    return await cord_call(self, S.StoreCollectionsRequest, body, native.store_collections, self.store)


# --- OpenAI's embeddings API --------------------------------------------------------------------
@_post("/v1/embeddings", S.OpenAIEmbeddingsRequest, S.OpenAIEmbeddingsResponse, dialect=openai, uses_model=EMBEDDER)
async def openai_embeddings(self: Any, body: Any = None) -> dict:
    """OpenAI-compatible embeddings (floats or base64, ``dimensions``, real token usage)."""
    return await cord_call(self, S.OpenAIEmbeddingsRequest, body, openai.embeddings, self.engine)


@_post("/tei/v1/embeddings", S.OpenAIEmbeddingsRequest, S.OpenAIEmbeddingsResponse, dialect=openai,
       uses_model=EMBEDDER)
async def tei_openai_embeddings(self: Any, body: Any = None) -> dict:
    """TEI's OpenAI-compatible route (``/v1/embeddings`` under ``/tei``), for clients given TEI's URL."""
    return await cord_call(self, S.OpenAIEmbeddingsRequest, body, openai.embeddings, self.engine)


@_get("/v1/models", S.OpenAIModelsResponse, dialect=openai)
async def openai_models(self: Any) -> dict:
    """The served model, as OpenAI's model list."""
    return run_cord(openai.models, self.engine)


async def openai_model(model: str) -> Any:
    """The ``openai`` SDK's ``models.retrieve``: ``GET /v1/models/{model}``, on the local server only
    (Chutes routes fixed lowercase paths, and model ids have capitals and slashes; there,
    ``models.list()`` answers the same)."""
    return run_cord(partial(openai.model, model_id=model), chute.engine)


chute.add_api_route("/v1/models/{model:path}", openai_model, methods=["GET"], include_in_schema=False)


# --- Infinity's API (under /infinity: its /rerank would take the native one) -------------------
@_post("/infinity/embeddings", S.InfinityEmbeddingsRequest, S.InfinityEmbeddingsResponse, dialect=infinity,
       uses_model=EMBEDDER)
async def infinity_embeddings(self: Any, body: Any = None) -> dict:
    """Infinity's ``POST /embeddings`` (OpenAI's answer with ``id`` and ``created``; ``dimensions: 0`` is all)."""
    return await cord_call(self, S.InfinityEmbeddingsRequest, body, infinity.embeddings, self.engine)


@_post("/infinity/rerank", S.InfinityRerankRequest, S.InfinityRerankResponse, dialect=infinity, uses_model=RERANKER)
async def infinity_rerank(self: Any, body: Any = None) -> dict:
    """Infinity's ``POST /rerank``: documents by relevance, best first, ``document`` as a string."""
    return await cord_call(self, S.InfinityRerankRequest, body, infinity.rerank, self.engine)


@_get("/infinity/models", S.InfinityModelsResponse, dialect=infinity)
async def infinity_models(self: Any) -> dict:
    """Infinity's ``GET /models``: the served models with their capabilities and queue stats."""
    return run_cord(infinity.models, self.engine)


# --- TEI's API ----------------------------------------------------------------------------------
@_post("/tei", S.TeiRootRequest, S.TeiRootResponse, dialect=tei, uses_model=EMBEDDER)
async def tei_root(self: Any, body: Any = None) -> list:
    """TEI's ``POST /``: embeddings, or similarity for a similarity body (what
    ``huggingface_hub.InferenceClient(model=<url>/tei)`` sends for both)."""
    if tei.is_similarity(body):
        return await cord_call(self, S.TeiSimilarityRequest, body, tei.similarity, self.engine)
    return await cord_call(self, S.TeiEmbedRequest, body, tei.embed, self.engine)


@_post("/tei/embed", S.TeiEmbedRequest, S.TeiEmbedResponse, dialect=tei, uses_model=EMBEDDER)
async def tei_embed(self: Any, body: Any = None) -> list:
    """TEI's ``POST /embed``."""
    return await cord_call(self, S.TeiEmbedRequest, body, tei.embed, self.engine)


@_post("/tei/embed_all", S.TeiEmbedAllRequest, S.TeiEmbedAllResponse, dialect=tei, uses_model=EMBEDDER)
async def tei_embed_all(self: Any, body: Any = None) -> list:
    """TEI's ``POST /embed_all``: token embeddings."""
    return await cord_call(self, S.TeiEmbedAllRequest, body, tei.embed_all, self.engine)


@_post("/tei/embed_sparse", S.TeiEmbedSparseRequest, S.TeiEmbedSparseResponse, dialect=tei, uses_model=SPARSE)
async def tei_embed_sparse(self: Any, body: Any = None) -> list:
    """TEI's ``POST /embed_sparse``: each input's non-zero SPLADE weights (424 without a sparse model)."""
    return await cord_call(self, S.TeiEmbedSparseRequest, body, tei.embed_sparse, self.engine)


@_post("/tei/tokenize", S.TeiTokenizeRequest, S.TeiTokenizeResponse, dialect=tei)
async def tei_tokenize(self: Any, body: Any = None) -> list:
    """TEI's ``POST /tokenize``."""
    return await cord_call(self, S.TeiTokenizeRequest, body, tei.tokenize, self.engine)


@_post("/tei/decode", S.TeiDecodeRequest, S.TeiDecodeResponse, dialect=tei)
async def tei_decode(self: Any, body: Any = None) -> list:
    """TEI's ``POST /decode``: token ids back to text, by the model's tokenizer."""
    return await cord_call(self, S.TeiDecodeRequest, body, tei.decode, self.engine)


@_post("/tei/similarity", S.TeiSimilarityRequest, S.TeiSimilarityResponse, dialect=tei, uses_model=EMBEDDER)
async def tei_similarity(self: Any, body: Any = None) -> list:
    """TEI's ``/similarity``: each sentence's cosine to the source sentence, in input order."""
    return await cord_call(self, S.TeiSimilarityRequest, body, tei.similarity, self.engine)


@_post("/tei/rerank", S.TeiRerankRequest, S.TeiRerankResponse, dialect=tei, uses_model=RERANKER)
async def tei_rerank(self: Any, body: Any = None) -> list:
    """TEI's ``POST /rerank``: every text with its score, best first."""
    return await cord_call(self, S.TeiRerankRequest, body, tei.rerank, self.engine)


# --- Cohere's rerank API (and Jina's, which is Cohere v1's) ------------------------------------
@_post("/v2/rerank", S.CohereV2RerankRequest, S.CohereRerankResponse, dialect=cohere, uses_model=RERANKER)
async def cohere_rerank_v2(self: Any, body: Any = None) -> dict:
    """Cohere v2's ``POST /v2/rerank``: documents by relevance, best first, cut to ``top_n``."""
    return await cord_call(self, S.CohereV2RerankRequest, body, cohere.rerank_v2, self.engine)


@_post("/v1/rerank", S.CohereV1RerankRequest, S.CohereRerankResponse, dialect=cohere, uses_model=RERANKER)
async def cohere_rerank_v1(self: Any, body: Any = None) -> dict:
    """Cohere v1's and Jina's ``POST /v1/rerank`` (``return_documents`` adds each text)."""
    return await cord_call(self, S.CohereV1RerankRequest, body, cohere.rerank_v1, self.engine)


# --- Cohere's embed API -------------------------------------------------------------------------
@_post("/v2/embed", S.CohereV2EmbedRequest, S.CohereEmbedByTypeResponse, dialect=cohere, uses_model=EMBEDDER)
async def cohere_embed_v2(self: Any, body: Any = None) -> dict:
    """Cohere v2's ``POST /v2/embed``: ``texts`` or text ``inputs``, each ``embedding_types`` (float,
    int8, uint8, binary, ubinary, base64), ``output_dimension``, ``truncate``."""
    return await cord_call(self, S.CohereV2EmbedRequest, body, cohere.embed_v2, self.engine)


@_post("/v1/embed", S.CohereV1EmbedRequest, S.CohereV1EmbedResponse, dialect=cohere, uses_model=EMBEDDER)
async def cohere_embed_v1(self: Any, body: Any = None) -> dict:
    """Cohere v1's ``POST /v1/embed``: float vectors, or each of ``embedding_types`` as v2 answers."""
    return await cord_call(self, S.CohereV1EmbedRequest, body, cohere.embed_v1, self.engine)


@_get("/tei/info", S.TeiInfoResponse, dialect=tei)
async def tei_info(self: Any) -> dict:
    """TEI's ``GET /info``."""
    return run_cord(tei.info, self.engine)


@_get("/tei/health", None, dialect=tei, media_type="text/plain")
async def tei_health(self: Any) -> Response:
    """TEI's ``GET /health``: an empty 200 while the service can embed, else 503."""
    run_cord(tei.health, self.engine)
    return Response(status_code=200, media_type="text/plain")


# TEI's routes for another served embedder, under its prefix: the POST routes are rewritten by the
# request guard (``/tei/{model}/embed`` is ``/tei/embed`` with that model); its GETs, on the local
# server only (Chutes routes fixed paths), are these.
async def tei_model_info(model: str) -> Any:
    """TEI's ``GET /info`` of the served embedder ``model`` (``/tei/{model}/info``)."""
    return run_cord(partial(tei.model_info, model=model), chute.engine)


async def tei_model_health(model: str) -> Response:
    """TEI's ``GET /health`` of the served embedder ``model``: an empty 200 while it can embed."""
    run_cord(partial(tei.model_health, model=model), chute.engine)
    return Response(status_code=200, media_type="text/plain")


chute.add_api_route("/tei/{model:path}/info", tei_model_info, methods=["GET"], include_in_schema=False)
chute.add_api_route("/tei/{model:path}/health", tei_model_health, methods=["GET"], include_in_schema=False)


# --- operations ---------------------------------------------------------------------------------
@_get("/metrics", None, media_type="text/plain; version=0.0.4")
async def metrics(self: Any) -> Response:
    """Prometheus metrics (requests, queue, batches, cache, failover, store)."""
    return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@_get("/tei/metrics", None, dialect=tei, media_type="text/plain; version=0.0.4")
async def tei_metrics(self: Any) -> Response:
    """TEI's ``/metrics``: the same Prometheus text as ``/metrics`` (TEI's ``te_*`` names included)."""
    return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@_get("/openapi", None)
async def openapi_document(self: Any) -> dict:
    """This API's OpenAPI 3.1 document (also at /openapi.json on the local server)."""
    return build_openapi(ROUTES, served=ServedModel.of(self.engine))


def _openapi() -> dict:
    """What FastAPI serves at /openapi.json and /docs."""
    engine = getattr(chute, "engine", None)
    return build_openapi(ROUTES, served=ServedModel.of(engine) if engine is not None else None)


chute.openapi = _openapi
