"""The report of a run: ``RUN/report.html`` (self-contained) and ``RUN/figures/``.

Data flows ``summary.json`` (:mod:`thoughtscope.statistics`) and the run's records →
:mod:`~thoughtscope.report.panels` (plain data for each figure) →
:mod:`~thoughtscope.report.figures` (matplotlib, saved as PNG and SVG) →
:mod:`~thoughtscope.report.html` (one page, figures embedded). The report computes no
statistics itself. See ``docs/report.md`` for each section and figure.
"""

from __future__ import annotations

from thoughtscope.report.inputs import ReportInputError, ReportInputs, load_inputs
from thoughtscope.report.writer import FIGURES_DIR, REPORT_FILE, write_report

__all__ = [
    "FIGURES_DIR",
    "REPORT_FILE",
    "ReportInputError",
    "ReportInputs",
    "load_inputs",
    "write_report",
]
