"""Statistics and report sit above the engine: they read files, never a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.report.build import write_run

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("thoughtscope.engine", "thoughtscope.model", "thoughtscope.analyses")


def _loaded_after(code: str) -> list[str]:
    """Runs ``code`` in a fresh interpreter; returns the heavy modules it imported."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    return [m for m in modules if m.startswith(HEAVY)]


def test_statistics_and_report_import_neither_the_engine_nor_the_model() -> None:
    assert _loaded_after("import thoughtscope.report, thoughtscope.statistics") == []


def test_writing_a_report_reads_the_run_folder_only(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", n=8, sites=("block:1",), schedules=("prefix",))
    code = (
        "from pathlib import Path\nfrom thoughtscope.report import write_report\n"
        f"write_report(Path({str(run)!r}), examples=2, n_boot=10)"
    )
    assert _loaded_after(code) == []
    assert (run / "report.html").is_file()
