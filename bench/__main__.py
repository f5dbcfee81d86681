"""``make bench``: speed, latency, quality, store search at scale and memory, in one run.

Every speed number is also given as a ratio to a baseline measured in the same run on the same
texts, so runs on different machines compare. Prints a markdown table (paste it into
docs/benchmarks.md) and writes the raw numbers as JSON.

    python -m bench                      # the service over HTTP, each local runtime (CPU) or torch (CUDA)
    python -m bench --in-process         # the engine in this process (no Chutes SDK needed)
    python -m bench --quick              # fewer texts and vectors: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .corpus import mixed_sentences
from .pairs import load_pairs
from .rerank import bench_rerank
from .rerank import render as render_rerank
from .targets import HttpTarget, InProcessTarget, peak_rss_mb

Row = dict[str, Any]


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    import torch

    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def spearman(embed: Callable[[list[str]], np.ndarray]) -> float:
    from scipy.stats import spearmanr

    rows = load_pairs()
    left = embed([a for a, _, _ in rows])
    right = embed([b for _, b, _ in rows])
    return float(spearmanr(cosine_rows(left, right), [label for _, _, label in rows]).statistic)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_service(name: str, target: Any, texts: list[str], singles: list[str], baseline_tps: float,
                  reference: np.ndarray, concurrency: int) -> Row:
    info = target.info()
    target.embed_batch(texts[:64])  # warm-up (and the ONNX session's first run)
    vectors, seconds = timed(lambda: target.embed_batch(texts))
    batched_tps = len(texts) / seconds
    cos = cosine_rows(vectors, reference)

    latencies: list[float] = []
    lock = threading.Lock()

    def one(text: str) -> None:
        started = time.perf_counter()
        target.embed_one(text)
        with lock:
            latencies.append(time.perf_counter() - started)

    with ThreadPoolExecutor(concurrency) as pool:
        _, conc_seconds = timed(lambda: list(pool.map(one, singles)))
    conc_tps = len(singles) / conc_seconds

    fresh = [f"cache probe {i}: " + t for i, t in enumerate(singles[:100])]
    miss = [timed(lambda t=t: target.embed_one(t))[1] for t in fresh]
    hit = [timed(lambda t=t: target.embed_one(t))[1] for t in fresh]
    quality = spearman(target.embed_batch)
    return {
        "backend": name, "runtime": info["local_runtime"], "device_backend": info["backend"],
        "batch_tps": batched_tps, "batch_vs_baseline": batched_tps / baseline_tps,
        "conc_tps": conc_tps, "conc_vs_batched": conc_tps / batched_tps,
        "conc_p50_ms": percentile(latencies, 50) * 1000, "conc_p99_ms": percentile(latencies, 99) * 1000,
        "miss_p50_ms": percentile(miss, 50) * 1000, "hit_p50_ms": percentile(hit, 50) * 1000,
        "cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "spearman": quality,
        "peak_rss_mb": target.peak_rss_mb(),
    }


def bench_store(real: np.ndarray, queries: np.ndarray, sizes: list[int], nprobe: int) -> list[Row]:
    from chutes_embeddings.store.vector_index import VectorIndex

    rows: list[Row] = []
    rng = np.random.default_rng(0)
    for n in sizes:
        # real embeddings plus small noise: neighbourhoods like real data (random vectors have none)
        base = real[rng.integers(0, len(real), n)]
        vectors = base + rng.standard_normal(base.shape, dtype=np.float32) * 0.02
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rids = np.arange(n, dtype=np.int64)
        truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        for mode in ("exact", "ivf"):
            index = VectorIndex(real.shape[1], ann_threshold=(1 if mode == "ivf" else n + 1), nprobe=nprobe,
                                background=False)
            started = time.perf_counter()
            index.upsert(rids, vectors)
            build_s = time.perf_counter() - started
            latencies, hits = [], []
            for q in queries:
                started = time.perf_counter()
                _, found = index.search(q[None, :], 10)
                latencies.append(time.perf_counter() - started)
                hits.append(found[0])
            recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(hits, truth)]))
            rows.append({"vectors": n, "mode": mode, "build_s": index.last_build_s if mode == "ivf" else build_s,
                         "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
                         "recall_at_10": recall})

    return rows


def baseline(model_name: str, cuda: bool, texts: list[str], singles: list[str],
             extra: list[str]) -> tuple[np.ndarray, float, float, np.ndarray, np.ndarray]:
    """sentence-transformers in this process on the same texts, before any server runs: its vectors,
    texts/s, Spearman on the pairs, and the real embeddings the store benchmark is built from."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        model_name, device="cuda" if cuda else "cpu", local_files_only=Path(model_name).is_dir()
    )

    def encode(batch: list[str]) -> np.ndarray:
        return model.encode(batch, batch_size=32, normalize_embeddings=True)

    encode(texts[:64])  # warm-up
    reference, seconds = timed(lambda: encode(texts))
    real = np.concatenate([reference, encode(singles)]).astype(np.float32)
    return reference, len(texts) / seconds, spearman(encode), real, encode(extra[:100]).astype(np.float32)


def render(meta: dict[str, Any], services: list[Row], store: list[Row]) -> str:
    lines = [f"Machine: {meta['machine']}. Command: `{meta['command']}`. Texts: {meta['texts']} mixed sentences "
             f"(5-60 words); baseline `SentenceTransformer.encode` (batch 32, {meta['baseline_device']}): "
             f"**{meta['baseline_tps']:.0f} texts/s**; torch fp32 Spearman on the project's pairs: "
             f"{meta['baseline_spearman']:.4f}.", ""]
    lines += ["| backend | runtime | /embed/batch texts/s | vs baseline | 16 clients texts/s | vs batched | p50 ms | "
              "p99 ms | cache miss p50 ms | hit p50 ms | cos to torch min / mean | Spearman | peak RSS MiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in services:
        lines.append(f"| {r['backend']} | {r['runtime']} | {r['batch_tps']:.0f} | {r['batch_vs_baseline']:.2f} | "
                     f"{r['conc_tps']:.0f} | {r['conc_vs_batched']:.2f} | {r['conc_p50_ms']:.1f} | "
                     f"{r['conc_p99_ms']:.1f} | {r['miss_p50_ms']:.1f} | {r['hit_p50_ms']:.2f} | "
                     f"{r['cos_min']:.5f} / {r['cos_mean']:.5f} | {r['spearman']:.4f} | {r['peak_rss_mb']:.0f} |")
    if store:
        lines += [
            "",
            "| store vectors | search | index build s | p50 ms | p99 ms | recall@10 |",
            "|---|---|---|---|---|---|",
        ]
        for r in store:
            lines.append(f"| {r['vectors']:,} | {r['mode']} | {r['build_s']:.1f} | {r['p50_ms']:.2f} | "
                         f"{r['p99_ms']:.2f} | {r['recall_at_10']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in-process", action="store_true", help="drive the engine in-process, not over HTTP")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 300 texts, 20k vectors")
    parser.add_argument("--backends", default=None, help="comma list of torch,onnx,onnx-int8 (default: by device)")
    parser.add_argument("--no-store", action="store_true", help="skip the store search benchmark")
    parser.add_argument("--no-rerank", action="store_true", help="skip the rerank benchmark (bench/rerank.py)")
    parser.add_argument("--json", type=Path, default=Path("bench/last-run.json"))
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    import torch

    from chutes_embeddings.settings import Settings

    settings = Settings.from_env()
    cuda = torch.cuda.is_available()
    n_texts = 300 if args.quick else 2000
    texts, singles, extra = (mixed_sentences(n_texts, seed=s) for s in (1, 2, 3))
    command = "make bench" + (" (--in-process)" if args.in_process else "") + (" --quick" if args.quick else "")

    reference, baseline_tps, baseline_spearman, real, queries = baseline(settings.model, cuda, texts, singles, extra)
    if cuda:
        torch.cuda.empty_cache()

    backends = args.backends.split(",") if args.backends else (["torch"] if cuda else ["torch", "onnx", "onnx-int8"])
    env_of = {"torch": {"EMBEDDINGS_BACKEND": "torch"}, "onnx": {"EMBEDDINGS_BACKEND": "onnx"},
              "onnx-int8": {"EMBEDDINGS_BACKEND": "onnx", "EMBEDDINGS_QUANTIZE": "int8"}}
    make_target = InProcessTarget if args.in_process else HttpTarget
    services: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as data_dir:
        for name in backends:
            target = make_target({**env_of[name], "EMBEDDINGS_CACHE_SIZE": "20000",
                                  "EMBEDDINGS_MODEL_CACHE_DIR": str(Path(data_dir) / "models")}, data_dir)
            try:
                services.append(bench_service(name, target, texts, singles, baseline_tps, reference, args.concurrency))
            finally:
                target.close()
            print(f"  {name}: done", flush=True)
    store = [] if args.no_store else bench_store(real, queries, [20_000] if args.quick else [100_000, 1_000_000],
                                                 settings.ann_nprobe)
    meta = {"machine": machine(), "command": command, "texts": n_texts, "baseline_tps": baseline_tps,
            "baseline_device": "cuda" if cuda else "cpu", "baseline_spearman": baseline_spearman,
            "bench_process_peak_rss_mb": peak_rss_mb(os.getpid())}
    reranks = [] if args.no_rerank or args.in_process else bench_rerank(queries=10 if args.quick else 40)
    print(render(meta, services, store))
    if reranks:
        print("\n" + render_rerank(reranks))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "services": services, "store": store, "rerank": reranks}, indent=2))


if __name__ == "__main__":
    main()
