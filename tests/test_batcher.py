"""The batcher's guarantees, with a deterministic embed function standing in for the model."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from chutes_embeddings.engine.batcher import Batcher
from chutes_embeddings.engine.embedding import EmbedWork, embed_runner
from chutes_embeddings.errors import Overloaded


def fake_vector(text: str, pooling: str) -> np.ndarray:
    seed = sum(map(ord, text + pooling))
    return np.random.default_rng(seed).standard_normal(4).astype(np.float32)


def wait_started(started: threading.Event) -> None:
    """Wait until the fake model has begun a pass (the worker holds its batch): no sleeping on it."""
    assert started.wait(10), "the worker never started a pass"


class Recorder:
    """A run function that records its batches; ``delay`` is each pass's cost (model time)."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, texts, poolings, truncates, token_ids=None):
        with self.lock:
            self.batches.append(list(texts))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model exploded")
        return np.stack([fake_vector(t, p) for t, p in zip(texts, poolings)])


def make(embed, **kw):
    """A batcher over a fake ``Backend.embed`` (the pipeline's own run function drives it)."""
    opts = dict(max_batch_tokens=1000, max_batch_size=64, max_wait_s=0.005, max_queue=10_000)
    opts.update(kw)
    return Batcher(embed_runner(SimpleNamespace(embed=embed)), **opts)


def submit(b, texts, pools, tokens, max_batch=None, truncation="right", admitted=None):
    """Queue texts as the pipeline does."""
    return b.submit([EmbedWork(t, p, truncation, None) for t, p in zip(texts, pools)], tokens, max_batch, admitted)


def test_each_caller_gets_its_own_vectors_in_order():
    rec = Recorder(delay=0.002)
    b = make(rec)

    def caller(i):
        texts = [f"caller {i} text {j}" for j in range(i % 5 + 1)]
        pools = ["mean" if j % 2 else "cls" for j in range(len(texts))]
        futs = submit(b, texts, pools, [len(t) // 4 for t in texts])
        got = [f.result(timeout=10) for f in futs]
        return all(np.array_equal(g, fake_vector(t, p)) for g, t, p in zip(got, texts, pools))

    with ThreadPoolExecutor(48) as pool:
        assert all(pool.map(caller, range(200)))
    total_texts = sum(i % 5 + 1 for i in range(200))
    assert sum(len(x) for x in rec.batches) == total_texts
    assert len(rec.batches) < 200, "concurrent callers should share forward passes"
    b.close()


def test_batches_respect_token_budget_and_size_cap():
    rec = Recorder(delay=0.02)
    b = make(rec, max_batch_tokens=100, max_batch_size=8)
    futs = submit(b, [f"t{i}" for i in range(50)], ["mean"] * 50, [10 + (i % 7) for i in range(50)])
    for f in futs:
        f.result(timeout=10)
    for batch in rec.batches:
        assert len(batch) <= 8
        lengths = [10 + (int(t[1:]) % 7) for t in batch]
        assert max(lengths) * len(batch) <= 100
    b.close()


def test_per_request_max_batch_is_honoured():
    rec = Recorder()
    b = make(rec)
    for f in submit(b, [f"x{i}" for i in range(20)], ["mean"] * 20, [3] * 20, max_batch=4):
        f.result(timeout=10)
    assert max(len(x) for x in rec.batches) <= 4
    b.close()


def test_sorted_by_length_within_a_gathering():
    rec = Recorder()
    b = make(rec, max_wait_s=0.05, overhead_tokens=1000)
    futs = submit(b, ["a", "bbbb", "cc", "ddddddd"], ["mean"] * 4, [1, 4, 2, 7])
    for f in futs:
        f.result(timeout=10)
    assert rec.batches == [["ddddddd", "bbbb", "cc", "a"]]
    b.close()


def test_failed_batch_fails_its_callers_and_worker_survives():
    rec = Recorder(fail_on="boom")
    b = make(rec, max_batch_size=2, max_wait_s=0.05)
    futs = submit(b, ["boom", "ok1", "ok2", "ok3"], ["mean"] * 4, [9, 1, 1, 1])
    errors = [f.exception(timeout=10) for f in futs]
    assert isinstance(errors[0], RuntimeError)
    assert all(e is None or isinstance(e, RuntimeError) for e in errors)
    # the worker lives on
    assert submit(b, ["after"], ["mean"], [1])[0].result(timeout=10) is not None
    b.close()


def test_full_queue_is_refused_at_once_with_overloaded():
    gate, started = threading.Event(), threading.Event()

    def slow(texts, poolings, truncates, token_ids=None):
        started.set()
        gate.wait(10)
        return np.zeros((len(texts), 4), dtype=np.float32)

    b = make(slow, max_queue=10, max_wait_s=0.0)
    first = submit(b, ["x"], ["mean"], [1])
    wait_started(started)  # the worker is now busy with the first item: the queue is empty
    submit(b, [f"y{i}" for i in range(10)], ["mean"] * 10, [1] * 10)
    with pytest.raises(Overloaded) as err:
        submit(b, ["z"], ["mean"], [1])
    assert err.value.status == 429 and err.value.limit == 10
    gate.set()
    first[0].result(timeout=10)
    b.close()


def _busy_batcher() -> tuple[threading.Event, list[str], Batcher]:
    """A batcher whose model is busy with one text until ``gate`` is set; ``seen`` lists what ran."""
    gate, started = threading.Event(), threading.Event()
    seen: list[str] = []

    def embed(texts, poolings, truncates, token_ids=None):
        started.set()
        gate.wait(10)
        seen.extend(texts)
        return np.zeros((len(texts), 4), dtype=np.float32)

    b = make(embed, max_wait_s=0.0)
    submit(b, ["busy"], ["mean"], [1])
    wait_started(started)
    return gate, seen, b


def test_cancelled_items_cost_no_compute():
    gate, seen, b = _busy_batcher()
    gone = submit(b, ["abandoned"], ["mean"], [1])[0]
    assert gone.cancel()
    gate.set()
    submit(b, ["later"], ["mean"], [1])[0].result(timeout=10)
    assert "abandoned" not in seen
    b.close()


def test_lone_request_is_not_held_long():
    b = make(Recorder(), max_wait_s=0.002)
    started = time.monotonic()
    submit(b, ["alone"], ["mean"], [1])[0].result(timeout=10)
    assert time.monotonic() - started < 0.5
    b.close()


def test_invalid_input_fails_only_the_offending_caller():
    from chutes_embeddings.errors import InvalidInput

    def embed(texts, poolings, truncates, token_ids=None):
        if "bad" in texts:
            raise InvalidInput("backend refused 'bad'")
        return np.stack([fake_vector(t, p) for t, p in zip(texts, poolings)])

    b = make(embed, max_wait_s=0.05)
    good = submit(b, ["good1", "good2"], ["mean"] * 2, [1, 1])
    bad = submit(b, ["bad"], ["mean"], [1], truncation=None)
    assert isinstance(bad[0].exception(timeout=10), InvalidInput)
    assert all(f.exception(timeout=10) is None for f in good)
    b.close()


def test_several_workers_run_batches_concurrently():
    active, peak, lock = [0], [0], threading.Lock()
    overlapping = threading.Event()

    def embed(texts, poolings, truncates, token_ids=None):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            if active[0] > 1:
                overlapping.set()
        # hold each pass until a second one runs beside it; when none comes (one pass at a time)
        # the first to time out releases the rest, peak stays 1 and the assertion below fails
        if not overlapping.wait(5):
            overlapping.set()
        with lock:
            active[0] -= 1
        return np.zeros((len(texts), 4), dtype=np.float32)

    b = make(embed, workers=4, max_batch_size=1, max_wait_s=0.0)
    futs = [f for i in range(12) for f in submit(b, [f"t{i}"], ["mean"], [1])]
    for f in futs:
        f.result(timeout=10)
    assert peak[0] > 1
    b.close()


def test_texts_of_very_different_lengths_are_split_to_save_padding():
    rec = Recorder()
    b = make(rec, max_wait_s=0.05, overhead_tokens=32)
    texts = [f"long{i}" for i in range(4)] + [f"short{i}" for i in range(4)]
    futs = submit(b, texts, ["mean"] * 8, [100] * 4 + [10] * 4)
    for f in futs:
        f.result(timeout=10)
    assert sorted(map(sorted, rec.batches)) == [[f"long{i}" for i in range(4)], [f"short{i}" for i in range(4)]]
    b.close()


def test_the_oldest_waiting_text_runs_in_the_next_batch():
    gate, started = threading.Event(), threading.Event()
    order: list[list[str]] = []

    def embed(texts, poolings, truncates, token_ids=None):
        started.set()
        gate.wait(10)
        order.append(list(texts))
        return np.zeros((len(texts), 4), dtype=np.float32)

    b = make(embed, max_wait_s=0.05, overhead_tokens=1)
    first = submit(b, ["long", "short"], ["mean"] * 2, [100, 1])  # packed into two batches
    wait_started(started)  # "long" is running; "short" waits
    later = submit(b, ["longer still"], ["mean"], [200])
    gate.set()
    for f in first + later:
        f.result(timeout=10)
    # "longer still" would come first in length order; "short" has waited longer, so it runs first
    assert order == [["long"], ["short"], ["longer still"]]
    b.close()


def test_what_waits_is_packed_again_with_later_arrivals():
    gate, started = threading.Event(), threading.Event()
    order: list[list[str]] = []

    def embed(texts, poolings, truncates, token_ids=None):
        started.set()
        gate.wait(10)
        order.append(sorted(texts))
        return np.zeros((len(texts), 4), dtype=np.float32)

    b = make(embed, max_wait_s=0.05, overhead_tokens=8)
    first = submit(b, ["long a", "short a"], ["mean"] * 2, [100, 10])  # two batches: padding a 10 to 100 costs more
    wait_started(started)  # "long a" is running; "short a" waits
    later = submit(b, ["short b", "long b"], ["mean"] * 2, [10, 100])
    gate.set()
    for f in first + later:
        f.result(timeout=10)
    # "short a" goes with the later short text rather than alone, and the long one follows
    assert order == [["long a"], ["short a", "short b"], ["long b"]]
    b.close()


def test_admission_refuses_by_measured_drain_time_with_retry_after():
    gate, started = threading.Event(), threading.Event()
    gate.set()

    def embed(texts, poolings, truncates, token_ids=None):
        started.set()
        gate.wait(10)
        time.sleep(0.05)  # the pass's cost, which the batcher measures (a loaded machine only adds to it)
        return np.zeros((len(texts), 4), dtype=np.float32)

    b = make(embed, max_batch_size=4, max_wait_s=0.0, max_queue_wait_s=0.3)
    for f in submit(b, [f"m{i}" for i in range(4)], ["mean"] * 4, [10] * 4):  # measures ~800 tokens/s
        f.result(timeout=10)
    assert b.stats().estimated_wait_s == 0.0 and not b.stats().overloaded
    gate.clear()
    started.clear()
    hold = submit(b, ["hold"], ["mean"], [10])
    wait_started(started)  # "hold" is running: what follows waits in the queue
    queued = submit(b, [f"q{i}" for i in range(40)], ["mean"] * 40, [10] * 40)  # ~0.5 s of model time
    assert b.stats().overloaded and b.stats().estimated_wait_s > 0.3
    with pytest.raises(Overloaded) as err:
        b.admit(1, 1)
    assert err.value.extra["retry_after_s"] >= 1 and "model time" in err.value.message
    with pytest.raises(Overloaded):
        submit(b, ["late"], ["mean"], [1])
    assert b.refused == 2
    gate.set()
    for f in hold + queued:
        f.result(timeout=10)
    b.admit(1000, 1000).release()  # drained: admitted again
    assert not b.stats().overloaded
    b.close()


def test_caller_scope_cancels_its_queued_work_when_the_caller_leaves():
    from chutes_embeddings.engine.caller import CallerScope

    gate, seen, b = _busy_batcher()
    scope = CallerScope()
    scope.track(submit(b, [f"gone{i}" for i in range(5)], ["mean"] * 5, [1] * 5))
    scope.leave()
    late = submit(b, ["after leave"], ["mean"], [1])
    scope.track(late)  # tracked after leaving: cancelled at once
    assert late[0].cancelled()
    gate.set()
    submit(b, ["later"], ["mean"], [1])[0].result(timeout=10)
    assert not any(t.startswith("gone") or t == "after leave" for t in seen)
    assert b.items_dropped == 6
    b.close()


def test_an_admission_holds_its_place_so_a_burst_cannot_all_pass_an_empty_queue():
    def embed(texts, poolings, truncates, token_ids=None):
        time.sleep(0.05)  # the pass's cost, which the batcher measures (a loaded machine only adds to it)
        return np.zeros((len(texts), 4), dtype=np.float32)

    b = make(embed, max_batch_size=4, max_wait_s=0.0, max_queue_wait_s=0.3)
    for f in submit(b, [f"m{i}" for i in range(4)], ["mean"] * 4, [10] * 4):  # ~800 tokens/s measured
        f.result(timeout=10)
    first = b.admit(50, 500)  # ~0.6 s of work, still being tokenised by its caller
    assert b.stats().queue_depth == 50 and b.stats().overloaded
    with pytest.raises(Overloaded):
        b.admit(1, 10)
    first.release()
    with b.admit(1, 10) as second:  # released: the queue is empty again
        futures = submit(b, ["x"], ["mean"], [10], admitted=second)
    futures[0].result(timeout=10)
    assert b.stats().queue_depth == 0
    b.close()


class GatedPreparer:
    """A ``prepare_fn`` that records each call and holds its first call until ``release`` is set;
    texts named ``too-long`` fail as the pipeline fails a text that must not be cut."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()

    def __call__(self, work):
        self.calls.append([w.text for w in work])
        if len(self.calls) == 1:
            self.first_started.set()
            assert self.release.wait(10), "the test never released the preparer"
        return [ValueError("too long") if w.text == "too-long" else 5 for w in work]


def test_what_arrives_while_the_preparer_works_is_prepared_in_one_call():
    prep = GatedPreparer()
    b = make(Recorder(), prepare_fn=prep)
    first = submit(b, ["first"], ["mean"], [1])
    assert prep.first_started.wait(10)
    later = [submit(b, [f"t{i}"], ["mean"], [1])[0] for i in range(5)]  # five callers, one text each
    prep.release.set()
    for f in first + later:
        f.result(timeout=10)
    assert prep.calls == [["first"], [f"t{i}" for i in range(5)]]
    b.close()


def test_a_text_refused_while_preparing_fails_alone():
    prep = GatedPreparer()
    prep.release.set()
    rec = Recorder()
    b = make(rec, prepare_fn=prep)
    futures = submit(b, ["fine", "too-long", "also fine"], ["mean"] * 3, [1] * 3)
    assert futures[0].result(timeout=10).shape == (4,) and futures[2].result(timeout=10).shape == (4,)
    with pytest.raises(ValueError, match="too long"):
        futures[1].result(timeout=10)
    assert all("too-long" not in batch for batch in rec.batches)  # it never reached the model
    assert b.stats().queue_depth == 0
    b.close()


def test_work_whose_caller_left_is_dropped_before_it_is_prepared():
    prep = GatedPreparer()
    b = make(Recorder(), prepare_fn=prep)
    first = submit(b, ["first"], ["mean"], [1])
    assert prep.first_started.wait(10)
    gone = submit(b, ["gone"], ["mean"], [1])
    assert gone[0].cancel()
    kept = submit(b, ["kept"], ["mean"], [1])
    prep.release.set()
    kept[0].result(timeout=10)
    first[0].result(timeout=10)
    assert ["gone"] not in prep.calls and "gone" not in sum(prep.calls, [])
    assert b.stats().items_dropped == 1 and b.stats().queue_depth == 0
    b.close()


def test_work_that_needs_no_preparing_skips_the_preparer():
    prep = GatedPreparer()
    prep.release.set()
    b = make(Recorder(), prepare_fn=prep)
    futures = b.submit([EmbedWork("ready", "mean", "right")], [3], prepared=True)
    assert futures[0].result(timeout=10).shape == (4,)
    assert prep.calls == []
    b.close()
