"""How fast documents are cut into chunks, next to how fast the chunks are embedded (CPU, in process).

    python -m bench.chunking [--collection /work/data/cranfield] [--docs 200] [--max-tokens 254] [--overlap 32]

Joins the first ``--docs`` documents of a BEIR folder as paragraphs into one text and cuts it with
the service's ``Chunker`` (``documents/chunking.py``: semantic-text-splitter counting tokens through
the ``Tokenizer`` protocol) and with semantic-text-splitter over the model's ``tokenizers`` binding
directly; then embeds the chunks once with the bundled model (sentence-transformers) for scale.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .collections import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chunking", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", type=Path, default=Path("/work/data/cranfield"))
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=254)
    parser.add_argument("--overlap", type=int, default=32)
    args = parser.parse_args(argv)
    from semantic_text_splitter import TextSplitter

    from chutes_embeddings.backends.local import LoadedModel
    from chutes_embeddings.documents.chunking import Chunking, chunker_for
    from chutes_embeddings.settings import Settings

    text = "\n\n".join(list(load(args.collection).docs.values())[: args.docs])
    model = LoadedModel(Settings.from_env({}), "cpu")  # the bundled model
    chunker = chunker_for(model.tokenize, model.max_input_tokens, "")
    started = time.perf_counter()
    [pieces] = chunker.split([text], Chunking(args.max_tokens, args.overlap))
    ours = time.perf_counter() - started
    binding = model.tokenizer.backend_tokenizer
    binding.no_truncation()
    started = time.perf_counter()
    direct = TextSplitter.from_huggingface_tokenizer(binding, args.max_tokens, args.overlap).chunk_indices(text)
    theirs = time.perf_counter() - started
    started = time.perf_counter()
    model.st.encode([p.text for p in pieces], batch_size=32)
    embed = time.perf_counter() - started
    tokens = sum(chunker.count(p.text) for p in pieces)
    print(f"{len(text):,} characters, {len(pieces)} chunks ({len(direct)} by the binding), {tokens:,} chunk tokens")
    print(f"| cut by the Tokenizer protocol | {ours:.2f} s |\n| cut by the tokenizers binding | {theirs:.2f} s |\n"
          f"| embed the chunks (sentence-transformers, CPU) | {embed:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
