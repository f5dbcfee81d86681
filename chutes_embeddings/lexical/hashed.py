"""A batch of texts split into the analyzer's words, each word as a 64-bit hash, in numpy.

The embedded store's lexical index takes a write's texts this way: splitting and looking up
words one by one in Python cost more than the rest of an upsert together (docs/benchmarks.md),
while here every step is a numpy pass over the batch's bytes. An ASCII text is lowercased and
split on every byte that is not a letter or digit, exactly as ``Analyzer.words`` splits it; any
other text goes through ``Analyzer.words`` itself. A word's hash folds its UTF-8 bytes, read 8
at a time, by a polynomial and mixes in its length (``_hashes``); ``word`` gives a word back from
its place, so the index analyzes (stop word, stem) each distinct word once, when its hash is first
seen. Words of at most 8 bytes never collide; two longer distinct words with the same hash (odds
about n^2 / 2^65 for n such words) would share a term.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .analyzer import Analyzer

# A-Z lowercased, a-z and 0-9 kept, every other byte a separator (0)
_ASCII_WORDS = bytes(c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 0 for c in range(256))
_BASE = np.uint64(0x100000001B3)  # FNV-1's 64-bit prime, as the polynomial's base
_LENGTH_MIX = np.uint64(0x9E3779B97F4A7C15)


class HashedWords(NamedTuple):
    """The words of ``texts`` texts, in order: each word's hash, text and place in ``buffer``."""

    texts: int
    hashes: np.ndarray  # uint64, one per word
    text_of: np.ndarray  # int64, the text each word is in
    starts: np.ndarray  # int64, each word's first byte in ``buffer``
    ends: np.ndarray
    buffer: bytes

    def word(self, i: int) -> str:
        """Word ``i`` (as ``Analyzer.words`` gives it)."""
        return self.buffer[int(self.starts[i]) : int(self.ends[i])].decode()


def hash_words(analyzer: Analyzer, texts: Sequence[str]) -> HashedWords:
    """The words of ``texts`` (``analyzer.words`` of each) as hashes (see module docstring)."""
    parts = [t.encode().translate(_ASCII_WORDS) if t.isascii() else "\0".join(analyzer.words(t)).encode()
             for t in texts]
    buffer = b"\0".join(parts) + bytes(8)  # 8 bytes to read past the last word
    data = np.frombuffer(buffer, dtype=np.uint8)
    edges = np.flatnonzero(np.diff((data != 0).view(np.int8), prepend=np.int8(0)))
    starts, ends = edges[0::2].astype(np.int64), edges[1::2].astype(np.int64)
    bounds = np.cumsum([len(p) + 1 for p in parts])  # each text's end (its separator) in ``buffer``
    counts = np.diff(np.searchsorted(starts, bounds), prepend=0)  # words per text
    text_of = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
    return HashedWords(len(texts), _hashes(buffer, starts, ends - starts), text_of, starts, ends, buffer)


def _hashes(buffer: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each word's hash: its bytes read 8 at a time (little-endian, the last read masked to the
    word), folded by the polynomial, then mixed with its length. A word of at most 8 bytes is its
    own read, so such words never collide."""
    # every 8 bytes from every offset of the buffer, read in place
    windows = np.ndarray((len(buffer) - 7,), dtype="<u8", buffer=buffer, strides=(1,))
    hashes = np.zeros(len(starts), dtype=np.uint64)
    chunk = 0
    while True:
        which = np.flatnonzero(lengths > 8 * chunk) if chunk else np.arange(len(starts))
        if not which.size:
            return hashes ^ (lengths.astype(np.uint64) * _LENGTH_MIX)
        left = lengths[which] - 8 * chunk
        value = windows[starts[which] + 8 * chunk]
        short = left < 8
        value[short] &= (np.uint64(1) << (left[short].astype(np.uint64) * np.uint64(8))) - np.uint64(1)
        hashes[which] = hashes[which] * _BASE + value
        chunk += 1
