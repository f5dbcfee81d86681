"""scripts/node-smoke, run as a deployer runs it, against the TEI stand-in (no GPU needed here)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.system  # runs scripts/node-smoke, which starts the chute and TEI stand-ins


def _smoke(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "EMBEDDINGS_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", **env}
    full_env.pop("CHUTES_DEV_MODE", None)
    return subprocess.run([str(ROOT / "scripts" / "node-smoke"), *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)


def _standin(tmp_path: Path, *flags: str) -> tuple[Path, Path]:
    """``scripts/tei-standin`` as the smoke's TEI binary, recording to a file of this test and
    sharing the run's model export; (the wrapper, the record)."""
    record = tmp_path / "tei-record.jsonl"
    wrapper = tmp_path / "tei"
    cache = os.environ["EMBEDDINGS_MODEL_CACHE_DIR"]
    wrapper.write_text(f'#!/bin/sh\nexec {ROOT / "scripts" / "tei-standin"} --record "{record}" '
                       f'--onnx-cache "{cache}" {" ".join(flags)} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_node_smoke_passes_on_tei_and_survives_a_kill(tmp_path):
    tei, record = _standin(tmp_path)
    # a short load window and a small batch: the checks are the same, only the timings row shrinks
    result = _smoke(tmp_path, "--load-seconds", "4", "--restart-timeout", "60", "--batch-texts", "256",
                    EMBEDDINGS_TEI_BINARY=str(tei))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    table = result.stdout
    for check in ("start-up | backend tei", "parity: TEI", "failover: requests during kill -9 of TEI",
                  "failover: TEI restarted and serving", "timings"):
        assert check in table, table
    assert "| NO |" not in table
    # the smoke stops the service with SIGTERM: every TEI it ran (the killed one and its
    # replacement) goes with it (test_tei.py checks the same after a SIGKILL of the service)
    pids = [e["pid"] for e in map(json.loads, record.read_text().splitlines()) if e.get("event") == "start"]
    assert len(pids) >= 2, pids
    wait_until(lambda: not any(_alive(p) for p in pids), 15, 0.1, "every TEI gone after the service's SIGTERM")


def test_node_smoke_fails_loudly_when_tei_does_not_come_up(tmp_path):
    never, _ = _standin(tmp_path, "--never-ready")
    result = _smoke(tmp_path, EMBEDDINGS_TEI_BINARY=str(never), EMBEDDINGS_TEI_STARTUP_TIMEOUT_S="3")
    assert result.returncode == 1
    assert "start-up: backend local (want tei)" in result.stderr, result.stdout + result.stderr[-2000:]
