"""Ranking metrics (trec_eval's, through ``pytrec_eval``), reciprocal rank fusion and latency percentiles.

A *run* maps each query id to its ranked document ids, best first: the order a system returned,
never re-sorted here (trec_eval sorts by score and breaks ties by document id, so ranks are handed
to it as strictly decreasing scores). Every judged query counts: a query the run lacks, or answers
with nothing, scores 0 (``pytrec_eval`` alone would leave it out of the mean).
"""

from __future__ import annotations

import numpy as np
import pytrec_eval

from .collections import Qrels

Run = dict[str, list[str]]
MEASURES = {"ndcg@10": "ndcg_cut_10", "recall@100": "recall_100"}


def evaluate(qrels: Qrels, run: Run) -> dict[str, float]:
    """Mean nDCG@10 (graded gains, log2 discount, as trec_eval) and recall@100 over the judged queries."""
    judged = {q: docs for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    if not judged:
        raise ValueError("no query has a relevant judgement")
    scored = {q: {d: float(len(ids) - rank) for rank, d in enumerate(_unique(ids))}
              for q, ids in run.items() if q in judged and ids}
    per_query = pytrec_eval.RelevanceEvaluator(judged, set(MEASURES.values())).evaluate(scored)
    return {name: sum(per_query.get(q, {}).get(key, 0.0) for q in judged) / len(judged)
            for name, key in MEASURES.items()}


def _unique(ids: list[str]) -> list[str]:
    """First occurrence of each id (trec_eval would count a repeat twice)."""
    return list(dict.fromkeys(ids))


def rrf(runs: list[Run], k: int = 60, depth: int = 100) -> Run:
    """Reciprocal rank fusion: a document's score is the sum over runs of ``1 / (k + rank)``, rank from 1.

    Ties are broken by the document's best rank in any run, then by id, so the fusion is deterministic.
    """
    fused: Run = {}
    for q in {q for run in runs for q in run}:
        scores: dict[str, float] = {}
        best: dict[str, int] = {}
        for run in runs:
            for rank, d in enumerate(_unique(run.get(q, [])), start=1):
                scores[d] = scores.get(d, 0.0) + 1.0 / (k + rank)
                best[d] = min(best.get(d, rank), rank)
        fused[q] = sorted(scores, key=lambda d: (-scores[d], best[d], d))[:depth]
    return fused


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) of latencies given in seconds, in milliseconds."""
    p50, p99 = np.percentile(np.asarray(seconds, dtype=np.float64), [50, 99])
    return float(p50) * 1000, float(p99) * 1000
