"""The result store: append-only lines, a cut-off last line tolerated, damage reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from thoughtscope.results.conditions import ConditionSpec
from thoughtscope.results.records import ConditionOutcome, Outcome, ProblemRecord
from thoughtscope.results.store import (
    ResultStore,
    ResultStoreError,
    read_manifest,
    read_records,
    write_manifest,
)


def record(i: int) -> ProblemRecord:
    condition = ConditionOutcome(
        ConditionSpec("zero@block:1:{0}", ("prefix", "single"), "zero", "block:1", (0,)),
        output="7",
        predicted=7.0,
        correct=False,
        changed=True,
        gold_logprob=-3.5,
        kl=0.25,
    )
    return ProblemRecord(
        id=f"p{i}",
        question=f"q{i}?",
        steps=2,
        steps_source="given",
        stratum="2",
        expected=float(i),
        baseline=Outcome(str(i), float(i), True, -0.5),
        conditions=[condition],
    )


def test_records_round_trip_through_the_file(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    assert store.read() == [] and store.done_ids() == set()
    store.append([record(0), record(1)])
    store.append([record(2)])
    assert read_records(tmp_path) == [record(0), record(1), record(2)]
    assert store.done_ids() == {"p0", "p1", "p2"}


def test_a_cut_off_last_line_is_ignored_and_replaced_by_the_next_append(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.append([record(0), record(1)])
    full = store.path.read_bytes()
    store.append([record(2)])
    cut = store.path.read_bytes()[: len(full) + 40]  # a write killed mid-line
    store.path.write_bytes(cut)
    assert [r.id for r in read_records(store.path)] == ["p0", "p1"]
    ResultStore(tmp_path).append([record(3)])
    assert [r.id for r in read_records(store.path)] == ["p0", "p1", "p3"]


def test_a_damaged_line_before_the_end_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.append([record(0), record(1), record(2)])
    lines = store.path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:30] + "\n"
    store.path.write_text("".join(lines))
    with pytest.raises(ResultStoreError, match=r"results\.jsonl, line 2: not a valid"):
        read_records(tmp_path)


def test_manifest_round_trips(tmp_path: Path) -> None:
    manifest = {"seed": 3, "sites": ["latent", "block:1"], "validate": None}
    write_manifest(tmp_path / "run", manifest)
    assert read_manifest(tmp_path / "run") == manifest
    with pytest.raises(FileNotFoundError, match="no run manifest"):
        read_manifest(tmp_path)
