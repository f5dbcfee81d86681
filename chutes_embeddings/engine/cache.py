"""A thread-safe LRU of raw (un-normalised) vectors, keyed on everything that changes them, each
with its text's length in tokens (so a hit answers usage and the token limit without tokenising)."""

from __future__ import annotations

import threading
from typing import Hashable, Sequence

import numpy as np
from cachetools import LRUCache


class EmbeddingCache:
    """LRU cache of pooled vectors and their texts' token counts (None where not counted).

    Keys are ``(model identity, pooling, text)``. Normalisation is applied after the cache, so
    it is not part of the key; truncation is not either, because an input that fits the model is
    embedded identically with or without it and one that does not fit is refused when truncation
    is off. A ``maxsize`` of 0 disables caching.
    """

    def __init__(self, maxsize: int) -> None:
        self._lru: LRUCache[Hashable, tuple[np.ndarray, int | None]] | None = LRUCache(maxsize) if maxsize > 0 else None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[Hashable]) -> list[tuple[np.ndarray, int | None] | None]:
        """Look up each key: (vector, token count) or None; counts hits and misses."""
        if self._lru is None:
            self.misses += len(keys)
            return [None] * len(keys)
        with self._lock:
            found = [self._lru.get(k) for k in keys]
            hit = sum(v is not None for v in found)
            self.hits += hit
            self.misses += len(keys) - hit
        return found

    def put_many(self, keys: Sequence[Hashable], vectors: np.ndarray, tokens: Sequence[int | None]) -> None:
        """Store one row of ``vectors`` per key with its text's token count (rows are copied so
        callers may reuse the array)."""
        if self._lru is None:
            return
        with self._lock:
            for key, row, n in zip(keys, vectors, tokens):
                self._lru[key] = (row.copy(), n)

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
