"""A long-document collection made from a short-document one: consecutive documents joined.

    python -m bench.concat --collection /work/data/cranfield --per 8 --out /tmp/cranfield-concat8

Every ``per`` consecutive documents (in corpus order) become one document, their texts joined as
paragraphs (a blank line between); a joined document is relevant to a query with the highest grade
of any of its parts. The queries are the source's. With Cranfield's abstracts (about 180 tokens
each) and ``per`` 8, the documents run to about 1,500 tokens: past the bundled model's window (256),
which is what chunked ingestion is measured against (``bench.retrieval --chunking``). No public
collection of long documents with judgements could be had here (the SMART TIME collection's texts
are in public repositories, its queries and judgements were not found).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .collections import load, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.concat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", type=Path, required=True, help="a BEIR folder")
    parser.add_argument("--per", type=int, default=8, help="source documents per joined document")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    source = load(args.collection)
    ids = list(source.docs)
    part_of = {doc: f"joined{start // args.per}" for start in range(0, len(ids), args.per)
               for doc in ids[start : start + args.per]}
    corpus = [{"_id": f"joined{start // args.per}", "title": "",
               "text": "\n\n".join(source.docs[d] for d in ids[start : start + args.per])}
              for start in range(0, len(ids), args.per)]
    grades: dict[tuple[str, str], int] = {}
    for q, judged in source.qrels.items():
        for doc, grade in judged.items():
            if doc in part_of:
                key = (q, part_of[doc])
                grades[key] = max(grades.get(key, 0), grade)
    write(args.out, corpus, [{"_id": q, "text": t} for q, t in source.queries.items()],
          [(q, d, g) for (q, d), g in grades.items()])
    print(f"{args.out}: {len(corpus)} documents of {args.per} from {len(ids)}, {len(grades)} judgements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
