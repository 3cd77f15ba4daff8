"""Entry point of a decoding worker process: ``python -m qwen3_vl_rag.media._worker LIMIT``.

Reads ``(step, args)`` messages from stdin and writes ``(status, payload)`` replies to stdout,
both as pickled frames. A fixed entry point (rather than multiprocessing's spawn) means the
child never re-imports the caller's main module, so scripts need no ``__main__`` guard.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from qwen3_vl_rag.errors import InputError


def main() -> None:
    """Apply the memory limit, keep stdout for replies only, then serve steps until stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if limit:
        with contextlib.suppress(ImportError, ValueError, OSError):
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    replies = os.dup(1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the reply stream
    reader = Connection(os.dup(0), writable=False)
    writer = Connection(replies, readable=False)
    while True:
        try:
            message = reader.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        step, args = message
        try:
            reply: tuple[str, Any] = ("ok", step(*args))
        except InputError as err:
            reply = ("input-error", err)
        except MemoryError:
            reply = ("out-of-memory", None)
        except Exception as exc:
            reply = ("failure", f"{type(exc).__name__}: {exc}")
        try:
            writer.send(reply)
        except (OSError, ValueError):
            return


if __name__ == "__main__":
    main()
