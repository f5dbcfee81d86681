"""The store's lexical (BM25) and learned-sparse legs, measured component-level (issue 22).

    python -m bench.store_legs --size 100000 --stores embedded,postgres [--pg-url URL]

For each store: fill three collections of the same records by upserts of ``--batch`` records
(dense only; + the lexical leg; + lexical and sparse legs) and report the upsert rate of each;
then time one query at a time through ``search_lexical`` (3 query words taken from a stored
text, analyzed as the service analyzes them) and ``search_sparse`` (about 25 non-zeros), p50 and
p95 after 5 warm-up queries, unfiltered and with a filter that allows 10% of the records.

Data (synthetic, deterministic): texts of 20..120 pseudo-words drawn from a Zipf(1.07)
vocabulary of 50,000 less its 100 most frequent words (in prose those are the stop words the
analyzer drops), so term statistics look like prose's after analysis; 384-d random unit vectors (``--dim``);
sparse vectors: each distinct word of a text (weight 1 + log tf, jittered) plus 30% more expansion
terms. Quality (``--quality``): BM25 retrieval on the labelled pairs (``bench/data/pairs.tsv``:
each first sentence is a query, second sentences labelled 4 or 5 are relevant), recall@10 and
nDCG@10 on each store, and how far their top 10s agree.
"""

from __future__ import annotations

import argparse
import csv
import gc
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from chutes_embeddings.lexical.analyzer import analyzer
from chutes_embeddings.store import Legs, Record, SparseVector, VectorStore, open_store
from chutes_embeddings.store.filters import All, parse_filter

from .pairs import PAIRS_FILE

ROOT = Path(__file__).resolve().parents[1]
VOCABULARY = 50_000
STOP_RANKS = 100  # the most frequent words of a Zipf vocabulary, left out as stop words are
LEXICAL = Legs(lexical="english")
BOTH = Legs(lexical="english", sparse_model="bench-sparse")
TOPS: dict[str, dict[str, list[str]]] = {}  # each store's top 10s on the labelled queries
LETTERS = "bcdfghjklmnpqrstvwxz"  # no vowels: the stemmer leaves the pseudo-words whole


def word(rank: int) -> str:
    """The pseudo-word of a vocabulary rank."""
    out = ""
    rank += len(LETTERS)
    while rank:
        rank, digit = divmod(rank, len(LETTERS))
        out += LETTERS[digit]
    return out


def corpus(n: int, seed: int = 0, length: tuple[int, ...] = (20, 120)) -> tuple[list[str], list[np.ndarray]]:
    """``n`` texts of ``length`` (least, most) words, and the vocabulary ranks of each text's words."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1 + STOP_RANKS, VOCABULARY + 1 + STOP_RANKS) ** 1.07
    cumulative = np.cumsum(weights / weights.sum())
    words = [word(r) for r in range(VOCABULARY)]
    lengths = rng.integers(length[0], length[1] + 1, n)
    ranks = np.minimum(np.searchsorted(cumulative, rng.random(int(lengths.sum()))), VOCABULARY - 1)
    out_texts, out_ranks, start = [], [], 0
    for length in lengths:
        doc = ranks[start : start + length]
        out_texts.append(" ".join(words[r] for r in doc))
        out_ranks.append(doc)
        start += length
    return out_texts, out_ranks


def sparse_of(ranks: np.ndarray, rng: np.random.Generator) -> SparseVector:
    """A SPLADE-like vector: the text's words by 1 + log tf, plus expansion terms."""
    ids, tf = np.unique(ranks, return_counts=True)
    extra = rng.integers(0, VOCABULARY, max(1, int(0.3 * len(ids))))
    weights = dict(zip(ids.tolist(), (1 + np.log(tf)) * rng.uniform(0.5, 1.5, len(ids))))
    for e in extra.tolist():
        weights.setdefault(e, float(rng.uniform(0.05, 0.5)))
    keys = sorted(weights)
    return SparseVector(tuple(keys), tuple(float(weights[k]) for k in keys))


def fill(store: VectorStore, name: str, legs: Legs, texts: list[str], sparse: list[SparseVector] | None,
         vectors: np.ndarray, batch: int) -> float:
    """Create the collection with ``legs`` and upsert everything; returns records per second."""
    store.ensure_collection(name, "bench", vectors.shape[1], legs)
    started = time.perf_counter()
    for s in range(0, len(texts), batch):
        store.upsert(name, [Record(f"r{i}", texts[i], {"tenth": i % 10}, vectors[i],
                                   sparse[i] if sparse and legs.sparse_model else None)
                            for i in range(s, min(s + batch, len(texts)))])
    return len(texts) / (time.perf_counter() - started)


def timed(search: Callable[[int], Any], queries: int, upper: float = 95, warm: int = 5) -> tuple[float, float]:
    """(p50 ms, p``upper`` ms) of ``search(i)`` for i in range(queries), after ``warm`` warm-up calls."""
    for i in range(warm):
        search(i)
    times = []
    for i in range(queries):
        started = time.perf_counter()
        search(i)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, upper))


def run_store(kind: str, url: str, work: Path, args: argparse.Namespace) -> list[str]:
    """Fill and measure one store; returns report lines."""
    texts, ranks = corpus(args.size, length=tuple(int(w) for w in args.words.split(",")))
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((args.size, args.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sparse = [sparse_of(r, rng) for r in ranks]
    gc.freeze()  # the data set's millions of objects out of the collector's way, as the server's start-up does
    store = open_store(url, work / kind)
    suffix = f"{args.size}_{os.getpid()}"
    lines = []
    try:
        fills = {"dense": Legs(), "lexical": LEXICAL, "both": BOTH}
        rates = {label: fill(store, f"legs_{label}_{suffix}", fills[label], texts, sparse, vectors, args.batch)
                 for label in args.fills.split(",")}
        lines.append(f"{kind} {args.size:,} records of {args.words} words, {args.dim}-d, upsert rate (records/s, "
                     f"batches of {args.batch}): " + "; ".join(
                         f"{label} {rate:,.0f}" + (f" ({rate / rates['dense']:.2f}x)" if "dense" in rates else "")
                         for label, rate in rates.items()))
        terms = analyzer("english").terms
        qrng = np.random.default_rng(2)
        picks = qrng.integers(0, args.size, args.queries + 5)
        lexical_q = [terms(" ".join(qrng.choice(texts[p].split(), 3, replace=False))) for p in picks]
        sparse_q = []
        for p in picks:
            ids = sorted(set(qrng.choice(ranks[p], min(8, len(ranks[p])), replace=False).tolist())
                         | set(qrng.integers(0, VOCABULARY, 17).tolist()))
            sparse_q.append(SparseVector(tuple(ids), tuple(float(w) for w in qrng.uniform(0.2, 2.0, len(ids)))))
        name = f"legs_both_{suffix}"
        for label, where in (("no filter", All()), ("10% filter", parse_filter({"tenth": 3}))):
            lex = timed(lambda i, w=where: store.search_lexical(name, lexical_q[i], 10, w), args.queries)
            spa = timed(lambda i, w=where: store.search_sparse(name, sparse_q[i], 10, w), args.queries)
            lines.append(f"{kind} {args.size:,}, {label}: lexical p50 {lex[0]:.1f} ms p95 {lex[1]:.1f} ms; "
                         f"sparse p50 {spa[0]:.1f} ms p95 {spa[1]:.1f} ms")
        if args.quality:
            lines.append(quality(store, kind, suffix))
    finally:
        store.close()
    return lines


def quality(store: VectorStore, kind: str, suffix: str) -> str:
    """BM25 on the labelled pairs (see module docstring): recall@10, nDCG@10 and the top 10s."""
    with open(PAIRS_FILE) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    docs = sorted({r["sentence2"] for r in rows})
    doc_id = {d: f"d{i}" for i, d in enumerate(docs)}
    relevant: dict[str, set[str]] = {}
    for r in rows:
        relevant.setdefault(r["sentence1"], set())
        if float(r["label"]) >= 4:
            relevant[r["sentence1"]].add(doc_id[r["sentence2"]])
    name = f"legs_pairs_{suffix}"
    vectors = np.ones((len(docs), 4), dtype=np.float32) / 2
    store.ensure_collection(name, "bench", 4, LEXICAL)
    store.upsert(name, [Record(doc_id[d], d, {}, vectors[i]) for i, d in enumerate(docs)])
    terms = analyzer("english").terms
    recalls, ndcgs, tops = [], [], {}
    for query, want in relevant.items():
        if not want:
            continue
        got = [h.id for h in store.search_lexical(name, terms(query), 10, All())]
        tops[query] = got
        recalls.append(len(set(got) & want) / len(want))
        dcg = sum(1 / math.log2(rank + 2) for rank, d in enumerate(got) if d in want)
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(want), 10)))
        ndcgs.append(dcg / ideal)
    TOPS[kind] = tops
    line = (f"{kind} quality on {len(recalls)} labelled queries over {len(docs)} texts: "
            f"recall@10 {np.mean(recalls):.4f}, nDCG@10 {np.mean(ndcgs):.4f}")
    if len(TOPS) == 2:
        a, b = TOPS.values()
        same = np.mean([a[q] == b[q] for q in a])
        overlap = np.mean([len(set(a[q]) & set(b[q])) / max(len(a[q]), 1) for q in a])
        line += f"; top 10s identical (order too) for {same:.1%} of queries, overlap {overlap:.1%}"
    return line



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_legs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--stores", default="embedded", help="embedded, postgres or both (comma-separated)")
    parser.add_argument("--pg-url", default="", help="use this Postgres instead of starting one")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--words", default="20,120", help="least,most words a text")
    parser.add_argument("--fills", default="dense,lexical,both",
                        help="collections to fill (dense only, + lexical, + both legs); searches use 'both'")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--quality", action="store_true", help="also BM25 quality on the labelled pairs")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="store-legs-"))
    work.chmod(0o755)  # the Postgres server runs as an unprivileged user that must reach pg/
    pg_dir, pg_url, lines = work / "pg", "", []
    try:
        for kind in [k for k in args.stores.split(",") if k]:
            url = ""
            if kind == "postgres":
                if not args.pg_url and not pg_url:
                    started = subprocess.run([str(ROOT / "scripts" / "pg-test-server"), "start", str(pg_dir)],
                                             capture_output=True, text=True,
                                             env={**os.environ, "PYTHON": sys.executable})
                    if started.returncode:
                        raise RuntimeError(f"pg-test-server did not start: {started.stderr[-2000:]}")
                    pg_url = started.stdout.strip().splitlines()[-1]
                url = args.pg_url or pg_url
            for line in run_store(kind, url, work, args):
                lines.append(line)
                print(line, flush=True)
    finally:
        if pg_url:
            subprocess.run([str(ROOT / "scripts" / "pg-test-server"), "stop", str(pg_dir)], check=False,
                           env={**os.environ, "PYTHON": sys.executable})
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
