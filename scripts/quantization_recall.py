"""Recall@10 of raw int8 and binary vectors against float search, for the int8 range choice
documented in ``chutes_embeddings/engine/quantize.py`` (run: ``HF_HUB_OFFLINE=1 .venv/bin/python
scripts/quantization_recall.py``; about a minute on 2 cores).

Two text sets (the first sentences of the Python standard library's docstrings, and the bench
corpus' mixed sentences), each 100 queries against 2,000 documents embedded by the bundled
all-MiniLM-L6-v2 at 384, 128 and 64 dimensions (a prefix, re-normalised). Each int8 range is
scored by the integer dot product of the quantised vectors, binary by Hamming similarity, both
against the float cosine's top 10.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus import mixed_sentences  # noqa: E402
from chutes_embeddings.engine.quantize import int8_ranges  # noqa: E402

MODULES = ("os", "json", "re", "collections", "itertools", "functools", "pathlib", "subprocess", "threading",
           "asyncio", "email", "http.client", "urllib.request", "logging", "argparse", "typing", "decimal",
           "statistics", "random", "datetime", "calendar", "csv", "sqlite3", "zipfile", "tarfile", "shutil",
           "tempfile", "socket", "ssl", "unittest", "difflib", "textwrap", "string", "struct", "codecs", "pickle",
           "copy", "heapq", "bisect", "queue", "contextlib", "enum", "dataclasses", "inspect", "ast", "tokenize")


def docstring_sentences() -> list[str]:
    """Distinct sentences of 30..300 characters from the standard library's docstrings, shuffled."""
    found: set[str] = set()
    for name in MODULES:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) if callable(obj) else None
            for sentence in re.split(r"(?<=\.)\s+", " ".join((doc or "").split())):
                if 30 < len(sentence) < 300:
                    found.add(sentence)
    out = sorted(found)
    random.Random(0).shuffle(out)
    return out


def recall_at_10(float_scores: np.ndarray, scores: np.ndarray) -> float:
    ref = np.argsort(-float_scores, axis=1)[:, :10]
    got = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref, got)]))


def main() -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util.quantization import quantize_embeddings

    from chutes_embeddings.settings import default_model

    model = SentenceTransformer(default_model(), device="cpu")
    calibration = model.encode(mixed_sentences(250, seed=99) + docstring_sentences()[-250:], normalize_embeddings=True)
    for name, texts in (("docstrings", docstring_sentences()), ("bench", mixed_sentences(2100, seed=3))):
        full = model.encode(texts[:2100], batch_size=64)
        for dims in (384, 128, 64):
            emb = full[:, :dims] / np.linalg.norm(full[:, :dims], axis=1, keepdims=True)
            queries, docs = emb[:100], emb[100:]
            exact = queries @ docs.T
            ranges = {"+-5/sqrt(d) (served)": int8_ranges(dims), "[-1, 1]": np.stack([-np.ones(dims), np.ones(dims)])}
            if dims == 384:
                ranges["per-dimension min/max"] = np.stack([calibration.min(0), calibration.max(0)])
            line = [f"{name:10s} d={dims:3d}"]
            for label, r in ranges.items():
                q, d = (quantize_embeddings(x, "int8", ranges=r).astype(np.int64) for x in (queries, docs))
                line.append(f"int8 {label}: {recall_at_10(exact, q @ d.T):.3f}")
            qb, db = (np.unpackbits(quantize_embeddings(x, "ubinary"), axis=1).astype(np.int64)
                      for x in (queries, docs))
            line.append(f"binary: {recall_at_10(exact, qb @ db.T + (1 - qb) @ (1 - db).T):.3f}")
            print(" | ".join(line), flush=True)


if __name__ == "__main__":
    main()
