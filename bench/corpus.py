"""Deterministic English sentences with real semantic neighbourhoods, for tests and benchmarks.

Sentences are composed from topic-specific subjects, verbs and objects, so sentences of one topic
are near each other in embedding space and far from other topics (random vectors have no such
structure, which makes approximate-search recall meaningless on them).
"""

from __future__ import annotations

import itertools
import random

TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "ml": (["the researcher", "a data scientist", "the engineering team", "our startup", "the lab"],
           ["trained", "evaluated", "fine-tuned", "deployed", "debugged", "benchmarked"],
           ["a neural network", "a gradient boosted model", "an embedding model", "a transformer",
            "a recommendation system", "a speech recogniser", "a vision model"]),
    "cooking": (["the chef", "my grandmother", "a home cook", "the bakery", "the restaurant"],
                ["baked", "seasoned", "roasted", "simmered", "plated", "served"],
                ["a sourdough loaf", "a tomato soup", "a lemon tart", "a vegetable curry", "a roast chicken",
                 "fresh pasta", "a chocolate cake"]),
    "finance": (["the central bank", "an investor", "the hedge fund", "the treasury", "a pension fund"],
                ["raised", "cut", "hedged", "sold", "bought", "rebalanced"],
                ["interest rates", "government bonds", "tech stocks", "its currency reserves", "a bond portfolio",
                 "emerging market debt", "gold futures"]),
    "sports": (["the striker", "the home team", "a young sprinter", "the goalkeeper", "the coach"],
               ["won", "lost", "trained for", "celebrated", "dominated", "prepared for"],
               ["the final match", "the championship", "a marathon", "the derby", "the relay race",
                "the qualifying round", "a penalty shootout"]),
    "travel": (["the tourists", "a backpacker", "our family", "the pilot", "a travel writer"],
               ["visited", "explored", "photographed", "flew over", "hiked through", "described"],
               ["the old harbour", "a mountain village", "the desert canyon", "a coastal town", "the ancient temple",
                "a rainforest trail", "the night market"]),
    "health": (["the doctor", "a nurse", "the patient", "the clinic", "a physiotherapist"],
               ["treated", "diagnosed", "monitored", "vaccinated", "examined", "rehabilitated"],
               ["a knee injury", "a seasonal flu", "high blood pressure", "a broken wrist", "chronic back pain",
                "an allergic reaction", "a sprained ankle"]),
}
WHEN = ["yesterday", "last week", "this morning", "in the spring", "after midnight", "during the holidays",
        "on a rainy afternoon", "before the deadline", "at the weekend", "for the first time"]
HOW = ["carefully", "quickly", "with great success", "despite the problems", "again", "for hours",
       "with a small team", "on a tight budget", "in front of a crowd", "without any help"]


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences (up to 6 x 5 x 6 x 7 x 10 x 10 = 126,000), shuffled deterministically."""
    combos = [
        f"{subject.capitalize()} {verb} {obj} {when} {how}."
        for subjects, verbs, objects in TOPICS.values()
        for subject, verb, obj, when, how in itertools.product(subjects, verbs, objects, WHEN, HOW)
    ]
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} distinct sentences")
    random.Random(seed).shuffle(combos)
    return combos[:n]


def mixed_sentences(n: int, seed: int = 0, min_words: int = 5, max_words: int = 60) -> list[str]:
    """``n`` distinct texts of 5-60 words (mean ~32), cut from runs of corpus sentences."""
    rng = random.Random(seed)
    pool = sentences(min(126_000, 30 * n), seed=seed + 1000)
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while len(out) < n:
        target = rng.randint(min_words, max_words)
        words: list[str] = []
        while len(words) < target:
            words += pool[i % len(pool)].split()
            i += 1
        text = " ".join(words[:target])
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out
