"""The project's labelled sentence-pair set for quality checks (``bench/data/pairs.tsv``).

Pairs are built from the corpus vocabulary with a known relation, so the label is right by
construction (0 = unrelated ... 5 = paraphrase):

    5  paraphrase: the same event reworded (synonyms, moved time phrase)
    4  the same event with another time and manner
    3  the same topic and action, another object
    2  the same topic, another actor, action and object
    0  another topic

``python -m bench.pairs > bench/data/pairs.tsv`` regenerates the file (deterministic).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from .corpus import HOW, TOPICS, WHEN

PAIRS_FILE = Path(__file__).parent / "data" / "pairs.tsv"
SYNONYMS = {
    "trained": "taught", "evaluated": "assessed", "fine-tuned": "adjusted", "deployed": "shipped",
    "debugged": "fixed the bugs in", "benchmarked": "measured", "baked": "made", "seasoned": "spiced",
    "roasted": "cooked", "simmered": "slowly cooked", "plated": "arranged", "served": "offered",
    "raised": "increased", "cut": "lowered", "hedged": "protected", "sold": "sold off", "bought": "purchased",
    "rebalanced": "reorganised", "won": "took", "lost": "was beaten in", "trained for": "practised for",
    "celebrated": "cheered", "dominated": "controlled", "prepared for": "got ready for", "visited": "went to",
    "explored": "discovered", "photographed": "took pictures of", "flew over": "passed over",
    "hiked through": "walked across", "described": "wrote about", "treated": "cared for", "diagnosed": "identified",
    "monitored": "watched", "vaccinated": "immunised", "examined": "checked", "rehabilitated": "helped recover from",
}
PER_LABEL = 80


def _sentence(s: str, v: str, o: str, when: str, how: str) -> str:
    return f"{s.capitalize()} {v} {o} {when} {how}."


def pairs(seed: int = 0) -> list[tuple[str, str, float]]:
    rng = random.Random(seed)
    topics = list(TOPICS)
    out: list[tuple[str, str, float]] = []
    for _ in range(PER_LABEL):
        t = rng.choice(topics)
        subjects, verbs, objects = TOPICS[t]
        s, v, o, w, h = rng.choice(subjects), rng.choice(verbs), rng.choice(objects), rng.choice(WHEN), rng.choice(HOW)
        base = _sentence(s, v, o, w, h)
        out.append((base, f"{w.capitalize()}, {s} {SYNONYMS[v]} {o} {h}.", 5.0))
        w2, h2 = rng.choice([x for x in WHEN if x != w]), rng.choice([x for x in HOW if x != h])
        out.append((base, _sentence(s, v, o, w2, h2), 4.0))
        o2 = rng.choice([x for x in objects if x != o])
        out.append((base, _sentence(rng.choice(subjects), v, o2, rng.choice(WHEN), rng.choice(HOW)), 3.0))
        s3 = rng.choice([x for x in subjects if x != s])
        v3, o3 = rng.choice([x for x in verbs if x != v]), rng.choice([x for x in objects if x != o])
        out.append((base, _sentence(s3, v3, o3, rng.choice(WHEN), rng.choice(HOW)), 2.0))
        other = TOPICS[rng.choice([x for x in topics if x != t])]
        out.append((base, _sentence(rng.choice(other[0]), rng.choice(other[1]), rng.choice(other[2]),
                                    rng.choice(WHEN), rng.choice(HOW)), 0.0))
    return out


def load_pairs(path: Path = PAIRS_FILE) -> list[tuple[str, str, float]]:
    rows = []
    for line in path.read_text().splitlines()[1:]:
        a, b, label = line.split("\t")
        rows.append((a, b, float(label)))
    return rows


if __name__ == "__main__":
    sys.stdout.write("sentence1\tsentence2\tlabel\n")
    for a, b, label in pairs():
        sys.stdout.write(f"{a}\t{b}\t{label}\n")
