"""The fakes are what the fast layer trusts in place of a model: deterministic, protocol-true,
and meaningful (similar texts close, truncation from the side asked, overlap scores higher)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from chutes_embeddings.backends.protocols import (
    Embedder,
    PairTokenizer,
    Reranker,
    RerankWork,
    SparseEncoder,
    Tokenizer,
)
from chutes_embeddings.errors import InvalidInput
from tests.fakes import (
    CLS_ID,
    FAKE_POOLINGS,
    SEP_ID,
    FakeEmbedder,
    FakePairTokenizer,
    FakeReranker,
    FakeSparseEncoder,
    FakeTokenizer,
)
from tests.helpers import ROOT

TEXTS = ["The cat sat on the mat.", "A cat sat on a mat!", "Quarterly earnings beat expectations", ""]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_the_fakes_implement_the_protocols():
    assert isinstance(FakeEmbedder(), Embedder)
    assert isinstance(FakeTokenizer(), Tokenizer)
    assert isinstance(FakeReranker(), Reranker)
    assert isinstance(FakePairTokenizer(), PairTokenizer)
    assert isinstance(FakeSparseEncoder(), SparseEncoder)
    assert FakePairTokenizer.activation_name == "Sigmoid"
    assert (FakeEmbedder.kind, FakeEmbedder.runtime, FakeReranker.kind, FakeReranker.runtime) == (
        "local", "fake", "local", "fake")


def test_tokenizer_ids_are_the_same_in_every_instance_and_process():
    ids, counts = FakeTokenizer().tokenize(TEXTS)
    assert (ids, counts) == FakeTokenizer().tokenize(TEXTS)
    # Python's str hash is salted per process; the fake's ids must not be
    code = "from tests.fakes import FakeTokenizer; print(FakeTokenizer().tokenize(['The cat sat on the mat.'])[0][0])"
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)})
    assert other.stdout.strip() == str(ids[0])


def test_tokenizer_wraps_in_special_tokens_and_splits_long_words_into_pieces():
    ids, counts = FakeTokenizer().tokenize(["Tokenization works", ""])
    assert ids[0][0] == CLS_ID and ids[0][-1] == SEP_ID and counts[0] == len(ids[0]) == 2 + 3  # tokeni ##zation works
    assert ids[1] == [CLS_ID, SEP_ID] and counts[1] == 2
    details = FakeTokenizer().token_details(["Tokenization works"])[0]
    assert [t["text"] for t in details] == ["[CLS]", "Tokeni", "zation", "works", "[SEP]"]
    assert [(t["start"], t["stop"]) for t in details[1:-1]] == [(0, 6), (6, 12), (13, 18)]
    assert [t["id"] for t in details] == ids[0] and details[0]["special"] and not details[1]["special"]
    bare = FakeTokenizer().token_details(["Tokenization works"], add_special_tokens=False)[0]
    assert [t["id"] for t in bare] == ids[0][1:-1]


def test_tokenizer_cuts_at_its_limit_from_the_side_asked():
    tok = FakeTokenizer(max_input_tokens=6)
    text = "one two three four five six seven eight"
    (right,), (count,) = tok.tokenize([text], "right")
    (left,), _ = tok.tokenize([text], "left")
    content = tok.content_ids(text)
    assert count == 10 and len(right) == len(left) == 6
    assert right == [CLS_ID, *content[:4], SEP_ID] and left == [CLS_ID, *content[-4:], SEP_ID]
    assert tok.seen == [text, text]
    with pytest.raises(ValueError):
        tok.tokenize([text], "middle")


def test_equal_texts_give_equal_vectors_in_any_batch_and_instance():
    a = FakeEmbedder().embed(TEXTS, ["mean"] * 4, ["right"] * 4)
    b = FakeEmbedder().embed(TEXTS[::-1], ["mean"] * 4, ["right"] * 4)[::-1]
    assert a.dtype == np.float32 and a.shape == (4, 32)
    assert np.array_equal(a, b)


def test_similar_texts_are_closer_than_unrelated_ones():
    v = FakeEmbedder().embed(TEXTS[:3] + ["the cat sat on the mat"], ["mean"] * 4, ["right"] * 4)
    assert cosine(v[0], v[3]) > 0.9  # the same words
    assert cosine(v[0], v[1]) > cosine(v[0], v[2]) + 0.3  # four words shared against none


@pytest.mark.parametrize("mode", FAKE_POOLINGS)
def test_each_pooling_is_applied_per_text_and_equals_pooling_the_token_embeddings(mode):
    fake = FakeEmbedder()
    other = "cls" if mode != "cls" else "mean"
    mixed = fake.embed(TEXTS[:2], [mode, other], ["right"] * 2)
    alone = fake.embed(TEXTS[:1], [mode], ["right"])
    tokens = fake.embed_tokens(TEXTS[:1], "right")[0]
    assert np.array_equal(mixed[0], alone[0])
    assert not np.allclose(mixed[0], fake.embed(TEXTS[:1], [other], ["right"])[0])
    weights = np.arange(1, len(tokens) + 1, dtype=np.float32)[:, None]
    expected = {"cls": tokens[0], "mean": tokens.mean(0), "max": tokens.max(0), "lasttoken": tokens[-1],
                "mean_sqrt_len": tokens.sum(0) / np.sqrt(len(tokens)),
                "weightedmean": (tokens * weights).sum(0) / weights.sum()}
    assert np.allclose(alone[0], expected[mode], atol=1e-6)


def test_truncation_keeps_the_start_or_the_end_and_none_refuses_a_long_text():
    fake = FakeEmbedder(max_input_tokens=8)
    head, tail = "alpha beta gamma delta epsilon zeta", "eta theta iota kappa lambda mu"
    right = fake.embed([f"{head} {tail}", f"{head} other words entirely here"], ["mean"] * 2, ["right"] * 2)
    left = fake.embed([f"{head} {tail}", f"different start words {tail}"], ["mean"] * 2, ["left"] * 2)
    assert np.array_equal(right[0], right[1]) and np.array_equal(left[0], left[1])
    assert not np.allclose(right[0], left[0])
    assert [len(t) for t in fake.embed_tokens([f"{head} {tail}", "short"], "left")] == [8, 3]
    with pytest.raises(InvalidInput) as refused:
        fake.embed([f"{head} {tail}"], ["mean"], [None])
    assert refused.value.limit == 8
    assert fake.embed(["short enough"], ["mean"], [None]).shape == (1, 32)


def test_given_token_ids_are_used_instead_of_tokenising_again():
    fake = FakeEmbedder()
    ids, _ = fake.tokenizer.tokenize(["what the engine tokenised"])
    fake.tokenizer.seen.clear()
    got = fake.embed(["a text the ids do not come from"], ["mean"], ["right"], token_ids=ids)
    assert np.array_equal(got, fake.embed(["what the engine tokenised"], ["mean"], ["right"]))
    assert fake.received_ids[0] == ids[0] and fake.tokenizer.seen == ["what the engine tokenised"]
    tokens = fake.embed_tokens(["ignored"], "right", token_ids=ids)
    assert tokens[0].shape == (len(ids[0]), 32)


def test_embedder_records_calls_runs_its_hook_fails_on_demand_and_closes():
    seen: list[list[str]] = []
    fake = FakeEmbedder(on_embed=seen.append)
    fake.embed(["a", "b"], ["mean", "cls"], ["right", "left"])
    assert fake.calls == [["a", "b"]] == seen and fake.received_ids == [None, None]
    fake.fail_with = RuntimeError("model exploded")
    with pytest.raises(RuntimeError, match="exploded"):
        fake.embed(["a"], ["mean"], ["right"])
    with pytest.raises(ValueError):
        fake.embed(["a", "b"], ["mean"], ["right", "right"])
    assert fake.is_healthy() and fake.status() is None
    fake.close()
    assert not fake.is_healthy()
    with pytest.raises(RuntimeError):
        fake.embed(["a"], ["mean"], ["right"])


def work(query: str, documents: list[str], pair: FakePairTokenizer, direction: str = "right") -> list[RerankWork]:
    ids, _ = pair.tokenize_pairs(query, documents, direction)
    return [RerankWork(query, d, i, direction) for d, i in zip(documents, ids)]


def test_pair_tokenizer_builds_pairs_with_token_types_and_cuts_the_longer_side_first():
    pair = FakePairTokenizer(max_input_tokens=10)
    (short,), lengths = pair.tokenize_pairs("where is rome", ["paris"], full_lengths=True)
    assert short.input_ids[0] == CLS_ID and short.input_ids.count(SEP_ID) == 2
    assert short.token_type_ids == [0, 0, 0, 0, 0, 1, 1] and lengths == [7]
    (cut,), lengths = pair.tokenize_pairs("where is rome", ["w1 w2 w3 w4 w5 w6 w7 w8"], full_lengths=True)
    assert len(cut.input_ids) == 10 and lengths == [14]
    assert cut.token_type_ids.count(0) == 5  # the query (the shorter side) kept whole
    (left,), none = pair.tokenize_pairs("where is rome", ["w1 w2 w3 w4 w5 w6 w7 w8"], "left")
    assert none is None and left.input_ids[-5:-1] == pair.tokenizer.content_ids("w5 w6 w7 w8")
    assert pair.document_token_offsets(["Paris, France"]) == [[5, 6, 13]]


def test_pair_tokenizer_activation_is_the_sigmoid():
    out = FakePairTokenizer().activate(np.array([0.0, 2.0, -2.0], dtype=np.float32))
    assert out.dtype == np.float32 and np.allclose(out, [0.5, 1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2))])


def test_reranker_scores_by_overlap_deterministically_and_in_order():
    pair = FakePairTokenizer()
    docs = ["bananas are yellow", "the capital of france is paris", "france"]
    logits = FakeReranker().score(work("capital of france", docs, pair))
    assert logits.dtype == np.float32 and logits.shape == (3,)
    assert np.array_equal(logits, FakeReranker().score(work("capital of france", docs, pair)))
    assert logits[1] > logits[2] > logits[0]
    assert logits[0] == pytest.approx(-3.0) and logits[1] == pytest.approx(3.0)
    reversed_order = FakeReranker().score(work("capital of france", docs[::-1], pair))
    assert np.array_equal(reversed_order, logits[::-1])


def test_reranker_reads_the_pair_as_cut():
    pair = FakePairTokenizer(max_input_tokens=8)
    doc = "filler words come first and only at the end france"
    right, left = FakeReranker().score(work("france", [doc], pair, "right") + work("france", [doc], pair, "left"))
    assert right < left


def test_reranker_is_healthy_until_closed():
    reranker = FakeReranker()
    assert reranker.is_healthy() and reranker.status() is None
    reranker.close()
    assert not reranker.is_healthy()
    with pytest.raises(RuntimeError):
        reranker.score([])


def test_fakes_and_helpers_import_no_model_runtime():
    code = ("import sys, tests.fakes, tests.helpers; "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'onnxruntime') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == "[]"
