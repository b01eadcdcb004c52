"""Statistics of a run: rates with bootstrap intervals, McNemar tests, marginal steps,
and the original study's file layout.

Data flows records → :func:`summary_from_records` (the JSON layout of ``RUN/summary.json``)
→ :class:`Summary` (its typed form, :func:`read_summary`; what the report reads) and
:func:`format_tables` (terminal text). :func:`write_run_statistics`
does it for a run folder and also writes the original study's files;
:func:`write_original_file_statistics` re-analyses a file in the original's layout.
See ``docs/statistics.md`` for every definition.
"""

from __future__ import annotations

from thoughtscope.statistics.bootstrap import DEFAULT_N_BOOT, bootstrap_ratios
from thoughtscope.statistics.files import (
    StatisticsInputError,
    read_run,
    read_summary,
    write_original_file_statistics,
    write_run_statistics,
)
from thoughtscope.statistics.original import original_statistics
from thoughtscope.statistics.schema import Summary
from thoughtscope.statistics.significance import holm_adjust, mcnemar_exact
from thoughtscope.statistics.summary import SCHEMA, summary_from_records
from thoughtscope.statistics.tables import format_tables

__all__ = [
    "DEFAULT_N_BOOT",
    "SCHEMA",
    "StatisticsInputError",
    "Summary",
    "bootstrap_ratios",
    "format_tables",
    "holm_adjust",
    "mcnemar_exact",
    "original_statistics",
    "read_run",
    "read_summary",
    "summary_from_records",
    "write_original_file_statistics",
    "write_run_statistics",
]
