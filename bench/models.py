"""Two embedders served side by side (``EMBEDDINGS_MODELS``) against one served alone, over HTTP.

    make bench MODELS=1               # python -m bench.models
    python -m bench.models --quick    # fewer texts, one start-up of each

Models: the bundled all-MiniLM-L6-v2 (A) and its CLS-pooled copy (B: the same weights in a folder
of links, so the same cost per text), both on the default runtime (ONNX fp32 on a CPU). Each
server is started as users start it (``chutes run --dev``), with the vector cache off so every text
costs a forward pass. Measured in one run, so the ratios compare on a busy machine:

- start-up: process start to ``/health`` 200, one model against two (after a warm-up start that
  leaves both ONNX exports in the cache, as a restarted node has them);
- throughput: texts/s through ``/embed/batch`` from ``--clients`` concurrent clients, with a
  one-model and a two-model server both up and driven one at a time, in ``--rounds`` rounds of: A
  served alone, A and B each used alone on the two-model server, both at once (each with the same
  clients as alone; their sum is the figure to compare). Each ratio is taken within its round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from .__main__ import machine
from .corpus import mixed_sentences
from .targets import ROOT, start_dev_server

CLS_NAME = "minilm-cls"


def cls_copy(folder: Path) -> Path:
    """The bundled model's files linked into ``folder`` with CLS pooling (the tests' second model)."""
    from tests.helpers import cls_model_folder  # one recipe, shared with the several-models tests

    return cls_model_folder(folder)


def start(env: dict[str, str], log: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    server = start_dev_server(ROOT, env, log, timeout_s=600)
    return server, time.perf_counter() - started


def throughput(url: str, texts: list[str], clients: int, model: str | None) -> float:
    """Texts/s through /embed/batch: ``clients`` threads, each sending its share in batches of 32."""
    shares = [texts[i::clients] for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        list(pool.map(lambda share: _send(url, share, model), shares))  # re-raises a client's failure
        return len(texts) / (time.perf_counter() - started)


def _send(url: str, texts: list[str], model: str | None) -> None:
    with httpx.Client(base_url=url, timeout=600) as http:
        for i in range(0, len(texts), 32):
            body = {"texts": texts[i : i + 32], **({"model": model} if model else {})}
            http.post("/embed/batch", json=body).raise_for_status()


def together(url: str, texts: list[str], clients: int, models: list[str]) -> dict[str, float]:
    """Each model's texts/s while all of them are used at once (each by ``clients`` clients)."""
    with ThreadPoolExecutor(len(models)) as pool:
        rates = list(pool.map(lambda m: throughput(url, texts, clients, m), models))
    return dict(zip(models, rates))


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 texts per measurement, one start-up and round")
    parser.add_argument("--texts", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the throughput cases (medians kept)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--starts", type=int, default=3, help="start-ups of each server (the median is kept)")
    parser.add_argument("--json", type=Path, default=Path("bench/models-last-run.json"))
    args = parser.parse_args()
    n = 200 if args.quick else args.texts
    starts = 1 if args.quick else args.starts
    args.rounds = 1 if args.quick else args.rounds
    work = Path(tempfile.mkdtemp(prefix="bench-models-"))
    folder = work / "cls"
    folder.mkdir()
    cls_copy(folder)
    from chutes_embeddings.settings import default_model

    a_name = default_model()
    # admission off in effect (a 60 s queue): the clients measure throughput, not the 429 policy
    # one ONNX export cache; a data folder each (the embedded store admits one process)
    base = {"EMBEDDINGS_MODEL_CACHE_DIR": str(work / "models"), "EMBEDDINGS_LOG_LEVEL": "WARNING",
            "EMBEDDINGS_CACHE_SIZE": "0", "EMBEDDINGS_TEI_BINARY": "", "HF_HUB_OFFLINE": "1",
            "EMBEDDINGS_MAX_QUEUE_WAIT_S": "60"}
    servers = {"one": {**base, "EMBEDDINGS_DATA_DIR": str(work / "data-one")},
               "two": {**base, "EMBEDDINGS_DATA_DIR": str(work / "data-two"),
                       "EMBEDDINGS_MODELS": f"'{a_name}'; '{folder}' name={CLS_NAME}"}}
    texts = mixed_sentences(n, seed=7)

    times: dict[str, list[float]] = {"one": [], "two": []}
    rounds: list[dict[str, float]] = []
    with open(work / "servers.log", "ab") as log:
        start(servers["two"], log)[0].stop()  # warm-up: both ONNX exports into the cache
        for _ in range(starts):  # interleaved, so a busy spell of the machine falls on both
            for name, env in servers.items():
                server, seconds = start(env, log)
                times[name].append(seconds)
                server.stop()
        one = start(servers["one"], log)[0]
        try:
            two = start(servers["two"], log)[0]
        except BaseException:
            one.stop()
            raise
        try:  # both servers up, driven one at a time: each round measures every case, in turn
            for model, url in ((None, one.url), (a_name, two.url), (CLS_NAME, two.url)):
                throughput(url, texts[:64], args.clients, model)  # warm each runtime up
            for _ in range(args.rounds):
                row = {"alone": throughput(one.url, texts, args.clients, None),
                       "a": throughput(two.url, texts, args.clients, a_name),
                       "b": throughput(two.url, texts, args.clients, CLS_NAME)}
                both = together(two.url, texts, args.clients, [a_name, CLS_NAME])
                rounds.append({**row, "both_a": both[a_name], "both_b": both[CLS_NAME]})
        finally:
            one.stop()
            two.stop()

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def ratio(key: str) -> float:  # within each round, then the median: a busy spell hits both sides
        return statistics.median(r[key] / r["alone"] for r in rounds)

    for r in rounds:
        r["both"] = r["both_a"] + r["both_b"]
    alone = median("alone")
    start_one, start_two = statistics.median(times["one"]), statistics.median(times["two"])
    rows = [
        ("A served alone", f"{alone:.0f} texts/s", "1.00", "baseline"),
        ("A beside B, used alone", f"{median('a'):.0f} texts/s", f"{ratio('a'):.2f}", ">= 0.9"),
        ("B beside A, used alone", f"{median('b'):.0f} texts/s", f"{ratio('b'):.2f}", ">= 0.9"),
        ("A and B at once (sum)", f"{median('both'):.0f} texts/s ({median('both_a'):.0f} + {median('both_b'):.0f})",
         f"{ratio('both'):.2f}", ">= 0.9"),
        ("start-up, one model", f"{start_one:.1f} s", "1.00", "baseline"),
        ("start-up, two models", f"{start_two:.1f} s", f"{start_two / start_one:.2f}", "<= 1.3"),
    ]
    print(f"\n{machine()}; {n} texts per measurement, {args.clients} clients per model, batches of 32, cache off, "
          f"{args.rounds} rounds (medians; ratios within a round, then their median);"
          f" start-ups: median of {starts} ({', '.join(f'{t:.1f}' for t in times['one'])} s one; "
          f"{', '.join(f'{t:.1f}' for t in times['two'])} s two)\n")
    print("| measurement | result | ratio to baseline | target |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "texts": n, "clients": args.clients, "rounds": rounds,
                                     "startup": times}, indent=2))


if __name__ == "__main__":
    main()
