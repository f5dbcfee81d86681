"""What the store verbs answer (``StoreService``): typed data the dialects shape."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.results import Ranking
from . import Record


@dataclass(frozen=True)
class Added:
    """What an upsert did: the distinct records written, their ids in input order, the new size,
    and (documents) each document's id and chunk count."""

    added: int
    ids: list[str]
    total: int
    documents: list[tuple[str, int]] | None = None


@dataclass(frozen=True)
class Found:
    """A search's hits (``Hit.index`` points into ``records``), and the collection's model."""

    ranking: Ranking
    records: list[Record]
    model: str
    other_chunks: list[int] | None = None  # grouped by document: each hit's document's other matching chunks


@dataclass(frozen=True)
class Got:
    """Records fetched, and the asked ids that were not there."""

    records: list[Record]
    missing_ids: list[str]


@dataclass(frozen=True)
class Deleted:
    """How many records went, and how many are left."""

    deleted: int
    total: int
