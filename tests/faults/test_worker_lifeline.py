"""A worker never stays alive doing nothing, and a late soft time limit breaks nothing.

Found by a fault harness: a worker cut off from Redis and PostgreSQL fired a command's
soft time limit late, after the command had ended. The signal (SIGUSR1) reached the
pool process while it waited for its next job, killed it mid-read, the main process
stopped with ``Unrecoverable error: UnpicklingError`` and then waited for ever on its
pool: alive, consuming nothing, and never restarted by a supervisor, which restarts only
a process that exits. Both halves happen here to a real worker, from outside.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from commands import CreateOrder
from commands.client import CommandClient
from tests.support.workers import WorkerProcess
from workers.app import EXIT_GRACE

WAIT = 60.0  # generous: two cores shared with other test runs


def pool_processes(worker: WorkerProcess) -> list[int]:
    pid = worker.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _pipes(pid: int, access: int) -> dict[str, list[int]]:
    """The process's pipe ends opened for ``access`` (os.O_RDONLY or os.O_WRONLY): their
    file descriptors, by the pipe's name (``pipe:[inode]``)."""
    found: dict[str, list[int]] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue  # closed meanwhile
        flags = int(info.split("flags:")[1].split()[0], 8)
        if target.startswith("pipe:") and flags & os.O_ACCMODE == access:
            found.setdefault(target, []).append(int(fd))
    return found


def break_result_pipe(worker: WorkerProcess, child: int) -> None:
    """Write a message that is not a pickle into the pipe the pool process sends results
    on: what the main process reads once a signal cut a write short and the stream lost
    its framing. The main process reads it next.

    The pipes the child writes and the main process reads are its result pipe and its
    sentinel. The main process holds the sentinel's read end twice (Celery polls a dup
    of it, celery/concurrency/asynpool.py) and the result pipe's once. (Inode numbers do
    not tell them apart: the kernel hands them out in per-CPU runs, not in the order the
    pipes were made.)"""
    written = _pipes(child, os.O_WRONLY)
    read = _pipes(worker.process.pid, os.O_RDONLY)
    candidates = [
        name for name, fds in written.items() if len(read.get(name, ())) == 1 and min(fds) > 2
    ]
    assert len(candidates) == 1, f"no single result pipe: {written} written, {read} read"
    [results] = candidates
    fd = os.open(f"/proc/{child}/fd/{written[results][0]}", os.O_WRONLY)
    try:
        os.write(fd, b"\x00\x00\x00\x07garbage")  # a length, then no pickle
    finally:
        os.close(fd)


def wait_for(condition: Callable[[], bool], what: str, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {WAIT:g} s:\n{worker.log()}")
        time.sleep(0.1)


@pytest.fixture
def stopped() -> Iterator[list[int]]:
    """Pool processes a test stopped: resumed and killed at the end whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)


def test_a_worker_stopped_by_an_unrecoverable_error_exits_even_with_a_pool_process_stuck(
    start_worker: Callable[..., WorkerProcess], stopped: list[int]
) -> None:
    worker = start_worker(concurrency=1)
    [child] = pool_processes(worker)
    # A pool process that answers nothing, as one stuck on a dead link: without a bound,
    # the worker waits for it for ever once it stops.
    os.kill(child, signal.SIGSTOP)
    stopped.append(child)
    break_result_pipe(worker, child)
    wait_for(lambda: "Unrecoverable error" in worker.log(None), "unrecoverable error", worker)
    broke = time.monotonic()

    try:
        code = worker.process.wait(timeout=EXIT_GRACE + WAIT)
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker hangs after an unrecoverable error") from None

    assert code != 0, worker.log()  # non-zero: a supervisor restarts it
    assert time.monotonic() - broke < EXIT_GRACE + WAIT
    assert "UnpicklingError" in worker.log(None)
    assert not running(child), worker.log()  # killed with it, not left behind on its own


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_soft_time_limit_signal_at_an_idle_pool_process_does_no_harm(
    start_worker: Callable[..., WorkerProcess], client: CommandClient
) -> None:
    worker = start_worker(concurrency=1)
    assert client.send(CreateOrder("order-before", "customer-1")).wait(timeout=WAIT).accepted
    [child] = pool_processes(worker)

    # What the main process sends when it fires a soft time limit after the job ended.
    for _ in range(3):
        os.kill(child, signal.SIGUSR1)
        time.sleep(0.2)
    wait_for(lambda: "came after its job had ended" in worker.log(None), "warning", worker)

    after = client.send(CreateOrder("order-after", "customer-1")).wait(timeout=WAIT)
    assert after.accepted, after
    assert pool_processes(worker) == [child]  # the same process: it did not die
    log = worker.log(None)
    assert "Pool process" not in log and "exited with" not in log, log
    assert worker.process.poll() is None
