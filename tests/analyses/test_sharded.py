"""The shared run loop (`run_in_shards`): a resumed run cuts its batches as the
uninterrupted run did and computes only the units left, each row once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from thoughtscope.analyses.sharded import ShardedWork, run_in_shards
from thoughtscope.results.shards import RowKind, StoredRow, row_id
from thoughtscope.results.store import read_manifest


@dataclass(frozen=True)
class Square(StoredRow):
    unit: int
    value: int

    @property
    def key(self) -> tuple[int]:
        return (self.unit,)


SQUARES = RowKind.of(Square, "square")


def _work(seen: list[list[int]]) -> ShardedWork[int, Square]:
    def run_batch(batch: list[int]) -> list[Square]:
        seen.append(list(batch))
        return [Square(u, u * u) for u in batch]

    return ShardedWork(
        rows=SQUARES,
        manifest={"format": "squares", "format_version": 1, "n": 10},
        identity=["n"],
        units=list(range(10)),
        row_ids=lambda u: [row_id(u)],
        batch_size=4,
        run_batch=run_batch,
        input_error=lambda option, message: ValueError(f"{option}: {message}"),
    )


def test_a_resumed_run_keeps_the_batches_of_an_uninterrupted_one(tmp_path: Path) -> None:
    seen: list[list[int]] = []
    run_in_shards(_work(seen), tmp_path)
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    expected = (tmp_path / "results.jsonl").read_text()

    # Only units 0 and 1 survive (the rest of the file lost): the resumed run finishes
    # the first batch without them and computes the others with their usual neighbours.
    (tmp_path / "results.jsonl").write_text("".join(expected.splitlines(keepends=True)[:2]))
    resumed: list[list[int]] = []
    done = run_in_shards(_work(resumed), tmp_path)
    assert resumed == [[2, 3], [4, 5, 6, 7], [8, 9]]
    assert (done.n_written, done.n_skipped) == (8, 2)
    assert (tmp_path / "results.jsonl").read_text() == expected


def test_a_batch_size_settled_under_the_lock_cuts_the_batches(tmp_path: Path) -> None:
    """Importance's case: rank 0 fills in the manifest (its batch size) just before it is
    written, the batches are cut by that size, and the analysis learns what was done."""
    manifest = {"format": "squares", "format_version": 1, "n": 10}
    started: list[list[str]] = []

    def work(seen: list[list[int]]) -> ShardedWork[int, Square]:
        return replace(
            _work(seen),
            manifest=manifest,
            settle=lambda: manifest.update(rows=3),
            batch_size=lambda: int(manifest["rows"]),
            start=lambda done: started.append(sorted(done)),
        )

    seen: list[list[int]] = []
    run_in_shards(work(seen), tmp_path)
    assert seen == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert read_manifest(tmp_path)["rows"] == 3
    again: list[list[int]] = []
    assert run_in_shards(work(again), tmp_path).n_skipped == 10 and again == []
    assert started == [[], sorted(row_id(u) for u in range(10))]
