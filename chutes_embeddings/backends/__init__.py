"""Backends: what runs a model for the engine (see ``protocols`` for the one shape they share).

- ``protocols``: ``ModelService``, ``Embedder``, ``Reranker``, ``SparseEncoder``, the tokenizers and the work items;
- ``local`` / ``cross_encoder`` / ``sparse`` / ``onnx``: the models run in this process (torch or ONNX Runtime);
- ``tei`` / ``tei_process``: a TEI server over loopback, and its supervisor;
- ``failover``: TEI first, the local model when TEI cannot answer, for any kind of service;
- ``factory``: the one way to build a service of any kind for the settings.
"""

from __future__ import annotations

from .protocols import (
    TRUNCATION_DIRECTIONS,
    Embedder,
    EmbedWork,
    ModelService,
    PairIds,
    PairTokenizer,
    Reranker,
    RerankWork,
    SparseEncoder,
    SparseWeights,
    SparseWork,
    Tokenizer,
)

__all__ = ["TRUNCATION_DIRECTIONS", "EmbedWork", "Embedder", "ModelService", "PairIds",
           "PairTokenizer", "RerankWork", "Reranker", "SparseEncoder", "SparseWeights", "SparseWork", "Tokenizer"]
