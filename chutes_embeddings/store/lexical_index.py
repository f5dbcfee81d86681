"""In-memory BM25 over one collection's analyzed texts: the embedded store's lexical leg.

It scores exactly as SQLite FTS5's ``bm25()`` does (which the store used before, and which the
Postgres leg and ``lexical.memory`` reproduce): for each distinct query term in query order,
``idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` summed from 0.0, with
``idf = log((N - n + 0.5) / (n + 0.5))`` floored at 1e-6, k1 = 1.2, b = 0.75; ``N`` the rows,
``n`` the rows holding the term, ``dl`` a row's terms and ``avgdl`` their mean. The operations
are FTS5's, in its order, in float64, so the scores are the same numbers. Only rows holding a
query term match; ties (to 1e-9) go to the lower row id, the record written first.

Layout, as ``SparseIndex``: segments, each a term-major postings list (per term id a slice of
``rows`` int32 and ``tf`` uint16) over its rows (row ids sorted, each row's length ``dl``, a live
flag). Each write becomes a segment (its records' old rows are flagged dead); the newest segments
merge size-tiered, four of a size tier into one, dropping dead rows (``_mergeable``). A query
reads only its terms' postings (numpy gathers and one accumulation per segment): its cost follows
the postings of its terms, about 31,000 matches for three common words of 1M texts. No top-k
pruning (MaxScore/WAND): every posting is scored, as FTS5 does, but in numpy rather than per row
through FTS5's auxiliary-function interface, which was the cost (docs/benchmarks.md).

The index is derived from the records' texts (the analyzer is deterministic), so SQLite stores no
term lists: ``capture().arrays()``/``restore`` save its segments as they are (no merge) beside the
dense index, and what changed after a snapshot is analyzed again on load.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Sequence

import numpy as np

from ..lexical.analyzer import Analyzer
from ..lexical.hashed import HashedWords
from ..lexical.word_ids import WordIds

K1, B = 1.2, 0.75  # SQLite FTS5's bm25() defaults
IDF_FLOOR = 1e-6
FAN_IN = 4  # segments of one size tier that merge into one
TIE_DECIMALS = 9
_PREFIX = "lex_"
_SEGMENT_ARRAYS = ("rids", "dl", "indptr", "rows", "tf")  # _Segment's arguments, in order


class _Segment:
    """Rows (sorted by row id) with their lengths and live flags, and their postings by term id."""

    def __init__(self, rids: np.ndarray, dl: np.ndarray, indptr: np.ndarray, rows: np.ndarray,
                 tf: np.ndarray) -> None:
        self.rids, self.dl = rids, dl
        self.indptr, self.rows, self.tf = indptr, rows, tf
        self.live = np.ones(len(rids), dtype=bool)
        self.live_count = len(rids)
        self._scratch: np.ndarray | None = None

    @property
    def width(self) -> int:
        """Term ids below this may have postings here."""
        return len(self.indptr) - 1

    def scratch(self) -> np.ndarray:
        """A float64 per row, all zero, that a search scores in and leaves zeroed: allocating it
        per query cost page faults over the whole segment (8 MB at 1M rows)."""
        if self._scratch is None:
            self._scratch = np.zeros(len(self.rids), dtype=np.float64)
        return self._scratch

    def live_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(postings per term, rows, tf) of the live rows' postings, term-major."""
        if self.live_count == len(self.live):
            return np.diff(self.indptr), self.rows, self.tf
        keep = self.live[self.rows]
        before = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(keep, out=before[1:])
        return np.diff(before[self.indptr]), self.rows[keep], self.tf[keep]

    def kill(self, rids: np.ndarray) -> int:
        """Flag these row ids (sorted, distinct) dead where this segment holds them live; returns
        the lengths freed."""
        at = np.searchsorted(self.rids, rids)
        inside = at < len(self.rids)
        at = at[inside]
        rows = at[self.rids[at] == rids[inside]]
        rows = rows[self.live[rows]]
        self.live[rows] = False
        self.live_count -= len(rows)
        return int(self.dl[rows].sum())


def _tier(segment: _Segment) -> int:
    """The segment's size tier: its live rows' order of magnitude in powers of ``FAN_IN``."""
    return int(math.log(max(segment.live_count, 1), FAN_IN))


def _mergeable(segments: list[_Segment]) -> int:
    """How many of the newest segments are of the newest one's tier or below: ``FAN_IN`` of them
    merge (size-tiered, as log-structured indexes merge), so a posting is copied about
    log4(rows / batch) times over its life and there are at most about 3 segments a tier."""
    if not segments:
        return 0
    tier, run = _tier(segments[-1]), 0
    for segment in reversed(segments):
        if _tier(segment) > tier:
            break
        run += 1
    return run


def _tf_type(tf: np.ndarray) -> type:
    return np.uint16 if not tf.size or int(tf.max()) <= np.iinfo(np.uint16).max else np.int32


def _merge(segments: list[_Segment]) -> _Segment:
    """One segment of the live rows of ``segments``, renumbered in row id order. The postings are
    placed by counting (each term's slice is the segments' slices for it, in turn): no sort."""
    rids, dl, parts, offset = [], [], [], 0
    width = max(s.width for s in segments)
    for segment in segments:
        alive = np.flatnonzero(segment.live)
        renumber = np.zeros(len(segment.rids), dtype=np.int64)
        renumber[alive] = np.arange(offset, offset + len(alive))
        offset += len(alive)
        rids.append(segment.rids[alive])
        dl.append(segment.dl[alive])
        counts, rows, tf = segment.live_postings()
        parts.append((np.pad(counts, (0, width - len(counts))), renumber[rows], tf))
    all_rids = np.concatenate(rids)
    order = np.argsort(all_rids, kind="stable")
    position = np.empty(len(order), dtype=np.int32)
    position[order] = np.arange(len(order), dtype=np.int32)
    indptr = np.zeros(width + 1, dtype=np.int64)
    np.cumsum(np.sum([counts for counts, _, _ in parts], axis=0), out=indptr[1:])
    out_rows = np.empty(int(indptr[-1]), dtype=np.int32)
    out_tf = np.empty(int(indptr[-1]), dtype=np.result_type(*(tf for _, _, tf in parts)))
    places = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64  # half the temporaries' bytes
    base = indptr[:-1].copy()
    for counts, rows, tf in parts:
        # the postings of term t go from their slice here to base[t] onwards
        shift = (base - (np.cumsum(counts) - counts)).astype(places)
        dest = np.repeat(shift, counts) + np.arange(len(rows), dtype=places)
        out_rows[dest] = position[rows]
        out_tf[dest] = tf
        base += counts
    return _Segment(all_rids[order], np.concatenate(dl)[order], indptr, out_rows, out_tf)


class LexicalIndex:
    """A collection's analyzed texts by row id, searched by BM25 (see module docstring). Thread-safe.

    Args:
        analyzer: the collection's analyzer; rows come as ``hash_words`` of their texts, and the
            index analyzes each distinct word once, when its hash is first seen.
    """

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self._ids: dict[str, int] = {}  # term -> term id
        self._terms: list[str] = []  # term id -> term
        self._words = WordIds()  # the words seen, by hash
        self._segments: list[_Segment] = []
        self._total = 0  # the live rows' lengths, summed
        self._lock = threading.Lock()
        self._scratch_lock = threading.Lock()  # one search at a time scores in the segments' scratch

    def __len__(self) -> int:
        return sum(s.live_count for s in self._segments)

    @property
    def nbytes(self) -> int:
        """The bytes of its arrays (postings, rows, search scratch, the word hashes), not of its
        vocabulary's strings."""
        arrays = [a for s in self._segments for a in (s.rids, s.dl, s.live, s.indptr, s.rows, s.tf, s.scratch())]
        return sum(a.nbytes for a in arrays) + self._words.nbytes

    def upsert(self, rids: np.ndarray, words: HashedWords) -> None:
        """Insert or replace rows by row id (distinct); ``words``: ``hash_words`` of their texts."""
        if not len(rids):
            return
        with self._lock:
            segment = self._segment(np.asarray(rids, dtype=np.int64), words)
            self._kill(segment.rids)
            self._total += int(segment.dl.sum())
            self._segments.append(segment)
            while (run := _mergeable(self._segments)) >= FAN_IN:
                self._segments[-run:] = [_merge(self._segments[-run:])]

    def _term_ids(self, words: HashedWords) -> np.ndarray:
        """The term id of each word (-1: a stop word); the words not seen before are analyzed."""
        ids, known = self._words.get(words.hashes)
        unknown = np.flatnonzero(~known)
        if unknown.size:
            hashes, first, inverse = np.unique(words.hashes[unknown], return_index=True, return_inverse=True)
            new = [words.word(i) for i in unknown[first].tolist()]
            tids = np.empty(len(new), dtype=np.int64)
            for i, term in enumerate(self.analyzer.term_of_words(new)):
                tid = self._ids.get(term, -1) if term else -1
                if term and tid < 0:
                    tid = self._ids[term] = len(self._terms)
                    self._terms.append(term)
                tids[i] = tid
            self._words.put(hashes, tids)
            ids[unknown] = tids[inverse.ravel()]
        return ids

    def _segment(self, rids: np.ndarray, words: HashedWords) -> _Segment:
        """A segment of these rows, row ``i`` of ``rids`` being text ``i`` of ``words``."""
        n = len(rids)
        order = np.argsort(rids)
        ids = self._term_ids(words)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        rows = rank[words.text_of]  # the segment's rows are in row id order
        kept = ids >= 0
        ids, rows = ids[kept], rows[kept]
        dl = np.bincount(rows, minlength=n).astype(np.int32)
        # (term, row) pairs sorted term-major, each counted once: the postings and their tf
        keys, tf = np.unique(ids * n + rows, return_counts=True)
        terms = keys // n
        width = int(terms[-1]) + 1 if terms.size else 0
        indptr = np.zeros(width + 1, dtype=np.int64)
        np.cumsum(np.bincount(terms, minlength=width), out=indptr[1:])
        return _Segment(rids[order], dl, indptr, (keys % n).astype(np.int32), tf.astype(_tf_type(tf)))

    def remove(self, rids: np.ndarray) -> None:
        """Remove rows by row id (unknown ids are ignored)."""
        with self._lock:
            self._kill(np.unique(np.asarray(rids, dtype=np.int64)))
            self._segments = [s for s in self._segments if s.live_count]

    def _kill(self, rids: np.ndarray) -> None:
        """``rids``: sorted, distinct."""
        if rids.size:
            for segment in self._segments:
                self._total -= segment.kill(rids)

    def search(self, terms: Sequence[str], k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The best ``k`` ``(rid, score)`` by BM25, best first, among the rows holding a query term
        (and only ``allowed`` row ids when given); ties to 1e-9 by row id."""
        with self._lock:
            distinct = [t for t in dict.fromkeys(terms) if t]
            tids = [self._ids.get(t, -1) for t in distinct]
            if k <= 0 or all(t < 0 for t in tids):
                return []
            segments = list(self._segments)
            n_rows = sum(s.live_count for s in segments)
            if not n_rows:
                return []
            avgdl = self._total / n_rows
            # each (segment, term)'s live postings, and each term's document frequency
            found: list[list[tuple[np.ndarray, np.ndarray]]] = []
            df = [0] * len(tids)
            for segment in segments:
                per_term = []
                for j, tid in enumerate(tids):
                    if not 0 <= tid < segment.width:
                        per_term.append((np.empty(0, np.int32), np.empty(0, np.uint16)))
                        continue
                    lo, hi = segment.indptr[tid], segment.indptr[tid + 1]
                    rows, tf = segment.rows[lo:hi], segment.tf[lo:hi]
                    if segment.live_count < len(segment.live):
                        alive = segment.live[rows]
                        rows, tf = rows[alive], tf[alive]
                    per_term.append((rows, tf))
                    df[j] += len(rows)
                found.append(per_term)
        idf = []
        for n in df:
            value = math.log((n_rows - n + 0.5) / (n + 0.5))
            idf.append(value if value > 0.0 else IDF_FLOOR)
        mask = None
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.int64)
            mask = np.zeros(int(allowed.max()) + 2 if allowed.size else 1, dtype=bool)
            mask[allowed] = True  # the last slot is never allowed: larger row ids map to it
        all_scores, all_rids = [], []
        with self._scratch_lock:
            for per_term, segment in zip(found, segments):
                if any(len(rows) for rows, _ in per_term):
                    hit, scores = _score(segment, per_term, idf, avgdl)
                    hit_rids = segment.rids[hit]
                    if mask is not None:
                        keep = mask[np.minimum(hit_rids, len(mask) - 1)]
                        scores, hit_rids = scores[keep], hit_rids[keep]
                    all_scores.append(scores)
                    all_rids.append(hit_rids)
        if not all_scores:
            return []
        return _best(np.concatenate(all_scores), np.concatenate(all_rids), k)

    # --- snapshots ---------------------------------------------------------------------------
    def capture(self) -> _Captured:
        """The index as it is now, cheaply (the segments are immutable but for their live flags):
        ``arrays()`` of it may then run without the lock."""
        with self._lock:
            return _Captured([(s, s.live.copy()) for s in self._segments], len(self._terms), self._terms)

    @classmethod
    def restore(cls, analyzer: Analyzer, arrays: Any) -> LexicalIndex | None:
        """The index from ``snapshot`` arrays (``capture().arrays()``), or None if they hold none."""
        if _PREFIX + "segments" not in arrays:
            return None
        index = cls(analyzer)
        vocabulary = bytes(arrays[_PREFIX + "terms"]).decode()
        index._terms = vocabulary.split("\n") if vocabulary else []
        index._ids = {t: i for i, t in enumerate(index._terms)}
        for i in range(int(arrays[_PREFIX + "segments"][0])):
            # read from the file as they are: the postings are never written to, nor copied again
            segment = _Segment(*(np.asarray(arrays[f"{_PREFIX}{i}_{key}"]) for key in _SEGMENT_ARRAYS))
            segment.live = np.require(arrays[f"{_PREFIX}{i}_live"], requirements="W")
            segment.live_count = int(segment.live.sum())
            index._segments.append(segment)
            index._total += int(segment.dl[segment.live].sum())
        return index


class _Captured:
    """A capture of a ``LexicalIndex`` (``LexicalIndex.capture``): its segments with copies of their
    live flags, and the length its vocabulary had."""

    def __init__(self, segments: list[tuple[_Segment, np.ndarray]], vocabulary: int, terms: list[str]) -> None:
        self._segments, self._vocabulary, self._terms = segments, vocabulary, terms

    def arrays(self) -> dict[str, np.ndarray]:
        """The captured index as named arrays: each segment as it is (no merge: a save costs the
        write alone) and the vocabulary."""
        out = {_PREFIX + "terms": np.frombuffer("\n".join(self._terms[: self._vocabulary]).encode(), dtype=np.uint8),
               _PREFIX + "segments": np.array([len(self._segments)], dtype=np.int64)}
        for i, (segment, live) in enumerate(self._segments):
            out.update({f"{_PREFIX}{i}_{key}": getattr(segment, key) for key in _SEGMENT_ARRAYS})
            out[f"{_PREFIX}{i}_live"] = live
        return out


def _score(segment: _Segment, postings: list[tuple[np.ndarray, np.ndarray]], idf: list[float],
           avgdl: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) of the segment's rows holding a query term: each term's BM25 part added in
    query order, as FTS5 adds them (``postings``: each term's live rows and tf; caller holds the
    scratch lock)."""
    scores = segment.scratch()
    hit = None
    try:
        for (rows, tf), weight in zip(postings, idf):
            if len(rows):
                freq = tf.astype(np.float64)
                norm = K1 * (1 - B + B * segment.dl[rows] / avgdl)  # FTS5: k1 * (1 - b + b * D / avgdl)
                scores[rows] += weight * ((freq * (K1 + 1.0)) / (freq + norm))
        hit = np.flatnonzero(scores)
        return hit, scores[hit]
    finally:
        if hit is None:
            scores.fill(0.0)
        else:
            scores[hit] = 0.0


def _best(scores: np.ndarray, rids: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best ``(rid, score)``: by score rounded to ``TIE_DECIMALS`` (descending), then row id."""
    rounded = np.round(scores, TIE_DECIMALS)
    if len(rounded) > k:
        kth = -np.partition(-rounded, k - 1)[k - 1]
        keep = np.flatnonzero(rounded >= kth)
        scores, rids, rounded = scores[keep], rids[keep], rounded[keep]
    order = np.lexsort((rids, -rounded))[:k]
    return list(zip(rids[order].tolist(), scores[order].tolist()))
