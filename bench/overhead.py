"""What the service costs in front of TEI: the cord + engine path over a TEI that costs nothing.

The service runs as ``make serve`` runs it, with ``EMBEDDINGS_TEI_BINARY`` pointing at the test
suite's TEI stand-in in ``--zero-cost`` mode (``/embed`` answers a constant vector without running
the model) and the response cache off, so every request crosses the whole path: HTTP, the request
guard, the cord's worker thread, validation, tokenising, admission, the batcher, the TEI client and
back. Rows: one client sending one text at a time, and 16 concurrent clients; for each, requests/s,
p50/p99 latency, and the service process's own CPU time per request (from ``/proc``, so it does not
count the clients' or the stand-in's). The same requests sent to the stand-in directly give the
floor: what TEI alone would take. The same requests sent to an empty cord on the SDK's local server
(``bench/floor_chute.py``) split what the service adds into the SDK's share (the empty cord over
TEI alone) and this project's code (the rest: the service's p50 and p99 over the empty cord's, and
its CPU per request over the empty cord's). The empty cord runs behind the SDK's whole local stack,
its dev middleware included; the service's request guard parses the body in that middleware's
place, so "ours" is what this project adds net of what it saves the SDK.

    python -m bench.overhead [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np

from .corpus import mixed_sentences
from .targets import ROOT

STANDIN = ROOT / "tests" / "tei_standin.py"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(post: Callable[[str], None], texts: list[str], clients: int, pid: int | None) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def one(text: str) -> None:
        t = time.perf_counter()
        post(text)
        with lock:
            latencies.append(time.perf_counter() - t)

    cpu0 = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    if clients == 1:
        for text in texts:
            one(text)
    else:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, texts))
    elapsed = time.perf_counter() - started
    row = {"rps": len(texts) / elapsed, "p50_ms": float(np.percentile(latencies, 50)) * 1000,
           "p99_ms": float(np.percentile(latencies, 99)) * 1000}
    if pid:
        row["cpu_ms_per_request"] = (cpu_seconds(pid) - cpu0) / len(texts) * 1000
    return row


def run(requests: int) -> list[dict[str, Any]]:
    from chutes_embeddings.tools.devserver import start_dev_server

    texts = mixed_sentences(requests, seed=11)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        binary = Path(tmp) / "tei-zero-cost"
        binary.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" --record /dev/null --zero-cost "$@"\n')
        binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
        log = open(Path(tmp) / "server.log", "ab")
        env = {"EMBEDDINGS_DATA_DIR": str(Path(tmp) / "data"), "EMBEDDINGS_CACHE_SIZE": "0",
               "EMBEDDINGS_LOG_LEVEL": "WARNING", "EMBEDDINGS_TEI_BINARY": str(binary)}
        server = start_dev_server(ROOT, env, log, 300)
        http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=32))
        try:
            deadline = time.monotonic() + 120
            while http.get(f"{server.url}/health").json().get("backend") != "tei":
                if time.monotonic() > deadline:
                    raise RuntimeError("the zero-cost TEI did not come up")
                time.sleep(0.5)
            tei_url = http.get(f"{server.url}/info").json()["tei"]["url"]

            def service(text: str) -> None:
                http.post(f"{server.url}/embed", json={"inputs": text}).raise_for_status()

            def tei_alone(text: str) -> None:
                http.post(f"{tei_url}/embed", json={"inputs": [text], "normalize": False}).raise_for_status()

            for post in (service, tei_alone):
                for text in texts[:100]:
                    post(text)  # warm-up
            for clients in (1, 16):
                floor = drive(tei_alone, texts, clients, None)
                ours = drive(service, texts, clients, server.proc.pid)
                rows.append({"clients": clients, "service": ours, "tei_alone": floor,
                             "added_p50_ms": ours["p50_ms"] - floor["p50_ms"]})
            served = http.get(f"{server.url}/info").json()["tei"]["served_texts"]
            if served.get("local"):
                raise RuntimeError(f"some requests were not served by the stand-in: {served}")
        finally:
            server.stop()
            log.close()
        with open(Path(tmp) / "floor.log", "ab") as floor_log:
            floor = start_dev_server(
                ROOT / "bench", {}, floor_log, 120, chute_ref="floor_chute:chute", ready_path="/embed"
            )
            try:
                def empty_cord(text: str) -> None:
                    http.post(f"{floor.url}/embed", json={"inputs": text}).raise_for_status()

                for text in texts[:100]:
                    empty_cord(text)
                for row in rows:
                    row["empty_cord"] = drive(empty_cord, texts, row["clients"], floor.proc.pid)
                    row["sdk_share_p50_ms"] = row["empty_cord"]["p50_ms"] - row["tei_alone"]["p50_ms"]
                    row["ours_p50_ms"] = row["service"]["p50_ms"] - row["empty_cord"]["p50_ms"]
                    row["ours_p99_ms"] = row["service"]["p99_ms"] - row["empty_cord"]["p99_ms"]
            finally:
                http.close()
                floor.stop()
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| clients | service req/s | p50 ms | p99 ms | service CPU ms / request | TEI alone req/s | "
             "TEI alone p50 ms | empty cord p50 / p99 ms (CPU ms / req) | added p50 ms | of which the SDK | "
             "of which ours, p50 / p99 ms | ours, CPU ms / req |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, t, e = r["service"], r["tei_alone"], r["empty_cord"]
        lines.append(f"| {r['clients']} | {s['rps']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                     f"{s['cpu_ms_per_request']:.2f} | {t['rps']:.0f} | {t['p50_ms']:.2f} | "
                     f"{e['p50_ms']:.2f} / {e['p99_ms']:.2f} ({e['cpu_ms_per_request']:.2f}) | "
                     f"{r['added_p50_ms']:.2f} | {r['sdk_share_p50_ms']:.2f} | "
                     f"{r['ours_p50_ms']:.2f} / {r['ours_p99_ms']:.2f} | "
                     f"{s['cpu_ms_per_request'] - e['cpu_ms_per_request']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    print(render(run(args.requests)))


if __name__ == "__main__":
    main()
