"""The embedded store's search path at scale, with small thresholds so a few thousand vectors
exercise it: hits read by primary key, filters on the metadata columns (exact and IVF paths)
equal to exact filtered truth, the index snapshot + replay after a restart, background retrain."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from chutes_embeddings.store import Record
from chutes_embeddings.store.embedded import EmbeddedStore
from chutes_embeddings.store.embedded_rows import ROWS_BY_RID, rows_by_rid
from chutes_embeddings.store.filters import parse_filter
from chutes_embeddings.store.snapshot import _read
from chutes_embeddings.store.vector_index import VectorIndex
from tests.store_helpers import FILTER_CASES, FILTER_METAS, MODEL, NO_FILTER, clustered, crash, unit

N = 6000
LANGS = ["en", "de", "fr", "es", "it"]


def meta(i: int) -> dict:
    return {"pct": i % 100, "tenth": i % 10, "half": i % 2 == 0, "lang": LANGS[i % 5], "rank": i / 7.0}


# (filter, predicate over i) at 1%, 10%, 50% and a few shapes
SCALE_FILTERS = [
    ({"pct": 42}, lambda i: i % 100 == 42),
    ({"tenth": 3}, lambda i: i % 10 == 3),
    ({"half": True}, lambda i: i % 2 == 0),
    ({"lang": {"$in": ["de", "fr"]}, "tenth": {"$ne": 1}}, lambda i: LANGS[i % 5] in ("de", "fr") and i % 10 != 1),
    ({"$or": [{"pct": {"$lt": 5}}, {"lang": "it"}]}, lambda i: i % 100 < 5 or i % 5 == 4),
    ({"$not": {"rank": {"$gte": 300.5}}}, lambda i: not i / 7.0 >= 300.5),
    ({"lang": {"$gt": "es"}}, lambda i: LANGS[i % 5] > "es"),
]


def open_store(path, **options):
    defaults = dict(ann_threshold=2000, nprobe=8, filter_exact_rows=400, filter_memory_min_rows=0)
    return EmbeddedStore(path, **{**defaults, **options})


def fill(store, name, vecs, start=0):
    store.ensure_collection(name, MODEL, vecs.shape[1])
    for s in range(0, len(vecs), 1000):
        chunk = range(start + s, start + min(s + 1000, len(vecs)))
        store.upsert(name, [Record(f"r{i}", f"text {i}", meta(i), vecs[i - start]) for i in chunk])


def wait_ann(store, name):
    index = store._collection(name).vectors
    index.wait_for_build(120)
    assert index.mode == "ann"
    return index


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    rng = np.random.default_rng(40)
    vecs = clustered(rng, N)
    store = open_store(tmp_path_factory.mktemp("scale") / "store")
    fill(store, "big", vecs)
    wait_ann(store, "big")
    queries = vecs[rng.integers(0, N, 20)] + 0.02 * unit(rng, 20)
    yield store, vecs, queries / np.linalg.norm(queries, axis=1, keepdims=True)
    store.close()


def test_hits_are_read_by_primary_key_never_by_scanning_the_collection(big):
    store, _, queries = big
    db = store._db()
    db.execute("ANALYZE")  # with statistics, as a long-lived store has them, skewed the way that
    # misled the planner on a real file (collection looks selective): the old statement then
    # walked the (collection, id) index
    db.execute("UPDATE sqlite_stat1 SET stat = '1000000 1 1' WHERE idx = 'sqlite_autoindex_records_1'")
    db.execute("ANALYZE sqlite_schema")
    plan = " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + ROWS_BY_RID.format(marks="?,?,?"),
                                                 [1, 2, 3, "big"]))
    assert "INTEGER PRIMARY KEY" in plan and "autoindex" not in plan and "SCAN" not in plan, plan
    hits = store.search("big", queries[:1], 10, NO_FILTER, None)[0]
    assert len(hits) == 10 and all(h.metadata == meta(int(h.id[1:])) for h in hits)


@pytest.mark.parametrize("flt,pred", SCALE_FILTERS, ids=[str(f) for f, _ in SCALE_FILTERS])
def test_filtered_search_matches_exact_filtered_truth(big, flt, pred):
    store, vecs, queries = big
    allowed = np.array([i for i in range(N) if pred(i)])
    truth = allowed[np.argsort(-(queries @ vecs[allowed].T), axis=1)[:, :10]]
    got = store.search("big", queries, 10, parse_filter(flt), None)
    assert all(len(g) == 10 and all(pred(int(h.id[1:])) for h in g) for g in got)
    recall = np.mean([len({int(h.id[1:]) for h in g} & set(t)) / 10 for g, t in zip(got, truth)])
    # few allowed rows: exact, so the true top 10; many: through the IVF index
    assert recall == 1.0 if len(allowed) <= 400 else recall >= 0.95, recall


def test_filtered_search_paths_agree_with_sqlite(big):
    store, _, queries = big
    for flt, _ in SCALE_FILTERS:
        where = parse_filter(flt)
        store.filter_memory_min_rows = 10**9  # SQLite decides the allowed rows
        try:
            by_sql = store.search("big", queries[:5], 10, where, None)
        finally:
            store.filter_memory_min_rows = 0
        by_columns = store.search("big", queries[:5], 10, where, None)
        overlap = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(by_sql, by_columns)])
        assert overlap >= 0.95, (flt, overlap)


@pytest.mark.parametrize("flt,expected", FILTER_CASES, ids=[str(f) for f, _ in FILTER_CASES])
def test_metadata_columns_mean_what_the_contract_says(tmp_path, flt, expected):
    store = open_store(tmp_path / "s")
    try:
        vecs = unit(np.random.default_rng(9), len(FILTER_METAS))
        store.ensure_collection("c", MODEL, vecs.shape[1])
        store.upsert("c", [Record(f"r{i}", "t", m, v) for i, (m, v) in enumerate(zip(FILTER_METAS, vecs))])
        assert store._collection("c").vectors.search_where(vecs[:1], 10, parse_filter(flt)) is not None
        hits = store.search("c", vecs[:1], 10, parse_filter(flt), None)[0]
        assert {int(h.id[1:]) for h in hits} == expected
    finally:
        store.close()


def test_integers_beyond_float_precision_are_filtered_in_sqlite(tmp_path):
    store = open_store(tmp_path / "s")
    try:
        vecs = unit(np.random.default_rng(41), 3)
        store.ensure_collection("c", MODEL, vecs.shape[1])
        big_int = 2**60
        store.upsert("c", [Record(f"r{i}", "t", {"n": big_int + i}, v) for i, v in enumerate(vecs)])
        assert store._collection("c").vectors.search_where(vecs[:1], 3, parse_filter({"n": big_int + 1})) is None
        assert [h.id for h in store.search("c", vecs[:1], 3, parse_filter({"n": big_int + 1}), None)[0]] == ["r1"]
    finally:
        store.close()


def test_restart_loads_the_snapshot_and_replays_later_writes(tmp_path):
    rng = np.random.default_rng(42)
    vecs = clustered(rng, 4000)
    store = open_store(tmp_path / "s")
    fill(store, "c", vecs[:3000])
    wait_ann(store, "c")
    store.flush()
    snapshot = tmp_path / "s" / "indexes" / "c.npz"
    saved_at = os.stat(snapshot).st_mtime_ns
    # after the snapshot: 200 new records, one replaced, 100 deleted (under SAVE_FRACTION: no rewrite)
    store.upsert("c", [Record(f"r{i}", f"text {i}", meta(i), vecs[i]) for i in range(3000, 3200)])
    moved = -vecs[5]
    store.upsert("c", [Record("r5", "moved", {"pct": 5, "moved": True}, moved)])
    assert store.delete("c", [f"r{i}" for i in range(100, 200)], None) == 100
    store.flush()
    assert os.stat(snapshot).st_mtime_ns == saved_at
    crash(store)

    store = open_store(tmp_path / "s")
    try:
        store._loader.join(60)
        assert "c" in store._collections  # loaded as the store opened, before any request
        index = store._collection("c").vectors
        assert index.mode == "ann" and len(index) == 3100  # the IVF index came back with the snapshot
        assert store.describe("c").size == 3100
        late = store.search("c", vecs[3000:3200], 1, NO_FILTER, None)
        assert np.mean([h[0].id == f"r{i}" for h, i in zip(late, range(3000, 3200))]) >= 0.95
        assert store.search("c", moved[None], 1, NO_FILTER, None)[0][0].id == "r5"
        assert store.search("c", moved[None], 1, parse_filter({"moved": True}), None)[0][0].id == "r5"
        gone = store.search("c", vecs[100:200], 5, NO_FILTER, None)
        assert not {h.id for hits in gone for h in hits} & {f"r{i}" for i in range(100, 200)}
        assert store.search("c", vecs[150:151], 10, parse_filter({"pct": 50}), None)[0][0].id != "r150"
        assert {r.id for r in store.export("c")} == {f"r{i}" for i in range(3200)} - {f"r{i}" for i in range(100, 200)}
    finally:
        store.close()


@pytest.mark.parametrize("snapshot_format", [3, 2])
def test_a_clean_close_saves_every_change_so_a_restart_replays_nothing(tmp_path, snapshot_format):
    vecs = clustered(np.random.default_rng(43), 1010)
    store = open_store(tmp_path / "s")
    fill(store, "c", vecs[:1000])
    store.flush()
    store.upsert("c", [Record(f"r{i}", f"text {i}", meta(i), vecs[i]) for i in range(1000, 1010)])
    store.flush()  # 10 changes of 1,010: under SAVE_FRACTION, the periodic save leaves the snapshot
    assert store._collection("c").saved_version < store._collection("c").version
    store.close()
    snapshot = tmp_path / "s" / "indexes" / "c.npz"
    assert snapshot.read_bytes()[:1] != b"PK", "format 3 is no zip"
    if snapshot_format == 2:  # a snapshot saved before format 3: np.savez's zip of the same arrays
        state, arrays = _read(snapshot)  # mapped from the file: written elsewhere, then renamed over it
        with open(snapshot.with_suffix(".old"), "wb") as f:
            np.savez(f, state=np.frombuffer(json.dumps({**state, "format": 2}).encode(), dtype=np.uint8), **arrays)
        os.replace(snapshot.with_suffix(".old"), snapshot)

    store = open_store(tmp_path / "s")
    try:
        store._loader.join(60)
        collection = store._collection("c")
        assert collection.changes == 0 and collection.saved_version == collection.version, "nothing replayed"
        assert store.search("c", vecs[1005:1006], 1, NO_FILTER, None)[0][0].id == "r1005"
    finally:
        store.close()


def test_snapshot_of_a_dropped_namesake_is_never_loaded(tmp_path):
    vecs = unit(np.random.default_rng(43), 50)
    store = open_store(tmp_path / "s")
    fill(store, "c", vecs)
    store.flush()
    snapshot = (tmp_path / "s" / "indexes" / "c.npz").read_bytes()
    store.drop("c")
    fill(store, "c", vecs[:10])
    crash(store)
    (tmp_path / "s" / "indexes" / "c.npz").write_bytes(snapshot)  # e.g. a crash before the unlink
    store = open_store(tmp_path / "s")
    try:
        assert len(store._collection("c").vectors) == 10
        assert {h.id for h in store.search("c", vecs[20:21], 50, NO_FILTER, None)[0]} == {f"r{i}" for i in range(10)}
    finally:
        store.close()


def test_the_ivf_index_is_retrained_in_the_background_as_the_collection_grows():
    rng = np.random.default_rng(44)
    vecs = clustered(rng, 9000)
    index = VectorIndex(384, ann_threshold=2000, nprobe=8, retrain_growth=2.0)
    index.upsert(np.arange(2000), vecs[:2000])
    index.wait_for_build(60)
    assert index.mode == "ann" and index.ann_generation == 1
    index.upsert(np.arange(2000, 3900), vecs[2000:3900])
    index.wait_for_build(60)
    assert index.ann_generation == 1  # 1.95x: not yet
    index.upsert(np.arange(3900, 9000), vecs[3900:])
    index.wait_for_build(60)
    assert index.ann_generation == 2 and index._ann.nlist == int(np.sqrt(9000))
    queries = vecs[rng.integers(0, 9000, 30)] + 0.02 * unit(rng, 30)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, got = index.search(queries, 10)
    truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)]) >= 0.95
    restored = VectorIndex.restore(384, index.snapshot(), ann_threshold=2000, nprobe=8)
    assert restored.mode == "ann" and (restored.search(queries, 10)[1] == got).all()


def test_postgres_filtered_search_keeps_recall_and_lets_gin_answer_equalities(pg_url):
    from chutes_embeddings.store.pg_filters import pg_where
    from chutes_embeddings.store.pgvector import PgVectorStore

    clause, params = pg_where(parse_filter({"pct": 42, "$or": [{"lang": "en"}, {"tenth": 3}]}))
    assert "@>" in clause.as_string(None) and params[0].obj == {"pct": 42}
    rng = np.random.default_rng(45)
    n = 3000
    vecs = clustered(rng, n)
    store = PgVectorStore(pg_url, filter_exact_rows=100)  # 1%: exact over the rows; 10%, 50%: HNSW
    try:
        fill(store, "pgscale", vecs)
        queries = vecs[rng.integers(0, n, 10)] + 0.02 * unit(rng, 10)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        for flt, pred in SCALE_FILTERS[:3]:
            allowed = np.array([i for i in range(n) if pred(i)])
            truth = allowed[np.argsort(-(queries @ vecs[allowed].T), axis=1)[:, :10]]
            got = store.search("pgscale", queries, 10, parse_filter(flt), None)
            assert all(len(g) == 10 and all(pred(int(h.id[1:])) for h in g) for g in got)
            recall = np.mean([len({int(h.id[1:]) for h in g} & set(t)) / 10 for g, t in zip(got, truth)])
            assert recall >= 0.95, (flt, recall)
    finally:
        store.drop("pgscale")
        store.close()


def test_replaced_and_deleted_rows_leave_no_metadata_behind(tmp_path):
    store = open_store(tmp_path / "s")
    try:
        vecs = unit(np.random.default_rng(46), 6)
        store.ensure_collection("c", MODEL, vecs.shape[1])
        store.upsert("c", [Record(f"r{i}", "t", {"lang": "en", "i": i}, v) for i, v in enumerate(vecs)])
        store.delete("c", ["r0"], None)  # r5 moves into r0's row
        store.upsert("c", [Record("r3", "t", {"other": 1}, vecs[3])])
        assert store._collection("c").vectors.search_where(vecs[:1], 10, parse_filter({"lang": "en"})) is not None
        assert {h.id for h in store.search("c", vecs[:1], 10, parse_filter({"lang": "en"}), None)[0]} == {
            "r1", "r2", "r4", "r5"}
        assert [h.id for h in store.search("c", vecs[:1], 10, parse_filter({"i": 5}), None)[0]] == ["r5"]
        assert [h.id for h in store.search("c", vecs[:1], 10, parse_filter({"other": 1}), None)[0]] == ["r3"]
    finally:
        store.close()


def test_a_collection_with_too_many_keys_filters_in_sqlite(tmp_path):
    from chutes_embeddings.store.metadata_index import MAX_COLUMNS

    store = open_store(tmp_path / "s")
    try:
        n = MAX_COLUMNS + 2
        vecs = unit(np.random.default_rng(47), n)
        store.ensure_collection("c", MODEL, vecs.shape[1])
        store.upsert("c", [Record(f"r{i}", "t", {f"k{i}": 1}, v) for i, v in enumerate(vecs)])
        assert store._collection("c").vectors.search_where(vecs[:1], 10, parse_filter({"k7": 1})) is None
        assert [h.id for h in store.search("c", vecs[:1], 10, parse_filter({"k7": 1}), None)[0]] == ["r7"]
    finally:
        store.close()


def test_a_store_written_before_the_version_column_opens_and_keeps_up(tmp_path):
    import sqlite3

    vecs = unit(np.random.default_rng(48), 3)
    (tmp_path / "s").mkdir()
    db = sqlite3.connect(tmp_path / "s" / "store.sqlite3")
    db.executescript("""
        CREATE TABLE collections (name TEXT PRIMARY KEY, model TEXT NOT NULL, dimension INTEGER NOT NULL,
            version INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
        CREATE TABLE records (rid INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, id TEXT NOT NULL,
            text TEXT NOT NULL, metadata TEXT NOT NULL, vector BLOB NOT NULL, UNIQUE (collection, id));""")
    db.execute("INSERT INTO collections VALUES ('c', ?, 384, 7, 1.0)", (MODEL,))
    db.execute("INSERT INTO records (collection, id, text, metadata, vector) VALUES ('c', 'old', 't', '{\"a\": 1}', ?)",
               (vecs[0].tobytes(),))
    db.commit()
    db.close()
    store = open_store(tmp_path / "s")
    store.upsert("c", [Record("new", "t", {"a": 2}, vecs[1])])
    store.close()  # saves a snapshot
    store = open_store(tmp_path / "s")
    store.upsert("c", [Record("late", "t", {"a": 3}, vecs[2])])
    crash(store)
    store = open_store(tmp_path / "s")
    try:
        assert [store.search("c", vecs[i : i + 1], 1, NO_FILTER, None)[0][0].id for i in range(3)] == [
            "old",
            "new",
            "late",
        ]
        got = {h.id for h in store.search("c", vecs[:1], 3, parse_filter({"a": {"$gte": 2}}), None)[0]}
        assert got == {"new", "late"}
    finally:
        store.close()


def test_a_save_of_a_dropped_index_leaves_the_namesakes_snapshot_and_log_alone(tmp_path):
    """A snapshot save that was under way for a dropped collection must neither write its file nor
    prune the deletion log of a re-created collection of the same name (its deleted rows would
    come back after a restart)."""
    vecs = unit(np.random.default_rng(44), 40)
    store = open_store(tmp_path / "s")
    fill(store, "c", vecs)
    store.delete("c", ["r0", "r1"], None)
    old = store._collection("c")  # what a save running as the drop happens holds
    store.drop("c")
    fill(store, "c", vecs[:20])
    store.flush()  # the new collection's snapshot, then later deletions that only its log holds
    snapshot = (tmp_path / "s" / "indexes" / "c.npz").read_bytes()
    store.delete("c", [f"r{i}" for i in range(2, 12)], None)
    old.changes = 10**6  # the old index wants saving
    store._save(old)
    assert (tmp_path / "s" / "indexes" / "c.npz").read_bytes() == snapshot, "the dropped index overwrote the snapshot"
    logged = store._db().execute("SELECT count(*) FROM deletions WHERE collection = 'c'").fetchone()[0]
    assert logged == 10, "the dropped index's save pruned the new collection's deletion log"
    crash(store)
    store = open_store(tmp_path / "s")
    try:
        hits = {h.id for h in store.search("c", vecs[15:16], 50, NO_FILTER, None)[0]}
        assert hits == {f"r{i}" for i in (0, 1, *range(12, 20))}, "a deleted row came back, or a live one is gone"
    finally:
        store.close()


def test_a_filtered_hit_is_read_through_the_filter(tmp_path):
    """A row whose metadata changed after the allowed rows were chosen does not come back with
    metadata the filter excludes (the hits are read with the filter applied)."""
    vecs = unit(np.random.default_rng(45), 30)
    store = open_store(tmp_path / "s")
    try:
        store.ensure_collection("c", MODEL, vecs.shape[1])
        store.upsert("c", [Record(f"r{i}", f"t{i}", {"status": "active"}, vecs[i]) for i in range(30)])
        allowed = store._collection("c").vectors.search_where(vecs[:1], 5, parse_filter({"status": "active"}))
        assert allowed is not None
        rids = {int(r) for r in allowed[1].ravel() if r >= 0}
        store.upsert("c", [Record("r0", "t0", {"status": "gone"}, vecs[0])])  # lands between the two steps
        rows = rows_by_rid(store._db(), "c", rids, parse_filter({"status": "active"}))
        assert all(meta["status"] == "active" for _, _, meta, _ in rows.values()) and len(rows) == len(rids) - 1
    finally:
        store.close()


def test_vectors_of_another_dimension_are_refused_before_anything_is_written(tmp_path):
    """The store checks the dimension inside the write (a collection dropped and re-created at another
    dimension between the caller's check and its write): a 422, nothing committed, the index intact."""
    from chutes_embeddings.errors import InvalidInput

    store = open_store(tmp_path / "s")
    try:
        store.ensure_collection("c", MODEL, 8)
        store.upsert("c", [Record("a", "a", {}, unit(np.random.default_rng(1), 1)[0][:8] / 1.0)])
        with pytest.raises(InvalidInput) as err:
            store.upsert("c", [Record("b", "b", {}, np.ones(16, dtype=np.float32) / 4)])
        assert err.value.field == "vectors" and err.value.limit == 8
        assert [r.id for r in store.get("c", ["a", "b"])] == ["a"] and len(store._collection("c").vectors) == 1
    finally:
        store.close()


def test_an_index_that_missed_a_committed_write_is_loaded_again_on_next_use(tmp_path, monkeypatch):
    """The write is acknowledged by SQLite; the index that failed to take it is never used or saved
    again, and the next request gets the collection rebuilt with the write in it."""
    vecs = unit(np.random.default_rng(49), 20)
    store = open_store(tmp_path / "s")
    try:
        fill(store, "c", vecs[:10])
        broken = store._collection("c")

        def fail(*args, **kwargs):
            raise MemoryError("the index could not grow")

        monkeypatch.setattr(broken.vectors, "upsert", fail)
        with pytest.raises(MemoryError):
            store.upsert("c", [Record("late", "t", {}, vecs[10])])
        assert broken.dead and [r.id for r in store.get("c", ["late"])] == ["late"]
        store.flush()
        assert not (tmp_path / "s" / "indexes" / "c.npz").exists(), "the index with the gap was saved"
        assert store._collection("c") is not broken
        assert store.search("c", vecs[10:11], 1, NO_FILTER, None)[0][0].id == "late"
    finally:
        store.close()
