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
place, so "ours" is what this project adds net of what it saves the SDK. All three servers are up
at once and each row drives them in alternating blocks of 100 requests, so the machine's drift
(10-30% between minutes on a shared machine) falls on the three alike.

    python -m bench.overhead [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np

from .clients import drive
from .corpus import mixed_sentences
from .targets import ROOT

STANDIN = ROOT / "tests" / "tei_standin.py"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interleaved(targets: dict[str, tuple[Callable[[str], None], int | None]], texts: list[str], clients: int,
                block: int = 100) -> dict[str, dict[str, float]]:
    """Each target driven with the same texts in alternating blocks of ``block`` requests (so the
    machine's drift falls on all of them alike): requests/s, p50/p99 and, for a target with a
    process id, that process's CPU time per request."""
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    busy = dict.fromkeys(targets, 0.0)
    cpu = dict.fromkeys(targets, 0.0)
    for start in range(0, len(texts), block):
        chunk = texts[start : start + block]
        for name, (post, pid) in targets.items():
            cpu0, t = (cpu_seconds(pid) if pid else 0.0), time.perf_counter()
            latencies[name] += drive(post, chunk, clients)
            busy[name] += time.perf_counter() - t
            cpu[name] += (cpu_seconds(pid) - cpu0) if pid else 0.0
    rows = {}
    for name, (_, pid) in targets.items():
        rows[name] = {"rps": len(texts) / busy[name], "p50_ms": float(np.percentile(latencies[name], 50)) * 1000,
                      "p99_ms": float(np.percentile(latencies[name], 99)) * 1000}
        if pid:
            rows[name]["cpu_ms_per_request"] = cpu[name] / len(texts) * 1000
    return rows


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
        floor = start_dev_server(ROOT / "bench", {}, log, 120, chute_ref="floor_chute:chute", ready_path="/embed")
        http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=64))
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

            def empty_cord(text: str) -> None:
                http.post(f"{floor.url}/embed", json={"inputs": text}).raise_for_status()

            targets = {"service": (service, server.proc.pid), "tei_alone": (tei_alone, None),
                       "empty_cord": (empty_cord, floor.proc.pid)}
            for post, _ in targets.values():
                for text in texts[:100]:
                    post(text)  # warm-up
            for clients in (1, 16):
                row: dict[str, Any] = {"clients": clients, **interleaved(targets, texts, clients)}
                s, t, e = row["service"], row["tei_alone"], row["empty_cord"]
                row["added_p50_ms"] = s["p50_ms"] - t["p50_ms"]
                row["sdk_share_p50_ms"] = e["p50_ms"] - t["p50_ms"]
                row["ours_p50_ms"] = s["p50_ms"] - e["p50_ms"]
                row["ours_p99_ms"] = s["p99_ms"] - e["p99_ms"]
                rows.append(row)
            served = http.get(f"{server.url}/info").json()["tei"]["served_texts"]
            if served.get("local"):
                raise RuntimeError(f"some requests were not served by the stand-in: {served}")
        finally:
            http.close()
            server.stop()
            floor.stop()
            log.close()
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
