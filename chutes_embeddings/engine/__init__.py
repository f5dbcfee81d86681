"""The engine: the service's verbs over its model services, returning data, never HTTP shapes.

``core.Engine`` composes the model services (``embedding.EmbeddingPipeline``,
``reranking.RerankPipeline`` or the bi-encoder stand-in) and returns typed results; the batcher,
the vector cache, the caller scope and the numeric helpers (similarity, clustering, pooling) sit
beside it. Nothing here imports the HTTP edge. Importing this package imports nothing heavy:
the chute file loads the engine in its startup hook.
"""
