"""Classic SMART-format test collections to BEIR folders (``bench/collections.py``).

SMART files hold records that start with ``.I <number>`` and continue with fields, each a line
``.X`` followed by its text: ``.T`` title, ``.A`` authors, ``.B`` bibliography, ``.W`` body.

Cranfield (1,400 aeronautics abstracts, 225 queries)::

    python -m bench.smart cranfield SRC OUT    # SRC holds cran.all.1400, cran.qry, cranqrel

Conventions chosen (see docs/benchmarks.md):

- documents: title ``.T``, text ``.W`` less its first words when they repeat the title (Cranfield's
  ``.W`` starts with the title again; BEIR's ``title + " " + text`` join would count it twice);
  ``.A`` and ``.B`` are not searched;
- queries: ``cran.qry`` numbers them 1..365 with gaps, ``cranqrel`` numbers them 1..225 in file
  order, so a query's id is its position in ``cran.qry``;
- judgements: every ``cranqrel`` row is a relevant judgement (score 1, binary). Codes 1..4 grade
  the references the question's author judged (the collection's README: 1 a complete answer ..
  4 of minimum interest; pairs of no interest are left out of the file). The one -1 row of each
  query names the paper the question was written from (query 1, "what similarity laws must be
  obeyed when constructing aeroelastic models of heated high speed aircraft", has -1 for document
  486, "similarity laws for aerothermoelastic testing"): relevant, not "none". ``--drop-source``
  leaves those rows out (the reading of ir_datasets, which names -1 "no interest").
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .collections import write

_FIELD = re.compile(r"^\.([A-Z])(?:\s+(.*))?$")


def parse(text: str) -> list[dict[str, str]]:
    """SMART records as dicts: ``"I"`` the number after ``.I``, other keys a field's text (whitespace collapsed).

    Raises:
        ValueError: text before the first ``.I`` record.
    """
    records: list[dict[str, str]] = []
    field = None
    parts: dict[str, list[str]] = {}
    for line in text.splitlines():
        marker = _FIELD.match(line.rstrip())
        if marker and marker.group(1) == "I":
            parts = {}
            records.append({"I": (marker.group(2) or "").strip()})
            field = None
            continue
        if marker:
            field = marker.group(1)
            parts.setdefault(field, [])
            continue
        if not records:
            if line.strip():
                raise ValueError(f"text before the first .I record: {line[:60]!r}")
            continue
        if field is not None:
            parts[field].append(line)
            records[-1][field] = " ".join(" ".join(parts[field]).split())
    return records


def strip_repeated_title(title: str, text: str) -> str:
    """``text`` less its first words when they are exactly ``title``'s words."""
    head, words = title.split(), text.split()
    if head and words[: len(head)] == head:
        words = words[len(head):]
    return " ".join(words)


def cranfield_relevant(code: int, drop_source: bool = False) -> bool:
    """Whether a ``cranqrel`` row is a relevant judgement (see module docstring)."""
    return 1 <= code <= 4 or (code == -1 and not drop_source)


def convert_cranfield(src: Path, out: Path, drop_source: bool = False) -> tuple[int, int, int]:
    """Write Cranfield as a BEIR folder; returns (documents, queries, relevant judgements).

    Raises:
        ValueError: ``cranqrel`` names a query number beyond ``cran.qry``'s count.
    """
    docs = parse((src / "cran.all.1400").read_text(encoding="latin-1"))
    corpus = [{"_id": d["I"], "title": d.get("T", ""), "text": strip_repeated_title(d.get("T", ""), d.get("W", ""))}
              for d in docs]
    queries = [{"_id": str(n), "text": q.get("W", "")} for n, q in enumerate(parse(
        (src / "cran.qry").read_text(encoding="latin-1")), start=1)]
    qrels = []
    for line in (src / "cranqrel").read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        qid, did, code = line.split()[:3]
        if not 1 <= int(qid) <= len(queries):
            raise ValueError(f"cranqrel names query {qid}; cran.qry has {len(queries)}")
        if cranfield_relevant(int(code), drop_source):
            qrels.append((qid, did, 1))
    write(out, corpus, queries, qrels)
    return len(corpus), len(queries), len(qrels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.smart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collection", choices=["cranfield"])
    parser.add_argument("src", type=Path, help="the folder with the SMART files")
    parser.add_argument("out", type=Path, help="the BEIR folder to write")
    parser.add_argument("--drop-source", action="store_true",
                        help="Cranfield: leave out the -1 rows (each query's source paper)")
    args = parser.parse_args(argv)
    n_docs, n_queries, n_qrels = convert_cranfield(args.src, args.out, args.drop_source)
    print(f"{args.out}: {n_docs} documents, {n_queries} queries, {n_qrels} relevant judgements")


if __name__ == "__main__":
    main()
