"""The local-server launcher the tests and benchmarks share (the same command as `make serve`)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from chutes_embeddings.tools import devserver

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.system  # starts the chute as a server


def test_a_port_taken_before_the_server_binds_it_is_retried(tmp_path, monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real = devserver.free_port
        ports = iter([taken])
        monkeypatch.setattr(devserver, "free_port", lambda: next(ports, None) or real())
        with open(tmp_path / "server.log", "ab") as log:
            server = devserver.start_dev_server(ROOT, {"EMBEDDINGS_DATA_DIR": str(tmp_path / "data")}, log)
        try:
            assert not server.url.endswith(f":{taken}")
            assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
        finally:
            server.stop()
    assert b"Address already in use" in (tmp_path / "server.log").read_bytes()
