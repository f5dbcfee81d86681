"""The retrieval benchmark's pure parts (``bench/``): metrics, fusion, collections, the SMART converter,
the BM25 reference and the table, on a hand-written labelled set (``tests/data/retrieval-tiny``:
24 documents on 8 topics, 9 queries, one with no judgement). No torch, no server."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.collections import document_text, load, load_qrels, write
from bench.metrics import evaluate, percentiles_ms, rrf
from bench.references import bm25_runs, top
from bench.retrieval import Row, collection_name, render
from bench.smart import convert_cranfield, parse, strip_repeated_title

TINY = Path(__file__).parent / "data" / "retrieval-tiny"


def test_ndcg_uses_graded_gains_and_the_log2_discount_and_recall_counts_every_relevant_document():
    qrels = {"q1": {"a": 2, "b": 1}}
    got = evaluate(qrels, {"q1": ["x", "a", "b"]})
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 + 1 / math.log2(3)
    assert got["ndcg@10"] == pytest.approx(dcg / ideal, abs=1e-9)
    assert got["recall@100"] == pytest.approx(1.0)
    assert evaluate(qrels, {"q1": ["a"]})["recall@100"] == pytest.approx(0.5)


def test_a_judged_query_the_run_lacks_or_answers_with_nothing_scores_zero_in_the_mean():
    qrels = {"q1": {"a": 1}, "q2": {"c": 1}, "q3": {"d": 1}}
    got = evaluate(qrels, {"q1": ["a"], "q3": [], "unjudged": ["a"]})
    assert got["ndcg@10"] == pytest.approx(1 / 3)
    assert got["recall@100"] == pytest.approx(1 / 3)


def test_the_run_order_is_kept_and_a_repeated_id_counts_once():
    qrels = {"q": {"z": 1}}
    assert evaluate(qrels, {"q": ["z", "a"]})["ndcg@10"] == pytest.approx(1.0)
    assert evaluate(qrels, {"q": ["a", "z"]})["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert evaluate(qrels, {"q": ["a", "a", "z"]})["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_only_the_first_ten_count_for_ndcg_and_the_first_hundred_for_recall():
    qrels = {"q": {"hit": 1}}
    assert evaluate(qrels, {"q": [f"d{i}" for i in range(10)] + ["hit"]})["ndcg@10"] == 0
    assert evaluate(qrels, {"q": [f"d{i}" for i in range(100)] + ["hit"]})["recall@100"] == 0
    with pytest.raises(ValueError, match="no query has a relevant judgement"):
        evaluate({"q": {"a": 0}}, {"q": ["a"]})


def test_rrf_sums_reciprocal_ranks_and_breaks_ties_by_best_rank_then_id():
    fused = rrf([{"q": ["a", "b", "c"]}, {"q": ["c", "a"], "only2": ["x"]}], k=60)
    assert fused["q"] == ["a", "c", "b"]  # a: 1/61 + 1/62 > c: 1/63 + 1/61 > b: 1/62
    assert fused["only2"] == ["x"]
    assert rrf([{"q": ["b"]}, {"q": ["a"]}])["q"] == ["a", "b"]
    assert rrf([{"q": ["a", "b", "c"]}], depth=2)["q"] == ["a", "b"]


def test_top_ranks_by_score_then_row_and_can_leave_out_non_matches():
    scores = np.array([0.0, 2.0, 1.0, 2.0], dtype=np.float32)
    assert top(scores, 3).tolist() == [1, 3, 2]
    assert top(scores, 10, positive_only=True).tolist() == [1, 3, 2]


def test_percentiles_are_milliseconds():
    p50, p99 = percentiles_ms([0.001] * 99 + [1.0])
    assert p50 == pytest.approx(1.0)
    assert 1.0 < p99 < 1000.0


def test_the_tiny_set_loads_with_titles_joined_and_unjudged_queries_left_out():
    tiny = load(TINY)
    assert len(tiny.docs) == 24 and len(tiny.queries) == 9
    assert "q9" not in tiny.judged_queries and len(tiny.judged_queries) == 8
    assert tiny.docs["bread-0"].startswith("Bread Sourdough")
    assert tiny.qrels["q1"] == {"bread-0": 2, "bread-2": 1}
    assert document_text("", " body ") == "body"


def test_load_drops_empty_documents_and_their_judgements_and_refuses_unknown_queries(tmp_path):
    write(tmp_path / "c", [{"_id": "1", "title": "", "text": ""}, {"_id": "2", "title": "t", "text": "x"}],
          [{"_id": "q", "text": "x"}], [("q", "1", 1), ("q", "2", 1), ("q", "2x", 0)])
    got = load(tmp_path / "c")
    assert list(got.docs) == ["2"] and got.qrels == {"q": {"2": 1}}
    write(tmp_path / "bad", [{"_id": "1", "title": "", "text": "x"}], [], [("nope", "1", 1)])
    with pytest.raises(ValueError, match="queries.jsonl lacks"):
        load(tmp_path / "bad")


def test_qrels_are_read_in_beir_and_trec_eval_layouts(tmp_path):
    beir, trec, bad = tmp_path / "beir.tsv", tmp_path / "trec.tsv", tmp_path / "bad.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\n1\t31715818\t1\n1\t9\t0\n")
    trec.write_text("1\t 0 31715818\t1\n3 0 14717500 2\n")
    assert load_qrels(beir) == {"1": {"31715818": 1}}
    assert load_qrels(trec) == {"1": {"31715818": 1}, "3": {"14717500": 2}}
    bad.write_text("1 2\n")
    with pytest.raises(ValueError, match="expected 3 or 4 fields"):
        load_qrels(bad)


def test_the_bm25_reference_over_the_project_analyzer_finds_each_tiny_query_its_best_document():
    tiny = load(TINY)
    for ref in bm25_runs(tiny):
        assert set(ref.run) == set(tiny.judged_queries)
        best = {q: max(judged, key=judged.get) for q, judged in tiny.qrels.items()}
        assert all(ref.run[q][0] == best[q] for q in best), ref.name
        assert evaluate(tiny.qrels, ref.run)["ndcg@10"] > 0.9
        assert len(ref.latencies) == 8 and ref.index_tps > 0


SMART_DOCS = """.I 1
.T
similarity laws for
aerothermoelastic testing .
.A
dugundji,j.
.B
j. ae. scs. 1959.
.W
similarity laws for
aerothermoelastic testing .
  the similarity laws are presented .
.I 2
.T
.A
.B
.W
.I 3
.T
slip flow in tubes .
.W
energy separation in laminar slip flow .
"""
SMART_QUERIES = """.I 001
.W
what similarity laws must be obeyed .
.I 004
.W
papers on
slip flow .
"""
CRANQREL = "1 1 -1\n1 3 4\n2 3 1\n2 2 3\n"


def test_smart_parse_joins_each_field_across_lines():
    records = parse(SMART_DOCS)
    assert [r["I"] for r in records] == ["1", "2", "3"]
    assert records[0]["T"] == "similarity laws for aerothermoelastic testing ."
    assert records[0]["A"] == "dugundji,j." and records[0]["W"].endswith("the similarity laws are presented .")
    assert records[1].get("W", "") == ""
    with pytest.raises(ValueError, match="before the first .I"):
        parse("stray\n.I 1\n")


def test_strip_repeated_title_removes_only_an_exact_leading_repeat():
    assert strip_repeated_title("a b .", "a b . c d") == "c d"
    assert strip_repeated_title("a b .", "a c d") == "a c d"
    assert strip_repeated_title("", "a") == "a"


@pytest.mark.parametrize("drop_source, want", [(False, {"1": {"1": 1, "3": 1}, "2": {"3": 1, "2": 1}}),
                                               (True, {"1": {"3": 1}, "2": {"3": 1, "2": 1}})])
def test_cranfield_renumbers_queries_by_position_and_keeps_the_source_row_unless_dropped(tmp_path, drop_source, want):
    src = tmp_path / "src"
    src.mkdir()
    (src / "cran.all.1400").write_text(SMART_DOCS)
    (src / "cran.qry").write_text(SMART_QUERIES)
    (src / "cranqrel").write_text(CRANQREL)
    counts = convert_cranfield(src, tmp_path / "out", drop_source)
    assert counts == (3, 2, 3 if drop_source else 4)
    got = load(tmp_path / "out")
    assert got.queries == {"1": "what similarity laws must be obeyed .", "2": "papers on slip flow ."}
    assert got.docs["1"] == "similarity laws for aerothermoelastic testing . the similarity laws are presented ."
    assert "2" not in got.docs  # empty: the store refuses empty texts
    assert {q: {d: g for d, g in j.items() if d in got.docs} for q, j in want.items()} == got.qrels
    (src / "cranqrel").write_text("3 1 2\n")
    with pytest.raises(ValueError, match="cran.qry has 2"):
        convert_cranfield(src, tmp_path / "again")


def test_the_table_marks_unmeasured_cells_and_the_collection_name_fits_the_store_rule():
    tiny = load(TINY)
    table = render(tiny, [Row("bm25", "reference", 0.5, 0.75, 1000.0, 1.0, 2.0),
                          Row("sparse", "ours", note="skipped: the server answered 422: no sparse model")])
    assert "| bm25 | 0.5000 | 0.7500 | 1,000 | 1.0 | 2.0 |  |" in table
    assert "| ours: sparse | — | — | — | — | — | skipped: the server answered 422: no sparse model |" in table
    assert collection_name(tiny) == "bench_retrieval-tiny"


def test_concat_joins_consecutive_documents_as_paragraphs_and_keeps_the_best_grade(tmp_path):
    from bench.concat import main as concat

    corpus = [{"_id": f"d{i}", "title": "", "text": f"text {i}"} for i in range(5)]
    write(tmp_path / "src", corpus, [{"_id": "q", "text": "query"}], [("q", "d1", 1), ("q", "d2", 2), ("q", "d4", 1)])
    assert concat(["--collection", str(tmp_path / "src"), "--per", "3", "--out", str(tmp_path / "out")]) == 0
    joined = load(tmp_path / "out")
    assert joined.docs == {"joined0": "text 0\n\ntext 1\n\ntext 2", "joined1": "text 3\n\ntext 4"}
    assert joined.qrels == {"q": {"joined0": 2, "joined1": 1}}
