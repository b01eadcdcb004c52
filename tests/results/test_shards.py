"""Outputs read as the union of their shards, each problem once; merged in problem order."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.analyses.test_store import record
from thoughtscope.engine.distributed import Ranks
from thoughtscope.results.records import ProblemRecord
from thoughtscope.results.shards import (
    DuplicateRowsError,
    merge_shards,
    read_run_records,
    record_file,
    record_id,
    shard_files,
    shard_path,
)
from thoughtscope.results.store import ResultStore, write_manifest
from thoughtscope.statistics import StatisticsInputError, read_run


def ids(records: list[ProblemRecord]) -> list[str]:
    return [r.id for r in records]


def test_each_rank_has_its_own_shard_name_and_one_rank_writes_the_file_itself() -> None:
    assert shard_path(Path("r/results.jsonl"), 0, 1) == Path("r/results.jsonl")
    assert shard_path(Path("r/results.jsonl"), 1, 4) == Path("r/results.rank1of4.jsonl")
    assert shard_path(Path("t.safetensors"), 0, 2) == Path("t.rank0of2.safetensors")


def test_ranks_split_work_deterministically_and_completely() -> None:
    items = list(range(11))
    shares = [Ranks(rank, 3).share(items) for rank in range(3)]
    assert sorted(x for share in shares for x in share) == items
    assert shares[1] == [1, 4, 7, 10]


def test_a_run_is_read_from_every_shard_of_any_launch(tmp_path: Path) -> None:
    ResultStore(tmp_path).append([record(0), record(1)])
    ResultStore(tmp_path, "results.rank0of2.jsonl").append([record(2)])
    ResultStore(tmp_path, "results.rank1of2.jsonl").append([record(3)])
    ResultStore(tmp_path, "results.rank2of3.jsonl").append([record(4)])
    assert len(shard_files(tmp_path / "results.jsonl")) == 4
    assert sorted(ids(read_run_records(tmp_path))) == ["p0", "p1", "p2", "p3", "p4"]


def test_identical_repeated_rows_are_counted_once_with_a_warning_naming_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_manifest(tmp_path, {"seed": 0})
    store = ResultStore(tmp_path)
    store.append([record(0), record(1), record(2)])
    store.append([record(1), record(2)])  # two runs into one folder appended twice
    ResultStore(tmp_path, "results.rank0of2.jsonl").append([record(0)])
    with caplog.at_level(logging.WARNING):
        records, _ = read_run(tmp_path)
    assert ids(records) == ["p0", "p1", "p2"]
    assert "3 repeated lines" in caplog.text and "ids p1, p2, p0" in caplog.text


def test_different_rows_for_one_id_are_refused_naming_the_files_and_ids(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"seed": 0})
    ResultStore(tmp_path).append([record(0), record(1)])
    other = ProblemRecord(**{**record(1).__dict__, "stratum": "3"})
    ResultStore(tmp_path, "results.rank1of2.jsonl").append([other])
    with pytest.raises(DuplicateRowsError, match=r"1 problem id with different rows \(p1\)"):
        read_run_records(tmp_path)
    with pytest.raises(StatisticsInputError) as refused:
        read_run(tmp_path)
    message = str(refused.value)
    assert "results.jsonl" in message and "results.rank1of2.jsonl" in message
    assert "\n" not in message


def test_merging_writes_every_row_once_in_problem_order_and_removes_the_shards(
    tmp_path: Path,
) -> None:
    path = tmp_path / "results.jsonl"
    ResultStore(tmp_path).append([record(3), record(1)])
    ResultStore(tmp_path, "results.rank0of2.jsonl").append([record(0), record(1)])
    ResultStore(tmp_path, "results.rank1of2.jsonl").append([record(2)])
    order = ["p0", "p1", "p2", "p3"]
    assert merge_shards(path, record_file, record_id, order) == 4
    assert shard_files(path) == [path]
    assert ids(ResultStore(tmp_path).read()) == order
