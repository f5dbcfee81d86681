"""Start the chute locally the way ``make serve`` does, on a free loopback port (tests, benchmarks).

    server = start_dev_server(project_root, {"EMBEDDINGS_STORE_URL": ...}, log_file)
    ... httpx.get(f"{server.url}/health") ...
    server.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from ..backends.tei_process import free_port


@dataclass
class DevServer:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
        """Send ``sig`` (SIGKILL to simulate a crash) and wait for the process to go."""
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_dev_server(
    root: Path,
    env: dict[str, str],
    log: IO[bytes],
    timeout_s: float = 300,
    attempts: int = 3,
    chute_ref: str = "my_embeddings:chute",
    ready_path: str = "/health",
) -> DevServer:
    """Run ``chutes run my_embeddings:chute --dev`` (or ``chute_ref``) bound to 127.0.0.1 and wait
    until ``ready_path`` answers 200 (any answer below 500 for a path other than ``/health``).

    A free port can be taken by another process between choosing it and binding it; a start that
    fails with "Address already in use" is tried again on new ports, ``attempts`` times in all.

    Raises:
        RuntimeError: the server exited or did not become healthy in time (see the log).
    """
    for attempt in range(attempts):
        try:
            return _start_once(root, env, log, timeout_s, chute_ref, ready_path)
        except _PortTaken:
            if attempt == attempts - 1:
                raise RuntimeError(
                    f"no free port after {attempts} tries; see {getattr(log, 'name', 'its log')}"
                ) from None
    raise AssertionError("this is a bug: the start loop ended without a result")


class _PortTaken(RuntimeError):
    """The server exited because its port was taken before it could bind it."""


def _start_once(root: Path, env: dict[str, str], log: IO[bytes], timeout_s: float, chute_ref: str,
                ready_path: str) -> DevServer:
    port = free_port()
    full_env = {**os.environ, "CHUTES_EXECUTION_CONTEXT": "REMOTE", "HF_HUB_OFFLINE": "1", **env}
    full_env.pop("CHUTES_DEV_MODE", None)
    started_at = log.tell() if log.seekable() else None
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "chutes"), "run", chute_ref, "--dev", "--host", "127.0.0.1",
         "--port", str(port), "--logging-port", str(free_port())],
        cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT,
    )
    server = DevServer(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout_s
    while True:
        # the SDK lingers 60 s after a failed start: spot a taken port in the log, not by the exit
        if started_at is not None and b"Address already in use" in _read_from(log, started_at):
            server.stop(signal.SIGKILL)
            raise _PortTaken(port)
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {getattr(log, 'name', 'its log')}")
        try:
            status = httpx.get(f"{server.url}{ready_path}", timeout=2).status_code
            if status == 200 or (ready_path != "/health" and status < 500):
                return server
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise RuntimeError(
                f"the server was not healthy after {timeout_s:.0f} s; see {getattr(log, 'name', 'its log')}"
            )
        time.sleep(0.3)


def _read_from(log: IO[bytes], offset: int) -> bytes:
    """What the server wrote to ``log`` since ``offset`` (the log is a regular file)."""
    log.flush()
    with open(log.name, "rb") as again:
        again.seek(offset)
        return again.read()
