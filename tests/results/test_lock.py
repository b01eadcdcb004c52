"""One writer per output: a live holder refuses a second run, a dead one's lock is taken
over, and the lock is released however the holder's work ends."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.results.helpers import environment, wait_until
from thoughtscope.results.lock import OutputLock, OutputLockedError, clear_stale_lock, lock_path

HOLD = """
import sys, time
from pathlib import Path
from thoughtscope.results.lock import OutputLock
lock = OutputLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""


def hold_in_another_process(target: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target)],
        env=environment(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    wait_until(lambda: process.stdout.readline().strip() == "held", process)  # type: ignore[union-attr]
    return process


def test_a_live_holder_refuses_a_second_writer_naming_its_pid_and_host(tmp_path: Path) -> None:
    target = tmp_path / "results.jsonl"
    holder = hold_in_another_process(target)
    try:
        with pytest.raises(OutputLockedError) as refused:
            OutputLock(target).acquire()
        message = str(refused.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in message
        assert str(lock_path(target)) in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over_saying_whose_it_was(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "results.jsonl"
    holder = hold_in_another_process(target)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(target).exists()  # a killed process cannot clean up
    with caplog.at_level(logging.WARNING), OutputLock(target) as lock:
        assert lock.took_over is not None and lock.took_over["pid"] == holder.pid
        assert f"stale lock left by pid {holder.pid} on this host (no longer running)" in (
            caplog.text
        )
        assert f'"pid": {os.getpid()}' in lock_path(target).read_text()
    assert not lock_path(target).exists()


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_the_lock_is_released_when_the_work_fails_or_is_interrupted(
    tmp_path: Path, interruption: type[BaseException]
) -> None:
    target = tmp_path / "results.jsonl"
    with pytest.raises(interruption), OutputLock(target):
        assert lock_path(target).exists()
        raise interruption()
    assert not lock_path(target).exists()
    with OutputLock(target) as again:  # free for the next run, with no stale warning
        assert again.took_over is None


def test_a_stale_lock_is_cleared_but_a_held_one_is_kept(tmp_path: Path) -> None:
    stale, held = tmp_path / "a.rank0of2.jsonl", tmp_path / "a.rank1of2.jsonl"
    holder = hold_in_another_process(stale)
    holder.kill()
    holder.wait()
    with OutputLock(held):
        assert clear_stale_lock(stale) and not lock_path(stale).exists()
        assert not clear_stale_lock(held) and lock_path(held).exists()
