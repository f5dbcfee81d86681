"""scripts/node-smoke, run as a deployer runs it, against the TEI stand-in (no GPU needed here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.system  # runs scripts/node-smoke, which starts the chute and TEI stand-ins


def _smoke(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "EMBEDDINGS_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", **env}
    full_env.pop("CHUTES_DEV_MODE", None)
    return subprocess.run([str(ROOT / "scripts" / "node-smoke"), *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)


def test_node_smoke_passes_on_tei_and_survives_a_kill(tmp_path):
    result = _smoke(tmp_path, "--load-seconds", "4", "--restart-timeout", "60",
                    EMBEDDINGS_TEI_BINARY=str(ROOT / "scripts" / "tei-standin"))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    table = result.stdout
    for check in ("start-up | backend tei", "parity: TEI", "failover: requests during kill -9 of TEI",
                  "failover: TEI restarted and serving", "timings"):
        assert check in table, table
    assert "| NO |" not in table


def test_node_smoke_fails_loudly_when_tei_does_not_come_up(tmp_path):
    never = tmp_path / "never-ready-tei"
    never.write_text(f"#!/bin/sh\nexec {ROOT / 'scripts' / 'tei-standin'} --never-ready \"$@\"\n")
    never.chmod(0o755)
    result = _smoke(tmp_path, EMBEDDINGS_TEI_BINARY=str(never), EMBEDDINGS_TEI_STARTUP_TIMEOUT_S="3")
    assert result.returncode == 1
    assert "start-up: backend local (want tei)" in result.stderr, result.stdout + result.stderr[-2000:]
