"""One contract, two stores: the embedded SQLite+FAISS store and Postgres+pgvector."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from chutes_embeddings.errors import Conflict, InvalidInput, NotFound
from chutes_embeddings.store import Chunk, Record, SparseVector, chunk_id, open_store
from chutes_embeddings.store.__main__ import copy_collection, read_jsonl, write_jsonl
from chutes_embeddings.store.embedded import EmbeddedStore
from chutes_embeddings.store.filters import parse_filter
from chutes_embeddings.store.pgvector import PgVectorStore
from tests.store_helpers import (
    BOTH_LEGS,
    DIM,
    FILTER_CASES,
    FILTER_METAS,
    MODEL,
    NO_FILTER,
    add,
    clustered,
    crash,
    unit,
)


@pytest.fixture(params=["embedded", "postgres"])
def store(request, tmp_path):
    """Each store as the service opens it: behind the facade that checks collection names."""
    if request.param == "embedded":
        s = open_store("", tmp_path)
    else:
        s = open_store(request.getfixturevalue("pg_url"), tmp_path, ef_search=200)
    yield s
    s.close()


@pytest.fixture
def name():
    return "c_" + uuid.uuid4().hex[:12]


def test_add_search_orders_by_cosine_like_brute_force(store, name):
    rng = np.random.default_rng(1)
    vecs = unit(rng, 60)
    assert add(store, name, vecs) == 60
    q = vecs[7:8] + 0.05 * unit(rng, 1)
    q /= np.linalg.norm(q)
    hits = store.search(name, q, 10, NO_FILTER, None)[0]
    expected = np.argsort(-(vecs @ q[0]))[:10]
    assert [h.id for h in hits] == [f"r{i}" for i in expected]
    assert [round(h.score, 4) for h in hits] == [round(float(vecs[i] @ q[0]), 4) for i in expected]
    assert hits[0].text == "text r7" and hits[0].metadata == {"i": 7}


def test_several_queries_at_once(store, name):
    vecs = unit(np.random.default_rng(2), 30)
    add(store, name, vecs)
    results = store.search(name, vecs[[3, 9, 21]], 1, NO_FILTER, None)
    assert [r[0].id for r in results] == ["r3", "r9", "r21"]


def test_upsert_replaces_by_id(store, name):
    rng = np.random.default_rng(3)
    add(store, name, unit(rng, 5))
    new = unit(rng, 1)[0]
    total = store.upsert(name, [Record("r2", "replaced", {"v": 2}, new)])
    assert total == 5
    [rec] = store.get(name, ["r2"])
    assert rec.text == "replaced" and rec.metadata == {"v": 2} and np.allclose(rec.vector, new)
    assert store.search(name, new[None], 1, NO_FILTER, None)[0][0].id == "r2"


def test_same_id_twice_in_one_upsert_keeps_the_last(store, name):
    store.ensure_collection(name, MODEL, DIM)
    v = unit(np.random.default_rng(4), 2)
    assert store.upsert(name, [Record("x", "first", {}, v[0]), Record("x", "second", {}, v[1])]) == 1
    assert store.get(name, ["x"])[0].text == "second"
    assert len(store.search(name, v[1:2], 5, NO_FILTER, None)[0]) == 1


def test_get_keeps_order_and_skips_missing(store, name):
    add(store, name, unit(np.random.default_rng(5), 4))
    assert [r.id for r in store.get(name, ["r3", "nope", "r0"])] == ["r3", "r0"]


def test_delete_by_ids_and_by_filter(store, name):
    add(store, name, unit(np.random.default_rng(6), 10), metas=[{"even": i % 2 == 0} for i in range(10)])
    assert store.delete(name, ["r1", "r3", "missing"], None) == 2
    assert store.delete(name, None, parse_filter({"even": True})) == 5
    assert store.describe(name).size == 3
    remaining = {h.id for h in store.search(name, unit(np.random.default_rng(0), 1), 10, NO_FILTER, None)[0]}
    assert remaining == {"r5", "r7", "r9"}


def test_drop_and_not_found(store, name):
    add(store, name, unit(np.random.default_rng(7), 3))
    store.drop(name)
    with pytest.raises(NotFound):
        store.describe(name)
    with pytest.raises(NotFound):
        store.search(name, unit(np.random.default_rng(0), 1), 3, NO_FILTER, None)
    with pytest.raises(NotFound):
        store.drop(name)
    assert name not in [c.name for c in store.collections()]


def test_collections_listing(store, name):
    add(store, name, unit(np.random.default_rng(8), 4))
    info = {c.name: c for c in store.collections()}[name]
    assert (info.size, info.dimension, info.model) == (4, DIM, MODEL)
    assert 1 <= len(info.sample_texts) <= 3 and all(t.startswith("text r") for t in info.sample_texts)


def test_model_or_dimension_mismatch_is_a_conflict(store, name):
    store.ensure_collection(name, MODEL, DIM)
    with pytest.raises(Conflict) as err:
        store.ensure_collection(name, "other-model", DIM)
    assert "test-model" in err.value.message and err.value.status == 409
    with pytest.raises(Conflict):
        store.ensure_collection(name, MODEL, 768)


BAD_NAMES = ["", "a" * 65, "../etc/passwd", "has space", "semi;colon", "ünï", "a/b/c", "/a", "a/", "ns/" + "a" * 65,
             "a//b", "a/../b"]


def _every_named_verb(vectors):
    """Each verb that takes a collection name, as ``(verb, call(store, name))``."""
    return [
        ("ensure_collection", lambda s, n: s.ensure_collection(n, MODEL, DIM, BOTH_LEGS)),
        ("describe", lambda s, n: s.describe(n)),
        ("model_of", lambda s, n: s.model_of(n)),
        ("upsert", lambda s, n: s.upsert(n, [Record("x", "t", {}, vectors[0], SparseVector((1,), (1.0,)))])),
        ("search", lambda s, n: s.search(n, vectors[:1], 3, NO_FILTER, None)),
        ("get", lambda s, n: s.get(n, ["x"])),
        ("find", lambda s, n: s.find(n, NO_FILTER, 3)),
        ("delete by ids", lambda s, n: s.delete(n, ["x"], None)),
        ("delete by filter", lambda s, n: s.delete(n, None, parse_filter({"i": 1}))),
        ("export", lambda s, n: s.export(n)),
        ("legs", lambda s, n: s.legs(n)),
        ("search_lexical", lambda s, n: s.search_lexical(n, ["x"], 3, NO_FILTER)),
        ("search_sparse", lambda s, n: s.search_sparse(n, SparseVector((1,), (1.0,)), 3, NO_FILTER)),
        ("drop", lambda s, n: s.drop(n)),
    ]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_collection_names(store, bad):
    with pytest.raises(InvalidInput) as err:
        store.ensure_collection(bad, MODEL, DIM)
    assert err.value.field == "collection"


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_every_verb_refuses_a_bad_name_before_the_store_sees_it(store, name, bad):
    """``drop`` and ``delete`` included: a 4xx ``InvalidInput`` naming the field, and nothing touched."""
    vectors = unit(np.random.default_rng(16), 2)
    add(store, name, vectors)
    before = {c.name: c.size for c in store.collections()}
    for verb, call in _every_named_verb(vectors):
        with pytest.raises(InvalidInput) as err:
            call(store, bad)
        assert (err.value.status, err.value.field) == (422, "collection"), verb
    after = {c.name: c.size for c in store.collections()}
    assert after[name] == 2 and bad not in after and before[name] == 2


def test_a_name_is_checked_once_at_the_facade_and_trusted_behind_it(store, name, monkeypatch):
    """One check per call, wherever it happens; the implementation resolves the name without another."""
    import chutes_embeddings.store as store_package

    checked: list[str] = []

    class CountingPattern:
        def __init__(self, pattern):
            self.pattern = pattern

        def match(self, text):
            checked.append(text)
            return self.pattern.match(text)

    monkeypatch.setattr(store_package, "COLLECTION_NAME", CountingPattern(store_package.COLLECTION_NAME))
    vectors = unit(np.random.default_rng(17), 2)
    for verb, call in _every_named_verb(vectors):
        checked.clear()
        call(store, name)
        assert checked == [name], verb
    checked.clear()
    store.collections()
    assert checked == []


def test_the_facade_turns_an_unknown_name_into_not_found(store, name):
    """A valid name the store does not hold: the implementation's resolution answers 404."""
    vectors = unit(np.random.default_rng(18), 1)
    for verb, call in _every_named_verb(vectors):
        if verb in ("ensure_collection", "export"):  # ensure creates it; export fails when iterated
            continue
        with pytest.raises(NotFound) as err:
            call(store, name)
        assert (err.value.status, err.value.field) == (404, "collection"), verb
    with pytest.raises(NotFound):
        list(store.export(name))


def test_the_name_rule_imports_with_the_standard_library_only():
    """``schemas.py`` (the chute file, SDK only) can take the one pattern from ``store.names``."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('numpy', 'faiss', 'psycopg', 'torch', 'loguru', 'pydantic'):\n"
            "            raise ImportError('blocked heavy import: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from chutes_embeddings.store.names import COLLECTION_NAME_PATTERN\n"
            "from chutes_embeddings.store import check_collection_name\n"
            "print(COLLECTION_NAME_PATTERN, check_collection_name('ok_name-1'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [r"^(?:[A-Za-z0-9_-]{1,64}/)?[A-Za-z0-9_-]{1,64}$", "ok_name-1"]


def test_the_request_schema_accepts_exactly_the_names_the_store_accepts():
    import pydantic

    import schemas
    from chutes_embeddings.store import COLLECTION_NAME_PATTERN, check_collection_name

    adapter = pydantic.TypeAdapter(schemas.CollectionName)
    for candidate in [*BAD_NAMES, "ok", "a" * 64, "A-b_9", "acme/docs", "a" * 64 + "/" + "b" * 64]:
        try:
            check_collection_name(candidate)
            store_accepts = True
        except InvalidInput:
            store_accepts = False
        try:
            adapter.validate_python(candidate)
            schema_accepts = True
        except pydantic.ValidationError:
            schema_accepts = False
        assert schema_accepts == store_accepts, (candidate, COLLECTION_NAME_PATTERN)


def test_a_namespaced_name_is_a_collection_of_its_own_for_every_verb(store, name):
    """``namespace/collection`` (a tenant's collection, ``store.tenancy``) is one more valid name:
    apart from ``collection`` and from the same name in another namespace, listed by its full name."""
    vectors = unit(np.random.default_rng(19), 3)
    mine, theirs = f"ns_{name}/{name}", f"other_{name}/{name}"  # Postgres is shared by the session: names of its own
    add(store, name, vectors[:1])
    add(store, mine, vectors[:2])
    add(store, theirs, vectors[:3])
    sizes = {c.name: c.size for c in store.collections()}
    assert (sizes[name], sizes[mine], sizes[theirs]) == (1, 2, 3)
    assert [h.id for h in store.search(mine, vectors[1:2], 5, NO_FILTER, None)[0]] == ["r1", "r0"]
    assert [r.id for r in store.get(mine, ["r0", "r2"])] == ["r0"]
    assert store.model_of(mine) == (MODEL, DIM) and store.describe(mine).name == mine
    assert store.delete(mine, ["r0"], None) == 1 and len(list(store.export(mine))) == 1
    store.drop(mine)
    with pytest.raises(NotFound) as err:
        store.describe(mine)
    assert mine in err.value.message
    assert {c.name: c.size for c in store.collections() if c.name in (name, mine, theirs)} == {name: 1, theirs: 3}
    store.drop(theirs)
    store.drop(name)


def test_the_embedded_snapshot_of_a_namespaced_collection_is_one_file_beside_the_others(tmp_path):
    """The ``/`` of a namespaced name never becomes a folder: the snapshot file flattens it, and
    the store reopens from that file."""
    vectors = unit(np.random.default_rng(20), 5)
    store = open_store("", tmp_path)
    add(store, "acme/docs", vectors)
    add(store, "docs", vectors[:2])
    store.close()  # saves every snapshot
    indexes = tmp_path / "store" / "indexes"
    assert sorted(p.name for p in indexes.iterdir()) == ["acme.docs.npz", "docs.npz"]
    store = open_store("", tmp_path)
    try:
        assert [h.id for h in store.search("acme/docs", vectors[3:4], 1, NO_FILTER, None)[0]] == ["r3"]
        assert store.describe("acme/docs").size == 5 and store.describe("docs").size == 2
    finally:
        store.close()


@pytest.mark.parametrize("flt,expected", FILTER_CASES, ids=[str(f) for f, _ in FILTER_CASES])
def test_filters_mean_the_same_on_both_stores(store, name, flt, expected):
    vecs = unit(np.random.default_rng(9), len(FILTER_METAS))
    add(store, name, vecs, metas=FILTER_METAS)
    hits = store.search(name, vecs[:1], 10, parse_filter(flt), None)[0]
    assert {int(h.id[1:]) for h in hits} == expected


def test_selective_filter_still_fills_top_k(store, name):
    rng = np.random.default_rng(10)
    vecs = clustered(rng, 2000)
    add(store, name, vecs, metas=[{"bucket": i % 100} for i in range(2000)])
    hits = store.search(name, vecs[:1], 10, parse_filter({"bucket": 42}), None)[0]
    assert len(hits) == 10 and all(h.metadata["bucket"] == 42 for h in hits)


def test_threshold(store, name):
    vecs = unit(np.random.default_rng(11), 20)
    add(store, name, vecs)
    hits = store.search(name, vecs[:1], 20, NO_FILTER, 0.5)[0]
    assert [h.id for h in hits] == ["r0"] and hits[0].score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("bad,field", [({"a": {"$regex": "x"}}, "filter_metadata.a.$regex"),
                                       ({"$or": [1]}, "filter_metadata.$or"),
                                       ({"a": {"$in": []}}, "filter_metadata.a.$in"),
                                       ({"a": {"$gt": True}}, "filter_metadata.a.$gt"),
                                       ({"a": {"x": 1}}, "filter_metadata.a.x"),
                                       ({"a": [1, 2]}, "filter_metadata.a"),
                                       ({"$not": []}, "filter_metadata.$not"),
                                       ({"$and": []}, "filter_metadata.$and"),
                                       ({"$xor": [{"a": 1}]}, "filter_metadata.$xor"),
                                       ({"$or": [{"a": {"$gt": None}}]}, "filter_metadata.$or[0].a.$gt")])
def test_bad_filters_name_the_key(bad, field):
    with pytest.raises(InvalidInput) as err:
        parse_filter(bad)
    assert err.value.field == field


def test_ten_thousand_records_in_one_collection(store, name):
    rng = np.random.default_rng(12)
    vecs = clustered(rng, 10_000)
    store.ensure_collection(name, MODEL, DIM)
    for start in range(0, 10_000, 1000):
        total = store.upsert(
            name, [Record(f"r{i}", f"text {i}", {"i": i}, vecs[i]) for i in range(start, start + 1000)]
        )
    assert total == 10_000 == store.describe(name).size
    queries = vecs[rng.integers(0, 10_000, 20)] + 0.01 * unit(rng, 20)
    got = store.search(name, queries, 10, NO_FILTER, None)
    exact = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
    recall = np.mean([len({h.id for h in g} & {f"r{i}" for i in e}) / 10 for g, e in zip(got, exact)])
    assert recall == 1.0 if store.kind == "embedded" else recall >= 0.95
    assert sum(1 for _ in store.export(name)) == 10_000


def test_copy_and_file_round_trip_between_stores(tmp_path, pg_url, name):
    rng = np.random.default_rng(13)
    vecs = unit(rng, 25)
    embedded = EmbeddedStore(tmp_path / "a")
    pg = PgVectorStore(pg_url)
    try:
        add(embedded, name, vecs)
        assert copy_collection(embedded, pg, name) == 25
        assert write_jsonl(pg, name, tmp_path / "dump.jsonl") == 25
        back = EmbeddedStore(tmp_path / "b")
        assert read_jsonl(back, tmp_path / "dump.jsonl", "restored") == 25
        original = {r.id: r for r in embedded.export(name)}
        for rec in back.export("restored"):
            assert rec.text == original[rec.id].text and rec.metadata == original[rec.id].metadata
            assert np.allclose(rec.vector, original[rec.id].vector)
        # legs and sparse vectors travel too
        add_texts(embedded, name + "_legs", ["north wind", "south sea"], sparse=[{3: 0.5}, {4: 1.5}])
        copy_collection(embedded, pg, name + "_legs")
        write_jsonl(pg, name + "_legs", tmp_path / "legs.jsonl")
        read_jsonl(back, tmp_path / "legs.jsonl", "legs_back")
        for store in (pg, back):
            copied = name + "_legs" if store is pg else "legs_back"
            assert store.legs(copied) == BOTH_LEGS
            assert {r.id: r.sparse for r in store.export(copied)} == {"r0": sparse_vector({3: 0.5}),
                                                                     "r1": sparse_vector({4: 1.5})}
            assert [h.id for h in store.search_lexical(copied, TERMS("south"), 3, NO_FILTER)] == ["r1"]
        # documents' chunks travel as chunks
        embedded.upsert(name, _chunks("doc", vecs[:3]), ["doc"])
        copy_collection(embedded, pg, name)
        write_jsonl(pg, name, tmp_path / "docs.jsonl")
        read_jsonl(back, tmp_path / "docs.jsonl", "docs_back")
        for store, copied in ((pg, name), (back, "docs_back")):
            assert [r.chunk for r in store.get_documents(copied, ["doc"])] == [Chunk("doc", i, 10 * i, 10 * i + 10)
                                                                               for i in range(3)]
        back.close()
    finally:
        embedded.close()
        pg.close()


def test_embedded_store_refuses_a_second_process_on_the_same_directory(tmp_path):
    import subprocess
    import sys

    first = EmbeddedStore(tmp_path / "shared")
    try:
        code = ("from chutes_embeddings.store.embedded import EmbeddedStore\n"
                f"EmbeddedStore(__import__('pathlib').Path({str(tmp_path / 'shared')!r}))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode != 0 and "in use by another process" in result.stderr
    finally:
        first.close()


def test_embedded_index_is_rebuilt_when_missing_or_stale(tmp_path, name):
    rng = np.random.default_rng(14)
    vecs = unit(rng, 40)
    s = EmbeddedStore(tmp_path / "s")
    add(s, name, vecs)
    s.close()  # saves the index
    index_file = tmp_path / "s" / "indexes" / f"{name}.npz"
    assert index_file.exists()
    # stale: a write the saved index does not reflect (the process died before saving)
    s = EmbeddedStore(tmp_path / "s")
    s.upsert(name, [Record("late", "late", {}, vecs[0] * -1)])
    crash(s)  # forget the in-memory index without saving
    s = EmbeddedStore(tmp_path / "s")
    assert s.search(name, -vecs[:1], 1, NO_FILTER, None)[0][0].id == "late"
    s.close()
    index_file.unlink()
    s = EmbeddedStore(tmp_path / "s")
    assert s.search(name, vecs[5:6], 1, NO_FILTER, None)[0][0].id == "r5"
    s.close()


def test_copy_command_line(tmp_path, pg_url, name):
    import subprocess
    import sys

    vecs = unit(np.random.default_rng(15), 7)
    s = EmbeddedStore(tmp_path / "store")
    add(s, name, vecs)
    s.close()
    result = subprocess.run([sys.executable, "-m", "chutes_embeddings.store", "copy", "--from", "", "--to", pg_url,
                             "--collection", name, "--data-dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{name}: 7 records copied" in result.stdout
    pg = PgVectorStore(pg_url)
    try:
        assert pg.describe(name).size == 7
    finally:
        pg.close()


# --- limits hold at the limit, on both stores ---------------------------------------------------
from chutes_embeddings.store.filters import MAX_FILTER_KEYS, MAX_IN_VALUES  # noqa: E402
from chutes_embeddings.store.metadata import MAX_METADATA_BYTES, MAX_METADATA_KEYS  # noqa: E402


@pytest.mark.parametrize("op", ["$in", "$nin"])
def test_in_and_nin_work_at_their_limit_and_refuse_one_more(store, name, op):
    vecs = unit(np.random.default_rng(20), 12)
    add(store, name, vecs, metas=[{"n": i, "s": f"v{i}"} for i in range(12)])
    numbers = list(range(0, 2 * MAX_IN_VALUES, 2))  # exactly the limit: even n match
    assert len(numbers) == MAX_IN_VALUES
    where = parse_filter({"n": {op: numbers}})
    found = {h.id for h in store.search(name, vecs[:1], 12, where, None)[0]}
    evens = {f"r{i}" for i in range(0, 12, 2)}
    assert found == (evens if op == "$in" else {f"r{i}" for i in range(12)} - evens)
    mixed = parse_filter({"s": {op: [f"v{i}" for i in range(3)] + [True, None, 1.5] + ["x"] * (MAX_IN_VALUES - 6)}})
    assert len({h.id for h in store.search(name, vecs[:1], 12, mixed, None)[0]}) == (3 if op == "$in" else 9)
    assert store.delete(name, None, where) == (6 if op == "$in" else 6)
    with pytest.raises(InvalidInput) as err:
        parse_filter({"n": {op: list(range(MAX_IN_VALUES + 1))}})
    assert err.value.limit == MAX_IN_VALUES and err.value.field == f"filter_metadata.n.{op}"


def test_filters_work_with_the_most_keys_and_refuse_one_more(store, name):
    vecs = unit(np.random.default_rng(21), 4)
    meta = {f"k{j}": j for j in range(MAX_FILTER_KEYS)}
    add(store, name, vecs, metas=[meta, {**meta, "k0": -1}, {}, meta])
    # every key with two operators: the largest filter that parses
    flt = {f"k{j}": {"$gte": j, "$lte": j} for j in range(MAX_FILTER_KEYS)}
    hits = store.search(name, vecs[:1], 4, parse_filter(flt), None)[0]
    assert {h.id for h in hits} == {"r0", "r3"}
    assert store.delete(name, None, parse_filter(flt)) == 2
    with pytest.raises(InvalidInput) as err:
        parse_filter({f"k{j}": j for j in range(MAX_FILTER_KEYS + 1)})
    assert err.value.limit == MAX_FILTER_KEYS


@pytest.mark.parametrize("flt", [{"n": 18446744073709551616}, {"n": {"$gt": -(2**64)}}, {"n": {"$in": [2**63]}}])
def test_filter_numbers_outside_int64_are_refused_naming_the_field(flt):
    with pytest.raises(InvalidInput) as err:
        parse_filter(flt)
    assert err.value.field.startswith("filter_metadata.n") and err.value.status == 422


def test_metadata_limits_hold_at_the_limit(store, name):
    vecs = unit(np.random.default_rng(22), 3)
    store.ensure_collection(name, MODEL, DIM)
    biggest = {"blob": "x" * (MAX_METADATA_BYTES - len('{"blob":""}'))}
    most_keys = {f"k{j}": j for j in range(MAX_METADATA_KEYS)}
    assert store.upsert(name, [Record("big", "t", biggest, vecs[0]), Record("keys", "t", most_keys, vecs[1])]) == 2
    assert store.get(name, ["big"])[0].metadata == biggest
    too_big = {"blob": biggest["blob"] + "x"}
    for bad, limit in [(too_big, MAX_METADATA_BYTES), ({**most_keys, "one_more": 1}, MAX_METADATA_KEYS)]:
        with pytest.raises(InvalidInput) as err:
            store.upsert(name, [Record("bad", "t", bad, vecs[2])])
        assert err.value.limit == limit
    for bad in [{"x": float("nan")}, {"x": [1, float("inf")]}, {"x": {"y": 2**64}}]:
        with pytest.raises(InvalidInput):
            store.upsert(name, [Record("bad", "t", bad, vecs[2])])
    assert store.get(name, ["bad"]) == [] and store.describe(name).size == 2


def _plant_bad_metadata(store, name, rec_id: str) -> None:
    """Write what the metadata rules now refuse straight into the store, as an older version or a
    hand-made edit could have."""
    store = store.implementation
    if isinstance(store, EmbeddedStore):
        db = store._db()
        db.execute("UPDATE records SET metadata = ? WHERE collection = ? AND id = ?",
                   ('{"lang": "en", "x": NaN, "y": [Infinity, 1], "z": 99999999999999999999999}', name, rec_id))
    else:
        from chutes_embeddings.store.pgvector import table_name

        with store._tx() as conn:  # jsonb takes neither NaN nor Infinity, but numbers past a float
            conn.execute(f'UPDATE {table_name(name)} SET metadata = %s::jsonb WHERE id = %s',
                         ('{"lang": "en", "x": 1e400, "y": [1e400, 1], "z": 99999999999999999999999}', rec_id))


def test_a_stored_bad_value_never_breaks_reads(store, name):
    rng = np.random.default_rng(23)
    vecs = unit(rng, 5)
    add(store, name, vecs, metas=[{"lang": "en", "i": i} for i in range(5)])
    _plant_bad_metadata(store, name, "r2")
    repaired = {"lang": "en", "x": None, "y": [None, 1], "z": None}
    assert store.get(name, ["r2"])[0].metadata == repaired
    hits = store.search(name, vecs[2:3], 5, NO_FILTER, None)[0]
    assert hits[0].id == "r2" and hits[0].metadata == repaired
    assert {h.id for h in store.search(name, vecs[2:3], 5, parse_filter({"lang": "en"}), None)[0]} >= {"r0", "r1"}
    assert [r.metadata for r in store.export(name) if r.id == "r2"] == [repaired]
    assert store.delete(name, None, parse_filter({"i": {"$in": [0, 1]}})) == 2
    assert store.describe(name).size == 3


def test_embedded_store_reads_rows_whose_metadata_is_not_json(tmp_path, name):
    store = EmbeddedStore(tmp_path / "store")
    try:
        vecs = unit(np.random.default_rng(24), 3)
        add(store, name, vecs, metas=[{"lang": "en"}] * 3)
        store._db().execute("UPDATE records SET metadata = 'not json {' WHERE id = 'r1'")
        assert store.get(name, ["r1"])[0].metadata == {}
        assert {h.id for h in store.search(name, vecs[:1], 3, parse_filter({"lang": "en"}), None)[0]} == {"r0", "r2"}
        assert {h.id for h in store.search(name, vecs[:1], 3, parse_filter({"lang": {"$ne": "en"}}), None)[0]} == {"r1"}
    finally:
        store.close()


# --- callers' vectors, find by filter, deep filters (issue 11) ------------------------------------
def test_collections_of_callers_vectors_keep_their_model_and_dimension(store, name):
    rng = np.random.default_rng(30)
    small = unit(rng, 4, dim=6)
    store.ensure_collection(name, "fake-6", 6)
    store.upsert(name, [Record(f"v{i}", f"t{i}", {"i": i}, v) for i, v in enumerate(small)])
    assert store.model_of(name) == ("fake-6", 6)
    assert store.search(name, small[2:3], 1, NO_FILTER, None)[0][0].id == "v2"
    for model, dim in (("fake-6", 7), ("other", 6)):
        with pytest.raises(Conflict):
            store.ensure_collection(name, model, dim)
    with pytest.raises(NotFound):
        store.model_of("c_" + uuid.uuid4().hex[:12])


def test_find_returns_what_a_filter_matches_oldest_first_up_to_the_limit(store, name):
    vecs = unit(np.random.default_rng(31), 6)
    add(store, name, vecs, metas=[{"even": i % 2 == 0, "i": i} for i in range(6)])
    found = store.find(name, parse_filter({"even": True}), 10)
    assert [r.id for r in found] == ["r0", "r2", "r4"] and found[0].vector.shape == (DIM,)
    assert [r.id for r in store.find(name, NO_FILTER, 2)] == ["r0", "r1"]
    assert [r.metadata["i"] for r in store.find(name, parse_filter({"$not": {"i": {"$lt": 4}}}), 10)] == [4, 5]


def test_filters_nest_to_their_depth_limit():
    from chutes_embeddings.store.filters import MAX_FILTER_DEPTH

    def nested(depth):
        flt = {"k": 1}
        for _ in range(depth):
            flt = {"$and": [flt]}
        return flt

    parse_filter(nested(MAX_FILTER_DEPTH))
    with pytest.raises(InvalidInput) as err:
        parse_filter(nested(MAX_FILTER_DEPTH + 1))
    assert err.value.limit == MAX_FILTER_DEPTH


# --- the lexical and sparse legs (issue 22) -----------------------------------------------------
from chutes_embeddings.lexical.analyzer import analyzer  # noqa: E402
from chutes_embeddings.store import Legs  # noqa: E402
from tests.store_helpers import LEXICAL, add_texts, sparse_vector  # noqa: E402

TERMS = analyzer("english").terms


def _lexical_ids(store, name, query, top_k=10, where=NO_FILTER):
    return [h.id for h in store.search_lexical(name, TERMS(query), top_k, where)]


def test_lexical_search_finds_a_record_by_a_rare_term(store, name):
    texts = [f"an ordinary sentence about common things number {i}" for i in range(30)]
    texts[17] = "an ordinary sentence about a xylophone"
    add_texts(store, name, texts)
    hits = store.search_lexical(name, TERMS("Xylophones?"), 5, NO_FILTER)
    assert [h.id for h in hits] == ["r17"] and hits[0].score > 0
    assert hits[0].text == texts[17] and hits[0].metadata == {"i": 17}
    assert store.search_lexical(name, [], 5, NO_FILTER) == []  # the service answers "only stop words"
    assert _lexical_ids(store, name, "absent words entirely") == []


def test_upsert_replaces_a_records_terms(store, name):
    add_texts(store, name, ["the zebra grazes", "a lion sleeps", "an eagle flies"])
    assert _lexical_ids(store, name, "zebra") == ["r0"]
    vector = unit(np.random.default_rng(40), 1)[0]
    store.upsert(name, [Record("r0", "a giraffe eats leaves", {"i": 0}, vector, sparse_vector({5: 1.0}))])
    assert _lexical_ids(store, name, "zebra") == []
    assert _lexical_ids(store, name, "giraffe") == ["r0"]
    assert [h.id for h in store.search_sparse(name, sparse_vector({5: 1.0, 0: 1.0}), 5, NO_FILTER)] == ["r0"]
    assert store.describe(name).size == 3


def test_delete_and_drop_take_records_out_of_both_legs(store, name):
    texts = ["red apple", "red cherry", "green apple", "green pear", "red plum"]
    add_texts(store, name, texts, metas=[{"red": t.startswith("red")} for t in texts])
    assert store.delete(name, ["r0"], None) == 1
    assert store.delete(name, None, parse_filter({"red": False})) == 2
    assert sorted(_lexical_ids(store, name, "red apple green pear")) == ["r1", "r4"]
    everything = sparse_vector({i: 1.0 for i in range(5)})
    assert sorted(h.id for h in store.search_sparse(name, everything, 10, NO_FILTER)) == ["r1", "r4"]
    store.drop(name)
    with pytest.raises(NotFound):
        store.search_lexical(name, TERMS("red"), 5, NO_FILTER)
    with pytest.raises(NotFound):
        store.search_sparse(name, everything, 5, NO_FILTER)
    add_texts(store, name, ["blue sky"])  # a namesake starts empty: nothing of the dropped one is left
    assert _lexical_ids(store, name, "red apple green blue") == ["r0"]
    assert [h.id for h in store.search_sparse(name, everything, 10, NO_FILTER)] == ["r0"]


def test_filters_apply_inside_the_lexical_and_sparse_legs(store, name):
    """Every filter case means the same in both legs as in dense search, and a selective filter
    still fills ``top_k`` from the rows it allows (the filter runs inside the leg, not after it)."""
    _filters_inside_the_legs(store, name)


def test_filters_inside_the_legs_on_the_embedded_stores_metadata_columns(tmp_path, name):
    """The same, with the embedded store deciding filters on its in-memory metadata columns."""
    store = EmbeddedStore(tmp_path / "s", filter_memory_min_rows=1)
    try:
        _filters_inside_the_legs(store, name)
    finally:
        store.close()


def _filters_inside_the_legs(store, name):
    texts = [f"shared word plus {'rare' if i == 0 else 'plain'} {i}" for i in range(len(FILTER_METAS))]
    add_texts(store, name, texts, metas=FILTER_METAS, sparse=[{1: 1.0 + i, 2: 0.5} for i in range(len(texts))])
    query = sparse_vector({1: 1.0})
    for flt, expected in FILTER_CASES:
        where = parse_filter(flt)
        want = {f"r{i}" for i in expected}
        assert set(_lexical_ids(store, name, "shared rare", 50, where)) == want, flt
        assert {h.id for h in store.search_sparse(name, query, 50, where)} == want, flt
    buckets = name + "_b"  # the best rows by score are bucket 9's: the filter must reach past them
    add_texts(store, buckets, [f"shared word {'word ' * (i % 10)}" for i in range(40)],
              metas=[{"bucket": i % 10} for i in range(40)], sparse=[{1: 1.0 + i % 10} for i in range(40)])
    bucket = parse_filter({"bucket": 3})
    for hits in (store.search_lexical(buckets, TERMS("word"), 3, bucket),
                 store.search_sparse(buckets, query, 3, bucket)):
        assert len(hits) == 3 and all(h.metadata == {"bucket": 3} for h in hits)
    store.drop(buckets)


def test_bm25_scores_equal_bm25s_on_a_hand_made_corpus(store, name):
    """FTS5's bm25() (and the Postgres leg, which scores as it does) against ``bm25s``
    (robertson, k1 = 1.2, b = 0.75) on the same terms. bm25s's robertson leaves the (k1 + 1) factor
    out of the term-frequency part, which only scales every score: compare with it put back."""
    import bm25s

    corpus = ["The cat sat on the mat", "Dogs chase cats in the garden garden garden",
              "A bird sings in the morning", "Cats and dogs are friends", "The garden is green in spring",
              "Morning coffee with a cat", "Fish swim in the river", "Quantum physics of small particles",
              "The river flows past the old mill", "Green tea in the morning sun",
              "garden " * 300 + "wall"]  # a tf over 256, the positions Postgres keeps a lexeme
    add_texts(store, name, corpus)
    tokens = [TERMS(t) for t in corpus]
    reference = bm25s.BM25(method="robertson", k1=1.2, b=0.75)
    reference.index(tokens, show_progress=False)
    for query in ["garden cat", "river mill", "quantum", "dogs friends morning"]:
        terms = TERMS(query)
        expected = 2.2 * reference.get_scores(terms)
        hits = store.search_lexical(name, terms, 10, NO_FILTER)
        assert {h.id for h in hits} == {f"r{i}" for i in np.flatnonzero(expected > 0)}, query
        for hit in hits:
            assert hit.score == pytest.approx(float(expected[int(hit.id[1:])]), abs=1e-4), (query, hit.id)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_lexical_search_scores_bm25_through_writes_replacements_and_deletes(store, name):
    """Many writes (the embedded index's segments and merges, replaced and deleted records): the
    hits are every record holding a query term, with FTS5's bm25() computed here by hand."""
    import math

    rng = np.random.default_rng(46)
    words = [f"w{i}" for i in range(60)]
    store.ensure_collection(name, MODEL, DIM, LEXICAL)
    vector = unit(rng, 1)[0]
    truth: dict[str, list[str]] = {}
    for batch in range(14):
        records = []
        for _ in range(int(rng.integers(1, 30))):
            rec_id = f"r{int(rng.integers(0, 120))}"
            text = " ".join(rng.choice(words, int(rng.integers(0, 12)), p=np.linspace(2, 0.2, 60) / 66))
            truth[rec_id] = TERMS(text)
            records.append(Record(rec_id, text, {}, vector))
        store.upsert(name, records)
        if batch % 4 == 3:
            gone = list(truth)[::6]
            store.delete(name, gone, None)
            for r in gone:
                truth.pop(r)
    n_rows = len(truth)
    avgdl = sum(map(len, truth.values())) / n_rows
    for query in (["w0", "w5", "w40"], ["w59"], ["w1", "w2"], ["w3", "nothing"]):
        scores = {}
        for rec_id, terms in truth.items():
            score = 0.0
            for term in query:
                tf, df = terms.count(term), sum(term in t for t in truth.values())
                idf = max(math.log((n_rows - df + 0.5) / (df + 0.5)), 0.0) or 1e-6
                score += idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * len(terms) / avgdl))
            if any(term in terms for term in query):
                scores[rec_id] = score
        hits = store.search_lexical(name, query, 500, NO_FILTER)
        assert {h.id: h.score for h in hits} == pytest.approx(scores, abs=1e-9), query
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    store.delete(name, list(truth), None)  # every record gone: no hits (and no division by zero rows)
    assert store.search_lexical(name, ["w0", "w1"], 10, NO_FILTER) == []


def test_an_embedded_store_with_fts5_lexical_tables_is_migrated_on_open(tmp_path, name):
    """A store from before the in-memory lexical index kept an FTS5 table per lexical collection:
    opening it drops them and the index is built from the texts."""
    import sqlite3

    store = EmbeddedStore(tmp_path)
    add_texts(store, name, ["alpha beta", "gamma delta", "delta epsilon"], legs=LEXICAL)
    store.close()
    db = sqlite3.connect(tmp_path / "store.sqlite3")
    db.execute("CREATE VIRTUAL TABLE lex_0123456789abcdef01234567 USING fts5(terms, tokenize='ascii')")
    db.commit()
    db.close()
    for snapshot in (tmp_path / "indexes").iterdir():
        snapshot.unlink()  # an older version's snapshot had no lexical index
    store = EmbeddedStore(tmp_path)
    try:
        assert sorted(_lexical_ids(store, name, "delta")) == ["r1", "r2"]
        tables = {r[0] for r in sqlite3.connect(tmp_path / "store.sqlite3").execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'lex%'")}
        assert tables == set()
    finally:
        store.close()


def test_sparse_search_orders_by_dot_product_through_writes_and_deletes(store, name):
    """Many writes (new segments, merges, replaced and deleted records): the hits are always the
    brute-force dot-product top ``k``, with its scores."""
    rng = np.random.default_rng(41)
    store.ensure_collection(name, MODEL, DIM, Legs(sparse_model="test-sparse"))
    vectors = unit(rng, 1)
    truth: dict[str, dict[int, float]] = {}
    for batch in range(12):
        records = []
        for _ in range(int(rng.integers(1, 40))):
            rec_id = f"r{int(rng.integers(0, 150))}"
            ids = rng.choice(500, size=int(rng.integers(1, 30)), replace=False)
            weights = rng.uniform(0.1, 3.0, len(ids)).astype(np.float32)  # stored as float32
            truth[rec_id] = {int(i): float(w) for i, w in zip(ids, weights)}
            records.append(Record(rec_id, "t", {}, vectors[0], sparse_vector(truth[rec_id])))
        store.upsert(name, records)
        if batch % 4 == 3:
            gone = [r for r in list(truth)[::5]]
            store.delete(name, gone, None)
            for r in gone:
                truth.pop(r)
    assert {r.id: r.sparse for r in store.export(name)} == {r: sparse_vector(v) for r, v in truth.items()}
    for _ in range(5):
        query = {int(i): float(rng.uniform(0.5, 2.0)) for i in rng.choice(500, 40, replace=False)}
        scores = {r: sum(w * query.get(i, 0.0) for i, w in v.items()) for r, v in truth.items()}
        expected = sorted((r for r in scores if scores[r] > 0), key=lambda r: -scores[r])[:10]
        hits = store.search_sparse(name, sparse_vector(query), 10, NO_FILTER)
        assert [h.id for h in hits] == expected
        assert [h.score for h in hits] == pytest.approx([scores[r] for r in expected], rel=1e-5)


def test_a_search_by_a_leg_the_collection_lacks_names_mode(store, name):
    add(store, name, unit(np.random.default_rng(42), 2))  # dense only
    assert store.legs(name) == Legs() and store.describe(name).legs == Legs()
    for search in (lambda: store.search_lexical(name, ["x"], 3, NO_FILTER),
                   lambda: store.search_sparse(name, sparse_vector({1: 1.0}), 3, NO_FILTER)):
        with pytest.raises(InvalidInput) as err:
            search()
        assert (err.value.status, err.value.field) == (422, "mode") and "dense" in err.value.message
    other = name + "_lex"
    add_texts(store, other, ["words"], legs=LEXICAL)
    with pytest.raises(InvalidInput) as err:
        store.search_sparse(other, sparse_vector({1: 1.0}), 3, NO_FILTER)
    assert err.value.field == "mode" and "dense, lexical" in err.value.message
    store.drop(other)


def test_a_sparse_leg_takes_only_records_with_valid_sparse_vectors(store, name):
    add_texts(store, name, ["first"])
    vector = unit(np.random.default_rng(43), 1)[0]
    bad = [None, SparseVector((3, 1), (1.0, 1.0)), SparseVector((1, 1), (1.0, 1.0)), SparseVector((1,), (0.0,)),
           SparseVector((1,), (float("nan"),)), SparseVector((-1,), (1.0,)), SparseVector((10**9,), (1.0,)),
           SparseVector((1, 2), (1.0,))]
    for sparse in bad:
        with pytest.raises(InvalidInput) as err:
            store.upsert(name, [Record("ok", "fine", {}, vector, sparse_vector({1: 1.0})),
                                Record("bad", "text", {}, vector, sparse)])
        assert (err.value.status, err.value.field) == (422, "sparse"), sparse
    assert store.describe(name).size == 1 and _lexical_ids(store, name, "fine text") == []


def test_legs_are_described_listed_and_returned_with_records(store, name):
    add_texts(store, name, ["one", "two"], sparse=[{4: 0.5, 9: 1.25}, {1: 2.0}])
    assert store.legs(name) == BOTH_LEGS
    assert store.describe(name).legs == BOTH_LEGS
    assert {c.name: c.legs for c in store.collections()}[name] == BOTH_LEGS
    assert store.get(name, ["r0"])[0].sparse == sparse_vector({4: 0.5, 9: 1.25})
    assert store.find(name, NO_FILTER, 1)[0].sparse == sparse_vector({4: 0.5, 9: 1.25})
    assert {r.id: r.sparse for r in store.export(name)} == {"r0": sparse_vector({4: 0.5, 9: 1.25}),
                                                           "r1": sparse_vector({1: 2.0})}
    store.ensure_collection(name, MODEL, DIM, Legs())  # an existing collection keeps its legs
    assert store.legs(name) == BOTH_LEGS


@pytest.mark.parametrize("kind", ["embedded", pytest.param("postgres", marks=pytest.mark.system)])
def test_both_legs_survive_a_reopen_and_a_crash(tmp_path, request, name, kind):
    url = "" if kind == "embedded" else request.getfixturevalue("pg_url")
    store = open_store(url, tmp_path)
    add_texts(store, name, ["alpha beta", "gamma delta", "epsilon"], sparse=[{1: 1.0}, {2: 1.0}, {1: 0.5, 2: 2.0}])
    store.close()
    store = open_store(url, tmp_path)
    try:
        assert _lexical_ids(store, name, "delta") == ["r1"] and store.legs(name) == BOTH_LEGS
        store.upsert(name, [Record("late", "zeta delta", {}, unit(np.random.default_rng(44), 1)[0],
                                   sparse_vector({1: 9.0}))])
        if kind == "embedded":
            crash(store.implementation)  # the sparse index is never saved: it comes back from SQLite
            store = open_store(url, tmp_path)
        assert sorted(_lexical_ids(store, name, "delta")) == ["late", "r1"]
        assert [h.id for h in store.search_sparse(name, sparse_vector({1: 1.0}), 5, NO_FILTER)] == \
            ["late", "r0", "r2"]
    finally:
        store.close()


def test_an_embedded_store_from_before_the_legs_is_migrated_on_open(tmp_path, name):
    """The schema an older version wrote (no legs, no FTS5 table): opening it adds the columns and
    gives every collection a lexical leg in the configured language, filled from its records."""
    import sqlite3

    directory = tmp_path / "old"
    directory.mkdir()
    db = sqlite3.connect(directory / "store.sqlite3")
    db.executescript("""
        CREATE TABLE collections (name TEXT PRIMARY KEY, model TEXT NOT NULL, dimension INTEGER NOT NULL,
            version INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
        CREATE TABLE records (rid INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, id TEXT NOT NULL,
            text TEXT NOT NULL, metadata TEXT NOT NULL, vector BLOB NOT NULL, version INTEGER NOT NULL DEFAULT 0,
            UNIQUE (collection, id));
        CREATE TABLE deletions (collection TEXT NOT NULL, rid INTEGER NOT NULL, version INTEGER NOT NULL);""")
    vectors = unit(np.random.default_rng(45), 3)
    db.execute("INSERT INTO collections VALUES (?, ?, ?, 1, 0)", (name, MODEL, DIM))
    db.executemany("INSERT INTO records (collection, id, text, metadata, vector, version) VALUES (?, ?, ?, ?, ?, 1)",
                   [(name, f"r{i}", text, f'{{"i": {i}}}', vectors[i].tobytes())
                    for i, text in enumerate(["Les cafés de Paris", "Kaffee und Kuchen", "Cafe society"])])
    db.commit()
    db.close()
    store = EmbeddedStore(directory, lexical_language="french")
    try:
        assert store.legs(name) == Legs(lexical="french")
        assert sorted(h.id for h in store.search_lexical(name, analyzer("french").terms("café"), 5, NO_FILTER)) == \
            ["r0", "r2"]
        assert store.search(name, vectors[1:2], 1, NO_FILTER, None)[0][0].id == "r1"
        store.upsert(name, [Record("r3", "un café noir", {}, vectors[0])])  # writes keep the leg current
        assert len(store.search_lexical(name, analyzer("french").terms("cafés"), 5, NO_FILTER)) == 3
        assert store.get(name, ["r1"])[0].chunk is None  # the chunk columns came with the migration
        store.upsert(name, _chunks("doc", [vectors[2]]), ["doc"])
        assert [r.chunk for r in store.get_documents(name, ["doc"])] == [Chunk("doc", 0, 0, 10)]
    finally:
        store.close()
    reopened = EmbeddedStore(directory, lexical_language="english")  # migrated once: the language stays
    try:
        assert reopened.legs(name) == Legs(lexical="french")
    finally:
        reopened.close()


# --- documents: chunks carrying their document, replaced whole, got and deleted by document --------
def _chunks(doc, vectors, meta=None, text="chunk {i} of {doc}"):
    """Records for ``doc``'s chunks, one per vector, each 10 characters after the last."""
    return [Record(chunk_id(doc, i), text.format(i=i, doc=doc), dict(meta or {"doc": doc}), v,
                   chunk=Chunk(doc, i, 10 * i, 10 * i + 10)) for i, v in enumerate(vectors)]


def test_a_documents_chunks_carry_it_through_get_search_and_export(store, name):
    vecs = unit(np.random.default_rng(60), 5)
    add(store, name, vecs[:2])  # plain records beside documents
    store.upsert(name, _chunks("a", vecs[2:4]) + _chunks("b", vecs[4:]), ["a", "b"])
    got = store.get_documents(name, ["b", "a", "nope"])
    assert [r.id for r in got] == ["b#0", "a#0", "a#1"]
    assert got[2].chunk == Chunk("a", 1, 10, 20) and got[2].metadata == {"doc": "a"}
    assert store.get(name, ["a#1"])[0].chunk == Chunk("a", 1, 10, 20)
    assert store.get(name, ["r0"])[0].chunk is None
    [hit, *_] = store.search(name, vecs[3:4], 5, NO_FILTER, None)[0]
    assert (hit.id, hit.chunk) == ("a#1", Chunk("a", 1, 10, 20))
    assert {r.id: r.chunk for r in store.export(name)}["b#0"] == Chunk("b", 0, 0, 10)
    flt = parse_filter({"doc": "a"})  # the document's metadata is each chunk's
    assert {h.id for h in store.search(name, vecs[3:4], 5, flt, None)[0]} == {"a#0", "a#1"}


def test_re_adding_a_shorter_document_leaves_no_orphan_chunks(store, name):
    vecs = unit(np.random.default_rng(61), 4)
    store.ensure_collection(name, MODEL, DIM)
    assert store.upsert(name, _chunks("a", vecs[:3]) + _chunks("b", vecs[3:]), ["a", "b"]) == 4
    assert store.upsert(name, _chunks("a", vecs[1:2], text="new {i}"), ["a"]) == 2  # a: 3 chunks -> 1
    assert [(r.id, r.text) for r in store.get_documents(name, ["a", "b"])] == \
        [("a#0", "new 0"), ("b#0", "chunk 0 of b")]
    assert {h.id for h in store.search(name, vecs, 10, NO_FILTER, None)[0]} == {"a#0", "b#0"}
    # chunks written without naming their document whole add to it (a copy in batches does that)
    store.upsert(name, [_chunks("a", vecs[:3])[2]])
    assert [r.id for r in store.get_documents(name, ["a"])] == ["a#0", "a#2"]


def test_delete_by_document_takes_every_chunk_and_nothing_else(store, name):
    vecs = unit(np.random.default_rng(62), 6)
    add(store, name, vecs[:1])
    store.upsert(name, _chunks("a", vecs[1:4]) + _chunks("b", vecs[4:]), ["a", "b"])
    assert store.delete(name, None, None, ["a", "nope"]) == 3
    assert store.get_documents(name, ["a"]) == [] and [r.id for r in store.get_documents(name, ["b"])] == ["b#0", "b#1"]
    assert {h.id for h in store.search(name, vecs, 10, NO_FILTER, None)[0]} == {"r0", "b#0", "b#1"}
    assert store.describe(name).size == 3


def test_ids_of_documents_and_records_never_collide(store, name):
    vecs = unit(np.random.default_rng(63), 4)
    add(store, name, vecs[:1])  # record r0
    store.upsert(name, _chunks("a", vecs[1:3]), ["a"])
    cases = [  # (records, documents, error, field)
        (_chunks("r0", vecs[3:]), ["r0"], Conflict, "documents"),  # a document named as a stored record
        ([Record("a", "x", {}, vecs[3])], [], Conflict, "ids"),  # a record named as a stored document
        ([Record("a#1", "x", {}, vecs[3])], [], Conflict, "ids"),  # a record named as a stored chunk
        ([Record("r0#0", "x", {}, vecs[3], chunk=Chunk("r0", 0, 0, 1))], [], Conflict, "documents"),
        ([Record("z", "x", {}, vecs[3])] + _chunks("z", vecs[3:]), ["z"], InvalidInput, "documents"),
        ([Record("z#0", "x", {}, vecs[3])] + _chunks("z", vecs[3:]), ["z"], InvalidInput, "ids"),
    ]
    for records, documents, error, field in cases:
        with pytest.raises(error) as err:
            store.upsert(name, records, documents)
        assert err.value.field == field, records
    # nothing of a refused write was kept
    assert store.describe(name).size == 3 and [r.id for r in store.get_documents(name, ["a"])] == ["a#0", "a#1"]


def test_the_lexical_and_sparse_legs_cover_chunks(store, name):
    store.ensure_collection(name, MODEL, DIM, BOTH_LEGS)
    vecs = unit(np.random.default_rng(64), 3)
    records = [Record(chunk_id("d", i), text, {}, vecs[i], sparse_vector({i + 1: 1.0}), Chunk("d", i, 5 * i, 5 * i + 4))
               for i, text in enumerate(["alpha", "zebra", "gamma"])]
    store.upsert(name, records, ["d"])
    [hit] = store.search_lexical(name, ["zebra"], 5, NO_FILTER)
    assert (hit.id, hit.chunk) == ("d#1", Chunk("d", 1, 5, 9))
    [hit] = store.search_sparse(name, sparse_vector({3: 1.0}), 5, NO_FILTER)
    assert (hit.id, hit.chunk) == ("d#2", Chunk("d", 2, 10, 14))
    store.upsert(name, records[:1], ["d"])  # shrunk: the replaced chunks leave both legs
    assert store.search_lexical(name, ["zebra"], 5, NO_FILTER) == []
    assert store.search_sparse(name, sparse_vector({3: 1.0}), 5, NO_FILTER) == []
