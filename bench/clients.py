"""The benchmarks' clients: texts sent one per request from several threads, each request timed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable


def drive(post: Callable[[str], object], texts: list[str], clients: int) -> list[float]:
    """Send ``texts`` one per request (``post(text)``) from ``clients`` threads (in this thread
    when 1); each request's seconds."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(text: str) -> None:
        started = time.perf_counter()
        post(text)
        with lock:
            latencies.append(time.perf_counter() - started)

    if clients == 1:
        for text in texts:
            one(text)
    else:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, texts))
    return latencies
