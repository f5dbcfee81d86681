"""A thread-safe LRU of raw (un-normalised) vectors, keyed on everything that changes them."""

from __future__ import annotations

import threading
from typing import Hashable, Sequence

import numpy as np
from cachetools import LRUCache


class EmbeddingCache:
    """LRU cache of pooled vectors.

    Keys are ``(model identity, pooling, text)``. Normalisation is applied after the cache, so
    it is not part of the key; truncation is not either, because an input that fits the model is
    embedded identically with or without it and one that does not fit is refused when truncation
    is off. A ``maxsize`` of 0 disables caching.
    """

    def __init__(self, maxsize: int) -> None:
        self._lru: LRUCache[Hashable, np.ndarray] | None = LRUCache(maxsize) if maxsize > 0 else None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[Hashable]) -> list[np.ndarray | None]:
        """Look up each key; counts hits and misses."""
        if self._lru is None:
            self.misses += len(keys)
            return [None] * len(keys)
        with self._lock:
            found = [self._lru.get(k) for k in keys]
            hit = sum(v is not None for v in found)
            self.hits += hit
            self.misses += len(keys) - hit
        return found

    def put_many(self, keys: Sequence[Hashable], vectors: np.ndarray) -> None:
        """Store one row of ``vectors`` per key (rows are copied so callers may reuse the array)."""
        if self._lru is None:
            return
        with self._lock:
            for key, row in zip(keys, vectors):
                self._lru[key] = row.copy()

    def stats(self) -> dict[str, int | float]:
        """Plain-data counters for /info."""
        total = self.hits + self.misses
        return {
            "size": 0 if self._lru is None else len(self._lru),
            "maxsize": 0 if self._lru is None else int(self._lru.maxsize),
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / total, 4) if total else 0.0,
        }
