"""How the waiting work becomes the next forward pass: grouped by length, within the batch caps,
among the texts that arrived close to the oldest (so a split by length cannot hold it back long).

Pure functions over the batcher's queued items (anything with ``tokens``, ``max_batch`` and
``enqueued``), so the policy is tested without threads or a model.
"""

from __future__ import annotations

from typing import Protocol, Sequence, TypeVar


class Queued(Protocol):
    """What packing reads of a queued item."""

    tokens: int  # its cost: token count (capped at the model's limit)
    max_batch: int  # at most this many items in a pass that holds it
    enqueued: float  # when it was queued (time.monotonic())


Q = TypeVar("Q", bound=Queued)


def fits(count: int, longest: int, cap: int, max_batch_tokens: int) -> bool:
    """Whether ``count`` items padded to ``longest`` tokens make one allowed pass."""
    return count <= cap and (count == 1 or longest * count <= max_batch_tokens)


def pack_by_length(items: Sequence[Q], *, overhead_tokens: int, max_batch_tokens: int,
                   max_batch_size: int) -> list[list[Q]]:
    """Split items, longest first, into batches that waste little compute on padding.

    A forward pass costs about ``overhead_tokens + count x longest`` (measured on CPU: 2.7 ms
    + 0.096 ms per padded token, so ~28 tokens of overhead). Each batch is the prefix of the
    remaining sorted items with the most real tokens per unit of that cost, within the token
    budget and the size caps: texts of similar length go together, and a batch grows only
    while padding costs less than another pass would.
    """
    ordered = sorted(items, key=lambda it: it.tokens, reverse=True)
    batches: list[list[Q]] = []
    start = 0
    while start < len(ordered):
        longest = ordered[start].tokens
        cap = max_batch_size
        best_end, best_rate, useful = start + 1, -1.0, 0
        for end in range(start + 1, len(ordered) + 1):
            cap = min(cap, ordered[end - 1].max_batch)
            if not fits(end - start, longest, cap, max_batch_tokens):
                break
            useful += ordered[end - 1].tokens
            rate = useful / (overhead_tokens + longest * (end - start))
            if rate >= best_rate:
                best_end, best_rate = end, rate
        batches.append(ordered[start:best_end])
        start = best_end
    return batches


def next_batch(window: Sequence[Q], *, overhead_tokens: int, max_batch_tokens: int, max_batch_size: int,
               max_delay_s: float) -> list[Q]:
    """The pass to run now, from ``window`` (the waiting items, oldest first).

    Only the oldest item's cohort is packed: the items queued within ``max_delay_s`` of it. The
    length group (``pack_by_length``) of that cohort that holds the oldest item runs, so nothing
    is overtaken for ever, and a newer text can overtake an older one of another length only if
    it arrived within ``max_delay_s`` of the oldest: how long the oldest has waited bounds what a
    split by length may let pass it. Without the bound, texts arriving pass after pass of one
    length kept overtaking a text of another, and the p99 of 16 one-text clients was twice their
    p50 (docs/benchmarks.md, "The cost of one request", measures the bound). Items queued
    together (one request's texts) share one time, so a request is split by length as before.
    """
    oldest = window[0]
    cohort = [it for it in window if it.enqueued - oldest.enqueued <= max_delay_s]
    return next(b for b in pack_by_length(cohort, overhead_tokens=overhead_tokens,
                                          max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size)
                if any(it is oldest for it in b))
