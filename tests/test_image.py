"""The rendered image on a real node: every path the service writes is uid 1000's, TEI gets a
cache it can write and finds the driver, the platform's SDK install lands in our venv.

Read from ``str(image)`` (the Dockerfile ``chutes build`` sends) and from the environment the
supervisor builds out of the image's ENV lines over the base image's own (``BASE_IMAGE_ENV``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from chutes_embeddings.backends.tei_process import DRIVER_BIN_DIRS, DRIVER_LIB_DIRS, TeiLaunch, writable_hub_cache
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rendered() -> tuple[str, object]:
    """The Dockerfile as built remotely (the platform appends its SDK install), and image.py."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTES_")}  # Image.add is live locally
    code = "import image; print(str(image.image))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    import image

    return out.stdout + "\nRUN pip install chutes==0.6.9", image  # as chutes/entrypoint/build.py appends it


def _env_lines(dockerfile: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in dockerfile.splitlines():
        if line.startswith("ENV "):
            key, _, value = line[4:].partition("=")
            env[key] = value
    return env


def _steps(dockerfile: str) -> list[tuple[str, str]]:
    """(user, directive) for every directive, the user being the one in force there."""
    user, out = "root", []
    for line in dockerfile.splitlines():
        if line.startswith("USER "):
            user = line.split()[1]
        out.append((user, line))
    return out


def test_every_path_the_service_writes_is_created_and_owned_by_uid_1000(rendered):
    dockerfile, image = rendered
    env = {**image.BASE_IMAGE_ENV, **_env_lines(dockerfile)}
    written = {env["HF_HOME"], env["HF_HUB_CACHE"], env["HUGGINGFACE_HUB_CACHE"], env["EMBEDDINGS_DATA_DIR"],
               image.WORKDIR, image.VENV}
    assert env["HUGGINGFACE_HUB_CACHE"] != "/data", "TEI's base image cache folder does not exist and cannot be made"
    setup = next(line for user, line in _steps(dockerfile) if "useradd" in line)
    assert next(user for user, line in _steps(dockerfile) if line == setup) == "root"
    assert "useradd -m -u 1000" in setup
    made = shlex.split(re.search(r"mkdir -p ([^&]+)", setup).group(1))
    owned = shlex.split(re.search(r"chown -R chutes:chutes ([^&]+)", setup).group(1))
    for path in written:
        assert any(path == d or path.startswith(d.rstrip("/") + "/") for d in owned), f"{path} is not chutes'"
        assert path in made, f"{path} is not created at build time"
    assert [line for line in dockerfile.splitlines() if line.startswith("WORKDIR")][-1] == f"WORKDIR {image.WORKDIR}"


def test_the_last_user_is_chutes_and_the_platforms_sdk_install_runs_in_our_venv(rendered):
    dockerfile, image = rendered
    steps = _steps(dockerfile)
    assert [line for _, line in steps if line.startswith("USER")][-1] == "USER chutes"
    user, last = steps[-1]
    assert last.startswith("RUN pip install chutes==") and user == "chutes"
    venv_made = next(i for i, (u, line) in enumerate(steps) if f"python3 -m venv {image.VENV}" in line)
    assert steps[venv_made][0] == "chutes"
    path = _env_lines(dockerfile)["PATH"].split(":")
    assert path[0] == f"{image.VENV}/bin", "`pip` must resolve to the venv's pip (made by python3 -m venv)"


def test_path_keeps_the_driver_folders_tei_needs(rendered):
    dockerfile, _ = rendered
    env = _env_lines(dockerfile)
    assert "/usr/local/nvidia/bin" in env["PATH"].split(":"), "TEI's entrypoint needs nvidia-smi"
    assert "/usr/local/cuda/bin" in env["PATH"].split(":")
    libs = env["LD_LIBRARY_PATH"].split(":")
    assert {"/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/local/cuda/lib64"} <= set(libs)


def test_the_supervisor_gives_tei_the_image_cache_and_the_driver_paths(rendered, tmp_path, monkeypatch):
    dockerfile, image = rendered
    node_env = {**image.BASE_IMAGE_ENV, **_env_lines(dockerfile), "HOSTNAME": "node-7", "HOME": "/home/chutes"}
    cache = tmp_path / "cache" / "hub"  # the image's /cache/hub, where this test may write
    node_env.update({k: str(cache) for k, v in node_env.items() if v == image.HUB_CACHE})
    env = TeiLaunch(binary="tei", model="m", port=1).env(node_env)
    assert env["HUGGINGFACE_HUB_CACHE"] == env["HF_HUB_CACHE"] == str(cache) and cache.is_dir()
    assert set(DRIVER_LIB_DIRS) <= set(env["LD_LIBRARY_PATH"].split(":"))
    assert set(DRIVER_BIN_DIRS) <= set(env["PATH"].split(":"))
    assert env["PATH"].split(":")[0] == f"{image.VENV}/bin"
    assert not {"PORT", "HOSTNAME", "USE_FLASH_ATTENTION"} & set(env), "TEI reads its flags from these too"


def test_an_unwritable_cache_is_reported_and_replaced(tmp_path):
    from loguru import logger

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")  # unwritable even for root
    fallback = tmp_path / "fallback"
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="ERROR")
    try:
        got = writable_hub_cache({"HUGGINGFACE_HUB_CACHE": str(blocker / "hub")}, str(fallback))
    finally:
        logger.remove(sink)
    assert got == str(fallback) and fallback.is_dir()
    assert len(messages) == 1 and "HUGGINGFACE_HUB_CACHE" in messages[0] and str(blocker / "hub") in messages[0]
    assert writable_hub_cache({"HF_HOME": str(tmp_path / "home")}, None) == str(tmp_path / "home" / "hub")


@pytest.mark.system  # the supervisor starts a process (a script standing in for TEI)
def test_the_supervisor_checks_the_cache_once_and_keeps_it_across_restarts(tmp_path, monkeypatch):
    """The real launch path: the environment the spawned process gets."""
    from chutes_embeddings.backends.tei_process import TeiSupervisor

    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(blocker / "hub"))
    record = tmp_path / "env.txt"
    script = tmp_path / "fake-tei"
    script.write_text(f"#!/bin/sh\nenv > {record}\nsleep 30\n")
    script.chmod(0o755)
    supervisor = TeiSupervisor(TeiLaunch(binary=str(script), model="m", port=1, fallback_cache=str(tmp_path / "fb")))
    supervisor.start()
    try:
        wait_until(lambda: record.exists() and "HUGGINGFACE_HUB_CACHE" in record.read_text(), timeout_s=10,
                   what="the spawned process wrote its environment")
        seen = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
    finally:
        supervisor.stop()
    assert seen["HUGGINGFACE_HUB_CACHE"] == str(tmp_path / "fb")
    assert "/usr/local/nvidia/lib64" in seen["LD_LIBRARY_PATH"].split(":")
