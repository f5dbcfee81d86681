"""What a benchmark talks to: the service over HTTP as users run it, or the engine in-process."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import httpx
import numpy as np

from chutes_embeddings.tools.devserver import start_dev_server

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class HttpTarget:
    """``chutes run my_embeddings:chute --dev`` on a free loopback port, driven by the client."""

    def __init__(self, env: dict[str, str], data_dir: str) -> None:
        from chutes_embeddings import EmbeddingsClient

        self._log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)
        self.server = start_dev_server(
            ROOT, {"EMBEDDINGS_DATA_DIR": data_dir, "EMBEDDINGS_LOG_LEVEL": "WARNING", **env}, self._log
        )
        self.url = self.server.url
        self.client = EmbeddingsClient(self.url, timeout=300)
        self._http = httpx.Client(timeout=300, limits=httpx.Limits(max_connections=64))

    def info(self) -> dict[str, Any]:
        return self.client.info()

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.client.embed_batch(texts, batch_size=32), dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        r = self._http.post(f"{self.url}/embed", json={"inputs": text})
        r.raise_for_status()
        return np.asarray(r.json()["embeddings"], dtype=np.float32)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.server.proc.pid)

    def close(self) -> None:
        self.client.close()
        self._http.close()
        self.server.stop()


class InProcessTarget:
    """The engine in this process (for machines without the Chutes SDK, e.g. a bare GPU box)."""

    def __init__(self, env: dict[str, str], data_dir: str) -> None:
        from chutes_embeddings.engine.startup import start_engine
        from chutes_embeddings.settings import Settings

        environ = {
            "EMBEDDINGS_DATA_DIR": data_dir,
            **{k: v for k, v in os.environ.items() if k.startswith("EMBEDDINGS_")},
            **env,
        }
        self.engine = start_engine(Settings.from_env(environ))

    def info(self) -> dict[str, Any]:
        from chutes_embeddings.http.dialects import native

        return native.info(self.engine)  # the same body as GET /info

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        from chutes_embeddings.engine.results import EmbedOptions

        limit = 1000
        return np.concatenate([self.engine.embed(texts[i : i + limit], EmbedOptions(max_batch=32)).vectors
                               for i in range(0, len(texts), limit)])

    def embed_one(self, text: str) -> np.ndarray:
        return self.engine.embed([text]).vectors[0]

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(os.getpid())

    def close(self) -> None:
        self.engine.close()
