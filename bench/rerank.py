"""Rerank benchmark: 50 documents per query through ``POST /rerank`` (the service as ``make serve``
runs it, with ``EMBEDDINGS_RERANK_MODEL`` set) against ``CrossEncoder.predict`` in this process,
same pairs, same run.

No real reranker weights can be downloaded here, so the cross-encoder is the bundled
all-MiniLM-L6-v2 loaded as a one-label ``CrossEncoder`` (its classification head is newly
initialised): the same architecture and cost as ``cross-encoder/ms-marco-MiniLM-L-6-v2``, so speed
figures hold for it; its scores mean nothing, so only parity is checked (max |score difference|).

    python -m bench.rerank            # also part of ``make bench``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import mixed_sentences

DOCS_PER_QUERY = 50


def build_minilm_cross_encoder(folder: Path) -> str:
    """The bundled MiniLM as a one-label cross-encoder, saved as a model folder."""
    import torch
    from sentence_transformers import CrossEncoder

    from chutes_embeddings.settings import default_model

    torch.manual_seed(0)
    CrossEncoder(default_model(), num_labels=1, device="cpu").save_pretrained(str(folder))
    return str(folder)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000


def bench_rerank(queries: int = 40, concurrency: int = 4) -> list[dict[str, Any]]:
    """Rows: in-process ``CrossEncoder.predict``, then the service over HTTP (sequential and
    ``concurrency`` clients), each with p50/p99 ms per 50-document query and pairs/s."""
    from sentence_transformers import CrossEncoder

    from chutes_embeddings import EmbeddingsClient

    from .targets import HttpTarget

    docs = mixed_sentences(DOCS_PER_QUERY * queries, seed=7)
    asks = [(q, docs[i * DOCS_PER_QUERY : (i + 1) * DOCS_PER_QUERY])
            for i, q in enumerate(mixed_sentences(queries, seed=8))]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-rerank-") as tmp:
        model = build_minilm_cross_encoder(Path(tmp) / "minilm-ce")
        ce = CrossEncoder(model, device="cpu")
        ce.predict([(asks[0][0], d) for d in asks[0][1]])  # warm-up
        latencies, reference = [], []
        started = time.perf_counter()
        for q, ds in asks:
            t = time.perf_counter()
            reference.append(ce.predict([(q, d) for d in ds], batch_size=DOCS_PER_QUERY))
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
        rows.append({"path": "CrossEncoder.predict in process (baseline)", "clients": 1,
                     "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99),
                     "pairs_per_s": DOCS_PER_QUERY * len(asks) / elapsed, "max_abs_diff": 0.0})
        base_rate = rows[0]["pairs_per_s"]
        del ce

        target = HttpTarget({"EMBEDDINGS_RERANK_MODEL": model,
                             "EMBEDDINGS_MODEL_CACHE_DIR": str(Path(tmp) / "models")}, tmp)
        client = EmbeddingsClient(target.url, timeout=300)  # the real client: it honours 429's Retry-After
        try:
            def one(i: int) -> tuple[float, np.ndarray]:
                q, ds = asks[i]
                t = time.perf_counter()
                results = client.rerank(q, ds)["results"]
                scores = np.empty(len(ds), dtype=np.float32)
                for hit in results:
                    scores[hit["index"]] = hit["score"]
                return time.perf_counter() - t, scores

            one(0)  # warm-up
            for clients in (1, concurrency):
                started = time.perf_counter()
                if clients == 1:
                    answers = [one(i) for i in range(len(asks))]
                else:
                    with ThreadPoolExecutor(clients) as pool:
                        answers = list(pool.map(one, range(len(asks))))
                elapsed = time.perf_counter() - started
                diff = max(float(np.abs(s - ref).max()) for (_, s), ref in zip(answers, reference))
                rate = DOCS_PER_QUERY * len(asks) / elapsed
                rows.append(
                    {
                        "path": "POST /rerank over HTTP, EmbeddingsClient (local cross-encoder)",
                        "clients": clients,
                        "p50_ms": _pct([a for a, _ in answers], 50),
                        "p99_ms": _pct([a for a, _ in answers], 99),
                        "pairs_per_s": rate,
                        "max_abs_diff": diff,
                    }
                )
            rss = target.peak_rss_mb()
        finally:
            client.close()
            target.close()
    for row in rows:
        row["vs_baseline"] = row["pairs_per_s"] / base_rate
    rows[-1]["server_peak_rss_mb"] = rss
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Rerank: {DOCS_PER_QUERY} documents per query (MiniLM-L6 cross-encoder; scores vs in-process predict)",
        "",
        "| path | clients | p50 ms / query | p99 ms / query | pairs/s | vs predict | max abs score diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['path']} | {r['clients']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['pairs_per_s']:.0f} | "
            f"{r['vs_baseline']:.2f} | {r['max_abs_diff']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rerank", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    print(render(bench_rerank(args.queries, args.concurrency)))


if __name__ == "__main__":
    main()
