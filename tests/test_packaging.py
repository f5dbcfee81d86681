"""What must import where: the chute with only the SDK, the client without torch; the image."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the client and the chute module need none of these
HEAVY = ("torch", "numpy", "sklearn", "sentence_transformers", "transformers", "faiss", "onnxruntime", "psycopg",
         "cachetools", "langchain_core", "langchain", "llama_index")


def _run_blocking_heavy(code: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    blocker = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {HEAVY!r}:
                    raise ImportError('blocked heavy import: ' + name)
        sys.meta_path.insert(0, Block())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTES_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", blocker + code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_chute_module_imports_with_only_the_sdk():
    result = _run_blocking_heavy("import my_embeddings; print(len(my_embeddings.chute.cords))")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 8


def test_client_imports_without_torch():
    result = _run_blocking_heavy(
        "from chutes_embeddings import EmbeddingsClient, AsyncEmbeddingsClient, InvalidInput; print('ok')")
    assert result.returncode == 0, result.stderr


def test_every_cord_has_a_public_path():
    result = _run_blocking_heavy(
        "import my_embeddings\n"
        "print(sorted((c._public_api_path, c._public_api_method) for c in my_embeddings.chute.cords))"
    )
    assert result.returncode == 0, result.stderr
    routes = eval(result.stdout)
    for expected in [("/embed", "POST"), ("/embed/batch", "POST"), ("/similarity", "POST"), ("/rerank", "POST"),
                     ("/search", "POST"), ("/cluster", "POST"), ("/health", "GET"), ("/info", "GET")]:
        assert expected in routes
    assert all(path for path, _ in routes)


def test_image_renders_a_dockerfile_with_tei_and_the_project():
    result = _run_blocking_heavy("import image; print(str(image.image)); print('TAG', image.image.tag)")
    assert result.returncode == 0, result.stderr
    dockerfile = result.stdout
    lines = dockerfile.splitlines()
    assert lines[0] == "FROM ghcr.io/huggingface/text-embeddings-inference:cuda-1.9.3"
    assert "ENTRYPOINT []" in lines
    assert "ln -sf /entrypoint.sh /usr/local/bin/text-embeddings-router" in dockerfile
    assert "useradd -m -u 1000" in dockerfile and "chown -R chutes:chutes /app" in dockerfile
    for src in ("schemas", "image.py", "chutes_embeddings"):
        assert any(line.startswith("ADD") and src in line and "/app/" in line for line in lines), src
    users = [line for line in lines if line.startswith("USER")]
    assert users[-1] == "USER chutes"
    assert [line for line in lines if line.startswith("WORKDIR")][-1] == "WORKDIR /app"
    assert "'torch==2.13.0'" in dockerfile and "ENV EMBEDDINGS_TEI_BINARY=text-embeddings-router" in lines
    assert "1.9.3" in result.stdout.split("TAG")[-1]


def test_request_enums_match_the_engine():
    """schemas must import without numpy, so it repeats these lists; they must not drift."""
    from typing import get_args

    import schemas
    from chutes_embeddings.engine.cluster import METHODS
    from chutes_embeddings.engine.vectors import POOLINGS

    assert get_args(schemas.Pooling) == POOLINGS
    assert get_args(schemas.ClusterMethod) == METHODS
