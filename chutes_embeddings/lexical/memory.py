"""BM25 over a corpus held in memory (``/search``'s lexical leg, and the benchmark's reference).

``bm25s`` scores the analyzer's terms with the BM25 that SQLite FTS5's ``bm25()`` computes for the
embedded store (Robertson's idf, floored at zero; k1 = 1.2, b = 0.75), so a corpus sent with a
request and the same texts in a collection rank alike. As FTS5's ``MATCH``, only texts holding a
query term are candidates (in a small corpus a term in half the texts has an idf of zero: such
texts still match, after those with a positive score).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .analyzer import Analyzer

# SQLite FTS5's bm25() defaults (https://sqlite.org/fts5.html#the_bm25_function)
K1, B = 1.2, 0.75


def bm25_matches(analyzer: Analyzer, terms: Sequence[str], corpus: Sequence[str]) -> list[tuple[int, float]]:
    """The corpus texts holding any of the query's ``terms``, as ``(corpus index, BM25 score)``,
    best first (ties in corpus order)."""
    import bm25s

    corpus_terms = analyzer.terms_of_many(list(corpus))
    wanted = set(terms)
    matched = [i for i, doc in enumerate(corpus_terms) if wanted.intersection(doc)]
    if not matched:
        return []
    index = bm25s.BM25(k1=K1, b=B, method="robertson")
    index.index(corpus_terms, show_progress=False)
    vocabulary = {t for doc in corpus_terms for t in doc}
    scores = np.asarray(index.get_scores([t for t in terms if t in vocabulary]), dtype=np.float64)
    order = sorted(matched, key=lambda i: -scores[i])  # stable: ties keep corpus order
    return [(i, float(scores[i])) for i in order]
