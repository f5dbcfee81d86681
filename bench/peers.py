"""``make bench-peers``: this service against Infinity (``infinity-emb`` 0.0.78) on the same machine.

Each server is started alone (one at a time, rounds alternating), serves the bundled
all-MiniLM-L6-v2 on the CPU and is driven over HTTP by the same harness through its OpenAI-style
embeddings route (ours: ``/v1/embeddings`` as ``make serve`` runs it; Infinity: ``/embeddings``):

- batch of 32 and batch of 256: 2,000 texts sent in requests of that size, one after another;
- 16 concurrent single-text clients over 2,000 other texts: texts/s, p50 and p99 latency;
- one text at a time: p50 and p99 latency;
- peak RSS of the server process, and the vectors' cosine to ours (parity, >= 0.9999 expected).

Infinity runs in its own virtualenv (``.bench/infinity-venv``: it pins numpy < 2), made on first use
with the same CPU torch (2.13.0); its ONNX engine (``--engine optimum``) needs ``model.onnx`` at the
model folder's root, so the bench copies the bundled model to ``.bench/infinity-model`` with this
project's own export beside it, and runs Infinity from inside that folder (``--model-id .``: its
ONNX file lookup breaks on other paths) with ``--pooling-method mean``. Our response cache is off
(``EMBEDDINGS_CACHE_SIZE=0``) so both sides compute every text.

    python -m bench.peers [--rounds 2] [--engines ours,infinity-onnx,infinity-torch] [--baseline DIR]

``--baseline DIR`` adds this service as another checkout has it (e.g. ``git worktree add DIR <commit>``),
started the same way from that folder and measured in the same rounds: the "before" of a change,
as a column and an ``ours / baseline`` ratio that no machine noise between two runs can blur.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np

from .clients import drive
from .corpus import mixed_sentences
from .targets import ROOT, peak_rss_mb

INFINITY = "infinity-emb[server,optimum,torch]==0.0.78"
WORK = ROOT / ".bench"
VENV = WORK / "infinity-venv"
MODEL = WORK / "infinity-model"
ROWS = ("batch32_tps", "batch256_tps", "conc_tps", "conc_p50_ms", "conc_p99_ms", "one_p50_ms", "one_p99_ms", "rss_mb")
HIGHER_IS_BETTER = {"batch32_tps", "batch256_tps", "conc_tps"}


def ensure_infinity() -> Path:
    """Infinity's own virtualenv (made once): the CPU torch this project pins, then Infinity."""
    exe = VENV / "bin" / "infinity_emb"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run(pip + ["torch==2.13.0"], check=True)  # the CPU build on this disk; else GBs of CUDA
        subprocess.run(pip + [INFINITY], check=True)
    return exe


def ensure_model() -> Path:
    """The bundled model with ``model.onnx`` (this project's verified export) at its root."""
    if not (MODEL / "model.onnx").exists():
        from chutes_embeddings.backends.local import LoadedModel
        from chutes_embeddings.backends.onnx import export
        from chutes_embeddings.settings import Settings, default_model

        shutil.rmtree(MODEL, ignore_errors=True)
        shutil.copytree(default_model(), MODEL)
        export(LoadedModel(Settings(backend="torch"), "cpu"), MODEL / "model.onnx")
    return MODEL


class Server:
    """One server under test: its URL, embeddings route and process."""

    def __init__(self, name: str, url: str, route: str, pid: int, stop: Callable[[], None]) -> None:
        self.name, self.url, self.route, self.pid, self._stop = name, url, route, pid, stop

    def stop(self) -> None:
        self._stop()


def start_ours(workdir: Path, root: Path = ROOT, name: str = "ours", extra_env: dict[str, str] | None = None) -> Server:
    """This service from ``root`` (another checkout's code wins on its own ``PYTHONPATH``), with
    ``extra_env`` (``EMBEDDINGS_*`` settings) over the bench's own."""
    from chutes_embeddings.tools.devserver import start_dev_server

    log = open(workdir / f"{name}.log", "ab")
    env = {"EMBEDDINGS_DATA_DIR": str(workdir / f"data-{name}"), "EMBEDDINGS_CACHE_SIZE": "0",
           "EMBEDDINGS_LOG_LEVEL": "WARNING", "EMBEDDINGS_MODEL_CACHE_DIR": str(WORK / "models"),
           "PYTHONPATH": str(root), **(extra_env or {})}
    server = start_dev_server(root, env, log, 300)

    def stop() -> None:
        server.stop()
        log.close()

    return Server(name, server.url, "/v1/embeddings", server.proc.pid, stop)


def start_infinity(engine: str, workdir: Path) -> Server:
    from chutes_embeddings.tools.devserver import free_port

    port = free_port()
    log = open(workdir / f"infinity-{engine}.log", "ab")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(WORK / "hub"),
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
    }
    proc = subprocess.Popen([str(ensure_infinity()), "v2", "--model-id", ".", "--engine", engine, "--device", "cpu",
                             "--pooling-method", "mean", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ensure_model(), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Infinity ({engine}) exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError(f"Infinity ({engine}) did not become healthy; see {log.name}")

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    return Server(f"infinity-{'onnx' if engine == 'optimum' else engine}", url, "/embeddings", proc.pid, stop)


def measure(server: Server, texts: list[str], singles: list[str]) -> tuple[dict[str, float], np.ndarray]:
    """The harness: the same requests for every server (see module docstring)."""
    http = httpx.Client(base_url=server.url, timeout=300, limits=httpx.Limits(max_connections=32))

    def embed(batch: list[str]) -> np.ndarray:
        r = http.post(server.route, json={"input": batch, "model": "default", "encoding_format": "float"})
        r.raise_for_status()
        return np.asarray([d["embedding"] for d in sorted(r.json()["data"], key=lambda d: d["index"])], np.float32)

    embed(texts[:64])  # warm-up
    out: dict[str, float] = {}
    vectors = None
    for size in (32, 256):
        started = time.perf_counter()
        parts = [embed(texts[i : i + size]) for i in range(0, len(texts), size)]
        out[f"batch{size}_tps"] = len(texts) / (time.perf_counter() - started)
        vectors = np.concatenate(parts) if vectors is None else vectors
    started = time.perf_counter()
    latencies = drive(lambda text: embed([text]), singles, 16)
    out["conc_tps"] = len(singles) / (time.perf_counter() - started)
    out["conc_p50_ms"], out["conc_p99_ms"] = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99))
    sequential = []
    for text in singles[:200]:
        t = time.perf_counter()
        embed([text])
        sequential.append(time.perf_counter() - t)
    out["one_p50_ms"], out["one_p99_ms"] = (float(np.percentile(sequential, q)) * 1000 for q in (50, 99))
    out["rss_mb"] = peak_rss_mb(server.pid)
    http.close()
    assert vectors is not None
    return out, vectors


def run(engines: list[str], rounds: int, n_texts: int, baseline: Path | None = None) -> dict[str, Any]:
    texts, singles = mixed_sentences(n_texts, seed=1), mixed_sentences(n_texts, seed=2)
    starts = {"ours": start_ours, "infinity-onnx": lambda w: start_infinity("optimum", w),
              "infinity-torch": lambda w: start_infinity("torch", w)}
    if baseline is not None:
        starts["baseline"] = lambda w: start_ours(w, baseline, "baseline")
    results: dict[str, list[dict[str, float]]] = {e: [] for e in engines}
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        for r in range(rounds):
            for name in engines if r % 2 == 0 else list(reversed(engines)):
                server = starts[name](Path(tmp))
                try:
                    row, vecs = measure(server, texts, singles)
                finally:
                    server.stop()
                results[name].append(row)
                vectors.setdefault(name, vecs)
                print(f"  round {r + 1} {name}: {row['batch32_tps']:.0f} / {row['conc_tps']:.0f} texts/s", flush=True)
    medians = {name: {k: statistics.median(row[k] for row in rows) for k in ROWS} for name, rows in results.items()}
    parity = {}
    if "ours" in vectors:
        for name, vecs in vectors.items():
            a, b = vectors["ours"], vecs
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            parity[name] = float(cos.min())
    return {"medians": medians, "parity": parity, "rounds": rounds, "texts": n_texts}


def _ratio(medians: dict[str, dict[str, float]], key: str, others: list[str]) -> str:
    better = max if key in HIGHER_IS_BETTER else min
    best = better(medians[n][key] for n in others)
    ratio = medians["ours"][key] / best if key in HIGHER_IS_BETTER else best / medians["ours"][key]
    return f"{ratio:.2f}x"


def render(result: dict[str, Any]) -> str:
    medians, parity = result["medians"], result["parity"]
    cpu = "avx512f" if "avx512f" in Path("/proc/cpuinfo").read_text() else "avx2 only"
    names = list(medians)
    head = ["row"] + names
    peers = [n for n in names if n not in ("ours", "baseline")]
    if "ours" in medians and peers:
        head.append("ours / best peer")
    if "ours" in medians and "baseline" in medians:
        head.append("ours / baseline")
    lines = [f"Median of {result['rounds']} rounds, {result['texts']} texts; CPU: {os.cpu_count()} cores, {cpu}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in ROWS:
        cells = [key] + [f"{medians[n][key]:.1f}" for n in names]
        if "ours" in medians and peers:
            cells.append(_ratio(medians, key, peers))
        if "ours" in medians and "baseline" in medians:
            cells.append(_ratio(medians, key, ["baseline"]))
        lines.append("| " + " | ".join(cells) + " |")
    if parity:
        lines += ["", "min cosine to ours: " + ", ".join(f"{n} {c:.7f}" for n, c in parity.items())]
    lines.append("(ratios: >1 means ours is better: more texts/s, fewer ms, less memory)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--engines", default="ours,infinity-onnx,infinity-torch")
    parser.add_argument("--baseline", type=Path, help="another checkout of this service, measured as 'baseline'")
    args = parser.parse_args()
    engines = args.engines.split(",") + (["baseline"] if args.baseline else [])
    print(render(run(engines, args.rounds, args.texts, args.baseline)))


if __name__ == "__main__":
    main()
