r"""What the command prints: terminal-safe lines, and a reader that goes away is not an error.

File names, PDF text and index metadata are data from the outside. Printed as they are, an
``ESC [`` sequence in a file name drives the terminal (colours, cursor moves, window titles, even
clearing the screen) and a newline in a name forges a line of the report. Every line of human
output goes through :func:`printable`, which shows control characters (C0, DEL, C1), Unicode line
separators and bidirectional overrides as visible escapes (``\x1b``, ``\u202e``). Text that is
prose, not a name (a snippet of a page's text), goes through :func:`readable` instead, which drops
them: a stray U+0088 from a PDF is noise to a reader, not something to point at. JSON output needs
nothing more: ``json.dumps`` already escapes all of them.

``qwen3-vl-rag index ... | head -1`` closes the command's output early. That is the reader's
choice, not a failure: the command finishes its work, writes its ``--report``, drops the rest of
its output and exits with its usual code.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys

__all__ = ["emit", "emit_raw", "finish_output", "printable", "readable"]

# C0 controls (newline and tab included), DEL, C1 controls (U+0080-U+009F: U+009B is a one-byte
# CSI on some terminals), Unicode line and paragraph separators, and the bidirectional marks,
# embeddings, overrides and isolates that can make a name read backwards.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    r"""``text`` with every control or bidirectional character shown as an escape.

    Example:
        >>> printable("evil\x1b[2J\nname\u202egnp.exe")
        'evil\\x1b[2J\\x0aname\\u202egnp.exe'
    """
    return _UNSAFE.sub(_escape, str(text))


def readable(text: object) -> str:
    r"""``text`` as one line of prose: whitespace runs become one space, control characters go.

    Example:
        >>> readable("Revenue\x88 grew\n\n 12%\x1b[0m in\u202e Q4")
        'Revenue grew 12%[0m in Q4'
    """
    words = (_UNSAFE.sub("", word) for word in str(text).split())
    return " ".join(word for word in words if word)


def emit(line: str = "") -> None:
    """Print one line of human output to stdout, made terminal-safe."""
    _write(printable(line) + "\n")


def emit_raw(text: str) -> None:
    """Print machine output (JSON, already escaped) to stdout as is."""
    _write(text + "\n")


def finish_output() -> None:
    """Flush stdout at the end of a command; a reader that went away is not an error."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        _drop_stdout()


def _drop_stdout() -> None:
    """Send the rest of stdout nowhere: its reader closed it (``| head``)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        # the interpreter's own final flush then writes to /dev/null instead of failing
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stdout stays open until exit)
    finally:
        os.close(devnull)
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()  # what was buffered for the closed pipe
