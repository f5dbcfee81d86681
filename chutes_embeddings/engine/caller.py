"""The caller a piece of work is for, so that work can be dropped when its caller goes away.

The HTTP boundary runs each request's engine call inside a ``CallerScope`` (a context variable,
so nothing is passed through the engine's signatures). The engine registers the futures it queues
with the current scope; when the client disconnects, the boundary calls ``leave()``, which
cancels them, and the batcher skips cancelled items before they reach the model.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from contextvars import ContextVar
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")


class CallerScope:
    """The futures queued for one caller; ``leave()`` cancels those not yet running."""

    def __init__(self) -> None:
        self._futures: list[Future] = []
        self._gone = False
        self._lock = threading.Lock()

    @property
    def gone(self) -> bool:
        return self._gone

    def track(self, futures: Iterable[Future]) -> None:
        """Remember ``futures`` (cancelled at once if the caller has already left)."""
        with self._lock:
            if not self._gone:
                self._futures.extend(futures)
                return
        for future in futures:
            future.cancel()

    def leave(self) -> None:
        """The caller went away: cancel its queued work."""
        with self._lock:
            self._gone = True
            futures, self._futures = self._futures, []
        for future in futures:
            future.cancel()


_current: ContextVar[CallerScope | None] = ContextVar("embeddings_caller", default=None)


def current_scope() -> CallerScope | None:
    """The scope of the request this thread works for (None outside a request)."""
    return _current.get()


def run_in_scope(scope: CallerScope, fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn(*args)`` with ``scope`` as the current caller."""
    token = _current.set(scope)
    try:
        return fn(*args)
    finally:
        _current.reset(token)
