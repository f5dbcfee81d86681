"""The embedding pipeline's own logic over a fake backend: what it tokenises, and for whom."""

from __future__ import annotations

import numpy as np
import pytest

from chutes_embeddings.engine.embedding import EmbeddingPipeline
from chutes_embeddings.engine.results import EmbedOptions
from chutes_embeddings.errors import InvalidInput, naming
from chutes_embeddings.settings import Settings


class Tokenizer:
    """Whitespace tokens plus two special ones; records every text it is asked to tokenise."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def tokenize(self, texts, direction="right"):
        self.seen += list(texts)
        ids = [[101] + [len(w) for w in t.split()] + [102] for t in texts]
        return [x[:8] for x in ids], [len(x) for x in ids]


class Backend:
    """Vectors from the text alone; remembers the token ids it was handed."""

    kind, runtime, model_id, dimension, max_input_tokens, default_pooling = "fake", "fake", "fake", 4, 8, "mean"

    def __init__(self, takes_token_ids: bool) -> None:
        self.takes_token_ids = takes_token_ids
        self.ids: list = []

    def embed(self, texts, poolings, truncations, token_ids=None):
        self.ids += list(token_ids or [None] * len(texts))
        return np.stack([np.array([len(t), 1, 2, 3], dtype=np.float32) for t in texts])

    def is_healthy(self) -> bool:
        return True

    def status(self) -> None:
        return None

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture(params=[True, False], ids=["local-model", "tei"])
def pipeline(request):
    p = EmbeddingPipeline(Settings(cache_size=0), Backend(request.param), Tokenizer())
    yield p
    p.close()


def test_texts_are_tokenised_only_for_a_backend_that_takes_the_ids(pipeline):
    pipeline.embed(["a b c", "d e"])
    if pipeline.backend.takes_token_ids:
        assert pipeline.tokenizer.seen == ["a b c", "d e"]
        assert pipeline.backend.ids == [[101, 1, 1, 1, 102], [101, 1, 1, 102]]
    else:  # TEI tokenises on its side: nothing to do here
        assert pipeline.tokenizer.seen == [] and pipeline.backend.ids == [None, None]


def test_usage_counts_and_limits_are_tokenised_whatever_the_backend(pipeline):
    embedded = pipeline.embed(["a b c", "d e", "a b c"], EmbedOptions(count_tokens=True))
    assert embedded.token_counts == [5, 4, 5] and embedded.tokens == 14
    assert pipeline.tokenizer.seen == ["a b c", "d e"]  # each distinct text once
    with pytest.raises(InvalidInput) as refused:
        pipeline.embed(["short", "one two three four five six seven"], EmbedOptions(truncate=False))
    assert refused.value.index == 1 and refused.value.field is None and refused.value.limit == 8
    assert refused.value.message.startswith("text 1 has 9 tokens")
    with pytest.raises(InvalidInput) as named, naming("inputs"):  # the dialect names the request field
        pipeline.embed(["short", "one two three four five six seven"], EmbedOptions(truncate=False))
    assert named.value.field == "inputs[1]" and named.value.message.startswith("inputs[1] has 9 tokens")
