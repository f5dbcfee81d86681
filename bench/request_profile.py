"""Where one request's time goes under 16 concurrent one-text clients, stage by stage.

    python -m bench.request_profile [--texts 1500] [--baseline DIR] [--rounds 2]

The service runs as ``make serve`` runs it (cache off) and 16 client threads each send one text at
a time to ``/v1/embeddings`` (``bench.peers``'s harness). The stages come from the service's own
``/metrics``, read before and after the run: its time to answer as the request guard measures it,
each text's wait for a forward pass (tokenising included: the batcher's preparing thread) and the
pass that embedded it. What is left between them is the cord and the engine's own path (parsing,
validation, the hops between threads, rendering); what the client sees beyond the server's own
time is HTTP on both sides. Means per request; the client's p50/p99 too. ``--baseline DIR``
profiles another checkout the same way in the same run (rounds alternate), the "before".
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from .clients import drive
from .corpus import mixed_sentences
from .peers import start_ours

ROUTE = "/v1/embeddings"
STAGES = ("client_ms", "server_ms", "queue_ms", "pass_ms", "path_ms", "http_ms")
LABELS = {
    "client_ms": "the client's round trip",
    "server_ms": "in the server (the request guard's timer)",
    "queue_ms": "waiting for a forward pass (tokenising included)",
    "pass_ms": "the forward pass (the runtime)",
    "path_ms": "the rest in the server: cord, engine, hops, rendering",
    "http_ms": "outside the server's timer: HTTP on both sides",
}


def _sums(text: str) -> dict[str, float]:
    """Histogram sums and counts by name (the route's request duration under its own key)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith(("_sum", "_count")):
                continue
            if sample.name.startswith("embeddings_request_duration") and sample.labels.get("route") != ROUTE:
                continue
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def profile(url: str, texts: list[str]) -> dict[str, float]:
    """Run the 16 clients once against ``url``; the stages' means and the client's figures."""
    http = httpx.Client(base_url=url, timeout=300, limits=httpx.Limits(max_connections=32))
    def one(text: str) -> None:
        http.post(ROUTE, json={"input": [text], "model": "default"}).raise_for_status()

    drive(one, texts[:50], 1)  # warm-up
    before = _sums(http.get("/metrics").text)
    started = time.perf_counter()
    latencies = drive(one, texts, 16)
    elapsed = time.perf_counter() - started
    after = _sums(http.get("/metrics").text)
    http.close()

    def mean(name: str) -> float:
        count = after[f"{name}_count"] - before[f"{name}_count"]
        return (after[f"{name}_sum"] - before[f"{name}_sum"]) / count * 1000 if count else float("nan")

    row = {"texts_per_s": len(texts) / elapsed, "p50_ms": float(np.percentile(latencies, 50)) * 1000,
           "p99_ms": float(np.percentile(latencies, 99)) * 1000, "client_ms": float(np.mean(latencies)) * 1000,
           "server_ms": mean("embeddings_request_duration_seconds"), "queue_ms": mean("te_embed_queue_duration"),
           "pass_ms": mean("te_embed_inference_duration"),
           "texts_per_pass": (after["te_batch_next_size_sum"] - before["te_batch_next_size_sum"])
           / max(1.0, after["te_batch_next_size_count"] - before["te_batch_next_size_count"])}
    row["path_ms"] = row["server_ms"] - row["queue_ms"] - row["pass_ms"]
    row["http_ms"] = row["client_ms"] - row["server_ms"]
    return row


def run(n_texts: int, rounds: int, baseline: Path | None) -> dict[str, dict[str, float]]:
    texts = mixed_sentences(n_texts, seed=2)
    names = ["ours"] + (["baseline"] if baseline else [])
    rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        for r in range(rounds):
            for name in names if r % 2 == 0 else list(reversed(names)):
                server = start_ours(Path(tmp), baseline, name) if name == "baseline" else start_ours(Path(tmp))
                try:
                    rows[name].append(profile(server.url, texts))
                finally:
                    server.stop()
    return {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in rows.items()}


def render(result: dict[str, Any]) -> str:
    names = list(result)
    lines = ["| stage (mean ms per request) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in STAGES:
        lines.append(f"| {LABELS[key]} | " + " | ".join(f"{result[n][key]:.1f}" for n in names) + " |")
    for key, label in (("texts_per_s", "texts/s"), ("p50_ms", "client p50 ms"), ("p99_ms", "client p99 ms"),
                       ("texts_per_pass", "texts per forward pass")):
        lines.append(f"| {label} | " + " | ".join(f"{result[n][key]:.1f}" for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.request_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", type=Path)
    args = parser.parse_args()
    print(render(run(args.texts, args.rounds, args.baseline)))


if __name__ == "__main__":
    main()
