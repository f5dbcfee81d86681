"""The engine's request path alone (component-only: no HTTP), for a checkout of this service.

    python -m bench.engine_path [DIR]      # DIR: another checkout (e.g. a git worktree); default: this one

Starts the engine of DIR in this process (its code first on ``sys.path``), then embeds 640 mixed
sentences in requests of 32 with token counts (what ``/v1/embeddings`` asks for), three passes,
and prints texts/s per pass. Run it for two checkouts in turn, alternating, to compare the engine
of a change with the code before it; ``bench.peers --baseline`` measures the users' path.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE
    sys.path.insert(0, str(root))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("EMBEDDINGS_MODEL_CACHE_DIR", str(HERE / ".bench" / "models"))
    os.environ.setdefault("EMBEDDINGS_DATA_DIR", f"/tmp/engine-path-{root.name}")
    from bench.corpus import mixed_sentences
    from chutes_embeddings.settings import Settings

    settings = Settings.from_env({**os.environ, "EMBEDDINGS_CACHE_SIZE": "0"})
    try:  # the layout since issue 20
        from chutes_embeddings.engine.results import EmbedOptions
        from chutes_embeddings.engine.startup import start_engine

        engine = start_engine(settings)

        def run(batch: list[str]) -> None:
            engine.embed(batch, EmbedOptions(count_tokens=True))
    except ImportError:  # the layout before it
        from chutes_embeddings.startup import start_engine

        engine = start_engine(settings)

        def run(batch: list[str]) -> None:
            engine.embed_counted(batch)

    texts = mixed_sentences(640, seed=1)
    run(texts[:32])
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(texts), 32):
            run(texts[i : i + 32])
        rates.append(len(texts) / (time.perf_counter() - started))
    print(root.name, " ".join(f"{r:.1f}" for r in rates), "texts/s")
    engine.close()


if __name__ == "__main__":
    main()
