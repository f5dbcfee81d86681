"""The engine's request path alone (component-only: no HTTP), for a checkout of this service.

    python -m bench.engine_path [DIR] [--clients 16] [--env NAME=VALUE ...]
                                     # DIR: another checkout (e.g. a git worktree); default: this one

Starts the engine of DIR in this process (its code first on ``sys.path``), then embeds 640 mixed
sentences in requests of 32 with token counts (what ``/v1/embeddings`` asks for), three passes, and
1,000 other sentences one per request from ``--clients`` threads at once; prints texts/s per
pass, and texts/s, p50 and p99 of the one-text requests. Run it for two checkouts in turn,
alternating, to compare the engine of a change with the code before it (``--env`` sets
``EMBEDDINGS_*`` settings for the run); ``bench.peers --baseline`` measures the users' path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=HERE)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE, e.g. EMBEDDINGS_BATCH_MAX_DELAY_MS=20")
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path.insert(0, str(root))
    os.environ.update(dict(item.split("=", 1) for item in args.env))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("EMBEDDINGS_MODEL_CACHE_DIR", str(HERE / ".bench" / "models"))
    os.environ.setdefault("EMBEDDINGS_DATA_DIR", f"/tmp/engine-path-{root.name}")
    import gc

    from bench.clients import drive
    from bench.corpus import mixed_sentences
    from chutes_embeddings.engine.results import EmbedOptions
    from chutes_embeddings.engine.startup import start_engine
    from chutes_embeddings.settings import Settings

    settings = Settings.from_env({**os.environ, "EMBEDDINGS_CACHE_SIZE": "0"})
    engine = start_engine(settings)
    gc.freeze()  # as the chute's start-up does

    def run(batch: list[str]) -> None:
        engine.embed(batch, EmbedOptions(count_tokens=True))

    texts = mixed_sentences(640, seed=1)
    run(texts[:32])
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(texts), 32):
            run(texts[i : i + 32])
        rates.append(len(texts) / (time.perf_counter() - started))
    singles = mixed_sentences(1000, seed=2)
    started = time.perf_counter()
    latencies = drive(lambda text: run([text]), singles, args.clients)
    rate = len(singles) / (time.perf_counter() - started)
    p50, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99))
    print(f"{root.name} {' '.join(args.env)}: batches of 32 {' '.join(f'{r:.1f}' for r in rates)} texts/s; "
          f"{args.clients} one-text clients {rate:.1f} texts/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
    engine.close()


if __name__ == "__main__":
    main()
