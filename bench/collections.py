"""Labelled retrieval collections in BEIR's folder format, read and written (no torch, no server).

A collection is a folder::

    corpus.jsonl       {"_id": ..., "title": ..., "text": ...} per line
    queries.jsonl      {"_id": ..., "text": ...} per line
    qrels/test.tsv     query-id <TAB> corpus-id <TAB> score, after a header line (or trec_eval's 4 columns)

Only positive judgements count (score > 0, as BEIR evaluates them); queries without one are left
out of the evaluation. A document is searched as ``title + " " + text`` (BEIR's own join).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Collection:
    """A labelled collection: documents (id -> searched text), queries (id -> text), judgements."""

    name: str
    docs: dict[str, str]
    queries: dict[str, str]
    qrels: Qrels

    @property
    def judged_queries(self) -> dict[str, str]:
        """The queries that have at least one relevant document, in file order."""
        return {q: text for q, text in self.queries.items() if self.qrels.get(q)}


def document_text(title: str, text: str) -> str:
    """What is indexed for one document: title and body joined by a space (either may be empty)."""
    return " ".join(part for part in (title.strip(), text.strip()) if part)


def _jsonl(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_qrels(path: Path) -> Qrels:
    """Judgements, positive ones only, from BEIR's ``query-id corpus-id score`` (tab-separated, a
    header line) or trec_eval's ``query-id iteration corpus-id score`` (whitespace-separated).

    Raises:
        ValueError: a line with neither 3 nor 4 fields, or a score that is no integer past the first line.
    """
    qrels: Qrels = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (3, 4):
                raise ValueError(f"{path}:{number}: expected 3 or 4 fields, got {len(fields)}")
            query, doc, score = fields[0], fields[-2], fields[-1]
            if number == 1 and not score.lstrip("-").isdigit():
                continue  # BEIR's header
            if int(score) > 0:
                qrels.setdefault(query, {})[doc] = int(score)
    return qrels


def load(folder: Path, split: str = "test") -> Collection:
    """Read a BEIR folder; documents with neither title nor text are dropped (the store refuses empty texts).

    Raises:
        FileNotFoundError: a file of the format is missing.
        ValueError: a judgement names a query or document the folder does not have.
    """
    docs = {}
    for row in _jsonl(folder / "corpus.jsonl"):
        text = document_text(row.get("title") or "", row.get("text") or "")
        if text:
            docs[str(row["_id"])] = text
    queries = {str(row["_id"]): row["text"] for row in _jsonl(folder / "queries.jsonl")}
    qrels = load_qrels(folder / "qrels" / f"{split}.tsv")
    unknown_q = set(qrels) - set(queries)
    if unknown_q:
        raise ValueError(f"{folder}: qrels name {len(unknown_q)} queries queries.jsonl lacks, e.g. {min(unknown_q)}")
    qrels = {q: {d: g for d, g in judged.items() if d in docs} for q, judged in qrels.items()}
    return Collection(folder.name, docs, queries, {q: judged for q, judged in qrels.items() if judged})


def write(folder: Path, corpus: list[dict[str, str]], queries: list[dict[str, str]],
          qrels: list[tuple[str, str, int]], split: str = "test") -> None:
    """Write a BEIR folder (``corpus`` rows: ``_id``, ``title``, ``text``; ``queries`` rows: ``_id``, ``text``)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        with open(folder / name, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with open(folder / "qrels" / f"{split}.tsv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, delimiter="\t", lineterminator="\n")
        out.writerow(["query-id", "corpus-id", "score"])
        out.writerows(qrels)
