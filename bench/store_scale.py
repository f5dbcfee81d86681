"""The vector store at scale, measured through its own search path (issue 13).

    python -m bench.store_scale --sizes 100000,1000000 --stores embedded,postgres --http

For each store and size: fill one collection by ordinary upserts of 10,000 records (caller's
vectors, as ``/store/add`` with ``vectors`` stores them), then time one query at a time through
the store's ``search`` in process and (``--http``) through ``POST /store/search`` on a server
started as ``make serve`` starts it (``query_vector``, so no embedding), unfiltered and with
filters that allow 1%, 10% and 50% of the records; recall@10 against the exact (filtered) top 10.
Also: insert rate, disk size, and restart-to-search (close, reopen, first search answered).

Data: 384-d unit vectors around 4,096 random centres (noise as in the store tests), so they have
real neighbourhoods; queries are stored vectors plus noise (sigma 0.02), re-normalised. Metadata
``{"pct": 0..99, "tenth": 0..9, "half": 0..1}`` drawn independently per record.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from chutes_embeddings.store import Record, VectorStore
from chutes_embeddings.store.filters import parse_filter

DIM = 384
BATCH = 10_000
FILTERS: dict[str, dict[str, int] | None] = {"none": None, "1%": {"pct": 7}, "10%": {"tenth": 3}, "50%": {"half": 1}}
ROOT = Path(__file__).resolve().parents[1]


def dataset(n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(n, DIM) unit vectors with neighbourhoods, and the metadata columns."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((4096, DIM), dtype=np.float32))
    vectors = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        noise = _unit(rng.standard_normal((m, DIM), dtype=np.float32)) * (0.35 / np.sqrt(2))
        vectors[s : s + m] = _unit(centres[rng.integers(0, 4096, m)] + noise)
    meta = {"pct": rng.integers(0, 100, n), "tenth": rng.integers(0, 10, n), "half": rng.integers(0, 2, n)}
    return vectors, meta


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def fill(store: VectorStore, name: str, vectors: np.ndarray, meta: dict[str, np.ndarray]) -> float:
    """Upsert everything in batches of BATCH; returns records per second."""
    store.ensure_collection(name, "bench", DIM)
    started = time.perf_counter()
    for s in range(0, len(vectors), BATCH):
        rows = range(s, min(s + BATCH, len(vectors)))
        store.upsert(name, [Record(f"r{i}", f"doc {i}", {k: int(v[i]) for k, v in meta.items()}, vectors[i])
                            for i in rows])
        if s and s % 200_000 == 0:
            print(f"  {s:,} records, {s / (time.perf_counter() - started):,.0f}/s", flush=True)
    return len(vectors) / (time.perf_counter() - started)


def truth(vectors: np.ndarray, meta: dict[str, np.ndarray], queries: np.ndarray) -> dict[str, np.ndarray]:
    """Exact top-10 row numbers per query for each filter."""
    out = {}
    for label, flt in FILTERS.items():
        rows = np.arange(len(vectors)) if flt is None else np.flatnonzero(
            np.logical_and.reduce([meta[k] == v for k, v in flt.items()]))
        scores = queries @ vectors[rows].T
        out[label] = rows[np.argsort(-scores, axis=1)[:, :10]]
    return out


def measure(search: Callable[[np.ndarray, dict[str, int] | None], list[str]], queries: np.ndarray,
            exact: dict[str, np.ndarray]) -> dict[str, tuple[float, float, float]]:
    """(p50 ms, p99 ms, recall@10) per filter, one query at a time (after 5 warm-up queries)."""
    out = {}
    for label, flt in FILTERS.items():
        for q in queries[:5]:
            search(q, flt)
        times, recalls = [], []
        for q, want in zip(queries, exact[label]):
            started = time.perf_counter()
            ids = search(q, flt)
            times.append((time.perf_counter() - started) * 1000)
            recalls.append(len({int(i[1:]) for i in ids} & set(want.tolist())) / 10)
        out[label] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)), float(np.mean(recalls)))
    return out


def in_process(store: VectorStore, name: str) -> Callable[[np.ndarray, dict[str, int] | None], list[str]]:
    def search(q: np.ndarray, flt: dict[str, int] | None) -> list[str]:
        return [h.id for h in store.search(name, q[None], 10, parse_filter(flt), None)[0]]

    return search


def over_http(client: Any, url: str, name: str) -> Callable[[np.ndarray, dict[str, int] | None], list[str]]:
    def search(q: np.ndarray, flt: dict[str, int] | None) -> list[str]:
        body = {"collection": name, "query_vector": q.tolist(), "top_k": 10, "filter_metadata": flt}
        response = client.post(f"{url}/store/search", json=body)
        response.raise_for_status()
        return [hit["id"] for hit in response.json()["results"]]

    return search


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def run_one(kind: str, n: int, args: argparse.Namespace, work: Path, pg_url: str) -> list[dict[str, Any]]:
    from chutes_embeddings.store.embedded import EmbeddedStore
    from chutes_embeddings.store.pgvector import PgVectorStore

    print(f"{kind} {n:,}: generating data", flush=True)
    vectors, meta = dataset(n)
    rng = np.random.default_rng(1)
    queries = _unit(vectors[rng.integers(0, n, args.queries)] + 0.02 * rng.standard_normal((args.queries, DIM)))
    exact = truth(vectors, meta, queries)
    data_dir = work / f"{kind}-{n}"
    store_dir = data_dir / "store"
    name = f"bench_{n}"

    def open_() -> VectorStore:
        return EmbeddedStore(store_dir) if kind == "embedded" else PgVectorStore(pg_url, ef_search=args.ef_search)

    store = open_()
    build_s = None
    if args.reuse and name in {c.name for c in store.collections()} and store.describe(name).size == n:
        rate = float("nan")
        print("  reusing the collection already filled", flush=True)
    elif kind == "postgres" and args.pg_bulk:
        rate, build_s = pg_bulk_fill(store, pg_url, name, vectors, meta, args)
    else:
        rate = fill(store, name, vectors, meta)
    print(f"  filled at {rate:,.0f} records/s", flush=True)
    if kind == "embedded":
        index = store._collection(name).vectors  # noqa: SLF001 - the bench waits for the background build
        started = time.perf_counter()
        index.wait_for_build()
        build_s = time.perf_counter() - started
    rows = [{"store": kind, "n": n, "path": "in process", "insert/s": rate, "wait for index s": build_s,
             **measure(in_process(store, name), queries, exact)}]
    store.close()
    size = disk_mb(store_dir) if kind == "embedded" else _pg_size(pg_url, name)
    started = time.perf_counter()
    store = open_()
    in_process(store, name)(queries[0], None)
    restart_s = time.perf_counter() - started
    mode = store._collection(name).vectors.mode if kind == "embedded" else "hnsw"  # noqa: SLF001
    rows[0].update({"disk MiB": size, "restart s": restart_s, "mode after restart": mode})
    store.close()
    if args.http:
        rows.append({"store": kind, "n": n, "path": "HTTP", **_http(kind, data_dir, pg_url, name, queries, exact)})
    del vectors
    return rows


def pg_bulk_fill(store: VectorStore, url: str, name: str, vectors: np.ndarray, meta: dict[str, np.ndarray],
                 args: argparse.Namespace) -> tuple[float, float]:
    """Load a Postgres collection as a bulk load should: COPY with no index, then build the HNSW
    and GIN indexes (``--pg-maintenance-mem``, ``--pg-workers``). Returns (rows/s of the COPY,
    seconds of the index builds)."""
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql

    from chutes_embeddings.store.pgvector import table_name

    store.ensure_collection(name, "bench", DIM)
    tbl = table_name(name)
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(sql.SQL("DROP INDEX {}, {}").format(sql.Identifier(tbl + "_hnsw"), sql.Identifier(tbl + "_meta")))
        started = time.perf_counter()
        with conn.cursor().copy(sql.SQL("COPY {} (id, text, metadata, embedding) FROM STDIN WITH (FORMAT BINARY)")
                                .format(sql.Identifier(tbl))) as copy:
            copy.set_types(["text", "text", "jsonb", "vector"])
            for i in range(len(vectors)):
                copy.write_row((f"r{i}", f"doc {i}", {k: int(v[i]) for k, v in meta.items()}, vectors[i]))
        rate = len(vectors) / (time.perf_counter() - started)
        print(f"  COPY at {rate:,.0f} rows/s", flush=True)
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (args.pg_maintenance_mem,))
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(args.pg_workers),))
        started = time.perf_counter()
        conn.execute(sql.SQL("CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops)")
                     .format(sql.Identifier(tbl + "_hnsw"), sql.Identifier(tbl)))
        hnsw_s = time.perf_counter() - started
        conn.execute(sql.SQL("CREATE INDEX {} ON {} USING gin (metadata jsonb_path_ops)")
                     .format(sql.Identifier(tbl + "_meta"), sql.Identifier(tbl)))
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(tbl)))
        print(
            f"  HNSW built in {hnsw_s:.0f} s, GIN + ANALYZE {time.perf_counter() - started - hnsw_s:.0f} s", flush=True
        )
    return rate, time.perf_counter() - started


def cli_import(n: int, work: Path) -> dict[str, float]:
    """Write n records as the export format, then time ``python -m chutes_embeddings.store import``
    into a fresh embedded store; returns the seconds and records per second (file writing excluded)."""
    import json

    from chutes_embeddings.store.embedded import EmbeddedStore

    vectors, meta = dataset(n, seed=2)
    path = work / f"import-{n}.jsonl"
    with open(path, "w") as f:
        f.write(json.dumps({"collection": "imported", "model": "bench", "dimension": DIM}) + "\n")
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "text": f"doc {i}", "metadata": {k: int(v[i]) for k, v in meta.items()},
                                "vector": vectors[i].tolist()}) + "\n")
    data_dir = work / f"import-{n}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "chutes_embeddings.store", "import", "--to", "", "--file", str(path),
                    "--data-dir", str(data_dir)], check=True)
    seconds = time.perf_counter() - started
    store = EmbeddedStore(data_dir / "store")
    try:
        assert store.describe("imported").size == n, "the import lost records"
    finally:
        store.close()
    path.unlink()
    return {"records": n, "seconds": seconds, "records/s": n / seconds}


def _pg_size(url: str, name: str) -> float:
    import psycopg

    from chutes_embeddings.store.pgvector import table_name

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pg_total_relation_size(%s)", (table_name(name),)).fetchone()[0] / 2**20


def _http(kind: str, data_dir: Path, pg_url: str, name: str, queries: np.ndarray,
          exact: dict[str, np.ndarray]) -> dict[str, Any]:
    import httpx

    from chutes_embeddings.tools.devserver import start_dev_server

    env = {"EMBEDDINGS_DATA_DIR": str(data_dir), "EMBEDDINGS_LOG_LEVEL": "WARNING"}
    if kind == "postgres":
        env["EMBEDDINGS_STORE_URL"] = pg_url
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "server.log", "ab") as log:
        server = start_dev_server(ROOT, env, log, 600)
    try:
        with httpx.Client(timeout=120) as client:
            started = time.perf_counter()
            over_http(client, server.url, name)(queries[0], None)
            first_s = time.perf_counter() - started
            return {
                "first search after start s": first_s,
                **measure(over_http(client, server.url, name), queries, exact),
            }
    finally:
        server.stop()


def table(rows: list[dict[str, Any]]) -> str:
    head = ["store", "vectors", "path"] + [f"{f} p50 / p99 ms, recall" for f in FILTERS] + [
        "insert/s (then index wait)", "disk MiB", "restart s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["store"], f"{r['n']:,}", r["path"]]
        cells += [f"{r[f][0]:.1f} / {r[f][1]:.1f}, {r[f][2]:.3f}" for f in FILTERS]
        cells += [f"{r['insert/s']:,.0f}" + (f" (index build {r['wait for index s']:.0f} s)" if r.get(
            "wait for index s") else "") if "insert/s" in r else "",
                  f"{r['disk MiB']:,.0f}" if "disk MiB" in r else "",
                  f"{r['restart s']:.2f} ({r['mode after restart']})" if "restart s" in r else
                  f"first query {r['first search after start s']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000", help="comma-separated collection sizes")
    parser.add_argument("--stores", default="embedded", help="embedded, postgres or both (comma-separated)")
    parser.add_argument("--pg-sizes", default=None, help="sizes for postgres (default --sizes; HNSW builds are slow)")
    parser.add_argument("--http", action="store_true", help="also time POST /store/search on a started server")
    parser.add_argument("--pg-bulk", action="store_true",
                        help="postgres: COPY the rows, then build the indexes (a bulk load) instead of upserts")
    parser.add_argument("--pg-maintenance-mem", default="4GB", help="maintenance_work_mem for --pg-bulk builds")
    parser.add_argument("--pg-workers", type=int, default=1, help="max_parallel_maintenance_workers for --pg-bulk")
    parser.add_argument("--pg-url", default="", help="use this Postgres instead of starting one")
    parser.add_argument("--reuse", action="store_true", help="measure collections already filled in --workdir/--pg-url")
    parser.add_argument("--cli-import", type=int, default=0, help="also time the import CLI with this many records")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--ef-search", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stores here (default: a temp dir)")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="store-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # the Postgres server runs as an unprivileged user that must reach pg/
    sizes = [int(s) for s in args.sizes.split(",")]
    pg_sizes = [int(s) for s in args.pg_sizes.split(",")] if args.pg_sizes else sizes
    rows: list[dict[str, Any]] = []
    pg_dir, pg_url = work / "pg", ""
    try:
        if args.cli_import:
            timed = cli_import(args.cli_import, work)
            print(f"import CLI: {timed['records']:,} records in {timed['seconds']:.0f} s "
                  f"({timed['records/s']:,.0f} records/s)", flush=True)
        for kind in [k for k in args.stores.split(",") if k]:
            if kind == "postgres" and args.pg_url:
                pg_url = args.pg_url
            elif kind == "postgres":
                started = subprocess.run([str(ROOT / "scripts" / "pg-test-server"), "start", str(pg_dir)],
                                         capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
                if started.returncode:
                    raise RuntimeError(f"pg-test-server did not start: {started.stderr[-2000:]}")
                pg_url = started.stdout.strip().splitlines()[-1]
            for n in pg_sizes if kind == "postgres" else sizes:
                rows += run_one(kind, n, args, work, pg_url)
                print(table(rows), flush=True)
    finally:
        if pg_url and not args.pg_url:
            subprocess.run([str(ROOT / "scripts" / "pg-test-server"), "stop", str(pg_dir)], check=False,
                           env={**os.environ, "PYTHON": sys.executable})
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
