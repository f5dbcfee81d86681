# Two commands: `make serve` (run locally on 127.0.0.1:$(PORT)) and `make test`.
# `make test-fast` runs the unit and http layers (no model, no process) in their own virtualenv without torch.
VENV ?= .venv
PY := $(VENV)/bin/python
FAST_VENV ?= .venv-fast
FAST_PY := $(FAST_VENV)/bin/python
PORT ?= 8000
LOGGING_PORT ?= $(shell expr $(PORT) + 1000)
PYTHON ?= python3
# The offline SPLADE model the tests use (tests/helpers.py sparse_test_model), beside the venv.
SPARSE_TEST_MODEL := $(VENV)/test-models/splade-tiny

.PHONY: install install-fast serve lint test test-fast bench bench-peers bench-retrieval clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build; anything else pulls GBs of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[server,test]'
	# Infinity's own client pins httpx<0.28 (langchain-tests needs >=0.28.1) but works with it:
	# tests/test_compat_infinity.py drives it against the live server.
	$(PY) -m pip install -q attrs python-dateutil
	$(PY) -m pip install -q --no-deps infinity_client==0.0.78
	touch $@

$(SPARSE_TEST_MODEL)/config.json: | $(VENV)/.installed
	scripts/sparse-test-model $(PY) $(SPARSE_TEST_MODEL)

install: $(VENV)/.installed $(SPARSE_TEST_MODEL)/config.json

# The server without a model runtime (the `core` extra) and the test tools: no torch, no
# sentence-transformers, no ONNX. Its own .gitignore keeps it out of `git status`.
$(FAST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(FAST_VENV)
	printf '*\n' > $(FAST_VENV)/.gitignore
	$(FAST_PY) -m pip install -q --upgrade pip
	$(FAST_PY) -m pip install -q -e '.[core,test]'
	touch $@

install-fast: $(FAST_VENV)/.installed

# Each port gets its own embedded store (one process per store), all share the ONNX export cache;
# EMBEDDINGS_DATA_DIR / EMBEDDINGS_MODEL_CACHE_DIR set in the environment win.
serve: install
	CHUTES_EXECUTION_CONTEXT=REMOTE HF_HUB_OFFLINE=1 \
	EMBEDDINGS_DATA_DIR=$${EMBEDDINGS_DATA_DIR:-$(CURDIR)/data/port-$(PORT)} \
	EMBEDDINGS_MODEL_CACHE_DIR=$${EMBEDDINGS_MODEL_CACHE_DIR:-$(CURDIR)/data/models} \
	$(VENV)/bin/chutes run my_embeddings:chute --dev --host 127.0.0.1 --port $(PORT) --logging-port $(LOGGING_PORT)

lint: install
	$(VENV)/bin/ruff check .

# Every layer (what .ci/run runs), after the linter: test files spread over TEST_WORKERS processes
# (the system tests mostly wait on servers they start; TEST_WORKERS=0 runs them in this process).
TEST_WORKERS ?= 2
test: lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The unit and http layers only, in the torch-free virtualenv (under a minute: the tests, the
# hostile-input suite's routes included, are spread over two workers one by one).
test-fast: install-fast
	HF_HUB_OFFLINE=1 $(FAST_PY) -m pytest -q -n $(TEST_WORKERS) --dist load -m "unit or http" $(PYTEST_ARGS)

# STORE_SIZES=100000,1000000 for the full store table of docs/benchmarks.md (1M: ~15 min, more with postgres)
STORE_SIZES ?= 100000
# MODELS=1: only the several-models benchmark (two embedders side by side against one; bench/models.py)
bench: install
ifdef MODELS
	HF_HUB_OFFLINE=1 $(PY) -m bench.models
else
	HF_HUB_OFFLINE=1 $(PY) -m bench
	HF_HUB_OFFLINE=1 $(PY) -m bench.store_scale --sizes $(STORE_SIZES) --stores embedded,postgres --pg-bulk --http
	HF_HUB_OFFLINE=1 $(PY) -m bench.retrieval $(RETRIEVAL_ARGS) --peer --skip-missing
endif

# This service against Infinity 0.0.78 on this machine (Infinity gets its own venv under .bench/).
bench-peers: install
	HF_HUB_OFFLINE=1 $(PY) -m bench.peers

# Retrieval quality (nDCG@10, recall@100) and speed of /store/search in every mode, beside bm25s, exact
# dense search and txtai 9.14 (own venv in .bench/txtai). Collections are BEIR folders kept outside
# the repository; docs/benchmarks.md says where each comes from and the command that builds it.
COLLECTIONS ?= $(abspath $(CURDIR)/../data/cranfield)
RETRIEVAL_ARGS = $(foreach c,$(COLLECTIONS),--collection $(c))
bench-retrieval: install
	HF_HUB_OFFLINE=1 $(PY) -m bench.retrieval $(RETRIEVAL_ARGS) --peer

clean:
	rm -rf $(VENV) $(FAST_VENV) .pytest_cache
