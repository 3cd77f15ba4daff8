"""Decoding steps that misbehave on purpose, to test worker-process containment.

They are module-level functions so a :class:`~qwen3_vl_rag.media.isolation.WorkerPool` can send
them to a child process by reference.
"""

from __future__ import annotations

import os
import signal
import time

from qwen3_vl_rag.errors import PdfError

__all__ = ["allocate", "crash", "echo", "hang", "raise_input_error", "raise_unexpected"]


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
