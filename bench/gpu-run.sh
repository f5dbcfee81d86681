#!/usr/bin/env bash
# GPU benchmark on a bare, offline GPU box: the engine in-process (torch on CUDA) against
# SentenceTransformer.encode on the same GPU. Prepare the carry first:
#   .venv/bin/python -m bench.prepare_gpu_carry   (writes .gpu/model and .whl)
# then run this script there from the repository root, with .gpu and .whl beside it.
set -euo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
rm -rf /tmp/model && cp -r .gpu/model /tmp/model
python3 -c "
from safetensors.torch import load_file, save_file
t = load_file('/tmp/model/model.safetensors')
save_file({k: v.float() for k, v in t.items()}, '/tmp/model/model.safetensors', metadata={'format': 'pt'})"
export EMBEDDINGS_MODEL=/tmp/model
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi") | tee "$OUT/gpu.txt"
python3 -c "import torch, sentence_transformers, transformers; print('torch', torch.__version__, 'st', sentence_transformers.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m bench --in-process --no-store ${BENCH_ARGS:-} --json "$OUT/gpu-bench.json" 2>&1 | grep -v -E "Loading weights|Warning" | tee "$OUT/gpu-bench.log"
