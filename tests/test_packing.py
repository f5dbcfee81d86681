"""How waiting texts become the next forward pass (``engine.packing``), without threads or a model."""

from __future__ import annotations

import math
from dataclasses import dataclass

from chutes_embeddings.engine.packing import next_batch, pack_by_length

LIMITS = dict(overhead_tokens=32, max_batch_tokens=10_000, max_batch_size=64)


@dataclass
class Item:
    name: str
    tokens: int
    enqueued: float
    max_batch: int = 64


def names(batch: list[Item]) -> list[str]:
    return sorted(item.name for item in batch)


def test_texts_of_similar_length_go_together():
    items = [Item("s1", 10, 0), Item("L1", 200, 0), Item("s2", 12, 0), Item("L2", 190, 0)]
    assert [names(b) for b in pack_by_length(items, **LIMITS)] == [["L1", "L2"], ["s1", "s2"]]


def test_each_batch_keeps_to_the_token_budget_and_the_size_caps():
    same = [Item(f"t{i}", 100, 0) for i in range(10)]
    by_budget = pack_by_length(same, overhead_tokens=32, max_batch_tokens=300, max_batch_size=64)
    assert [len(b) for b in by_budget] == [3, 3, 3, 1]
    capped = [Item(f"c{i}", 100, 0, max_batch=2) for i in range(5)]
    assert [len(b) for b in pack_by_length(capped, **LIMITS)] == [2, 2, 1]


def test_the_pass_holds_the_oldest_text_whatever_its_length():
    window = [Item("old-short", 10, 0.0), Item("long", 200, 0.01), Item("long2", 200, 0.01), Item("short", 11, 0.02)]
    assert names(next_batch(window, max_delay_s=math.inf, **LIMITS)) == ["old-short", "short"]


def test_texts_queued_long_after_the_oldest_wait_for_a_later_pass():
    window = [Item("oldest", 10, 0.0), Item("near", 11, 0.05), Item("late", 10, 0.5)]
    assert names(next_batch(window, max_delay_s=0.1, **LIMITS)) == ["near", "oldest"]
    assert names(next_batch(window, max_delay_s=math.inf, **LIMITS)) == ["late", "near", "oldest"]


def test_one_requests_texts_are_still_split_by_length():
    request = [Item("L1", 200, 1.0), Item("s1", 10, 1.0), Item("L2", 200, 1.0), Item("s2", 10, 1.0)]
    assert names(next_batch(request, max_delay_s=0.0, **LIMITS)) == ["L1", "L2"]
