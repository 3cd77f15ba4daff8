"""Worker processes contain hangs, crashes and memory blow-ups of decoding steps."""

from __future__ import annotations

import os
import threading
import time

import pytest

from qwen3_vl_rag import (
    ConfigurationError,
    DecoderCrashedError,
    DecodeTimeoutError,
    InputTooLargeError,
    PdfError,
)
from qwen3_vl_rag.media.isolation import IN_PROCESS_RUNNER, WorkerPool
from qwen3_vl_rag.testing import faults


@pytest.fixture(scope="module")
def pool() -> WorkerPool:
    with WorkerPool(workers=2, timeout=10, memory_limit=1024**3) as workers:
        yield workers


def run(pool: WorkerPool, step: object, *args: object, timeout: float | None = None) -> object:
    return pool.run(step, *args, label="x.pdf", stage="render", timeout=timeout)  # type: ignore[arg-type]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_result_comes_back_from_another_process(pool: WorkerPool) -> None:
    value, pid = run(pool, faults.echo, {"a": [1, 2]})  # type: ignore[misc]
    assert value == {"a": [1, 2]}
    assert pid != os.getpid()


def test_typed_input_errors_come_back_unchanged(pool: WorkerPool) -> None:
    with pytest.raises(PdfError) as info:
        run(pool, faults.raise_input_error)
    assert (info.value.source, info.value.stage, info.value.hint) == (
        "bad.pdf",
        "open",
        "Check it.",
    )


def test_unexpected_errors_are_reported_as_decoder_failures(pool: WorkerPool) -> None:
    with pytest.raises(DecoderCrashedError, match="render failed unexpectedly: KeyError"):
        run(pool, faults.raise_unexpected)


def test_a_crash_is_contained_and_the_worker_replaced(pool: WorkerPool) -> None:
    run(pool, faults.echo, 0)
    with pytest.raises(DecoderCrashedError, match="SIGSEGV") as info:
        run(pool, faults.crash)
    assert info.value.stage == "render" and info.value.source == "x.pdf"
    seen = {run(pool, faults.echo, i)[1] for i in range(4)}  # type: ignore[index]
    assert seen  # the pool still works
    assert os.getpid() not in seen


def test_a_hang_is_stopped_at_the_time_limit(pool: WorkerPool) -> None:
    run(pool, faults.echo, 0)
    started = time.monotonic()
    with pytest.raises(DecodeTimeoutError, match="took longer than 1 s"):
        run(pool, faults.hang, 60, timeout=1.0)
    assert time.monotonic() - started < 3.0
    assert run(pool, faults.echo, 1)[0] == 1  # type: ignore[index]


def test_memory_beyond_the_limit_is_a_budget_error(pool: WorkerPool) -> None:
    with pytest.raises(InputTooLargeError, match="worker's limit") as info:
        run(pool, faults.allocate, 2048)
    assert "worker_memory" in (info.value.hint or "")


def test_steps_run_in_parallel_up_to_the_worker_count() -> None:
    with WorkerPool(workers=2, timeout=10) as pool:
        run(pool, faults.echo, 0)  # start one worker outside the timing
        started = time.monotonic()
        threads = [threading.Thread(target=run, args=(pool, faults.hang, 1.0)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.monotonic() - started < 1.9  # two 1 s steps at once, not one after the other


def test_closing_stops_the_workers() -> None:
    pool = WorkerPool(workers=2, timeout=10)
    pids = {run(pool, faults.echo, 0)[1]}  # type: ignore[index]
    pool.close()
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in pids)
    with pytest.raises(ConfigurationError, match="worker pool is closed"):
        run(pool, faults.echo, 1)


def test_in_process_runner_just_calls() -> None:
    value, pid = IN_PROCESS_RUNNER.run(faults.echo, 5, label="x", stage="open")  # type: ignore[misc]
    assert (value, pid) == (5, os.getpid())


def test_a_pool_needs_at_least_one_worker() -> None:
    with pytest.raises(ConfigurationError, match="workers must be at least 1, got 0"):
        WorkerPool(workers=0)
