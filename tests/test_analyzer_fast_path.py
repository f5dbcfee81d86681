"""The analyzer's fast paths (ASCII split, stem cache) give exactly the terms of its general path."""

from __future__ import annotations

import Stemmer

from chutes_embeddings.lexical.analyzer import _TOKEN, Analyzer, fold


def _reference(analyzer: Analyzer, text: str) -> list[str]:
    words = [w for w in _TOKEN.findall(fold(text)) if w not in analyzer._stop_words]
    return words if analyzer.name == "none" else Stemmer.Stemmer(analyzer.name).stemWords(words)


def test_ascii_and_cached_terms_equal_the_general_path():
    texts = ["The Runners' running-shoes RAN 2nd_place 42x!", "plain words, plain WORDS again", "",
             "Café Straße naïve ﬁne ÉCOLE", "under_score and tab\tseparated\nlines", "The Runners ran again"]
    for language in ("english", "german", "none"):
        analyzer = Analyzer(language)
        for _ in range(2):  # the second round answers from the stem cache
            for text in texts:
                assert analyzer.terms(text) == _reference(analyzer, text), (language, text)


def test_hashed_words_are_the_analyzers_words_and_equal_words_hash_alike():
    from chutes_embeddings.lexical.hashed import hash_words

    texts = ["The Runners' running-shoes RAN 2nd_place 42x!", "", "Café Straße naïve ﬁne ÉCOLE", "  ,;  ",
             "supercalifragilisticexpialidocious Supercalifragilisticexpialidocious 16-byte-words: abcdefghijklmnop",
             "under_score and tab\tseparated\nlines", "plain words, plain WORDS again"]
    analyzer = Analyzer("english")
    hashed = hash_words(analyzer, texts)
    words = [[] for _ in texts]
    for i, text in enumerate(hashed.text_of.tolist()):
        words[text].append(hashed.word(i))
    assert words == [analyzer.words(t) for t in texts]
    by_word: dict[str, set[int]] = {}
    for i in range(len(hashed.hashes)):
        by_word.setdefault(hashed.word(i), set()).add(int(hashed.hashes[i]))
    assert all(len(h) == 1 for h in by_word.values())  # a word hashes alike in every text
    assert len({next(iter(h)) for h in by_word.values()}) == len(by_word)  # distinct words, distinct hashes
