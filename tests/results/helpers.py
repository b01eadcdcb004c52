"""Running thoughtscope in a separate process, as a user (or torchrun) would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import thoughtscope

SRC = str(Path(thoughtscope.__file__).resolve().parents[1])


def environment() -> dict[str, str]:
    """This checkout's code first, one thread per process."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": SRC + (os.pathsep + path if path else ""),
        "OMP_NUM_THREADS": "1",
    }


def thoughtscope_process(args: list[str], **kwargs: object) -> subprocess.Popen[str]:
    """``python -m thoughtscope ARGS`` started in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "thoughtscope", *args],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def run_thoughtscope(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m thoughtscope ARGS``, waited for."""
    return subprocess.run(
        [sys.executable, "-m", "thoughtscope", *args],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until(
    condition: Callable[[], bool], process: subprocess.Popen[str], seconds: float = 60
) -> None:
    """Polls ``condition`` until it holds; fails if ``process`` ends first or time runs out."""
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"the process ended first (rc {process.returncode}): {err}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def torchrun_thoughtscope(
    args: list[str], ranks: int = 2, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node RANKS -m thoughtscope ARGS``, waited for
    (CPU ranks join with gloo)."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launch += ["--nproc-per-node", str(ranks), "-m", "thoughtscope", *args]
    return subprocess.run(
        launch, env=environment(), capture_output=True, text=True, timeout=timeout
    )
