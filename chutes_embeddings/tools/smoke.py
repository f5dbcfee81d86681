"""Smoke test of a node: does the service really come up on TEI, and does it stay up?

Run inside the built image on a GPU node, or on any GPU box with ``text-embeddings-router`` on
``PATH`` (``scripts/node-smoke`` wraps this module):

    scripts/node-smoke                  # the whole check, TEI included
    scripts/node-smoke --no-tei         # what needs no TEI binary: the engine on CUDA, fp16 parity

It starts the service as ``chutes run --dev`` does, on a free loopback port, and checks in order:

1. start-up: ``/health`` answers and reports ``backend: "tei"`` (``--no-tei``: ``"local"``), for
   every configured model (``EMBEDDINGS_MODELS``: each its own TEI);
2. parity: each embedder's vectors against ``SentenceTransformer.encode`` of the same model run
   here (cosine >= 0.999: TEI serves fp16 on GPUs); with ``--no-tei`` also fp16 against fp32;
3. rerank: ``/rerank`` orders an obvious case right with each reranker (and names it);
4. failover (TEI only): kills TEI with SIGKILL while 16 clients send requests; every request must
   succeed, and TEI must be restarted and serving again within ``--restart-timeout``;
5. timings: start-up, p50/p99 of single-text ``/embed``, texts/s of ``/embed/batch``.

Prints a table and exits 1, naming what failed, when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from ..client import AsyncEmbeddingsClient

PARITY_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A neural network learns a mapping from inputs to outputs.",
    "Paris is the capital of France.",
    "How do I bake sourdough bread at home?",
    "Stock markets fell sharply after the announcement.",
    "Ünïcödé, emoji 🚀 and numbers 12345 in one line",
    "short",
    " ".join(["a considerably longer text that goes on"] * 60),  # past the token limit: truncated
]
NO_TEI_BINARY = "/nonexistent/text-embeddings-router"


@dataclass
class Report:
    rows: list[tuple[str, str, bool]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.rows.append((name, detail, ok))
        return ok

    @property
    def failed(self) -> list[str]:
        return [f"{name}: {detail}" for name, detail, ok in self.rows if not ok]

    def render(self) -> str:
        lines = ["| check | result | ok |", "|---|---|---|"]
        lines += [f"| {name} | {detail} | {'yes' if ok else 'NO'} |" for name, detail, ok in self.rows]
        return "\n".join(lines)


def configured_models() -> tuple:
    """Every model the service is configured with (``Settings.model_specs``: each kind's default first)."""
    from ..settings import Settings

    return Settings.from_env().model_specs


def reference_vectors(texts: list[str], half: bool = False, spec: object = None) -> np.ndarray:
    """``SentenceTransformer.encode`` of a configured model (``spec``; None: the default embedder), here
    (CUDA when there is one)."""
    import torch
    from sentence_transformers import SentenceTransformer

    spec = spec or configured_models()[0]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(spec.model, device=device, revision=spec.revision,  # type: ignore[attr-defined]
                                local_files_only=Path(spec.model).is_dir())  # type: ignore[attr-defined]
    if half:
        model = model.half()
    return np.asarray(model.encode(texts, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def check_models(http: httpx.Client, report: Report, want: str) -> bool:
    """Every configured model loaded and served by ``want`` (tei or local), as /health lists them."""
    ok = True
    for model in http.get("/health").json().get("models", []):
        ok &= report.check(f"model {model['name']} ({model['kind']})",
                           model["status"] == "ready" and model.get("backend") == want,
                           f"status {model['status']}, backend {model.get('backend')} (want {want})"
                           + (f": {model['error']}" if model.get("error") else ""))
    return ok


def check_parity(http: httpx.Client, report: Report, no_tei: bool) -> None:
    who = "local engine" if no_tei else "TEI"
    for spec in [s for s in configured_models() if s.kind == "embedder"]:
        if spec.pooling is not None:  # served with another pooling than its config's: no reference here
            report.check(f"parity: {spec.served_name}", True, f"pooling {spec.pooling} set: not compared")
            continue
        body = {"inputs": PARITY_TEXTS, "model": spec.served_name}
        served = np.asarray(http.post("/embed", json=body).json()["embeddings"], dtype=np.float32)
        cos = cosines(served, reference_vectors(PARITY_TEXTS, spec=spec))
        report.check(f"parity: {who} vs SentenceTransformer.encode: {spec.served_name}", float(cos.min()) >= 0.999,
                     f"cosine min {cos.min():.5f}, mean {cos.mean():.5f} over {len(PARITY_TEXTS)} texts")
    ref = reference_vectors(PARITY_TEXTS)
    if no_tei:
        import torch

        if not torch.cuda.is_available():
            report.check("parity: fp16 vs fp32", True, "no GPU here: not measured")
            return
        half = reference_vectors(PARITY_TEXTS, half=True)
        cos = cosines(half, ref)
        report.check("parity: fp16 vs fp32 (what TEI serves on GPUs)", float(cos.min()) >= 0.999,
                     f"cosine min {cos.min():.5f}, mean {cos.mean():.5f}")


def check_rerank(http: httpx.Client, report: Report) -> None:
    names = [s.served_name for s in configured_models() if s.kind == "reranker"] or [None]
    for name in names:
        body = http.post("/rerank", json={"query": "What is the capital of France?", "model": name,
                                          "texts": ["Bread needs flour and water.", "Paris is the capital of France.",
                                                    "The stock market fell."]}).json()
        best = body["results"][0]["index"] if body.get("results") else None
        reranker = body.get("reranker") or {"kind": "bi-encoder (no reranker configured)"}
        report.check(f"rerank{f': {name}' if name else ''}", best == 1,
                     f"best index {best} (expected 1); scored by {reranker.get('kind')}"
                     + (f" {reranker.get('model')}" if reranker.get("model") else ""))


def check_failover(http: httpx.Client, url: str, report: Report, load_s: float, restart_timeout_s: float) -> None:
    tei = http.get("/info").json().get("tei") or {}
    pid, restarts = tei.get("pid"), tei.get("restarts", 0)
    if not pid:
        report.check("failover", False, f"/info reports no TEI process: {tei}")
        return
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as own:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    response = own.post("/embed", json={"inputs": [f"failover probe {i} {n} {time.time()}"]})
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:120]}")
                    else:
                        answered[0] += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    with ThreadPoolExecutor(16) as pool:
        for i in range(16):
            pool.submit(client, i)
        time.sleep(min(3.0, load_s / 3))
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + max(load_s, restart_timeout_s)
        back = None
        while time.monotonic() < deadline:
            state = http.get("/info").json().get("tei") or {}
            if state.get("restarts", 0) > restarts and http.get("/health").json()["backend"] == "tei":
                back = time.monotonic() - killed
                break
            time.sleep(0.5)
        time.sleep(max(0.0, load_s - (time.monotonic() - killed)))
        stop.set()
    report.check("failover: requests during kill -9 of TEI", not failures and answered[0] > 0,
                 f"{answered[0]} answered, {len(failures)} failed" + (f" (first: {failures[0]})" if failures else ""))
    report.check("failover: TEI restarted and serving", back is not None,
                 f"after {back:.1f} s" if back is not None else f"not back within {restart_timeout_s:.0f} s")


def timings(http: httpx.Client, url: str, report: Report, started_s: float, batch_texts: int = 4096) -> None:
    singles = []
    for i in range(50):
        sent = time.perf_counter()
        http.post("/embed", json={"inputs": f"latency probe {i} {time.time()}"}).raise_for_status()
        singles.append(time.perf_counter() - sent)
    texts = [f"throughput probe {i}: " + PARITY_TEXTS[i % 6] for i in range(batch_texts)]

    async def through_the_client() -> None:  # what users run: chunks in flight, 429s retried
        async with AsyncEmbeddingsClient(url, timeout=300, max_concurrency=4) as client:
            await client.embed_batch(texts)

    sent = time.perf_counter()
    asyncio.run(through_the_client())
    rate = len(texts) / (time.perf_counter() - sent)
    q = statistics.quantiles(singles, n=100)
    report.check("timings", True, f"start-up {started_s:.1f} s; single /embed p50 {q[49] * 1000:.1f} ms, "
                 f"p99 {q[98] * 1000:.1f} ms; embed_batch (client, 4 chunks in flight) {rate:.0f} texts/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="node-smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-tei", action="store_true", help="skip TEI: the engine alone (CUDA when present)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the folder holding my_embeddings.py (default: beside this package)")
    parser.add_argument("--startup-timeout", type=float, default=900.0)
    parser.add_argument("--restart-timeout", type=float, default=300.0)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--batch-texts", type=int, default=4096, help="texts in the embed_batch throughput timing")
    args = parser.parse_args(argv)

    from .devserver import start_dev_server

    workdir = Path(tempfile.mkdtemp(prefix="node-smoke-"))
    env = {"EMBEDDINGS_DATA_DIR": os.environ.get("EMBEDDINGS_DATA_DIR", str(workdir / "data")),
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}
    if args.no_tei:
        env["EMBEDDINGS_TEI_BINARY"] = NO_TEI_BINARY
    log_path = workdir / "server.log"
    report = Report()
    started = time.monotonic()
    with open(log_path, "ab") as log:
        try:
            server = start_dev_server(args.root, env, log, timeout_s=args.startup_timeout)
        except RuntimeError as exc:
            print(f"node-smoke: the service did not start: {exc}\n{log_path.read_text()[-4000:]}", file=sys.stderr)
            return 1
    started_s = time.monotonic() - started
    try:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            health = http.get("/health").json()
            info = http.get("/info").json()
            want = "local" if args.no_tei else "tei"
            up = report.check("start-up", health["backend"] == want,
                              f"backend {health['backend']} (want {want}), status {health['status']}, "
                              f"local runtime {info['local_runtime']}, model {info['model']}, in {started_s:.1f} s")
            up = check_models(http, report, want) and up
            checks = [("parity", lambda: check_parity(http, report, args.no_tei)),
                      ("rerank", lambda: check_rerank(http, report))]
            if not args.no_tei:
                checks.append(("failover", lambda: check_failover(http, server.url, report, args.load_seconds,
                                                                   args.restart_timeout)))
            checks.append(("timings", lambda: timings(http, server.url, report, started_s, args.batch_texts)))
            for name, run in checks if up else []:
                try:
                    run()
                except (httpx.HTTPError, KeyError, ValueError) as exc:  # a broken answer is a failed check
                    report.check(name, False, f"{type(exc).__name__}: {exc}")
    finally:
        server.stop()
    print(report.render())
    if report.failed:
        print("\nnode-smoke FAILED:\n- " + "\n- ".join(report.failed) + f"\nserver log: {log_path}", file=sys.stderr)
        print(log_path.read_text()[-4000:], file=sys.stderr)
        return 1
    print("\nnode-smoke passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
