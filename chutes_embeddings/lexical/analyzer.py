"""The one way text becomes lexical search terms, for both stores, ``/search`` and the benchmark's reference.

A text is folded (Unicode NFKD, combining marks dropped, so "Café" and "cafe" meet; then
case-folded), split into runs of letters and digits (``_`` and punctuation split), stripped of the
language's stop words, and stemmed with the language's Snowball stemmer (PyStemmer). The stop
lists are ``bm25s``'s, so ``bm25s`` given these terms is an exact reference for the stores' BM25.
``none`` keeps every term unstemmed.

Each collection records the analyzer it was built with (``Analyzer.name``), so a later change of
``EMBEDDINGS_LEXICAL_LANGUAGE`` never mixes two tokenisations in one index.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from itertools import filterfalse

_TOKEN = re.compile(r"[^\W_]+")
# the same split for ASCII text, lowercased (casefold there), which is most text: twice as fast
_ASCII_TOKEN = re.compile(r"[a-z0-9]+")
STEM_CACHE = 200_000  # distinct words whose stems an analyzer remembers (a store's upserts repeat them)

# language -> the name of bm25s's stop list (bm25s.stopwords.STOPWORDS_<NAME>); Snowball stems
# every language PyStemmer has, stop words only these.
_STOP_LISTS = {"english": "EN", "german": "GERMAN", "dutch": "DUTCH", "french": "FRENCH", "spanish": "SPANISH",
               "portuguese": "PORTUGUESE", "italian": "ITALIAN", "russian": "RUSSIAN", "swedish": "SWEDISH",
               "norwegian": "NORWEGIAN", "turkish": "TURKISH", "danish": "DANISH"}
NO_LANGUAGE = "none"


def languages() -> tuple[str, ...]:
    """Every value ``EMBEDDINGS_LEXICAL_LANGUAGE`` takes: PyStemmer's languages and ``none``."""
    import Stemmer

    return (*sorted(Stemmer.algorithms()), NO_LANGUAGE)


def fold(text: str) -> str:
    """Case- and accent-folded text (NFKD, combining marks dropped, casefolded)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class Analyzer:
    """Text to terms for one language (see module docstring). Thread-safe.

    Raises:
        ValueError: a language PyStemmer does not have (nor ``none``).
    """

    def __init__(self, language: str) -> None:
        self.name = language
        if language != NO_LANGUAGE and language not in languages():
            raise ValueError(f"lexical language {language!r}: expected one of {', '.join(languages())}")
        self._stop_words = frozenset(fold(w) for w in _stop_words(language))
        self._local = threading.local()  # a PyStemmer Stemmer is not thread-safe: one per thread
        # word -> its term, or "" for a stop word; shared by threads (a dict's get and update are
        # atomic): one lookup per word costs a fraction of the stop-word test plus a call into the
        # stemmer, which dominated the analysis of a store's upserts
        self._stems: dict[str, str] = {}

    def words(self, text: str) -> list[str]:
        """The text's words (folded, split), before stop words and stemming: ``terms_of_words`` of
        them are its ``terms``."""
        return _ASCII_TOKEN.findall(text.lower()) if text.isascii() else _TOKEN.findall(fold(text))

    def term_of_words(self, words: list[str]) -> list[str]:
        """The term of each word, in order: its stem, or "" for a stop word."""
        stems = list(map(self._stems.get, words))
        if None not in stems:
            return stems  # type: ignore[return-value]
        missing = list(dict.fromkeys(w for w, stem in zip(words, stems) if stem is None))
        new = dict(zip(missing, self._stem_all(missing)))
        if len(self._stems) + len(new) > STEM_CACHE:
            self._stems = {}  # bounded: start again rather than track recency
        self._stems.update(new)
        return [stem if stem is not None else new[w] for w, stem in zip(words, stems)]

    def _stem_all(self, words: list[str]) -> list[str]:
        kept = list(filterfalse(self._stop_words.__contains__, words))
        if self.name != NO_LANGUAGE and kept:
            stemmer = getattr(self._local, "stemmer", None)
            if stemmer is None:
                import Stemmer

                stemmer = self._local.stemmer = Stemmer.Stemmer(self.name)
            kept = stemmer.stemWords(kept)
        stems = iter(kept)
        return ["" if w in self._stop_words else next(stems) for w in words]

    def terms_of_words(self, words: list[str]) -> list[str]:
        """The search terms of ``words`` (``words``): stop words dropped, the rest stemmed."""
        return list(filter(None, self.term_of_words(words)))

    def terms(self, text: str) -> list[str]:
        """The text's search terms, in order, repeats kept (term frequency counts them)."""
        return self.terms_of_words(self.words(text))

    def terms_of_many(self, texts: list[str]) -> list[list[str]]:
        """``terms`` of each text."""
        return [self.terms(t) for t in texts]


def _stop_words(language: str) -> tuple[str, ...]:
    if language not in _STOP_LISTS:
        return ()
    from bm25s import stopwords

    return tuple(getattr(stopwords, f"STOPWORDS_{_STOP_LISTS[language]}"))


@lru_cache(maxsize=None)
def analyzer(language: str) -> Analyzer:
    """The shared analyzer of ``language``."""
    return Analyzer(language)
