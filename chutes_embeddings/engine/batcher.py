"""Cross-request batching: many caller threads, one forward pass at a time.

Cords run in many worker threads while there is one model. Callers ``submit`` work items (a
text to embed, a query-document pair to score: the batcher only sees each item's token cost) and get
``concurrent.futures.Future`` objects back; one worker thread looks at what is waiting (waiting at
most ``max_wait_s`` for company when there is little), sorts it by length and splits it into
batches of similar lengths (padding costs compute; so does each extra pass) within a padded-token
budget and a size cap, among the items that arrived within ``max_delay_s`` of the oldest, runs the
batch that holds the oldest item (``packing.next_batch``), and completes every future with its own
vector or with the batch's exception.

Preparing: with a ``prepare_fn`` (the embedder's tokenizer), a second thread turns all that has
arrived into model inputs in one call while the forward pass runs (callers queue raw texts, costed
by the length estimate until counted), so the next batch is ready when the runtime frees.

Admission: the queue is bounded by a text count (``max_queue``) and by time: the batcher measures
how fast it drains (padded tokens per second of forward passes) and, while what already waits
would take longer than ``max_queue_wait_s`` to drain, ``admit``/``submit`` raise ``Overloaded``
at once, with a ``retry_after_s`` from that estimate. Work whose caller has gone (its future was
cancelled: the client disconnected or its deadline passed) is dropped before it reaches the model.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from loguru import logger

from ..backends.protocols import BatchingProfile
from ..errors import BackendUnavailable, InvalidInput, Overloaded
from ..settings import Settings
from .packing import next_batch
from .results import BatcherStats

# run_fn(payloads) -> one result per payload, in order: a forward pass over what callers submitted
# (e.g. the pipeline's texts with their pooling and token ids, or the reranker's pairs).
RunFn = Callable[[list[Any]], Sequence[Any]]
# prepare_fn(payloads) -> per payload its token cost, or the exception that fails it (e.g. a text over
# the model's limit that must not be cut); it may complete the payloads in place (their token ids).
PrepareFn = Callable[[list[Any]], Sequence["int | BaseException"]]
RATE_SMOOTHING = 0.3  # weight of the newest batch in the drain-rate average
MAX_RETRY_AFTER_S = 60
CHARS_PER_TOKEN = 4  # admission's estimate of a text's cost before it is tokenised


def estimate_tokens(chars: int, limit: int, special_tokens: int = 2) -> int:
    """An input's cost before (or instead of) tokenising it: ~4 characters a token, at most ``limit``."""
    return min(limit, chars // CHARS_PER_TOKEN + special_tokens)


@dataclass
class _Item:
    payload: Any
    tokens: int
    max_batch: int
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class Admission:
    """Room reserved in a ``Batcher``'s queue by ``admit``; used up by ``submit`` or released."""

    def __init__(self, batcher: "Batcher", texts: int, tokens: int) -> None:
        self._batcher = batcher
        self._texts = texts
        self._tokens = tokens
        self._held = True

    def release_locked(self) -> bool:
        """Give the room back (the batcher's lock held); False when it was already given back."""
        if not self._held:
            return False
        self._held = False
        self._batcher._unreserve_locked(self._texts, self._tokens)
        return True

    def release(self) -> None:
        """Give the room back if ``submit`` did not use it."""
        with self._batcher._cond:
            self.release_locked()

    def __enter__(self) -> "Admission":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Batcher:
    """Packs concurrent requests into shared forward passes (see module docstring)."""

    def __init__(
        self,
        run_fn: RunFn,
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        max_queue_wait_s: float = math.inf,
        max_delay_s: float = math.inf,
        workers: int = 1,
        overhead_tokens: int = 32,
        prepare_fn: PrepareFn | None = None,
        name: str = "batcher",
        unit: str = "texts",
    ) -> None:
        self._run_fn = run_fn
        self._prepare_fn = prepare_fn
        self.max_delay_s = max_delay_s
        self.unit = unit  # what an item is, in messages ("texts", "pairs")
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.max_queue_wait_s = max_queue_wait_s
        self.overhead_tokens = overhead_tokens
        self.workers = workers
        self._pending: deque[_Item] = deque()  # ready for a forward pass
        self._arriving: deque[_Item] = deque()  # waiting for prepare_fn
        self._pending_tokens = 0  # sum of tokens in _pending and _arriving, kept as items come and go
        self._reserved_texts = 0  # admitted, not yet submitted (see admit)
        self._reserved_tokens = 0
        self._cond = threading.Condition()
        self._closed = False
        self._tokens_per_s: float | None = None  # measured drain rate (all workers), None until a batch ran
        self.batches_run = 0
        self.items_run = 0
        self.items_dropped = 0
        self.refused = 0
        # observer(tokens per text, queue wait per text, pass seconds), after each forward pass
        self.observer: Callable[[list[int], list[float], float], None] | None = None
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        if prepare_fn is not None:
            self._threads.append(threading.Thread(target=self._prepare, name=f"{name}-prepare", daemon=True))
        for thread in self._threads:
            thread.start()

    @classmethod
    def for_service(cls, run_fn: RunFn, settings: Settings, profile: BatchingProfile, *, max_batch_tokens: int,
                    max_batch_size: int, name: str, unit: str, prepare_fn: PrepareFn | None = None) -> "Batcher":
        """The batcher of one model service: its batch limits, the queue limits every service
        shares, and the profile of what serves it (passes in flight, the cost of one more pass)."""
        return cls(
            run_fn,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=max_batch_size,
            max_wait_s=settings.batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            max_queue_wait_s=settings.max_queue_wait_s,
            max_delay_s=settings.batch_max_delay_ms / 1000.0,
            workers=profile.in_flight,
            overhead_tokens=settings.batch_overhead_tokens if profile.overhead_tokens is None
            else profile.overhead_tokens,
            prepare_fn=prepare_fn,
            name=name,
            unit=unit,
        )

    # --- caller side ---------------------------------------------------------------------
    def submit(
        self,
        payloads: Sequence[Any],
        tokens: Sequence[int],
        max_batch: int | None = None,
        admitted: Admission | None = None,
        prepared: bool = False,
    ) -> list[Future]:
        """Queue work items (all or none) and return one future per item, in order.

        Args:
            payloads: what ``run_fn`` gets for each item (the batcher does not look inside).
            tokens: each item's token count (its cost in the budget; capped at the model limit),
                or its estimate when a ``prepare_fn`` will count them.
            max_batch: at most this many of these items per forward pass.
            admitted: the place ``admit`` reserved for these items (it is used up here); without
                one the queue is checked now.
            prepared: the payloads need no ``prepare_fn`` (they skip the preparing thread).

        Raises:
            Overloaded: the queue cannot take them now (see ``admit``).
            BackendUnavailable: the batcher is shut down.
        """
        cap = min(max_batch or self.max_batch_size, self.max_batch_size)
        now = time.monotonic()  # one time for the call: its items never overtake each other
        items = [_Item(p, max(1, n), cap, enqueued=now) for p, n in zip(payloads, tokens)]
        with self._cond:
            if admitted is not None and admitted.release_locked():
                if self._closed:
                    raise BackendUnavailable("the engine is shutting down")
            else:
                self._admit_locked(len(items), sum(item.tokens for item in items))
            (self._pending if prepared or self._prepare_fn is None else self._arriving).extend(items)
            self._pending_tokens += sum(item.tokens for item in items)
            self._cond.notify_all()
        return [item.future for item in items]

    def admit(self, n: int, tokens: int) -> Admission:
        """Reserve room for ``n`` texts of about ``tokens`` tokens, or raise ``Overloaded`` now.

        A cheap early check, before the caller spends time tokenising: the reservation counts as
        queued work (so concurrent callers cannot all pass an empty queue at once) until
        ``submit`` uses it or it is released. Use it as a context manager (released on exit).
        """
        with self._cond:
            self._admit_locked(n, tokens)
            self._reserved_texts += n
            self._reserved_tokens += tokens
        return Admission(self, n, tokens)

    def check_admission(self) -> None:
        """Raise ``Overloaded`` now if new work (one item at least) would be refused; reserves
        nothing (the request guard asks this before a body is read)."""
        with self._cond:
            self._admit_locked(1, 0)

    def _unreserve_locked(self, texts: int, tokens: int) -> None:
        self._reserved_texts -= texts
        self._reserved_tokens -= tokens

    def _admit_locked(self, n: int, tokens: int) -> None:
        if self._closed:
            raise BackendUnavailable("the engine is shutting down")
        waiting = self._waiting_locked()
        wait_s = self._wait_locked()
        if n > self.max_queue - waiting:
            reason = f"{waiting} {self.unit} are waiting and the queue holds {self.max_queue}"
        elif waiting and wait_s > self.max_queue_wait_s:
            reason = (f"the {self.unit} already waiting need about {wait_s:.1f} s of model time "
                      f"(more than {self.max_queue_wait_s:g} s)")
        else:
            return
        self.refused += 1
        retry_after = min(MAX_RETRY_AFTER_S, max(1, math.ceil(wait_s)))
        raise Overloaded(f"{reason}; retry in {retry_after} s", limit=self.max_queue, retry_after_s=retry_after)

    def _waiting_locked(self) -> int:
        return len(self._pending) + len(self._arriving) + self._reserved_texts

    def _wait_locked(self) -> float:
        if not self._tokens_per_s:
            return 0.0
        return (self._pending_tokens + self._reserved_tokens) / self._tokens_per_s

    def stats(self) -> BatcherStats:
        """The limits, the queue now and the counters so far."""
        with self._cond:
            waiting, wait_s = self._waiting_locked(), self._wait_locked()
            return BatcherStats(
                max_batch_tokens=self.max_batch_tokens, max_batch_size=self.max_batch_size,
                max_queue=self.max_queue, max_queue_wait_s=self.max_queue_wait_s, queue_depth=waiting,
                estimated_wait_s=wait_s, overloaded=bool(waiting) and wait_s > self.max_queue_wait_s,
                batches_run=self.batches_run, items_run=self.items_run, items_dropped=self.items_dropped,
                refused=self.refused,
            )

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking work, finish what is queued, and stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # --- worker side ---------------------------------------------------------------------
    def _take(self) -> list[_Item] | None:
        """The next batch to run (``packing.next_batch``), None once closed and drained.

        After waiting up to ``max_wait_s`` for company, the oldest ``4 x max_batch_size`` ready
        items that arrived within ``max_delay_s`` of the oldest are packed by length and the batch
        holding the oldest runs; the others wait, to be packed again with what arrives meanwhile.
        So every pass takes the oldest item (a short text is never overtaken for ever by newer
        long ones), and nothing waits for a whole earlier gathering to drain first.
        """
        with self._cond:
            while not self._pending:
                if self._closed and not self._arriving:
                    return None
                self._cond.wait()
            deadline = self._pending[0].enqueued + self.max_wait_s
            while not self._closed:
                remaining = deadline - time.monotonic()
                if (
                    self._pending_tokens >= self.max_batch_tokens
                    or len(self._pending) >= self.max_batch_size
                    or remaining <= 0
                ):
                    break
                self._cond.wait(remaining)
                if not self._pending:  # another worker took it
                    return []
            window = [self._pending.popleft() for _ in range(min(len(self._pending), 4 * self.max_batch_size))]
            batch = next_batch(window, overhead_tokens=self.overhead_tokens,
                               max_batch_tokens=self.max_batch_tokens, max_batch_size=self.max_batch_size,
                               max_delay_s=self.max_delay_s)
            chosen = {id(it) for it in batch}
            self._pending.extendleft(reversed([it for it in window if id(it) not in chosen]))
            self._pending_tokens -= sum(item.tokens for item in batch)
            if self._pending:
                self._cond.notify_all()  # another worker may run the next one
            return batch

    def _prepare(self) -> None:
        """The preparing thread: everything that arrived, through ``prepare_fn`` in one call."""
        assert self._prepare_fn is not None
        while True:
            with self._cond:
                while not self._arriving:
                    if self._closed:
                        return
                    self._cond.wait()
                arrived = list(self._arriving)
                self._arriving.clear()
            live = [it for it in arrived if not it.future.cancelled()]
            try:
                costs: Sequence[int | BaseException] = self._prepare_fn([it.payload for it in live])
                if len(costs) != len(live):  # else some callers would wait for ever
                    raise RuntimeError(f"prepare_fn answered {len(costs)} costs for {len(live)} items")
            except BaseException as exc:  # every caller must hear of it; the thread lives on
                logger.opt(exception=exc).warning("preparing {} items failed: {}", len(live), type(exc).__name__)
                costs = [exc] * len(live)
            failed = [(it, c) for it, c in zip(live, costs) if isinstance(c, BaseException)]
            with self._cond:
                self._pending_tokens -= sum(it.tokens for it in arrived)
                self.items_dropped += len(arrived) - len(live)
                for item, cost in zip(live, costs):
                    if not isinstance(cost, BaseException):
                        item.tokens = max(1, cost)
                        self._pending_tokens += item.tokens
                        self._pending.append(item)
                self._cond.notify_all()
            for item, exc in failed:
                item.future.set_exception(exc)

    def _measure(self, batch: list[_Item], elapsed_s: float) -> None:
        """Fold one batch into the drain rate (tokens/s over all workers) and the counters."""
        rate = sum(item.tokens for item in batch) / max(elapsed_s, 1e-4) * self.workers
        with self._cond:
            self.batches_run += 1
            self.items_run += len(batch)
            old = self._tokens_per_s
            self._tokens_per_s = rate if old is None else (1 - RATE_SMOOTHING) * old + RATE_SMOOTHING * rate

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            # callers that gave up (disconnected, timed out) cost no compute
            live = [it for it in batch if it.future.set_running_or_notify_cancel()]
            if len(live) < len(batch):
                with self._cond:
                    self.items_dropped += len(batch) - len(live)
            if live:
                self._run_batch(live)

    def _run_batch(self, batch: list[_Item]) -> None:
        started = time.monotonic()
        try:
            results = self._run_fn([it.payload for it in batch])
        except InvalidInput as exc:
            if len(batch) > 1:  # one caller's bad input must not fail the others
                for item in batch:
                    self._run_batch([item])
                return
            batch[0].future.set_exception(exc)
            return
        except BaseException as exc:  # every waiter must hear of it; the worker lives on
            logger.opt(exception=exc).warning("batch of {} items failed: {}", len(batch), type(exc).__name__)
            for item in batch:
                item.future.set_exception(exc)
            return
        elapsed = time.monotonic() - started
        self._measure(batch, elapsed)
        if self.observer is not None:
            self.observer([it.tokens for it in batch], [started - it.enqueued for it in batch], elapsed)
        for item, result in zip(batch, results):
            item.future.set_result(result)
