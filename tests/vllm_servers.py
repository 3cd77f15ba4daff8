"""Real vLLM servers for the tests: the CPU build, tiny checkpoints, loopback ports.

The servers run from their own environment (``make vllm-env`` builds ``.venv-vllm``; the
``QWEN3_VL_RAG_VLLM_PYTHON`` variable names another interpreter). They start as soon as tests that
need them are collected, so they boot while other tests run, and stop at the end of the session.
Each runs the ``vllm`` preset (head_dim 32: the CPU attention kernel's minimum), in float32 so that
parity holds to 1e-5, with the exact flags of ``qwen3-vl-rag serve``.

Where vLLM cannot be installed or started, the tests that need it skip with the reason, except
in CI (``CI`` set), where that fails the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
#: the servers the tests use: name -> the kind of checkpoint it runs
SERVERS = {
    "embedding": "embedding",
    "reranker": "reranker",
    # a reranker started without our judge template: the handshake must refuse it
    "reranker-without-template": "reranker",
}
MAX_MODEL_LEN = 2048
BOOT_TIMEOUT = 900.0  # seconds; a cold start on two busy cores takes a few minutes


def vllm_python() -> Path | None:
    """The interpreter that has vLLM, or ``None``."""
    named = os.environ.get("QWEN3_VL_RAG_VLLM_PYTHON")
    candidate = Path(named) if named else REPO / ".venv-vllm" / "bin" / "python"
    return candidate if candidate.is_file() else None


def checkpoint(kind: str) -> Path:
    """The tiny ``vllm``-preset checkpoint of ``kind``, built once per machine (same bytes)."""
    from qwen3_vl_rag.testing import build_tiny_checkpoint, checkpoints

    # the folder is named for the builder's source: a changed builder never reuses old bytes
    builder = hashlib.sha256(Path(checkpoints.__file__).read_bytes()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / "qwen3-vl-rag-tests" / f"vllm-{kind}-{builder}"
    if not (root / "model.safetensors").is_file():
        scratch = Path(tempfile.mkdtemp(prefix=f"vllm-{kind}-", dir=root.parent.parent))
        build_tiny_checkpoint(scratch, kind=kind, preset="vllm")  # type: ignore[arg-type]
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            scratch.rename(root)
        except OSError:  # built meanwhile by another session
            shutil.rmtree(scratch, ignore_errors=True)
    return root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """One vLLM server process started for the tests."""

    name: str
    model: Path
    url: str
    process: subprocess.Popen[bytes] | None
    log: Path
    ready: bool = False
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Until ``/v1/models`` answers; a typed failure with the log's tail otherwise."""
        with self._lock:
            if self.ready or self.error:
                return
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    self.error = f"exited with {self.process.returncode}: {self.tail()}"
                    return
                try:
                    if httpx.get(f"{self.url}/v1/models", timeout=2, trust_env=False).is_success:
                        self.ready = True
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(1.0)
            self.error = f"not ready after {timeout:.0f} s: {self.tail()}"

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


class Fleet:
    """The session's servers, started in the background on first use."""

    def __init__(self) -> None:
        self.servers: dict[str, Server] = {}
        self.unavailable: str | None = None
        self._started = False

    def launch(self) -> None:
        if self._started:
            return
        self._started = True
        running = os.environ.get("QWEN3_VL_RAG_TEST_VLLM_URLS")
        if running:  # servers a developer keeps running: name=url,... on the same checkpoints
            for entry in running.split(","):
                name, _, url = entry.partition("=")
                model = checkpoint(SERVERS[name.strip()])
                self.servers[name.strip()] = Server(name, model, url.strip(), None, Path("-"))
            return
        python = vllm_python()
        if python is None:
            self.unavailable = (
                "vLLM is not installed for the tests: run `make vllm-env` (builds .venv-vllm) or "
                "set QWEN3_VL_RAG_VLLM_PYTHON"
            )
            return
        logs = Path(tempfile.mkdtemp(prefix="qwen3-vl-rag-vllm-logs-"))
        for name, kind in SERVERS.items():
            self.servers[name] = self._start(name, kind, python, logs)

    def _start(self, name: str, kind: str, python: Path, logs: Path) -> Server:
        from qwen3_vl_rag.serving import vllm_command

        model = checkpoint(kind)
        port = free_port()
        command = vllm_command(
            str(model),
            kind=kind,  # type: ignore[arg-type]
            port=port,
            max_model_len=MAX_MODEL_LEN,
            python=str(python),
            extra=[
                "--dtype",
                "float32",  # parity to 1e-5 is asserted in float32
                "--gpu-memory-utilization",
                "0.1",  # on CPU: the share of RAM for the KV cache (the default 0.92 fails)
                "--skip-mm-profiling",  # profiling a 16k-token image takes minutes on CPU
                "--enforce-eager",  # no torch.compile warm-up: minutes on CPU, nothing gained here
            ],
        )
        if name == "reranker-without-template":
            at = command.index("--chat-template")
            del command[at : at + 2]
        log = logs / f"{name}.log"
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # three servers share two cores
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(logs),
                start_new_session=True,  # its engine core and workers stop with it
            )
        return Server(name, model, f"http://127.0.0.1:{port}", process, log)

    def get(self, name: str) -> Server:
        """The ready server, or a skip (a failure in CI) saying why there is none."""
        self.launch()
        if self.unavailable is not None:
            _unavailable(self.unavailable)
        server = self.servers[name]
        server.wait()
        if server.error is not None:
            _unavailable(f"the vLLM {name} server did not start: {server.error}")
        return server

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the vLLM tests: {reason}", pytrace=False)
    pytest.skip(reason)


FLEET = Fleet()
