"""Move collections between stores, or to and from a JSON-lines file.

    python -m chutes_embeddings.store copy  --from '' --to postgresql://... [--collection NAME ...]
    python -m chutes_embeddings.store export --from postgresql://... --collection NAME --file out.jsonl
    python -m chutes_embeddings.store import --to '' --file out.jsonl [--collection NAME]

A store URL is what ``EMBEDDINGS_STORE_URL`` takes: empty for the embedded store (under
``--data-dir``, default ``EMBEDDINGS_DATA_DIR``), or ``postgresql://...``. Vectors are copied as
they are (no model is loaded); the destination collection must be new or built with the same
model and dimension. A new destination collection gets the source's legs (lexical, sparse), and
records keep their sparse vectors. Stop a server that uses an embedded store before copying from or to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from ..settings import Settings
from . import Chunk, Legs, Record, SparseVector, VectorStore, batched, open_store

BATCH = 1000


def copy_collection(src: VectorStore, dst: VectorStore, name: str, target: str | None = None) -> int:
    """Copy one collection with its vectors and legs; returns how many records were copied."""
    info = src.describe(name)
    target = target or name
    dst.ensure_collection(target, info.model, info.dimension, info.legs)
    count = 0
    for chunk in batched(src.export(name), BATCH):
        dst.upsert(target, chunk)
        count += len(chunk)
    return count


def write_jsonl(src: VectorStore, name: str, path: Path) -> int:
    """Export a collection: a header line (model, dimension, legs), then one record per line (its
    sparse vector as ``[ids, weights]`` where it has one)."""
    info = src.describe(name)
    count = 0
    with open(path, "w") as f:
        f.write(json.dumps({"collection": name, "model": info.model, "dimension": info.dimension,
                            "lexical": info.legs.lexical, "sparse_model": info.legs.sparse_model}) + "\n")
        for rec in src.export(name):
            row = {"id": rec.id, "text": rec.text, "metadata": rec.metadata, "vector": np.asarray(rec.vector).tolist()}
            if rec.sparse is not None:
                row["sparse"] = [list(rec.sparse.indices), list(rec.sparse.values)]
            if rec.chunk is not None:  # a document's chunk: [document id, index, start, end]
                row["chunk"] = list(dataclasses.astuple(rec.chunk))
            f.write(json.dumps(row) + "\n")
            count += 1
    return count


def read_jsonl(dst: VectorStore, path: Path, target: str | None = None) -> int:
    """Import a file written by ``write_jsonl``."""
    with open(path) as f:
        header = json.loads(f.readline())
        name = target or header["collection"]
        legs = Legs(header.get("lexical"), header.get("sparse_model"))  # absent in files from before the legs
        dst.ensure_collection(name, header["model"], header["dimension"], legs)

        def records() -> Iterator[Record]:
            for line in f:
                row = json.loads(line)
                sparse = SparseVector(*map(tuple, row["sparse"])) if row.get("sparse") else None
                chunk = Chunk(*row["chunk"]) if row.get("chunk") else None
                yield Record(row["id"], row["text"], row["metadata"], np.asarray(row["vector"], dtype=np.float32),
                             sparse, chunk)

        count = 0
        for chunk in batched(records(), BATCH):
            dst.upsert(name, chunk)
            count += len(chunk)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chutes_embeddings.store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["copy", "export", "import"])
    parser.add_argument("--from", dest="src", default=None, help="source store URL ('' = embedded)")
    parser.add_argument("--to", dest="dst", default=None, help="destination store URL ('' = embedded)")
    parser.add_argument("--collection", action="append", help="collection name (repeatable; copy: default all)")
    parser.add_argument("--file", type=Path, help="JSON-lines file for export/import")
    parser.add_argument("--data-dir", default=None, help="embedded store's data dir (default EMBEDDINGS_DATA_DIR)")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else Settings.from_env().data_path

    opened: list[VectorStore] = []

    def store(url: str) -> VectorStore:
        opened.append(open_store(url, data_dir))
        return opened[-1]

    try:
        if args.command == "copy":
            if args.src is None or args.dst is None or args.src == args.dst:
                parser.error("copy needs --from and --to, and they must differ")
            src, dst = store(args.src), store(args.dst)
            for name in args.collection or [c.name for c in src.collections()]:
                print(f"{name}: {copy_collection(src, dst, name)} records copied")
        elif args.command == "export":
            if args.src is None or not args.collection or not args.file:
                parser.error("export needs --from, --collection and --file")
            count = write_jsonl(store(args.src), args.collection[0], args.file)
            print(f"{args.collection[0]}: {count} records written to {args.file}")
        else:
            if args.dst is None or not args.file:
                parser.error("import needs --to and --file")
            target = args.collection[0] if args.collection else None
            print(f"{read_jsonl(store(args.dst), args.file, target)} records imported from {args.file}")
    finally:
        for s in opened:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
