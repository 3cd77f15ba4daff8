"""A real Chroma server (``chroma run``) on a free loopback port, for the server-store tests.

Started by fixtures (one per session, and one per test for the test that kills it), stopped at
the end. Without the ``chroma`` executable the tests are skipped, except in CI (``CI`` set),
where they fail: the server store must be tested there.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

_READY_SECONDS = 60.0


def chroma_executable() -> str | None:
    """The ``chroma`` command of this Python's environment (or on ``PATH``), or ``None``."""
    beside = Path(sys.executable).with_name("chroma")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("chroma")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ChromaServer:
    """``chroma run --path PATH --host 127.0.0.1 --port PORT``, restartable on the same ones."""

    def __init__(self, path: Path, log: Path) -> None:
        executable = chroma_executable()
        if executable is None:
            reason = "the `chroma` executable (chromadb's server) is not installed"
            if os.environ.get("CI"):
                pytest.fail(f"{reason}, and CI must run the Chroma server tests")
            pytest.skip(reason)
        self.executable = executable
        self.path = path
        self.log = log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ChromaServer:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.executable,
                    "run",
                    "--path",
                    str(self.path),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + _READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma run exited: {self.log.read_text()[-2000:]}")
            if self.answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma run did not answer in {_READY_SECONDS:g} s")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut of the server's machine would."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None
