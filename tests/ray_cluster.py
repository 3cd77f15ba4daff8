"""A real local Ray cluster for the tests: ``ray start --head`` on this machine, two CPUs.

It starts in the background as soon as tests that need it are collected (it takes 10-20 s),
once per session, and stops at the end (only its own processes: `ray stop` would stop every Ray
instance of the user). Its processes keep their files in a private temporary folder; clients
need a token that only this session holds (Ray's token authentication), which the tests and the
drivers they start find in the environment. The cluster's GCS listens on a free port; clients
connect to it at 127.0.0.1 only.

Where Ray is not installed the tests that need it skip with the reason, except in CI (``CI``
set), where that fails the run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.vllm_servers import free_port

BOOT_TIMEOUT = 180.0


class LocalRay:
    """The session's Ray cluster."""

    def __init__(self) -> None:
        self.address: str | None = None
        self.error: str | None = None
        self._folder: Path | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def launch(self) -> None:
        """Start ``ray start --head`` in the background (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="ray-start", daemon=True)
            self._thread.start()

    def _environment(self) -> dict[str, str]:
        assert self._folder is not None
        return {
            "RAY_TMPDIR": str(self._folder),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self._token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def _run(self) -> None:
        try:
            self._start()
        except Exception as exc:  # said in the skip (or the CI failure), not lost in a thread
            self.error = f"starting Ray failed: {type(exc).__name__}: {exc}"

    def _start(self) -> None:
        ray = Path(sys.executable).with_name("ray")
        if not ray.is_file():
            self.error = "Ray is not installed for the tests (pip install -e '.[test]')"
            return
        # short: Ray's Unix sockets live under it, and their paths are limited to 107 bytes
        self._folder = Path(tempfile.mkdtemp(prefix="qr-", dir="/tmp"))
        self._token = secrets.token_hex(32)
        os.environ.update(self._environment())  # for this process's drivers and their children
        port = free_port()
        command = [
            str(ray),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--object-store-memory=400000000",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        log = self._folder / "start.log"
        with open(log, "wb") as out:
            done = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self._environment()},
                timeout=BOOT_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            self.error = f"`ray start` failed ({done.returncode}): {log.read_text()[-2000:]}"
            return
        self.address = f"127.0.0.1:{port}"

    def get(self) -> str:
        """The cluster's address, once it runs (or skip/fail with why not)."""
        self.launch()
        assert self._thread is not None
        self._thread.join(BOOT_TIMEOUT + 30)
        if self.address is None:
            why = self.error or "`ray start` did not finish"
            if os.environ.get("CI"):
                pytest.fail(f"the Ray cluster is needed in CI: {why}")
            pytest.skip(why)
        return self.address

    def stop(self) -> None:
        """Stop this session's cluster (its processes only) and remove its files."""
        if self._thread is None:
            return
        self._thread.join(BOOT_TIMEOUT + 30)
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
        if self._folder is not None:
            # not `ray stop`: it stops every Ray instance of the user on the machine
            stop_processes_of(self._folder)
            shutil.rmtree(self._folder, ignore_errors=True)
        self.address = None


def stop_processes_of(folder: Path, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, the processes started with ``folder`` in their arguments (a Ray
    instance's GCS, raylet and monitors name their session folder), and their descendants (the
    workers a raylet starts show only ``ray::...`` as their name)."""

    def ours() -> set[int]:
        listing = subprocess.run(
            ["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=False
        ).stdout
        rows = []
        for line in listing.splitlines():
            pid, ppid, *args = line.split(None, 2)
            rows.append((int(pid), int(ppid), args[0] if args else ""))
        found = {pid for pid, _, args in rows if str(folder) in args}
        while True:
            children = {pid for pid, ppid, _ in rows if ppid in found} - found
            if not children:
                return found - {os.getpid()}
            found |= children

    for pid in ours():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while ours() and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in ours():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


CLUSTER = LocalRay()
