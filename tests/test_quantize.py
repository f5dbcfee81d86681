"""The embedding types (``engine/quantize.py``): the same values as sentence-transformers'
``quantize_embeddings`` with the documented ranges, Cohere's packing of binary, and the checks."""

from __future__ import annotations

import base64

import numpy as np
import pytest

import schemas as S
from chutes_embeddings.engine import quantize as Q
from chutes_embeddings.errors import InvalidInput


def unit_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_schema_offers_exactly_the_engines_types():
    assert S.EmbeddingType.__args__ == Q.EMBEDDING_TYPES


def test_the_int8_range_is_five_rms_components_of_a_unit_vector():
    assert Q.int8_range(384) == pytest.approx(5 / np.sqrt(384))
    assert Q.int8_range(16) == 1.0  # never wider than a unit vector's components can be
    ranges = Q.int8_ranges(384)
    assert ranges.shape == (2, 384) and np.all(ranges[0] == -ranges[1])


def test_int8_and_uint8_buckets_span_the_range():
    half = Q.int8_range(64)
    v = np.zeros((1, 64), np.float32)
    v[0, :4] = [-half, -2 * half, half * 0.999, 2 * half]  # ends, and beyond them (clipped)
    assert Q.quantize(v, "uint8")[0, :4].tolist() == [0, 0, 254, 255]
    assert Q.quantize(v, "int8")[0, :4].tolist() == [-128, -128, 126, 127]
    assert Q.quantize(v, "uint8")[0, 4] == 127  # zero sits at floor(127.5)
    assert Q.quantize(v, "int8").dtype == np.int8 and Q.quantize(v, "uint8").dtype == np.uint8


def test_binary_packs_the_signs_eight_a_byte_high_bit_first():
    v = np.array([[1, -1, -1, -1, -1, -1, -1, 0.5, -1, 2]], np.float32)  # 10 dims: 2 bytes, the last padded
    assert Q.quantize(v, "ubinary").tolist() == [[0b10000001, 0b01000000]]
    assert Q.quantize(v, "binary").tolist() == [[0b10000001 - 128, 0b01000000 - 128]]


def test_base64_is_the_little_endian_float32_bytes():
    v = unit_vectors(2, 8)
    decoded = [np.frombuffer(base64.b64decode(s), dtype="<f4") for s in Q.to_base64(v)]
    assert np.array_equal(np.stack(decoded), v)


def test_by_type_answers_each_type_once_in_the_order_asked():
    v = unit_vectors(3, 16)
    typed = Q.by_type(v, ["int8", "float", "int8", "ubinary"])
    assert list(typed) == ["int8", "float", "ubinary"]
    assert len(typed["int8"]) == 3 and len(typed["int8"][0]) == 16 and len(typed["ubinary"][0]) == 2
    assert all(isinstance(x, int) for x in typed["int8"][0])


def test_unknown_types_and_int8_of_unnormalised_vectors_are_refused_by_their_place():
    with pytest.raises(InvalidInput) as err:
        Q.check_types(["float", "int4"], normalized=True)
    assert err.value.field == "embedding_types[1]" and err.value.limit == list(Q.EMBEDDING_TYPES)
    with pytest.raises(InvalidInput) as err:
        Q.check_types(["binary", "uint8"], normalized=False)
    assert err.value.field == "embedding_types[1]" and "normalize" in err.value.message
    Q.check_types(["binary", "ubinary", "float", "base64"], normalized=False)


@pytest.mark.parametrize("kind", ["int8", "uint8", "binary", "ubinary", "float32"])
@pytest.mark.parametrize("dims", [384, 64, 12])
def test_the_values_are_sentence_transformers_quantize_embeddings(kind, dims):
    st = pytest.importorskip("sentence_transformers.util.quantization")  # not in the torch-free fast layer
    v = unit_vectors(50, dims, seed=dims)
    ours = Q.quantize(v, "float" if kind == "float32" else kind)
    theirs = st.quantize_embeddings(v, kind, ranges=Q.int8_ranges(dims))
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
