"""Supervision of a ``text-embeddings-router`` subprocess.

``TeiSupervisor`` launches TEI on 127.0.0.1 with an explicit port and argv and a scrubbed
environment (TEI reads every flag from the environment too, and an inherited ``HOSTNAME`` would
make it bind 0.0.0.0), waits for ``GET /health``, forwards its log lines, restarts it with
exponential backoff when it dies, and stops it on shutdown. ``healthy`` is what the failover
backend consults before routing a request to TEI.

The environment also carries what TEI needs to come up as an unprivileged user: a hub cache it
can write (checked at start: an unwritable one is logged as an error naming the variable and
replaced by a writable fallback, because TEI would otherwise fail to download its model and
never become healthy), and the folders where some runtimes mount the GPU driver
(``/usr/local/nvidia/{lib,lib64,bin}``) on ``LD_LIBRARY_PATH`` and ``PATH``: TEI's newer
entrypoints register them with ``ldconfig``, which needs root.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Mapping

import httpx
from loguru import logger

# Variables TEI may need from our environment; everything else is dropped.
_PASSED_ENV = (
    "PATH", "HOME", "LANG", "TMPDIR", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
    "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE",
)
# Where some container runtimes mount the host's driver libraries and nvidia-smi.
DRIVER_LIB_DIRS = ("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib")
DRIVER_BIN_DIRS = ("/usr/local/nvidia/bin",)
HUB_CACHE_VARIABLES = ("HUGGINGFACE_HUB_CACHE", "HF_HUB_CACHE")
_UNHEALTHY_POLL_S = 0.1  # how often a TEI that is not healthy is probed (health_interval_s once it is)
_LEVELS = {
    "TRACE": "TRACE",
    "DEBUG": "DEBUG",
    "INFO": "DEBUG",
    "WARN": "WARNING",
    "WARNING": "WARNING",
    "ERROR": "ERROR",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a TEI launched without a configured port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux sends TEI SIGTERM when the service process dies,
    even by SIGKILL, when no shutdown code of ours can run (the Chutes SDK runs no shutdown hooks)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _parse_log_line(line: str) -> tuple[str, str]:
    """(loguru level, message) of a TEI ``--json-output`` line; plain text (a panic) is kept whole."""
    try:
        record = json.loads(line)
    except ValueError:
        return "INFO", line
    if not isinstance(record, dict):
        return "INFO", line
    fields = record.get("fields") if isinstance(record.get("fields"), dict) else {}
    return _LEVELS.get(str(record.get("level", "")).upper(), "DEBUG"), str(fields.get("message", line))


def find_binary(name_or_path: str) -> str | None:
    """The executable's absolute path, or None when it is not there."""
    if os.sep in name_or_path:
        return name_or_path if os.access(name_or_path, os.X_OK) else None
    return shutil.which(name_or_path)


@dataclass(frozen=True)
class TeiLaunch:
    """What TEI is started with."""

    binary: str
    model: str
    port: int
    revision: str | None = None
    max_batch_tokens: int = 16384
    max_client_batch_size: int = 64
    max_concurrent_requests: int = 512
    pooling: str | None = None  # TEI's --pooling ("splade" for a sparse model); None: the model's own

    def argv(self) -> list[str]:
        args = [
            self.binary, "--model-id", self.model, "--hostname", "127.0.0.1", "--port", str(self.port),
            "--max-batch-tokens", str(self.max_batch_tokens),
            "--max-client-batch-size", str(self.max_client_batch_size),
            "--max-concurrent-requests", str(self.max_concurrent_requests), "--json-output",
        ]
        if self.revision:
            args += ["--revision", self.revision]
        if self.pooling:
            args += ["--pooling", self.pooling]
        return args

    fallback_cache: str | None = None  # hub cache to use when the configured one is not writable

    def env(self, source: Mapping[str, str]) -> dict[str, str]:
        """TEI's environment: the few variables it needs from ``source``, a writable hub cache
        (see ``writable_hub_cache``), and the driver folders on the search paths."""
        env = {k: source[k] for k in _PASSED_ENV if k in source}
        cache = writable_hub_cache(source, self.fallback_cache)
        env.update({name: cache for name in HUB_CACHE_VARIABLES})
        env["LD_LIBRARY_PATH"] = _with_dirs(env.get("LD_LIBRARY_PATH", ""), DRIVER_LIB_DIRS)
        env["PATH"] = _with_dirs(env.get("PATH", os.defpath), DRIVER_BIN_DIRS)
        return env


def _with_dirs(search_path: str, dirs: tuple[str, ...]) -> str:
    """``search_path`` with ``dirs`` appended where missing (existing entries keep priority)."""
    parts = [p for p in search_path.split(":") if p]
    return ":".join(parts + [d for d in dirs if d not in parts])


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def writable_hub_cache(source: Mapping[str, str], fallback: str | None) -> str:
    """The hub cache TEI gets: the configured one (``HUGGINGFACE_HUB_CACHE``, else ``HF_HUB_CACHE``,
    else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) when this user can create and write
    it; otherwise an error naming the variable is logged and ``fallback`` (or a folder in the
    temp dir) is used."""
    name = next((n for n in HUB_CACHE_VARIABLES if source.get(n)), None)
    if name is not None:
        path = source[name]
    elif source.get("HF_HOME"):
        name, path = "HF_HOME", os.path.join(source["HF_HOME"], "hub")
    else:
        name, path = "HOME", os.path.join(source.get("HOME") or os.path.expanduser("~"), ".cache", "huggingface", "hub")
    if _writable_dir(path):
        return path
    for candidate in (fallback, os.path.join(tempfile.gettempdir(), "chutes-embeddings-hub")):
        if candidate and _writable_dir(candidate):
            logger.error("TEI's hub cache {} (from {}) cannot be written by uid {}: TEI could not download "
                         "its model there and would never become healthy. Using {} instead; set {} to a "
                         "writable folder.", path, name, os.getuid(), candidate, name)
            return candidate
    raise RuntimeError(f"no writable hub cache for TEI: {path} (from {name}) and the fallbacks are not writable")


class TeiSupervisor:
    """Keeps one TEI process alive (see module docstring)."""

    def __init__(self, launch: TeiLaunch, *, health_interval_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        self.launch = launch
        self.url = f"http://127.0.0.1:{launch.port}"
        self.health_interval_s = health_interval_s
        self.max_backoff_s = max_backoff_s
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._healthy = threading.Event()
        self._stopping = threading.Event()
        self._http = httpx.Client(timeout=2.0)
        self._monitor = threading.Thread(target=self._watch, name="tei-supervisor", daemon=True)
        self._launched = threading.Event()
        self._launch_error: BaseException | None = None
        self._env = launch.env(os.environ)  # checked once: the cache warning is logged once

    @property
    def healthy(self) -> bool:
        """True while the process runs and its last /health answered 200."""
        return self._healthy.is_set()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Launch TEI and start watching it (returns once the process is launched; see ``wait_ready``).

        The supervisor's own thread launches it: Linux sends the parent-death signal when the
        *thread* that forked TEI exits, so a start-up worker thread (models load side by side)
        would take its TEI down with it the moment it finished.
        """
        self._monitor.start()
        self._launched.wait()
        if self._launch_error is not None:
            raise self._launch_error
        atexit.register(self.stop)

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until TEI is healthy or ``timeout_s`` passes; True when healthy."""
        return self._healthy.wait(timeout_s)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop watching and terminate TEI (SIGTERM, then SIGKILL after ``grace_s``)."""
        if self._stopping.is_set() and (self._proc is None or self._proc.poll() is not None):
            return
        self._stopping.set()
        self._healthy.clear()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._monitor.is_alive():
            self._monitor.join(5)
        self._http.close()

    # --- internals ---------------------------------------------------------------------------
    def _spawn(self, offline: bool) -> None:
        argv = self.launch.argv()
        logger.info("starting TEI: {}", " ".join(argv))
        # restarts happen after start-up, when Chutes has closed the network: from the cache only
        env = {**self._env, "HF_HUB_OFFLINE": "1"} if offline else self._env
        self._proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
        )
        threading.Thread(target=self._forward_logs, args=(self._proc,), name="tei-logs", daemon=True).start()

    @staticmethod
    def _forward_logs(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None, "this is a bug: TEI started without a stdout pipe"
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            level, message = _parse_log_line(line)
            logger.bind(component="tei").log(level, "tei: {}", message)

    def _probe(self) -> bool:
        try:
            return self._http.get(f"{self.url}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def _watch(self) -> None:
        try:
            self._spawn(offline=False)
        except BaseException as exc:  # handed to start(), which raises it in the caller's thread
            self._launch_error = exc
            return
        finally:
            self._launched.set()
        backoff = 1.0
        while not self._stopping.is_set():
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                self._healthy.clear()
                logger.warning("TEI exited with code {}; restarting in {:.0f} s", proc.returncode, backoff)
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)
                self.restarts += 1
                self._spawn(offline=True)
                continue
            if self._probe():
                if not self._healthy.is_set():
                    logger.info("TEI is healthy on {}", self.url)
                self._healthy.set()
                backoff = 1.0
            else:
                if self._healthy.is_set():
                    logger.warning("TEI stopped answering /health")
                self._healthy.clear()
            # while TEI is not (yet, or no longer) healthy, look often: it serves the moment it
            # answers, and each second lost here is a second of start-up or of failover
            self._stopping.wait(self.health_interval_s if self._healthy.is_set() else _UNHEALTHY_POLL_S)
