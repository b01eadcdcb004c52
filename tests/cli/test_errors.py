"""What a user can get wrong ends in one line on stderr, never a traceback; `--debug`
shows the traceback; a run stopped by Ctrl-C or a full disk says where it stopped and
resumes with nothing lost or doubled."""

from __future__ import annotations

import errno
import json
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner, Result

from thoughtscope.cli import app
from thoughtscope.model.loading import toy_model_path
from thoughtscope.results.store import ResultStore


class Payload:
    """A Python object in a checkpoint: unpickling it would run this module's code."""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def one_line_error(result: Result, code: int) -> str:
    """The single stderr line of a failed command (and that there is only that line)."""
    assert result.exit_code == code, result.output
    message = result.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message, message
    assert "Traceback" not in result.output
    return message


def answer_args(model: str | Path, out: Path, *extra: str) -> list[str]:
    return [
        "answer",
        "--model",
        str(model),
        "--data",
        "synthetic:test:seed=1:n=3",
        "--out",
        str(out),
        "--max-new-tokens",
        "4",
        *extra,
    ]


# ------------------------------------------------------------------ model files


def test_a_truncated_model_safetensors_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(toy_model_path(), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    message = one_line_error(invoke(*answer_args(folder, tmp_path / "a.jsonl")), 2)
    assert f"{weights}: cannot be read" in message
    assert "damaged or incomplete" in message and "download or save it again" in message
    assert not (tmp_path / "a.jsonl").exists()


def test_a_pickle_in_place_of_pytorch_model_bin_is_refused_without_unpickling(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "official"
    folder.mkdir()
    torch.save({"codi.w": torch.zeros(2), "meta": Payload()}, folder / "pytorch_model.bin")
    result = invoke(
        *answer_args(folder, tmp_path / "a.jsonl", "--preset", "codi-gpt2", "--base-model", ".")
    )
    message = one_line_error(result, 2)
    assert "thoughtscope never unpickles" in message
    assert "model.safetensors" in message
    assert "weights_only" not in message


def test_a_plain_pickle_is_refused_the_same_way(tmp_path: Path) -> None:
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"a": Payload()}))
    result = invoke(
        *answer_args(folder, tmp_path / "a.jsonl", "--preset", "codi-gpt2", "--base-model", ".")
    )
    assert "thoughtscope never unpickles" in one_line_error(result, 2)


def test_an_empty_model_folder_says_it_holds_no_weights(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    message = one_line_error(invoke(*answer_args(tmp_path / "empty", tmp_path / "a.jsonl")), 2)
    assert "the folder holds no model weights" in message
    assert "--preset" not in message


@pytest.mark.parametrize("command", ["answer", "thoughts", "importance"])
def test_an_unknown_device_is_refused_before_anything_is_read(tmp_path: Path, command: str) -> None:
    args = {
        "answer": answer_args("toy", tmp_path / "a.jsonl"),
        "thoughts": ["thoughts", "--data", "synthetic:n=2", "--out", str(tmp_path / "t")],
        "importance": ["importance", "--data", "synthetic:n=2", "--out", str(tmp_path / "r")],
    }[command]
    message = one_line_error(invoke(*args, "--device", "tpu"), 2)
    assert message == "Error: --device: 'tpu' is not a device; use cpu, cuda, cuda:N, mps or auto"


# ------------------------------------------------------------------ output paths


def every_command(out: Path) -> dict[str, list[str]]:
    """Each command with ``out`` as its output (a file or a folder, as it wants)."""
    return {
        "data": ["data", "synthetic:n=2", "--out", str(out)],
        "answer": answer_args("toy", out),
        "thoughts": ["thoughts", "--data", "synthetic:n=2", "--out", str(out)],
        "thoughts --decoded": [
            "thoughts",
            "--data",
            "synthetic:n=2",
            "--out",
            str(out.parent.parent / "fine.safetensors"),
            "--decoded",
            str(out),
        ],
        "importance": ["importance", "--data", "synthetic:n=2", "--out", str(out)],
        "demo": ["demo", "--out", str(out)],
        "stats": ["stats", str(out.parent.parent), "--out", str(out)],
        "report": ["report", str(out.parent.parent), "--out", str(out)],
        "table": ["table", str(out.parent.parent), "--out", str(out)],
        "train": ["train", "--model", "new-toy", "--out", str(out)],
        "train-toy": ["train-toy", "--out", str(out)],
    }


@pytest.mark.parametrize("command", list(every_command(Path("x/y/z"))))
def test_an_output_under_a_file_is_refused_before_any_work(tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    (tmp_path / "results.jsonl").write_text("")  # stats/report/table need a run to exist
    began = time.perf_counter()
    message = one_line_error(invoke(*every_command(out)[command]), 2)
    assert f"lies under {blocker}, which is a file" in message
    assert time.perf_counter() - began < 5  # no model was loaded, nothing was run
    assert not (tmp_path / "fine.safetensors").exists()


@pytest.mark.parametrize("command", ["data", "answer", "thoughts --decoded", "importance"])
def test_an_output_where_nothing_can_be_written_is_refused(command: str) -> None:
    # /sys refuses new files even to root, unlike a folder with its write bit cleared.
    out = Path("/sys/thoughtscope-test/out")
    if not Path("/sys").is_dir():
        pytest.skip("no /sys on this system")
    message = one_line_error(invoke(*every_command(out)[command]), 2)
    assert "cannot write" in message and "choose a place you can write to" in message


def test_a_folder_given_where_a_file_is_wanted_is_refused(tmp_path: Path) -> None:
    message = one_line_error(invoke(*answer_args("toy", tmp_path)), 2)
    assert message == f"Error: --out: {tmp_path} is a folder; give a file path"


# ------------------------------------------------------------------ --debug


def test_debug_shows_the_traceback_that_is_otherwise_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["importance", "--data", "synthetic:n=2", "--out", str(run), "--sites", "latent"]
    args += ["--max-new-tokens", "2", "--no-progress"]
    assert invoke(*args).exit_code == 0
    (run / "manifest.json").write_text("{damaged")
    message = one_line_error(invoke(*args), 1)
    assert message.startswith(f"Error: {run / 'manifest.json'}: not valid JSON")
    debug = invoke("--debug", *args)
    assert debug.exit_code != 0
    assert isinstance(debug.exception, ValueError)  # the error itself, with its traceback
    assert debug.exc_info is not None and debug.exc_info[2] is not None


def test_version_prints_the_package_version() -> None:
    import thoughtscope

    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"thoughtscope {thoughtscope.__version__}\n"


# ------------------------------------------------------------------ stopping and resuming


def sweep_args(run: Path) -> list[str]:
    return [
        "importance",
        "--data",
        "synthetic:test:seed=4:n=6",
        "--out",
        str(run),
        "--sites",
        "latent",
        "--schedule",
        "single",
        "--max-new-tokens",
        "3",
        "--batch-size",
        "1",  # one problem per write
        "--no-progress",
    ]


def ids_written(run: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (run / "results.jsonl").read_text().splitlines()]


def stop_on_third_write(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """The store's write path fails on its third call, after writing half a line (as a
    full disk or a Ctrl-C in the middle of a write leaves it)."""
    original = ResultStore.append
    calls = {"n": 0}

    def append(self: ResultStore, records: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            line = json.dumps(next(iter(records)).to_dict())
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line[: len(line) // 2])
            raise error
        return original(self, records)

    monkeypatch.setattr(ResultStore, "append", append)


def test_a_full_disk_says_what_is_safe_and_the_rerun_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    results = run / "results.jsonl"
    full = OSError(errno.ENOSPC, "No space left on device", str(results))
    with monkeypatch.context() as patch:
        stop_on_third_write(patch, full)
        message = one_line_error(invoke(*sweep_args(run)), 1)
    assert message == (
        f"Error: the disk is full writing {results}; the rows already written are safe: "
        f"{results} holds 2 complete rows; run the same command again to continue (finished "
        "problems are kept); free some space first."
    )
    again = invoke(*sweep_args(run))
    assert again.exit_code == 0, again.output
    written = ids_written(run)
    assert len(written) == 6 and len(set(written)) == 6  # nothing lost, nothing doubled


def test_ctrl_c_says_where_the_run_stopped_and_the_rerun_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        stop_on_third_write(patch, KeyboardInterrupt())
        result = invoke(*sweep_args(run))
    assert result.exit_code == 130
    assert result.stderr.strip() == (
        f"Interrupted: {run / 'results.jsonl'} holds 2 complete rows; run the same command "
        "again to continue (finished problems are kept)."
    )
    assert invoke(*sweep_args(run)).exit_code == 0
    written = ids_written(run)
    assert len(written) == 6 and len(set(written)) == 6


def test_a_damaged_results_line_on_resume_is_one_line_naming_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert invoke(*sweep_args(run)).exit_code == 0
    lines = (run / "results.jsonl").read_text().splitlines(keepends=True)
    lines[1] = "{not json\n"
    (run / "results.jsonl").write_text("".join(lines))
    message = one_line_error(invoke(*sweep_args(run)), 1)
    assert message.startswith(f"Error: {run / 'results.jsonl'}, line 2: not a valid result record")
    assert "delete that line" in message
    assert (run / "results.jsonl").read_text() == "".join(lines)  # left as it was


def test_an_unexpected_error_is_one_line_pointing_at_debug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import thoughtscope.cli.data as data_cli

    def broken(spec: str, *, skip_bad: bool = False) -> Any:
        raise RuntimeError("an internal fault")

    monkeypatch.setattr(data_cli, "load_problems", broken)
    message = one_line_error(invoke("data", "synthetic:n=2"), 1)
    assert message == (
        "Error: RuntimeError: an internal fault (unexpected; rerun with `thoughtscope --debug "
        "...` for the traceback and report it)"
    )
    debug = invoke("--debug", "data", "synthetic:n=2")
    assert isinstance(debug.exception, RuntimeError)


def test_a_real_sigint_prints_one_line_and_the_rerun_completes(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    args = sweep_args(run)
    args[args.index("synthetic:test:seed=4:n=6")] = "synthetic:test:seed=4:n=20"
    command = [sys.executable, "-c", "from thoughtscope.cli import main; main()", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    results = run / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the sweep ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    written = len(ids_written(run))
    assert stderr.strip().splitlines()[-1] == (
        f"Interrupted: {results} holds {written} complete rows; run the same command again "
        "to continue (finished problems are kept)."
    )
    assert "Traceback" not in stderr
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    ids = ids_written(run)
    assert len(ids) == 20 and len(set(ids)) == 20
