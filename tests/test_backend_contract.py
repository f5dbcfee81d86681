"""One contract, every embedder: local torch, local ONNX, TEI (the stand-in, launched by the real
supervisor) and the fake the fast layer runs on, held to the ``Embedder`` and ``Tokenizer``
Protocols of ``chutes_embeddings.backends.protocols`` alike.

The engine cannot tell them apart, so neither may these tests: the same shapes and dtypes, each
text pooled its own way and as pooling its token embeddings says, cut from the side asked, the
engine's token ids used exactly when ``takes_token_ids`` says so, health and status as the
Protocol describes them. Only the fake runs in the fast layer; the others are marked ``model``
(they load the real model here) or ``system`` (TEI is a process).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from chutes_embeddings.backends.protocols import Embedder, Tokenizer
from chutes_embeddings.engine.vectors import POOLINGS, pool
from chutes_embeddings.errors import InvalidInput
from chutes_embeddings.settings import Settings
from tests.fakes import FakeEmbedder
from tests.helpers import StandIn, free_port

TEXTS = ["The cat sat on the mat.", "Quarterly earnings beat expectations again", "x", "Ünïcödé and emoji 🚀 too"]
# Far over every implementation's limit (the local model cuts at 256 tokens, the fake at 32).
LONG_MIDDLE = " ".join(f"middle{i}" for i in range(400))
# Raw vectors of one implementation, computed in batches of other sizes (padding changes float sums).
TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}


@dataclass
class Implementation:
    """An embedder under test, the tokenizer the engine would use beside it, and what it should say it is."""

    name: str
    embedder: Any
    tokenizer: Any
    kind: str
    runtime: str


@pytest.fixture(scope="module")
def loaded_model(engine: Any) -> Any:
    """The packaged model for the local and TEI implementations: the session engine's, loaded once."""
    return engine.embedder.tokenizer


def _local(request: pytest.FixtureRequest, runtime: str) -> Iterator[Implementation]:
    from chutes_embeddings.backends.local import LocalBackend, TorchRunner

    model = request.getfixturevalue("loaded_model")
    torch_runner = TorchRunner(model)
    runner: Any = torch_runner
    if runtime == "onnx":
        from chutes_embeddings.backends.onnx import build_onnx_runner

        runner = build_onnx_runner(model, Settings.from_env().model_cache_path, None, "none", 0, torch_runner)
        assert runner is not None, "the ONNX export failed or did not verify (see the log)"
    backend = LocalBackend(model, runner)
    yield Implementation(runtime, backend, model, "local", runner.name)
    backend.close()


def _tei(request: pytest.FixtureRequest) -> Iterator[Implementation]:
    from chutes_embeddings.backends.tei import TeiBackend
    from chutes_embeddings.backends.tei_process import TeiLaunch, TeiSupervisor

    model = request.getfixturevalue("loaded_model")
    tmp: Path = request.getfixturevalue("tmp_path_factory").mktemp("tei-contract")
    standin = StandIn(tmp)
    supervisor = TeiSupervisor(TeiLaunch(binary=str(standin.binary), model=model.path, port=free_port(),
                                         fallback_cache=str(tmp / "hub")))
    supervisor.start()
    try:
        assert supervisor.wait_ready(120), f"the TEI stand-in did not become healthy: {standin.events()[-3:]}"
        backend = TeiBackend(supervisor.url, model_id=model.model_id, dimension=model.dimension,
                             max_input_tokens=model.max_input_tokens, default_pooling=model.default_pooling)
        yield Implementation("tei", backend, model, "tei", "tei")
        backend.close()
    finally:
        supervisor.stop()


@pytest.fixture(scope="module", params=[
    "fake",
    pytest.param("torch", marks=pytest.mark.model),
    pytest.param("onnx", marks=pytest.mark.model),
    pytest.param("tei", marks=pytest.mark.system),
])
def impl(request: pytest.FixtureRequest) -> Iterator[Implementation]:
    """Each embedder implementation in turn (built once per module)."""
    if request.param == "fake":
        fake = FakeEmbedder()
        yield Implementation("fake", fake, fake.tokenizer, "local", "fake")
        fake.close()
    elif request.param == "tei":
        yield from _tei(request)
    else:
        yield from _local(request, request.param)


def embed(impl: Implementation, texts: list[str], mode: str | None = None, truncation: str | None = "right",
          token_ids: list[list[int]] | None = None) -> np.ndarray:
    """``impl.embedder.embed`` with one pooling and one truncation for every text."""
    mode = mode or impl.embedder.default_pooling
    return impl.embedder.embed(texts, [mode] * len(texts), [truncation] * len(texts), token_ids)


# What it is --------------------------------------------------------------------------------------------
def test_it_is_an_embedder_and_says_what_it_is(impl):
    e = impl.embedder
    assert isinstance(e, Embedder)
    assert isinstance(impl.tokenizer, Tokenizer)
    assert (e.kind, e.runtime) == (impl.kind, impl.runtime)
    assert isinstance(e.model_id, str) and e.model_id
    assert isinstance(e.dimension, int) and e.dimension > 0
    assert isinstance(e.max_input_tokens, int) and e.max_input_tokens > 2
    assert e.default_pooling in POOLINGS
    assert isinstance(e.takes_token_ids, bool)


def test_it_is_healthy_and_its_status_says_whether_a_tei_stands_behind_it(impl):
    assert impl.embedder.is_healthy() is True
    status = impl.embedder.status()
    if impl.kind == "tei":
        assert isinstance(status, dict) and status["url"].startswith("http://127.0.0.1:")
    else:
        assert status is None


# embed ------------------------------------------------------------------------------------------------
def test_embed_gives_one_float32_row_per_text_in_order_whatever_the_batch(impl):
    together = embed(impl, TEXTS + TEXTS[:1])
    assert together.shape == (len(TEXTS) + 1, impl.embedder.dimension) and together.dtype == np.float32
    assert np.isfinite(together).all()
    for i, text in enumerate(TEXTS):
        assert np.allclose(together[i], embed(impl, [text])[0], **TOLERANCE), text
    assert np.allclose(together[0], together[-1], **TOLERANCE), "the same text twice in a batch"
    assert not np.allclose(together[0], together[1], **TOLERANCE)


def test_each_text_is_pooled_as_it_asked_within_one_batch(impl):
    modes = [POOLINGS[i % len(POOLINGS)] for i in range(len(POOLINGS))]
    texts = [TEXTS[i % len(TEXTS)] for i in range(len(modes))]
    mixed = impl.embedder.embed(texts, modes, ["right"] * len(texts))
    for row, (text, mode) in enumerate(zip(texts, modes)):
        assert np.allclose(mixed[row], embed(impl, [text], mode)[0], **TOLERANCE), mode
    alone = {mode: embed(impl, TEXTS[:1], mode)[0] for mode in POOLINGS}
    assert len({mode for mode in POOLINGS if not np.allclose(alone[mode], alone["mean"], **TOLERANCE)}) >= 4, \
        "the pooling modes should give different vectors"


@pytest.mark.parametrize("mode", POOLINGS)
def test_a_pooled_vector_is_its_token_embeddings_pooled(impl, mode):
    tokens = impl.embedder.embed_tokens(TEXTS[:2], "right")
    for text, hidden in zip(TEXTS[:2], tokens):
        expected = pool(hidden[None], np.ones((1, len(hidden)), dtype=np.int64), mode)[0]
        assert np.allclose(embed(impl, [text], mode)[0], expected, **TOLERANCE), text


@pytest.mark.parametrize("direction", ["right", "left"])
def test_a_long_text_is_cut_from_the_side_asked(impl, direction, request):
    if impl.name == "tei" and direction == "left":
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="tests/tei_standin.py cuts /embed and /embed_all inputs from the right whatever "
                                "truncation_direction asks (TEI 1.9 honours it)"))
    start_differs = (f"one opening {LONG_MIDDLE} the same end", f"another start entirely {LONG_MIDDLE} the same end")
    end_differs = (f"the same start {LONG_MIDDLE} one ending", f"the same start {LONG_MIDDLE} quite another close")
    if direction == "right":
        differ_in_cut, differ_in_kept = end_differs, start_differs
    else:
        differ_in_cut, differ_in_kept = start_differs, end_differs
    same = embed(impl, list(differ_in_cut), truncation=direction)
    assert np.allclose(same[0], same[1], **TOLERANCE), "texts that differ only in what is cut away"
    different = embed(impl, list(differ_in_kept), truncation=direction)
    assert not np.allclose(different[0], different[1], **TOLERANCE), "texts that differ in what is kept"
    tokens = impl.embedder.embed_tokens(list(differ_in_kept), direction)
    assert [t.shape for t in tokens] == [(impl.embedder.max_input_tokens, impl.embedder.dimension)] * 2


def test_no_truncation_within_the_limit_is_the_same_as_cutting_nothing(impl):
    assert np.allclose(embed(impl, TEXTS, truncation=None), embed(impl, TEXTS, truncation="right"), **TOLERANCE)


def test_a_text_over_the_limit_that_must_not_be_cut_is_refused_or_cut_never_crashes(impl):
    """The Protocol lets a backend that sees the text over its limit refuse it (``InvalidInput``);
    the local model leaves that to the engine, which checks before queueing."""
    text = f"start {LONG_MIDDLE} end"
    try:
        got = embed(impl, [text], truncation=None)
    except InvalidInput as refused:
        assert impl.kind == "tei" or impl.name == "fake", f"{impl.name} refused: {refused}"
    else:
        assert impl.kind == "local" and impl.name != "fake"
        assert got.shape == (1, impl.embedder.dimension)


# embed_tokens ------------------------------------------------------------------------------------------
def test_embed_tokens_gives_each_texts_tokens_as_float32_rows(impl):
    tokens = impl.embedder.embed_tokens(TEXTS, "right")
    _, counts = impl.tokenizer.tokenize(TEXTS)
    assert len(tokens) == len(TEXTS)
    for hidden, count in zip(tokens, counts):
        assert hidden.dtype == np.float32 and hidden.shape == (count, impl.embedder.dimension)
    alone = impl.embedder.embed_tokens(TEXTS[2:3], "right")[0]
    assert np.allclose(tokens[2], alone, **TOLERANCE)


# the engine's token ids --------------------------------------------------------------------------------
def test_the_engines_token_ids_are_used_exactly_when_it_says_it_takes_them(impl):
    asked, tokenised = TEXTS[0], TEXTS[1]
    ids, _ = impl.tokenizer.tokenize([tokenised])
    with_ids = embed(impl, [asked], token_ids=ids)[0]
    tokens_with_ids = impl.embedder.embed_tokens([asked], "right", ids)[0]
    if impl.embedder.takes_token_ids:  # the ids are the text: tokenising again would be waste
        assert np.allclose(with_ids, embed(impl, [tokenised])[0], **TOLERANCE)
        assert len(tokens_with_ids) == len(ids[0])
    else:  # it tokenises on its side and never sees the ids
        assert np.allclose(with_ids, embed(impl, [asked])[0], **TOLERANCE)
        assert len(tokens_with_ids) == impl.tokenizer.tokenize([asked])[1][0]


# the tokenizer beside it -------------------------------------------------------------------------------
def test_the_tokenizer_cuts_at_the_limit_from_the_side_asked_and_counts_the_whole_text(impl):
    if impl.name in ("onnx", "tei"):
        pytest.skip("the same tokenizer as the torch implementation")
    text = f"start {LONG_MIDDLE} end"
    limit = impl.embedder.max_input_tokens
    full = [t["id"] for t in impl.tokenizer.token_details([text])[0]]
    (right,), (count,) = impl.tokenizer.tokenize([text], "right")
    (left,), _ = impl.tokenizer.tokenize([text], "left")
    assert count == len(full) > limit and len(right) == len(left) == limit
    assert right == full[: limit - 1] + full[-1:]  # the start kept, the closing special token too
    assert left == full[:1] + full[len(full) - limit + 1 :]  # the end kept, the opening special token too
    (short,), (short_count,) = impl.tokenizer.tokenize([TEXTS[0]])
    details = impl.tokenizer.token_details([TEXTS[0]])[0]
    assert [t["id"] for t in details] == short and short_count == len(short)
    assert details[0]["special"] and details[-1]["special"] and not any(t["special"] for t in details[1:-1])
    assert all(TEXTS[0][t["start"] : t["stop"]] == t["text"] for t in details[1:-1])
