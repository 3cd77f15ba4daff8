"""Run hostile cases in a fresh interpreter under a time limit, and read back its peak memory.

A hostile input must never stall or exhaust a run. Tests prove it by running the case in a child
process that is killed after ``seconds`` and whose address space may be capped, then asserting on
the measured wall time and peak resident memory (never on the machine's speed).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Bounded", "run_bounded"]

_MARK = "__BOUNDED_PEAK_RSS_KIB__="

# Peak memory is the child's own VmHWM (its address space's high-water mark, which starts afresh
# at exec). getrusage's ru_maxrss would not do: it survives exec, so a child forked from a large
# pytest process would report the parent's size.
_PRELUDE = f"""
import atexit as _a, sys as _s
def _peak():
    for _line in open("/proc/self/status"):
        if _line.startswith("VmHWM:"):
            _s.stderr.write("\\n{_MARK}%d\\n" % int(_line.split()[1]))
_a.register(_peak)
"""


@dataclass
class Bounded:
    """What a bounded child did."""

    returncode: int | None
    """Exit status; ``None`` when it was killed for running past its time."""
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float | None
    """Peak resident memory of the child itself; ``None`` if it died before reporting."""

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def json(self) -> object:
        """The last stdout line, parsed as JSON (cases print their findings that way)."""
        return json.loads(self.stdout.strip().splitlines()[-1])


def run_bounded(
    code: str,
    *,
    seconds: float = 120,
    address_space_mib: int | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Bounded:
    """Run ``python -c code`` with a wall-clock limit and an optional address-space cap.

    The child inherits this environment (``env`` entries are added on top), so it imports the
    package under test the same way the test does.
    """
    limit = None if address_space_mib is None else address_space_mib * 1024 * 1024

    def cap() -> None:  # runs in the child before exec
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    full_env = {**os.environ, **(env or {})}
    # The tests' own helpers (tests.media_files...) must import from the child too.
    root = str(Path(__file__).resolve().parent.parent)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, full_env.get("PYTHONPATH", "")) if p)
    start = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", _PRELUDE + code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=full_env,
        cwd=cwd,
        preexec_fn=cap,
    )
    try:
        out, err = child.communicate(timeout=seconds)
        returncode: int | None = child.returncode
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        returncode = None
    elapsed = time.monotonic() - start
    found = re.findall(rf"{_MARK}(\d+)", err)
    peak = int(found[-1]) / 1024 if found else None
    err = re.sub(rf"\n?{_MARK}\d+\n?", "", err)
    return Bounded(returncode, out, err, elapsed, peak)
