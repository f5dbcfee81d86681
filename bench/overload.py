"""Overload burst over HTTP, as `make serve` runs the service: how fast it refuses, how fast it recovers.

    .venv/bin/python -m bench.overload                 # 200 clients x 1,000 texts (the issue 8 probe)
    .venv/bin/python -m bench.overload --clients 50 --texts 200 --url http://127.0.0.1:8000

Starts its own server (unless --url), fires ``--clients`` concurrent ``/embed/batch`` requests of
``--texts`` distinct texts each (clients give up after ``--client-timeout`` s, as impatient
clients do), polls ``/health`` during the burst, then sends one single-text ``/embed`` every
0.25 s and reports when single requests are back under 1 s. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from .corpus import sentences

ROOT = Path(__file__).resolve().parent.parent


async def burst(url: str, clients: int, texts: int, timeout_s: float) -> dict[str, Any]:
    base = sentences(texts, seed=7)
    bodies = [{"texts": [f"{i}-{j} {s}" for j, s in enumerate(base)]} for i in range(clients)]
    results: list[dict[str, Any]] = []
    health: list[str] = []
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as http:
        start = time.monotonic()
        done = asyncio.Event()

        async def one(body: dict[str, Any]) -> None:
            sent = time.monotonic()
            try:
                response = await http.post("/embed/batch", json=body)
                status, retry_after = response.status_code, response.headers.get("retry-after")
            except httpx.TimeoutException:
                status, retry_after = "timeout", None
            results.append({"sent": sent - start, "done": time.monotonic() - start, "status": status,
                            "retry_after": retry_after})

        async def watch_health() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as probe:
                while not done.is_set():
                    try:
                        health.append((await probe.get("/health")).json()["status"])
                    except httpx.HTTPError:
                        health.append("no answer")
                    await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch_health())
        await asyncio.gather(*(one(b) for b in bodies))
        done.set()
        await watcher
        end = time.monotonic() - start
    return {"results": results, "health": health, "burst_s": end}


def recovery(url: str, seconds: float) -> list[tuple[float, float]]:
    """(seconds after the burst, latency) of single-text /embed calls, one every 0.25 s."""
    out = []
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=120) as http:
        i = 0
        while time.monotonic() - start < seconds:
            sent = time.monotonic()
            response = http.post("/embed", json={"inputs": f"recovery probe {i} {time.time()}"})
            latency = time.monotonic() - sent
            out.append((sent - start, latency if response.status_code == 200 else float("inf")))
            i += 1
            time.sleep(max(0.0, 0.25 - latency))
    return out


def report(run: dict[str, Any], probes: list[tuple[float, float]], dropped: int, args: argparse.Namespace) -> str:
    rs = run["results"]
    refused = [r for r in rs if r["status"] == 429]
    ok = [r for r in rs if r["status"] == 200]
    timeouts = [r for r in rs if r["status"] == "timeout"]
    other = [r for r in rs if r not in refused and r not in ok and r not in timeouts]
    first_429 = min((r["done"] for r in refused), default=float("nan"))
    latencies_429 = [r["done"] - r["sent"] for r in refused]
    waits = sorted(float(r["retry_after"]) for r in refused if r["retry_after"])
    last_slow = max((i for i, (_, lat) in enumerate(probes) if lat >= 1.0), default=-1)
    recovered = probes[last_slow + 1][0] if last_slow + 1 < len(probes) else None  # sent time of the first good one
    after = [lat for _, lat in probes[last_slow + 1 :]]
    rows = [
        ("clients x texts", f"{args.clients} x {args.texts} (client timeout {args.client_timeout:g} s)"),
        ("answers", f"{len(ok)} x 200, {len(refused)} x 429, {len(timeouts)} timed out, {len(other)} other "
                    f"{sorted({str(r['status']) for r in other})}"),
        ("first 429 after burst start", f"{first_429:.2f} s"),
        ("429 latency p50 / max", f"{statistics.median(latencies_429):.2f} / {max(latencies_429):.2f} s"
         if latencies_429 else "-"),
        ("Retry-After min / median / max", f"{waits[0]:g} / {statistics.median(waits):g} / {waits[-1]:g} s"
         if waits else "-"),
        ("/health during the burst", ", ".join(f"{s}: {run['health'].count(s)}" for s in sorted(set(run["health"])))),
        ("burst duration (last answer)", f"{run['burst_s']:.1f} s"),
        ("texts dropped (callers gone)", str(dropped)),
        ("single /embed < 1 s again", f"{recovered:.2f} s after the burst ended" if recovered is not None
         else f"not within {args.recovery_s:g} s (slowest probe {max(lat for _, lat in probes):.1f} s)"),
        ("single /embed after recovery p50", f"{statistics.median(after) * 1000:.0f} ms" if after else "-"),
    ]
    return "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--client-timeout", type=float, default=30.0)
    parser.add_argument("--recovery-s", type=float, default=20.0)
    parser.add_argument("--url", default=None, help="an already running server (default: start one)")
    args = parser.parse_args()
    server = None
    if args.url is None:
        from chutes_embeddings.tools.devserver import start_dev_server

        data = tempfile.mkdtemp(prefix="bench-overload-")
        env = {
            "EMBEDDINGS_DATA_DIR": data,
            "EMBEDDINGS_LOG_LEVEL": "WARNING",
            "EMBEDDINGS_MODEL_CACHE_DIR": os.environ.get("EMBEDDINGS_MODEL_CACHE_DIR", str(ROOT / "data" / "models")),
        }
        log = open(Path(data) / "server.log", "wb")
        server = start_dev_server(ROOT, env, log)
        url = server.url
    else:
        url = args.url
    try:
        httpx.post(f"{url}/embed", json={"inputs": ["warm up"] * 4}, timeout=60)
        httpx.post(f"{url}/embed/batch", json={"texts": [f"warm up {i}" for i in range(200)]}, timeout=120)
        run = asyncio.run(burst(url, args.clients, args.texts, args.client_timeout))
        probes = recovery(url, args.recovery_s)
        dropped = httpx.get(f"{url}/info", timeout=30).json()["batching"].get("texts_dropped", 0)
        cpu = "AVX-512" if "avx512f" in Path("/proc/cpuinfo").read_text() else "AVX2 only"
        print(f"overload burst, {os.cpu_count()} cores ({cpu}), {url}\n")
        print(report(run, probes, dropped, args))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
