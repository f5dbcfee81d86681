"""Long inputs (``engine/windows.py``): a text over the model's window cut into overlapping token
windows, embedded through the shared pipeline, and pooled (``long_input: pool``) or answered
window by window (``windows``), with the limits' refusals in each dialect's shape.

The unit tests run over fake model services (``tests/fakes.py``: a 32-token window, so 30 of a
text's tokens per window); the model tests compare the served vectors with
``SentenceTransformer.encode`` over the same windows' texts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas as S
from chutes_embeddings import AsyncEmbeddingsClient, EmbeddingsClient
from chutes_embeddings.engine.cluster import cluster as run_clustering
from chutes_embeddings.engine.results import EmbedOptions, Retrieval
from chutes_embeddings.engine.windows import Window, cut, offsets_of
from chutes_embeddings.errors import InvalidInput, naming
from chutes_embeddings.http.dialects import cohere, native, openai, tei
from chutes_embeddings.settings import Settings
from tests.fakes import FakeTokenizer, fake_engine
from tests.helpers import app_transport

PARITY = 0.99999
# 120 words, some long enough for the fake tokenizer to cut into "##" pieces: ~170 tokens
LONG = " ".join(f"section{i} describes extraordinary measurements, then rests." for i in range(24))
SHORT = "a short text well within the window"
POOL, WINDOWS = EmbedOptions(long_input="pool"), EmbedOptions(long_input="windows")
# two long texts whose first windows are alike and whose rest differ: cut, they are near twins; pooled, not
OTHER_LONG = LONG[:150] + " ".join(f"chapter{i} recounts ordinary voyages, then sleeps." for i in range(24))
CLUSTERED = [LONG, OTHER_LONG, SHORT, SHORT + " again"]


def cosines(a: Any, b: Any) -> np.ndarray:
    """Row-wise cosine of two equally shaped stacks of vectors."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def weighted_mean(vectors: Any, weights: list[int]) -> np.ndarray:
    """The OpenAI cookbook's pooling: the token-weighted mean of unit vectors, normalised."""
    mean = np.average(np.asarray(vectors, dtype=np.float64), axis=0, weights=weights)
    return mean / np.linalg.norm(mean)


@pytest.fixture
def fakes(tmp_path):
    """An engine over fake model services."""
    built = fake_engine(Settings(data_dir=str(tmp_path), cache_size=1000))
    yield built
    built.close()


# --- cutting ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("overlap", [0, 5, 15])
def test_windows_cover_the_text_with_the_overlap_and_cut_between_words(overlap):
    tokenizer = FakeTokenizer()
    [details] = tokenizer.token_details([LONG], add_special_tokens=False)
    offsets = offsets_of(details)
    windows = cut(3, LONG, offsets, 30, overlap)
    assert len(windows) > 4 and all(w.index == 3 for w in windows)
    assert windows[0].start == 0 and windows[-1].end == len(LONG)
    starts = [s for s, _ in offsets]
    for w, after in zip(windows, windows[1:]):
        assert after.start <= w.end, "no gap between windows"
        shared = sum(1 for s, e in offsets if after.start <= s and e <= w.end)
        assert overlap <= shared <= overlap + 16, "the overlap, moved back at most to a word's start"
        assert after.start > w.start, "every window moves on"
    for w in windows:
        inside = [k for k, s in enumerate(starts) if w.start <= s < w.end]
        assert len(inside) == w.tokens <= 30
        assert len(tokenizer.content_ids(LONG[w.start:w.end])) == w.tokens, "the window's text tokenises alike"
        assert not tokenizer.token_details([LONG[w.start:w.end]], False)[0][0]["text"].startswith("##")


@settings(max_examples=150, deadline=None)
@given(words=st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz.,", min_size=1, max_size=20), max_size=150),
       size=st.integers(16, 40), share=st.floats(0, 0.5))
def test_any_text_is_covered_by_windows_that_each_move_on(words, size, share):
    text = " ".join(words)
    [details] = FakeTokenizer().token_details([text], add_special_tokens=False)
    offsets = offsets_of(details)
    windows = cut(0, text, offsets, size, int(size * share))
    assert windows[0].start == 0 and windows[-1].end == len(text)
    assert all(w.tokens <= size for w in windows) and sum(w.tokens for w in windows) >= len(offsets)
    assert all(a.start < b.start <= a.end for a, b in zip(windows, windows[1:]))


def test_a_text_within_the_window_is_one_window_spanning_it_all():
    assert cut(0, " a b ", [(1, 2), (3, 4)], 30, 15) == [Window(0, 0, 5, 2)]


# --- the pipeline over fakes ------------------------------------------------------------------------
def test_pooling_a_text_within_the_window_gives_todays_vector(fakes):
    today = fakes.embed([SHORT, "another one"]).vectors
    for options in (POOL, WINDOWS):
        assert cosines(fakes.embed([SHORT, "another one"], options).vectors, today).min() >= PARITY


def test_a_long_text_pools_its_windows_by_their_token_counts(fakes):
    windowed = fakes.embed([SHORT, LONG], WINDOWS)
    windows = windowed.windows
    assert [w.index for w in windows[:2]] == [0, 1] and len(windows) > 4
    each = fakes.embed([[SHORT, LONG][w.index][w.start:w.end] for w in windows]).vectors  # as texts of their own
    assert cosines(windowed.vectors, each).min() >= PARITY
    pooled = fakes.embed([SHORT, LONG], POOL)
    rows = [k for k, w in enumerate(windows) if w.index == 1]
    expected = weighted_mean(each[rows], [windows[k].tokens for k in rows])
    assert cosines(pooled.vectors[1], expected)[0] >= PARITY
    truncated = fakes.embed([LONG]).vectors[0]
    assert cosines(pooled.vectors[1], truncated)[0] < 0.999, "pooling reads past the window"


def test_a_backend_that_tokenises_on_its_side_gets_the_windows_text_and_gives_the_same_vectors(fakes, tmp_path):
    from tests.fakes import FakeEmbedder

    tei_like = FakeEmbedder()
    tei_like.takes_token_ids = False  # as TEI: it is sent text, never the engine's ids
    other = fake_engine(Settings(data_dir=str(tmp_path)), embedder=tei_like)
    try:
        for options in (POOL, WINDOWS):
            got = other.embed([SHORT, LONG], options)
            assert cosines(got.vectors, fakes.embed([SHORT, LONG], options).vectors).min() >= PARITY
        windows = got.windows
        assert set(tei_like.received_ids) == {None}
        assert {t for call in tei_like.calls for t in call} == {[SHORT, LONG][w.index][w.start:w.end] for w in windows}
    finally:
        other.close()


def test_usage_counts_every_token_of_every_window(fakes):
    tokenizer = fakes.embedder.tokenizer
    windowed = fakes.embed([LONG, SHORT], WINDOWS)
    texts = [[LONG, SHORT][w.index][w.start:w.end] for w in windowed.windows]
    assert windowed.token_counts == [len(tokenizer.content_ids(t)) + 2 for t in texts]
    pooled = fakes.embed([LONG, SHORT], POOL)
    assert pooled.tokens == windowed.tokens > len(tokenizer.content_ids(LONG)) + 2  # the overlaps count twice
    assert pooled.token_counts[1] == len(tokenizer.content_ids(SHORT)) + 2


def test_the_cache_keeps_pooled_and_truncated_vectors_apart(fakes):
    truncated = fakes.embed([LONG]).vectors
    pooled = fakes.embed([LONG], POOL).vectors
    assert cosines(pooled, truncated)[0] < 0.999
    np.testing.assert_array_equal(fakes.embed([LONG]).vectors, truncated)
    np.testing.assert_array_equal(fakes.embed([LONG], POOL).vectors, pooled)


def test_every_window_carries_the_prompt(tmp_path):
    prompted = fake_engine(Settings(data_dir=str(tmp_path)), prompts={"query": "query: "})
    try:
        windowed = prompted.embed([LONG], EmbedOptions(long_input="windows", prompt_name="query"))
        plain = prompted.embed([LONG], WINDOWS)
        assert max(w.tokens for w in windowed.windows) == 28 < max(w.tokens for w in plain.windows) == 30
        seen = prompted.embedder.tokenizer.seen
        assert all(f"query: {LONG[w.start:w.end]}" in seen for w in windowed.windows)
        assert max(windowed.token_counts) <= prompted.embedder.backend.max_input_tokens
    finally:
        prompted.close()


def test_the_overlap_is_the_services_default_held_to_half_the_window(fakes, tmp_path):
    def shared(windows):
        return [a.end - b.start for a, b in zip(windows, windows[1:])]

    default = fakes.embed([LONG], WINDOWS).windows  # the setting's 32, held to 15
    assert default == fakes.embed([LONG], EmbedOptions(long_input="windows", window_overlap=15)).windows
    none = fakes.embed([LONG], EmbedOptions(long_input="windows", window_overlap=0)).windows
    assert len(none) < len(default) and sum(shared(none)) < sum(shared(default))
    with pytest.raises(InvalidInput) as refused:
        fakes.embed([LONG], EmbedOptions(long_input="windows", window_overlap=16))
    assert refused.value.field == "window_overlap" and refused.value.limit == 15


@pytest.mark.parametrize("setting,value,limit", [("max_windows_per_text", 3, 3), ("max_request_tokens", 200, 200)])
def test_the_limits_refuse_naming_the_text_and_the_limit(tmp_path, setting, value, limit):
    limited = fake_engine(Settings(data_dir=str(tmp_path), **{setting: value}))
    try:
        assert limited.embed([SHORT], POOL).vectors.shape == (1, 32)
        with pytest.raises(InvalidInput) as refused, naming("inputs"):
            limited.embed([SHORT, LONG], POOL)
        assert refused.value.field == "inputs[1]" and refused.value.limit == limit
        assert refused.value.extra["setting"] == setting and setting in refused.value.message
        assert limited.embed([SHORT, LONG]).vectors.shape == (2, 32), "truncating is not limited by them"
    finally:
        limited.close()


# --- the dialects -----------------------------------------------------------------------------------
def test_native_embed_answers_windows_with_their_spans_and_usage(fake_call):
    status, body = fake_call("POST", "/embed", {"inputs": LONG, "long_input": "windows", "window_overlap": 0})
    assert status == 200, body
    spans = body["windows"]
    assert len(body["embeddings"]) == len(spans) > 4 and spans[0]["start"] == 0 and spans[-1]["end"] == len(LONG)
    assert all(a["end"] == b["start"] for a, b in zip(spans, spans[1:])), "no overlap: the spans tile the text"
    assert body["usage"]["total_tokens"] == sum(s["tokens"] + 2 for s in spans)
    status, pooled = fake_call("POST", "/embed/batch", {"texts": [SHORT, LONG], "long_input": "pool"})
    assert status == 200 and len(pooled["embeddings"]) == 2 and "windows" not in pooled
    status, typed = fake_call("POST", "/embed", {"inputs": [LONG], "long_input": "windows",
                                                 "embedding_types": ["float", "ubinary"]})
    assert status == 200 and len(typed["embeddings"]["ubinary"]) == len(typed["windows"])
    status, plain = fake_call("POST", "/embed", {"inputs": LONG})
    assert status == 200 and "usage" not in plain and "windows" not in plain
    status, refused = fake_call("POST", "/embed", {"inputs": [LONG], "long_input": "windows", "window_overlap": 99})
    assert status == 422 and refused["detail"]["field"] == "window_overlap" and refused["detail"]["limit"] == 15
    status, refused = fake_call("POST", "/embed", {"inputs": [LONG], "long_input": "chunks"})
    assert status == 422 and refused["detail"]["field"] == "long_input"


def test_info_reports_the_long_input_limits(fake_call):
    status, info = fake_call("GET", "/info")
    assert status == 200 and info["long_input"] == "truncate"
    assert {k: info["limits"][k] for k in ("max_windows_per_text", "max_request_tokens", "window_overlap")} == {
        "max_windows_per_text": 128, "max_request_tokens": 131_072, "window_overlap": 32}


def one_vector_answers(engine: Any, long_input: str | None) -> dict[str, float]:
    """What /similarity, /search and /cluster should answer over ``engine``'s vectors of LONG and
    SHORT (``CLUSTERED`` for the silhouette), each text cut or pooled as ``long_input`` says."""
    options = EmbedOptions(long_input=long_input)
    long, short = engine.embed([LONG, SHORT], options).vectors
    vectors = engine.embed(CLUSTERED, options).vectors
    return {"cosine": float(long @ short), "silhouette": run_clustering(vectors, "kmeans", 2, 20).silhouette}


def test_similarity_search_and_cluster_cut_or_pool_as_asked(fake_call, fakes):
    for long_input in ("pool", "truncate", None):
        want = one_vector_answers(fakes, long_input)
        asked = {"long_input": long_input} if long_input else {}
        status, ranked = fake_call("POST", "/similarity", {"source_text": LONG, "target_texts": [SHORT], **asked})
        assert status == 200 and ranked["results"][0]["similarity"] == pytest.approx(want["cosine"], abs=1e-5)
        status, found = fake_call("POST", "/search", {"query": SHORT, "corpus": [LONG], "mode": "hybrid", **asked})
        assert status == 200 and found["results"][0]["legs"]["dense"]["score"] == pytest.approx(want["cosine"],
                                                                                               abs=1e-5)
        status, grouped = fake_call("POST", "/cluster", {"texts": CLUSTERED, "n_clusters": 2, **asked})
        assert status == 200 and grouped["silhouette"] == pytest.approx(want["silhouette"], abs=1e-5)
    assert one_vector_answers(fakes, "pool")["cosine"] != pytest.approx(one_vector_answers(fakes, None)["cosine"],
                                                                        abs=1e-3), "a long text pools differently"
    lexical = {"query": "section3 measurements", "corpus": [LONG, SHORT], "mode": "lexical"}
    assert fake_call("POST", "/search", {**lexical, "long_input": "pool"}) == fake_call("POST", "/search", lexical)


@pytest.mark.parametrize("path,body", [("/similarity", {"source_text": LONG, "target_texts": [SHORT]}),
                                       ("/search", {"query": SHORT, "corpus": [LONG]}),
                                       ("/cluster", {"texts": CLUSTERED})])
def test_one_vector_routes_refuse_windows_naming_the_choices(fake_call, path, body):
    status, refused = fake_call("POST", path, {**body, "long_input": "windows"})
    assert status == 422 and refused["detail"]["field"] == "long_input"
    assert "'truncate' or 'pool'" in refused["detail"]["limit"], refused
    status, refused = fake_call("POST", path, {**body, "long_input": "pool", "window_overlap": 99})
    assert status == 422 and refused["detail"]["field"] == "window_overlap" and refused["detail"]["limit"] == 15


@pytest.fixture
def pooling_service(tmp_path):
    """An engine whose service setting pools long inputs, with a small token budget."""
    built = fake_engine(Settings(data_dir=str(tmp_path), long_input="pool", max_request_tokens=1000))
    yield built
    built.close()


def test_dialects_without_a_knob_follow_the_service_setting(pooling_service, fakes):
    pooled = pooling_service.embed([LONG]).vectors
    answer = openai.embeddings(pooling_service, S.OpenAIEmbeddingsRequest(input=[LONG]))
    assert cosines(answer["data"][0]["embedding"], pooled)[0] >= PARITY
    assert answer["usage"]["prompt_tokens"] == pooling_service.embed([LONG], POOL).tokens
    assert cosines(tei.embed(pooling_service, S.TeiEmbedRequest(inputs=LONG)), pooled)[0] >= PARITY
    cut_by_tei = tei.embed(pooling_service, S.TeiEmbedRequest(inputs=LONG, truncate=True))  # an explicit cut
    assert cosines(cut_by_tei, fakes.embed([LONG]).vectors)[0] >= PARITY
    from chutes_embeddings.engine.quantize import by_type

    for truncate in (None, "NONE"):
        body = cohere.embed_v2(pooling_service, S.CohereV2EmbedRequest(
            model="any", texts=[LONG], truncate=truncate, input_type="search_document",
            embedding_types=["float", "int8", "ubinary"]))
        assert cosines(body["embeddings"]["float"], pooled)[0] >= PARITY
        expected = by_type(pooled, ["int8", "ubinary"])  # the pooled vector, quantised
        assert body["embeddings"]["int8"] == expected["int8"] and body["embeddings"]["ubinary"] == expected["ubinary"]
    with pytest.raises(InvalidInput):  # the default service: NONE refuses a long text, as Cohere does
        cohere.embed_v2(fakes, S.CohereV2EmbedRequest(model="any", texts=[LONG], truncate="NONE",
                                                       input_type="search_document"))


def test_the_engine_verbs_follow_the_service_setting_unless_asked(fakes, tmp_path):
    pooled, cut = one_vector_answers(fakes, "pool"), one_vector_answers(fakes, "truncate")
    pooling_service = fake_engine(Settings(data_dir=str(tmp_path), long_input="pool"))
    try:
        for engine, default in ((pooling_service, pooled), (fakes, cut)):
            assert engine.similarity(LONG, [SHORT]).hits[0].score == pytest.approx(default["cosine"], abs=1e-5)
            assert engine.cluster(CLUSTERED, n_clusters=2).silhouette == pytest.approx(default["silhouette"],
                                                                                        abs=1e-5)
        truncated = pooling_service.similarity(LONG, [SHORT], long_input="truncate").hits[0].score
    finally:
        pooling_service.close()
    assert truncated == pytest.approx(cut["cosine"], abs=1e-5)
    assert fakes.search(SHORT, [LONG], top_k=1, long_input="pool").hits[0].score == pytest.approx(
        pooled["cosine"], abs=1e-5)
    for verb in (lambda: fakes.similarity(LONG, [SHORT], long_input="windows"),
                 lambda: fakes.search(SHORT, [LONG], top_k=1, long_input="windows", retrieval=Retrieval("lexical")),
                 lambda: fakes.cluster(CLUSTERED, long_input="windows")):
        with pytest.raises(InvalidInput) as refused:
            verb()
        assert refused.value.field == "long_input" and refused.value.limit == ["truncate", "pool"]


def test_the_client_twins_and_the_embeddings_adapters_pass_long_input(fake_client, fakes):
    transport, pooled = app_transport(fake_client), fakes.embed([SHORT, LONG], POOL).vectors
    want = one_vector_answers(fakes, "pool")

    def check(windowed: Any, batch: Any, ranked: Any, found: Any, grouped: Any) -> None:
        assert len(windowed["windows"]) == len(windowed["embeddings"]) > 4 and windowed["windows"][0]["index"] == 0
        assert cosines(batch, pooled).min() >= PARITY
        assert ranked["results"][0]["similarity"] == pytest.approx(want["cosine"], abs=1e-5)
        assert found["results"][0]["score"] == pytest.approx(want["cosine"], abs=1e-5)
        assert grouped["silhouette"] == pytest.approx(want["silhouette"], abs=1e-5)

    with EmbeddingsClient("http://127.0.0.1", transport=transport) as client:
        check(client.embed(LONG, long_input="windows", window_overlap=0),
              client.embed_batch([SHORT, LONG], long_input="pool"),
              client.similarity(LONG, [SHORT], long_input="pool"), client.search(SHORT, [LONG], long_input="pool"),
              client.cluster(CLUSTERED, n_clusters=2, long_input="pool"))
        with pytest.raises(InvalidInput) as refused:  # one vector per text: refused before anything is sent
            client.embed_batch([LONG], long_input="windows")
        assert refused.value.field == "long_input" and refused.value.limit == ["truncate", "pool"]
        with pytest.raises(InvalidInput) as refused:  # the server's refusal
            client.similarity(LONG, [SHORT], long_input="windows")
        assert refused.value.field == "long_input"

    async def twin() -> list[Any]:
        async with AsyncEmbeddingsClient("http://127.0.0.1", transport=transport) as client:
            return [await client.embed(LONG, long_input="windows", window_overlap=0),
                    await client.embed_batch([SHORT, LONG], long_input="pool"),
                    await client.similarity(LONG, [SHORT], long_input="pool"),
                    await client.search(SHORT, [LONG], long_input="pool"),
                    await client.cluster(CLUSTERED, n_clusters=2, long_input="pool")]

    check(*asyncio.run(twin()))
    langchain = pytest.importorskip("chutes_embeddings.integrations.langchain")
    adapter = langchain.ChutesEmbeddings("http://127.0.0.1", long_input="pool", transport=transport)
    assert cosines(adapter.embed_documents([SHORT, LONG]), pooled).min() >= PARITY
    assert cosines(adapter.embed_query(LONG), pooled[1])[0] >= PARITY
    assert cosines(asyncio.run(adapter.aembed_documents([SHORT, LONG])), pooled).min() >= PARITY
    default = langchain.ChutesEmbeddings("http://127.0.0.1", transport=transport)  # the server's setting: cut
    assert cosines(default.embed_query(LONG), fakes.embed([LONG]).vectors)[0] >= PARITY
    with pytest.raises(InvalidInput):
        langchain.ChutesEmbeddings("http://127.0.0.1", long_input="windows", transport=transport)
    llama_index = pytest.importorskip("chutes_embeddings.integrations.llama_index")
    with pytest.raises(InvalidInput):  # before it asks the server anything
        llama_index.ChutesEmbedding("http://127.0.0.1:9", long_input="windows")


def test_the_token_budget_is_refused_in_each_dialects_shape(pooling_service):
    texts = [LONG, LONG + " more"]
    with pytest.raises(InvalidInput) as refused:
        openai.embeddings(pooling_service, S.OpenAIEmbeddingsRequest(input=texts))
    status, body = openai.render_error(refused.value)
    assert status == 400 and body["error"]["param"] == "input[1]" and "max_request_tokens" in body["error"]["message"]
    with pytest.raises(InvalidInput) as refused:
        cohere.embed_v2(pooling_service, S.CohereV2EmbedRequest(model="any", texts=texts,
                                                                input_type="search_document"))
    status, body = cohere.render_error(refused.value)
    assert status == 400 and body["field"] == "texts[1]" and body["limit"] == 1000
    with pytest.raises(InvalidInput) as refused:
        native.embed(pooling_service, S.EmbedRequest(inputs=texts))
    status, body = native.render_error(refused.value)
    assert status == 422 and body["detail"]["field"] == "inputs[1]" and body["detail"]["limit"] == 1000


# --- the real model ---------------------------------------------------------------------------------
REAL_LONG = " ".join(
    f"Paragraph {i}: the committee reviewed the {topic} report, noted its conclusions on {topic} and asked "
    f"for further evidence before the next meeting."
    for i, topic in enumerate(["wind tunnel", "boundary layer", "heat transfer", "shock wave", "turbulence",
                               "supersonic flow", "laminar flow", "pressure drop", "drag", "lift"] * 4))


def test_pooled_and_windowed_vectors_equal_sentence_transformers_over_the_windows(dev_call, st_model):
    status, windowed = dev_call("POST", "/embed", {"inputs": [SHORT, REAL_LONG], "long_input": "windows"})
    assert status == 200, windowed
    spans = windowed["windows"]
    texts = [[SHORT, REAL_LONG][s["index"]][s["start"]:s["end"]] for s in spans]
    reference = st_model.encode(texts, normalize_embeddings=True)
    assert len(spans) >= 3 and cosines(windowed["embeddings"], reference).min() >= PARITY
    lengths = [len(st_model.tokenizer(t)["input_ids"]) for t in texts]
    assert lengths == [s["tokens"] + 2 for s in spans], "each window's text tokenises as it did in the whole text"
    assert windowed["usage"]["total_tokens"] == sum(lengths)
    status, pooled = dev_call("POST", "/embed", {"inputs": [SHORT, REAL_LONG], "long_input": "pool"})
    assert status == 200, pooled
    rows = [k for k, s in enumerate(spans) if s["index"] == 1]
    expected = weighted_mean(reference[rows], [spans[k]["tokens"] for k in rows])
    assert cosines(pooled["embeddings"][1], expected)[0] >= PARITY
    status, today = dev_call("POST", "/embed", {"inputs": [SHORT]})
    assert cosines(pooled["embeddings"][0], today["embeddings"][0])[0] >= PARITY


def test_similarity_with_pool_compares_the_pooled_vectors(dev_call):
    query = "what did the committee conclude about turbulence and drag?"
    status, pooled = dev_call("POST", "/embed", {"inputs": [query, REAL_LONG], "long_input": "pool"})
    assert status == 200, pooled
    ranked = {}
    for long_input in ("pool", "truncate"):
        status, body = dev_call("POST", "/similarity", {"source_text": query, "target_texts": [REAL_LONG],
                                                        "long_input": long_input})
        assert status == 200, body
        ranked[long_input] = body["results"][0]["similarity"]
    assert ranked["pool"] == pytest.approx(float(cosines(*pooled["embeddings"])[0]), abs=1e-5)
    assert abs(ranked["pool"] - ranked["truncate"]) > 1e-3, "the truncated text is not the pooled one"
