"""The launch's process group: how long a rank waits for the others."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import torch.distributed as dist

from thoughtscope.engine.distributed import TIMEOUT_VARIABLE, Ranks, collective_timeout


def test_ranks_wait_three_hours_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_VARIABLE, raising=False)
    # Longer than torch's defaults (10 minutes for NCCL, 30 for gloo), which a rank-0
    # step (reference means, steering directions) on a large model can outlast.
    assert collective_timeout() == timedelta(minutes=180)
    monkeypatch.setenv(TIMEOUT_VARIABLE, "45")
    assert collective_timeout() == timedelta(minutes=45)


@pytest.mark.parametrize("bad", ["0", "-5", "soon", "nan"])
def test_a_bad_timeout_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv(TIMEOUT_VARIABLE, bad)
    with pytest.raises(ValueError, match=f"{TIMEOUT_VARIABLE}='{bad}' must be a number"):
        collective_timeout()


def test_the_process_group_is_started_with_that_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TIMEOUT_VARIABLE, "7")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: seen.update(kwargs))
    Ranks(rank=1, world_size=2).start("cpu")
    assert seen == {
        "backend": "gloo",
        "rank": 1,
        "world_size": 2,
        "timeout": timedelta(minutes=7),
    }


def test_a_launch_with_a_bad_timeout_stops_with_one_line(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from thoughtscope.cli import app

    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", TIMEOUT_VARIABLE: "soon"}
    args = ["answer", "--data", "synthetic:n=2", "--out", str(tmp_path / "a.jsonl")]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: environment variable {TIMEOUT_VARIABLE}='soon' must be a number of minutes above 0"
    )
