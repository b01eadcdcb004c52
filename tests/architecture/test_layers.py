"""The package's layers import one way only: model families → engine → analyses → results
→ statistics → report → CLI (see docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import thoughtscope

PACKAGE = Path(thoughtscope.__file__).parent

ALLOWED: dict[str, set[str]] = {
    "files": set(),
    "positions": set(),
    "problems": set(),
    "model": {"files"},
    "engine": {"model", "files", "positions"},
    "results": {"files", "positions"},
    "analyses": {"engine", "model", "problems", "results", "files", "positions"},
    "training": {"engine", "model", "problems", "results", "files", "positions"},
    "statistics": {"problems", "results", "files", "positions"},
    "report": {"statistics", "results", "problems", "files", "positions"},
    "cli": {
        "analyses",
        "engine",
        "model",
        "problems",
        "report",
        "results",
        "statistics",
        "training",
        "files",
        "positions",
    },
    "__main__": {"cli"},
    "__init__": set(),
}
"""For each top-level module or package, the others it may import (layers below it)."""


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "thoughtscope" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_layer_imports_only_layers_below_it() -> None:
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        layer = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        assert layer in ALLOWED, f"{relative}: a new top-level module; give it a layer here"
        for target in _imports(path) - {layer}:
            if target not in ALLOWED[layer]:
                wrong.append(f"{relative} imports thoughtscope.{target}")
    assert not wrong, "\n".join(wrong)


def test_statistics_and_report_load_no_model_or_engine() -> None:
    code = (
        "import sys, thoughtscope.statistics, thoughtscope.report; "
        "print(sorted(m for m in sys.modules if m.startswith(('thoughtscope.engine', "
        "'thoughtscope.model', 'thoughtscope.analyses', 'transformers'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
