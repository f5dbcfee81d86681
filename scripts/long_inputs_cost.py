"""What long inputs cost (``chutes_embeddings/engine/windows.py``): one request of long documents
embedded truncated, pooled and windowed by the bundled model, through the engine's own path
(cache off), and the tokenisation with offsets that cutting the windows adds (run:
``HF_HUB_OFFLINE=1 .venv/bin/python scripts/long_inputs_cost.py [documents]``; a few minutes
on 2 cores).

Each mode runs twice, interleaved with the others, and the faster run is reported: tokens are
every token the model read (``usage``), so tokens/s compares the modes' cost per token.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chutes_embeddings.engine.results import EmbedOptions  # noqa: E402
from chutes_embeddings.engine.startup import start_engine  # noqa: E402
from chutes_embeddings.settings import Settings  # noqa: E402

MODES = {"truncate": EmbedOptions(count_tokens=True), "pool": EmbedOptions(long_input="pool"),
         "windows (overlap 0)": EmbedOptions(long_input="windows", window_overlap=0)}


def documents(n: int) -> list[str]:
    """``n`` distinct documents of about 1,650 tokens each (6.5 windows of the bundled model)."""
    return [" ".join(f"Document {d}, section {i}, reports the measurements of run {i} and what they imply."
                     for i in range(100)) for d in range(n)]


def main() -> None:
    """Print each mode's best time, tokens and tokens/s, and the offsets tokenisation's time."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    engine = start_engine(Settings(data_dir=tempfile.mkdtemp(), tei_binary="", cache_size=0))
    docs = documents(n)
    engine.embed(docs[:2])  # warm-up
    best: dict[str, tuple[float, int, int]] = {}
    for _ in range(2):
        for name, options in MODES.items():
            start = time.perf_counter()
            out = engine.embed(docs, options)
            elapsed = time.perf_counter() - start
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, out.tokens, out.vectors.shape[0])
    start = time.perf_counter()
    engine.embedder.tokenizer.token_details(docs, add_special_tokens=False)
    offsets_s = time.perf_counter() - start
    print(f"{n} documents, runtime {engine.embedder.backend.runtime}")
    for name, (elapsed, tokens, rows) in best.items():
        print(f"{name:20} {elapsed:7.2f} s  {tokens:6} tokens  {tokens / elapsed:6.0f} tokens/s  {rows} vectors")
    print(f"{'offsets (cutting)':20} {offsets_s:7.2f} s")
    engine.close()


if __name__ == "__main__":
    main()
