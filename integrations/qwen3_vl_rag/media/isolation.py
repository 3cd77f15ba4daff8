"""Run decoders in worker processes, so a hang or a crash in C code is contained.

MuPDF and FFmpeg are C libraries: a hostile file can make them spin for minutes, allocate without
bound or crash the process, and none of that can be interrupted from a Python thread. A
:class:`WorkerPool` runs each decoding step in a child process under a time limit and an
address-space limit. When the step overruns, the child is killed and
:class:`~qwen3_vl_rag.errors.DecodeTimeoutError` raised; when the child dies,
:class:`~qwen3_vl_rag.errors.DecoderCrashedError`. Either way the next step gets a fresh child,
and the caller (a folder scan) reports the file and goes on.

Steps are plain module-level functions (they are sent to the child by reference) that raise typed
:class:`~qwen3_vl_rag.errors.InputError` s for bad input; those come back unchanged.

:data:`IN_PROCESS_RUNNER` runs the same steps in the calling process, without those protections,
for single files given by a caller who trusts them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar

from qwen3_vl_rag.errors import (
    ConfigurationError,
    DecoderCrashedError,
    DecodeTimeoutError,
    InputTooLargeError,
)

__all__ = ["IN_PROCESS_RUNNER", "WORKER_ENV", "DecodeRunner", "InProcessRunner", "WorkerPool"]

#: Set in the environment of decoding workers (steps may quieten libraries' console output).
WORKER_ENV = "QWEN3VL_RAG_DECODING_WORKER"

T = TypeVar("T")


class DecodeRunner(Protocol):
    """Runs a decoding step: here, or in a worker process."""

    def run(
        self,
        step: Callable[..., T],
        *args: Any,
        label: str,
        stage: str,
        timeout: float | None = None,
    ) -> T:
        """``step(*args)``; ``label`` and ``stage`` name the file and the step in errors."""
        ...


class InProcessRunner:
    """Runs steps in the calling process (no time limit, no crash containment)."""

    def run(
        self,
        step: Callable[..., T],
        *args: Any,
        label: str,
        stage: str,
        timeout: float | None = None,
    ) -> T:
        """``step(*args)``, here."""
        del label, stage, timeout
        return step(*args)


#: Run decoding steps in the calling process.
IN_PROCESS_RUNNER = InProcessRunner()


class _Worker:
    """One child process and the two pipe ends to talk to it."""

    def __init__(self, memory_limit: int | None) -> None:
        # the child must import this package the way the caller did
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **{WORKER_ENV: "1"})
        process = subprocess.Popen(
            [sys.executable, "-m", "qwen3_vl_rag.media._worker", str(memory_limit or 0)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            close_fds=True,
        )
        self.process = process
        if process.stdin is None or process.stdout is None:  # pragma: no cover - PIPE given
            msg = "the decoding worker has no pipes"
            raise RuntimeError(msg)
        self.requests = Connection(os.dup(process.stdin.fileno()), readable=False)
        self.replies = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()

    def stop(self, *, kill: bool) -> None:
        if not kill:
            with contextlib.suppress(OSError, ValueError):
                self.requests.send(None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        for connection in (self.requests, self.replies):
            with contextlib.suppress(OSError):
                connection.close()

    def describe_death(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        code = self.process.returncode
        if code is not None and code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"


class WorkerPool:
    """Worker processes that run decoding steps under a time and a memory limit.

    Thread-safe: up to ``workers`` steps run at once (the embedder's decoding threads use it
    concurrently). Workers start on first use and are replaced after a timeout or a crash.

    Workers are fresh interpreters running ``qwen3_vl_rag.media._worker`` (not forks: safe with
    threads and CUDA, and the caller's script is never re-imported).

    Args:
        workers: Number of worker processes.
        timeout: Default seconds a step may take.
        memory_limit: Address-space limit of each worker, in bytes (Linux; ``None``: no limit).

    Example:
        >>> from qwen3_vl_rag.media import load_pdf
        >>> with WorkerPool(workers=2, timeout=30) as pool:
        ...     sizes = [page.load_image().size for page in load_pdf("report.pdf", runner=pool)]
        >>> sizes
        [(1152, 1600), (1152, 1600), (1152, 1600)]
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        timeout: float = 60.0,
        memory_limit: int | None = 4 * 1024**3,
    ) -> None:
        if workers < 1:
            msg = f"workers must be at least 1, got {workers}."
            raise ConfigurationError(msg)
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._idle: list[_Worker] = []
        self._free_slots = workers
        self._condition = threading.Condition()
        self._closed = False
        self._finalizer = weakref.finalize(self, WorkerPool._shutdown, self._idle)

    def run(
        self,
        step: Callable[..., T],
        *args: Any,
        label: str,
        stage: str,
        timeout: float | None = None,
    ) -> T:
        """``step(*args)`` in a worker; typed errors from the step are raised here unchanged.

        Raises:
            DecodeTimeoutError: The step overran its time limit (its worker was killed).
            DecoderCrashedError: The worker died, or the step failed unexpectedly.
        """
        worker = self._acquire()
        healthy = False
        try:
            limit = self.timeout if timeout is None else timeout
            try:
                worker.requests.send((step, args))
            except (OSError, ValueError) as exc:
                raise DecoderCrashedError(
                    f"the decoding worker could not take the task ({exc}).",
                    source=label,
                    stage=stage,
                ) from exc
            if not worker.replies.poll(limit):
                raise DecodeTimeoutError(
                    f"{stage} took longer than {limit:g} s; the worker was stopped.",
                    source=label,
                    stage=stage,
                    hint="Raise the budget's timeout if the file is legitimately heavy.",
                )
            try:
                status, payload = worker.replies.recv()
            except (EOFError, OSError) as exc:
                raise DecoderCrashedError(
                    f"the decoding worker died during {stage} ({worker.describe_death()}).",
                    source=label,
                    stage=stage,
                    hint="The file is probably malformed or hostile; it was not read.",
                ) from exc
            healthy = True
        finally:
            self._release(worker, healthy=healthy)
        if status == "ok":
            result: T = payload
            return result
        if status == "input-error":
            raise payload
        if status == "out-of-memory":
            limit_gib = (self.memory_limit or 0) / 1024**3
            raise InputTooLargeError(
                f"{stage} needs more memory than the worker's limit ({limit_gib:.1f} GiB).",
                source=label,
                stage=stage,
                hint="Raise the budget's worker_memory if the file is legitimately large.",
            )
        raise DecoderCrashedError(
            f"{stage} failed unexpectedly: {payload}.", source=label, stage=stage
        )

    def _acquire(self) -> _Worker:
        with self._condition:
            while True:
                if self._closed:
                    # like a closed file: a usage error, not a property of the input
                    raise ConfigurationError(
                        "the decoding worker pool is closed: use the items before closing their "
                        "scan or WorkerPool (inside the `with` block), or load them with "
                        "runner=IN_PROCESS_RUNNER."
                    )
                if self._idle:
                    return self._idle.pop()
                if self._free_slots > 0:
                    self._free_slots -= 1
                    break
                self._condition.wait()
        try:
            return _Worker(self.memory_limit)
        except BaseException:
            with self._condition:
                self._free_slots += 1
                self._condition.notify()
            raise

    def _release(self, worker: _Worker, *, healthy: bool) -> None:
        if not healthy:
            worker.stop(kill=True)
        with self._condition:
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                self._free_slots += 1
                if healthy:
                    worker.stop(kill=False)
            self._condition.notify()

    def close(self) -> None:
        """Stop every idle worker; steps still running finish first."""
        with self._condition:
            self._closed = True
            idle, self._idle[:] = list(self._idle), []
            self._condition.notify_all()
        for worker in idle:
            worker.stop(kill=False)

    @staticmethod
    def _shutdown(idle: list[_Worker]) -> None:
        for worker in idle:
            with contextlib.suppress(Exception):
                worker.stop(kill=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WorkerPool(timeout={self.timeout:g}, pid={os.getpid()})"
