"""Word hash -> term id, for an index that meets each word as its hash (``lexical.hashed``)."""

from __future__ import annotations

import numpy as np


class WordIds:
    """Word hash -> term id (-1: a stop word): an open-addressing table (linear probing, at most
    half full) looked up and filled by numpy passes over a batch, a few gathers per word where a
    binary search took about 16."""

    _FIBONACCI = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self) -> None:
        self._keys = np.zeros(1 << 16, dtype=np.uint64)  # 0: an empty slot (a hash of 0 is stored as 1)
        self._values = np.zeros(1 << 16, dtype=np.int64)
        self._size = 0

    @property
    def nbytes(self) -> int:
        return self._keys.nbytes + self._values.nbytes

    def _start(self, hashes: np.ndarray) -> np.ndarray:
        bits = len(self._keys).bit_length() - 1
        return ((hashes * self._FIBONACCI) >> np.uint64(64 - bits)).astype(np.int64)

    def get(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(term id, found) of each hash."""
        hashes = np.maximum(hashes, np.uint64(1))
        slots, last = self._start(hashes), len(self._keys) - 1
        ids = np.full(len(hashes), -1, dtype=np.int64)
        found = np.zeros(len(hashes), dtype=bool)
        todo = np.arange(len(hashes))
        while todo.size:
            at = slots[todo]
            keys = self._keys[at]
            hit = keys == hashes[todo]
            ids[todo[hit]] = self._values[at[hit]]
            found[todo[hit]] = True
            todo = todo[~hit & (keys != 0)]
            slots[todo] = (slots[todo] + 1) & last
        return ids, found

    def put(self, hashes: np.ndarray, ids: np.ndarray) -> None:
        """Add hashes (distinct, not in the table) with their term ids."""
        if 2 * (self._size + len(hashes)) > len(self._keys):
            used = np.flatnonzero(self._keys)
            old_keys, old_values = self._keys[used], self._values[used]
            size = 1 << max(16, (4 * (self._size + len(hashes))).bit_length())
            self._keys, self._values = np.zeros(size, dtype=np.uint64), np.zeros(size, dtype=np.int64)
            self._insert(old_keys, old_values)
        self._insert(np.maximum(hashes, np.uint64(1)), ids)
        self._size += len(hashes)

    def _insert(self, hashes: np.ndarray, ids: np.ndarray) -> None:
        slots, last = self._start(hashes), len(self._keys) - 1
        todo = np.arange(len(hashes))
        while todo.size:
            at = slots[todo]
            free = self._keys[at] == 0
            _, first = np.unique(at[free], return_index=True)  # one new key a free slot
            won = todo[free][first]
            self._keys[slots[won]], self._values[slots[won]] = hashes[won], ids[won]
            placed = np.zeros(len(hashes), dtype=bool)
            placed[won] = True
            todo = todo[~placed[todo]]
            slots[todo] = (slots[todo] + 1) & last
