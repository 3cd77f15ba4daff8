"""Decoding steps that misbehave on purpose, to test worker-process containment.

They are module-level functions so a :class:`~qwen3_vl_rag.media.isolation.WorkerPool` can send
them to a child process by reference.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from qwen3_vl_rag.errors import PdfError

if TYPE_CHECKING:
    from qwen3_vl_rag.media.isolation import WorkerPool
    from qwen3_vl_rag.media.loaders import MediaOptions

__all__ = [
    "CrashingDecoder",
    "SlowDecoder",
    "allocate",
    "crash",
    "echo",
    "hang",
    "raise_input_error",
    "raise_unexpected",
]

T = TypeVar("T")


def echo(value: object) -> object:
    """Return ``value`` (and the worker's pid, to tell workers apart)."""
    return (value, os.getpid())


def hang(seconds: float) -> None:
    """Sleep, as a decoder stuck on a content-stream bomb would spin."""
    time.sleep(seconds)


def crash() -> None:
    """Die with SIGSEGV, as a decoder with a memory-safety bug would."""
    os.kill(os.getpid(), signal.SIGSEGV)


def allocate(megabytes: int) -> int:
    """Allocate (and touch) ``megabytes`` of memory."""
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def raise_input_error() -> None:
    """Fail the way a step fails on bad input."""
    raise PdfError("not a readable PDF.", source="bad.pdf", stage="open", hint="Check it.")


def raise_unexpected() -> None:
    """Fail the way a step with a bug fails."""
    msg = "something unexpected"
    raise KeyError(msg)


@dataclass(frozen=True)
class CrashingDecoder:
    """Decoding runners whose worker dies (SIGSEGV) at one stage of files named with a marker.

    A hostile file crashes the decoder this way; this reproduces it on any file, in whatever
    process makes the runner (a Ray worker: it is picklable, and made where it is used).

    Example:
        >>> from qwen3_vl_rag.media.loaders import MediaOptions
        >>> runner = CrashingDecoder("evil", stage="render")(MediaOptions())
        >>> runner.run(echo, 1, label="good.pdf", stage="render")[0]
        1
        >>> runner.run(echo, 1, label="evil.pdf", stage="render")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        qwen3_vl_rag.errors.DecoderCrashedError: evil.pdf: the decoding worker died during ...
        >>> runner.close()
    """

    marker: str
    stage: str = "render"

    def __call__(self, options: MediaOptions) -> _FaultyRunner:
        """A runner for ``options``' budgets, crashing on the marked files."""
        return _FaultyRunner(options, self._fault)

    def _fault(self, pool: WorkerPool, label: str, stage: str, timeout: float | None) -> None:
        if self.marker in label and stage == self.stage:
            pool.run(crash, label=label, stage=stage, timeout=timeout)


@dataclass(frozen=True)
class SlowDecoder:
    """Decoding runners whose every step at one stage takes ``seconds`` longer.

    Stretches a cluster run, so that a test can act while it is under way (kill an actor). Like
    :class:`CrashingDecoder`, it is picklable and makes its runner where it is used.

    Example:
        >>> from qwen3_vl_rag.media.loaders import MediaOptions
        >>> runner = SlowDecoder(0.01, stage="render")(MediaOptions())
        >>> runner.run(echo, 1, label="page.pdf", stage="render")[0]
        1
        >>> runner.close()
    """

    seconds: float
    stage: str = "render"

    def __call__(self, options: MediaOptions) -> _FaultyRunner:
        """A runner for ``options``' budgets, slower at the stage."""
        return _FaultyRunner(options, self._fault)

    def _fault(self, pool: WorkerPool, label: str, stage: str, timeout: float | None) -> None:
        if stage == self.stage:
            time.sleep(self.seconds)


class _FaultyRunner:
    """A worker pool under ``options``' budgets whose every step first meets ``fault``."""

    def __init__(
        self,
        options: MediaOptions,
        fault: Callable[[WorkerPool, str, str, float | None], None],
    ) -> None:
        from qwen3_vl_rag.media.isolation import WorkerPool

        budget = options.budget
        self.pool = WorkerPool(1, timeout=budget.timeout, memory_limit=budget.worker_memory)
        self.fault = fault

    def run(
        self,
        step: Callable[..., T],
        *args: Any,
        label: str,
        stage: str,
        timeout: float | None = None,
    ) -> T:
        self.fault(self.pool, label, stage, timeout)
        return self.pool.run(step, *args, label=label, stage=stage, timeout=timeout)

    def close(self) -> None:
        self.pool.close()
