"""``make bench-retrieval``: retrieval quality and speed of ``/store/search`` on labelled public collections.

    python -m bench.retrieval --collection DIR [--collection DIR2] [--modes dense,lexical,...] [--peer]

Each ``DIR`` is a collection in BEIR's folder format (``bench/collections.py``; Cranfield is built
by ``python -m bench.smart``, see docs/benchmarks.md). For each collection, one at a time:

1. references, in this process (``bench/references.py``): bm25s over the project's analyzer
   terms (lucene defaults; robertson k1=1.2 b=0.75 as SQLite FTS5), exact dense search with the
   bundled model, and their RRF (k=60);
2. this service, started as ``make serve`` runs it (``bench/peers.py``): every document through
   ``POST /store/add`` (texts/s), then each judged query through ``POST /store/search``
   (``top_k`` 100), one at a time, in each mode of ``MODES``. A mode the server refuses (a 4xx on
   the first query: a field it does not know yet, no sparse model) is skipped, with its answer as
   the note;
3. ``--peer``: txtai 9.14 (dense, keyword, hybrid) in its own virtualenv (``bench/txtai_peer.py``).

``--chunking MAX_TOKENS[:OVERLAP]``: the service also ingests every document as a store document
cut into chunks (``/store/add`` ``documents``) into a second collection, and searches it grouped by
document (``group_by``), so its rows rank documents as the truncated ones do (each document one
text, cut by the model at its window). ``bench.concat`` makes a collection of long documents.

Prints one table per collection: nDCG@10 and recall@100 (trec_eval's, ``bench/metrics.py``), ingest
texts/s, and query p50/p99 (over HTTP for this service; in process for the references and txtai).
``--env KEY=VALUE`` passes a setting to the server (``EMBEDDINGS_SPARSE_MODEL``, ``EMBEDDINGS_RERANK_MODEL``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from schemas.common import MAX_STORE_ADD_TEXTS, MAX_STORE_TOP_K

from .collections import Collection, load
from .metrics import Run, evaluate, percentiles_ms

# mode name -> the /store/search fields beyond collection, query and top_k (dense sends none, so
# it runs on servers that predate the hybrid fields)
MODES: dict[str, dict[str, Any]] = {
    "dense": {},
    "lexical": {"mode": "lexical"},
    "sparse": {"mode": "sparse"},
    "hybrid rrf": {"mode": "hybrid", "fusion": "rrf"},
    "hybrid relative_score a=0.3": {"mode": "hybrid", "fusion": "relative_score", "alpha": 0.3},
    "hybrid relative_score a=0.5": {"mode": "hybrid", "fusion": "relative_score", "alpha": 0.5},
    "hybrid relative_score a=0.7": {"mode": "hybrid", "fusion": "relative_score", "alpha": 0.7},
    "hybrid rrf + rerank": {"mode": "hybrid", "fusion": "rrf", "rerank": True, "rerank_candidates": MAX_STORE_TOP_K},
}
DEPTH = MAX_STORE_TOP_K  # 100: recall@100 reads this deep
# texts per /store/add request: within MAX_STORE_ADD_TEXTS, and small enough that one request is
# embedded well inside the server's wait for the model (120 s) on a busy 2-core machine, where
# 1,000 texts were not
ADD_TEXTS = min(128, MAX_STORE_ADD_TEXTS)
ADD_DOCUMENTS = 8  # documents per /store/add with --chunking: their chunks stay well within max_store_add_chunks
WARMUP_QUERIES = 5


@dataclass
class Row:
    """One system's line of the table; ``None`` cells were not measured (see ``note``)."""

    system: str
    group: str  # "reference", "ours" or "txtai"
    ndcg_10: float | None = None
    recall_100: float | None = None
    ingest_tps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def scored(row: Row, collection: Collection, run: Run, latencies: list[float]) -> Row:
    """``row`` with the metrics of ``run`` and the percentiles of ``latencies`` filled in."""
    metrics = evaluate(collection.qrels, run)
    row.ndcg_10, row.recall_100 = metrics["ndcg@10"], metrics["recall@100"]
    if latencies:
        row.p50_ms, row.p99_ms = percentiles_ms(latencies)
    return row


def reference_rows(collection: Collection) -> list[Row]:
    from .references import reference_runs

    return [scored(Row(r.name, "reference", ingest_tps=r.index_tps), collection, r.run, r.latencies)
            for r in reference_runs(collection)]


def collection_name(collection: Collection) -> str:
    """A store collection name for the folder (the store's name rule: letters, digits, ``_``, ``-``)."""
    return "bench_" + re.sub(r"[^A-Za-z0-9_-]", "_", collection.name)[:58]


def ingest(http: httpx.Client, name: str, collection: Collection) -> float:
    """Every document through ``/store/add`` in requests within the server's limits; texts/s."""
    ids = list(collection.docs)
    started = time.perf_counter()
    for start in range(0, len(ids), ADD_TEXTS):
        batch = ids[start : start + ADD_TEXTS]
        response = http.post("/store/add", json={"collection": name, "ids": batch,
                                                 "texts": [collection.docs[d] for d in batch]})
        _raise_for_status(response)
    return len(ids) / (time.perf_counter() - started)


def ingest_documents(http: httpx.Client, name: str, collection: Collection,
                     chunking: dict[str, int]) -> tuple[float, int]:
    """Every document through ``/store/add`` as a store document cut into chunks; documents/s and chunks."""
    ids = list(collection.docs)
    chunks = 0
    started = time.perf_counter()
    for start in range(0, len(ids), ADD_DOCUMENTS):
        documents = [{"id": d, "text": collection.docs[d]} for d in ids[start : start + ADD_DOCUMENTS]]
        response = http.post("/store/add", json={"collection": name, "documents": documents, "chunking": chunking})
        _raise_for_status(response)
        chunks += response.json()["added_count"]
    return len(ids) / (time.perf_counter() - started), chunks


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_error:
        raise RuntimeError(f"{response.request.url.path} answered {response.status_code}: {response.text[:500]}")


def search_mode(http: httpx.Client, name: str, collection: Collection, mode: str, grouped: bool = False) -> Row:
    """Every judged query in one mode, one at a time (after a warm-up); a refused mode gives a note.
    ``grouped``: a collection of chunks, searched by document (each hit's ``document_id`` is the run's id)."""
    queries = collection.judged_queries
    body = {"collection": name, "top_k": DEPTH, **MODES[mode], **({"group_by": "document"} if grouped else {})}
    first = http.post("/store/search", json={**body, "query": next(iter(queries.values()))})
    if 400 <= first.status_code < 500:
        return Row(mode, "ours", note=f"skipped: the server answered {first.status_code}: {_message(first)}")
    _raise_for_status(first)
    for text in list(queries.values())[:WARMUP_QUERIES]:
        _raise_for_status(http.post("/store/search", json={**body, "query": text}))
    run: Run = {}
    latencies = []
    legs: dict[str, int] = {}
    for q, text in queries.items():
        started = time.perf_counter()
        response = http.post("/store/search", json={**body, "query": text})
        latencies.append(time.perf_counter() - started)
        _raise_for_status(response)
        results = response.json()["results"]
        run[q] = [hit.get("document_id") or hit["id"] for hit in results]
        for hit in results:
            for leg in hit.get("legs") or {}:
                legs[leg] = legs.get(leg, 0) + 1
    row = scored(Row(mode, "ours"), collection, run, latencies)
    if legs:
        row.extra["hits_by_leg"] = legs
    return row


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("error") or detail)[:200]
    return str(detail)[:200]


def service_rows(collection: Collection, modes: list[str], env: dict[str, str], work: Path,
                 chunking: dict[str, int] | None = None) -> list[Row]:
    """This service, started as ``make serve`` runs it, in each of ``modes`` (module docstring);
    with ``chunking``, also over the documents ingested as chunks."""
    from .peers import start_ours

    server = start_ours(work, extra_env=env)
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            name = collection_name(collection)
            rows = _rows(http, name, collection, modes, ingest(http, name, collection), "")
            if chunking is not None:
                tps, chunks = ingest_documents(http, name + "_chunks", collection, chunking)
                label = f" (chunked {chunking['max_tokens']}/{chunking['overlap']}: {chunks:,} chunks)"
                rows += _rows(http, name + "_chunks", collection, modes, tps, label, grouped=True)
            return rows
    finally:
        server.stop()


def _rows(http: httpx.Client, name: str, collection: Collection, modes: list[str], tps: float, label: str,
          grouped: bool = False) -> list[Row]:
    rows = []
    for mode in modes:
        rows.append(search_mode(http, name, collection, mode, grouped))
        rows[-1].system += label
        print(f"  ours {rows[-1].system}: {_brief(rows[-1])}", flush=True)
    for row in rows:
        if row.ndcg_10 is not None:
            row.ingest_tps = tps
    return rows


def peer_rows(collection: Collection, folder: Path, work: Path) -> list[Row]:
    """txtai's three configurations (``bench/txtai_peer.py``), run in its own virtualenv."""
    from .txtai_peer import run_peer

    return [scored(Row(f"txtai {name}", "txtai", ingest_tps=out["ingest_tps"]), collection, out["run"],
                   out["latencies"]) for name, out in run_peer(folder, work).items()]


def _brief(row: Row) -> str:
    return row.note if row.ndcg_10 is None else f"nDCG@10 {row.ndcg_10:.4f}, recall@100 {row.recall_100:.4f}"


def _cell(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _digits(rate: float | None) -> int:
    """Decimals for a rate: none from 100 on, two below (a chunked ingest of long documents is < 1/s)."""
    return 0 if (rate or 0) >= 100 else 2


def render(collection: Collection, rows: list[Row]) -> str:
    """One markdown table for one collection."""
    n_judged = len(collection.judged_queries)
    lines = [f"**{collection.name}**: {len(collection.docs):,} documents, {n_judged} judged queries, "
             f"{sum(len(j) for j in collection.qrels.values()):,} relevant judgements", "",
             "| system | nDCG@10 | recall@100 | ingest texts/s | query p50 ms | query p99 ms | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        system = r.system if r.group != "ours" else f"ours: {r.system}"
        ingest = _cell(r.ingest_tps, _digits(r.ingest_tps))
        lines.append(f"| {system} | {_cell(r.ndcg_10, 4)} | {_cell(r.recall_100, 4)} | {ingest} | "
                     f"{_cell(r.p50_ms, 1)} | {_cell(r.p99_ms, 1)} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", type=Path, action="append", required=True, help="a BEIR folder")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of: {', '.join(MODES)}")
    parser.add_argument("--peer", action="store_true", help="also run txtai 9.14 (its own venv, made on first use)")
    parser.add_argument("--no-references", action="store_true", help="skip the in-process reference runs")
    parser.add_argument("--no-service", action="store_true", help="skip this service (references and peer only)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a setting for the server")
    parser.add_argument("--skip-missing", action="store_true", help="skip a --collection folder that does not exist")
    parser.add_argument("--chunking", metavar="MAX_TOKENS[:OVERLAP]",
                        help="also ingest documents as chunks and search them grouped by document")
    parser.add_argument("--json", type=Path, default=Path("bench/last-run-retrieval.json"))
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; expected some of {list(MODES)}")
    env = dict(item.split("=", 1) for item in args.env)
    chunking = None
    if args.chunking:
        size, _, overlap = args.chunking.partition(":")
        chunking = {"max_tokens": int(size), "overlap": int(overlap or 0)}
    results, tables = {}, []
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        for folder in args.collection:
            if not (folder / "corpus.jsonl").exists() and args.skip_missing:
                print(f"skipped {folder}: no corpus.jsonl there (docs/benchmarks.md says how to build it)")
                continue
            collection = load(folder)
            print(f"{collection.name}: {len(collection.docs)} documents, {len(collection.judged_queries)} queries",
                  flush=True)
            rows = [] if args.no_references else reference_rows(collection)
            if not args.no_service:
                rows += service_rows(collection, modes, env, Path(tmp), chunking)
            if args.peer:
                rows += peer_rows(collection, folder, Path(tmp))
            tables.append(render(collection, rows))
            results[collection.name] = [asdict(r) for r in rows]
    print("\n\n".join(tables))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": " ".join(sys.argv), "collections": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
