"""A smoke run of bench/profile_engine.py as its docstring says to run it: a script, from
the repository root, on a tiny random model (no timing claims)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_profile_runs_as_a_script_and_names_its_parts() -> None:
    command = [
        sys.executable,
        "bench/profile_engine.py",
        "--model",
        "random-toy-size",
        "--problems",
        "2",
        "--max-new-tokens",
        "4",
        "--repeats",
        "1",
        "--ops",
        "3",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "engine phase, 2 problems x 7 conditions:" in out
    assert "thought steps: attention" in out
    assert "attention reads" in out
    assert "over a view of the filled part" in out and "over the packed reserved width" in out


def test_view_versus_packed_times_both_layouts() -> None:
    from bench.profile_engine import view_versus_packed

    as_view, packed = view_versus_packed(8, 5, 9, heads=2, head_dim=4, repeats=2)
    assert as_view > 0 and packed > 0
