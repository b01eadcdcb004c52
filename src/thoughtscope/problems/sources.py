"""Every problem source behind one call: ``load_problems(spec)``.

A *spec* is what users pass to ``--data``:

``synthetic[:SPLIT][:KEY=VALUE]...``
    The built-in generator (:mod:`thoughtscope.problems.synthetic`). SPLIT is ``train``,
    ``val`` or ``test`` (default ``test``); keys are ``seed`` (default 0), ``n``
    (default 500), ``style`` (``compact``, the default and the toy model's, or
    ``words``), ``min_steps`` (default 1) and ``max_steps`` (default 6). Example:
    ``synthetic:train:seed=7:n=2000:style=words``.
``hf:OWNER/NAME[:SPLIT][:config=CONFIG]``
    A Hugging Face dataset through the optional ``datasets`` package (extra ``hub``),
    e.g. ``hf:openai/gsm8k:test`` (config ``main`` by default for GSM8K).
``PATH`` to a ``.jsonl``, ``.csv`` or ``.json`` file
    Read by extension, then the layout is recognised from the first row:

    - ``thoughtscope``: a row has ``steps`` and ``steps_source`` (what ``thoughtscope
      data --out`` and :meth:`Problem.to_dict` write); every field is read back as
      written, so a written file loads as the very problems it was written from.
    - ``study``: a row has ``reasoning_steps`` (the original study's JSON list layout:
      ``question``, numeric ``answer``, ``reasoning_steps``, optional ``gsm8k_id``/``id``);
      steps are taken as given.
    - ``gsm8k``: ``answer`` is a solution text containing ``#### N`` (GSM8K's layout);
      steps are counted from its ``<<…>>`` annotations.
    - ``plain``: ``question`` and a numeric ``answer``; steps unknown.

Each source kind is one :class:`SourceKind` in :data:`SOURCE_KINDS` and each file layout
one :class:`Layout` in :data:`LAYOUTS`; adding one is adding an entry.

Bad rows raise :class:`~thoughtscope.problems.errors.ProblemDataError` naming the file,
line and field; with ``skip_bad=True`` they are collected in
:attr:`LoadResult.skipped` instead. Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thoughtscope.problems import synthetic
from thoughtscope.problems.difficulty import count_steps
from thoughtscope.problems.errors import BadRow, ProblemDataError
from thoughtscope.problems.numerals import parse_numeral
from thoughtscope.problems.problem import Problem

__all__ = [
    "LAYOUTS",
    "SOURCE_KINDS",
    "Layout",
    "LoadResult",
    "SourceKind",
    "accepted_forms",
    "load_problems",
]

GSM8K_JSONL_HINT = (
    "to work offline, download the GSM8K test set as JSONL, e.g. "
    "curl -LO https://raw.githubusercontent.com/openai/grade-school-math/master/"
    "grade_school_math/data/test.jsonl, and pass --data test.jsonl"
)


@dataclass(frozen=True)
class LoadResult:
    """The problems a spec yields, in source order, and the rows skipped on the way.

    Attributes:
        problems: The loaded problems.
        skipped: Rows left out because they were bad (only with ``skip_bad=True``).
        source: The spec as loaded (canonical for ``synthetic``).
        layout: How the rows were read: ``synthetic``, ``thoughtscope``, ``gsm8k``,
            ``study`` or ``plain``.
    """

    problems: list[Problem]
    skipped: list[BadRow] = field(default_factory=list)
    source: str = ""
    layout: str = ""


# ---------------------------------------------------------------------------------------
# Layouts: how one row (a dict) becomes a Problem
# ---------------------------------------------------------------------------------------


class _RowError(Exception):
    """A bad field in one row; the loader adds the file and line."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class _RowContext:
    index: int  # 0-based position among the source's rows, bad ones included
    source: str
    id_prefix: str
    width: int  # zero padding of generated ids

    def default_id(self) -> str:
        return f"{self.id_prefix}-{self.index:0{self.width}d}"


@dataclass(frozen=True)
class Layout:
    """A row layout: how to recognise it from a first row and convert each row."""

    name: str
    description: str
    detect: Callable[[dict[str, Any]], bool]
    convert: Callable[[dict[str, Any], _RowContext], Problem]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _question(row: dict[str, Any]) -> str:
    if "question" not in row:
        raise _RowError("question", "missing; every row needs a 'question' text")
    question = row["question"]
    if not isinstance(question, str) or not question.strip():
        raise _RowError("question", f"must be non-empty text, got {_short(question)}")
    return question


def _numeric_answer(row: dict[str, Any]) -> float:
    if "answer" not in row or row["answer"] is None:
        raise _RowError("answer", "missing; every row needs a numeric 'answer'")
    raw = row["answer"]
    value: float | None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int | float):
        value = float(raw) if math.isfinite(raw) else None
    elif isinstance(raw, str):
        value = parse_numeral(raw)
    else:
        value = None
    if value is None:
        raise _RowError(
            "answer", f"{_short(raw)} is not a number; write it like 18, -3, 0.5 or 1,250.50"
        )
    return value


def _row_id(row: dict[str, Any], context: _RowContext) -> str:
    if row.get("id") not in (None, ""):
        return str(row["id"])
    if row.get("gsm8k_id") not in (None, ""):
        return f"gsm8k-{row['gsm8k_id']}"
    return context.default_id()


def _optional_text(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    return value if isinstance(value, str) and value.strip() else None


def _convert_gsm8k(row: dict[str, Any], context: _RowContext) -> Problem:
    question = _question(row)
    solution = row.get("answer")
    if not isinstance(solution, str) or "####" not in solution:
        raise _RowError(
            "answer",
            f"expected a GSM8K solution ending in '#### N' like the first row, "
            f"got {_short(solution)}",
        )
    final = solution.rsplit("####", 1)[1].strip()
    answer = parse_numeral(final)
    if answer is None:
        raise _RowError(
            "answer", f"'#### {final}' does not end in a number; write it like '#### 18'"
        )
    steps, steps_source = count_steps(solution)
    return Problem(
        id=_row_id(row, context),
        question=question,
        answer=answer,
        steps=steps,
        steps_source=steps_source,
        solution=solution,
        source=context.source,
    )


def _convert_study(row: dict[str, Any], context: _RowContext) -> Problem:
    question = _question(row)
    answer = _numeric_answer(row)
    raw = row.get("reasoning_steps")
    if raw is None:
        raise _RowError("reasoning_steps", "missing; every row of this layout needs it")
    steps = parse_numeral(raw) if isinstance(raw, str) else raw
    if (
        isinstance(steps, bool)
        or not isinstance(steps, int | float)
        or not float(steps).is_integer()
        or steps < 1
    ):
        raise _RowError(
            "reasoning_steps", f"{_short(raw)} is not a whole number of steps (1 or more)"
        )
    return Problem(
        id=_row_id(row, context),
        question=question,
        answer=answer,
        steps=int(steps),
        steps_source="given",
        solution=_optional_text(row, "solution"),
        source=context.source,
    )


def _convert_plain(row: dict[str, Any], context: _RowContext) -> Problem:
    return Problem(
        id=_row_id(row, context),
        question=_question(row),
        answer=_numeric_answer(row),
        steps=None,
        steps_source="unknown",
        solution=_optional_text(row, "solution"),
        source=context.source,
    )


def _convert_thoughtscope(row: dict[str, Any], context: _RowContext) -> Problem:
    if row.get("id") in (None, ""):
        raise _RowError("id", "missing; a row written by thoughtscope keeps its problem's id")
    raw_steps = row.get("steps")
    steps: Any = parse_numeral(raw_steps) if isinstance(raw_steps, str) else raw_steps
    if raw_steps in (None, ""):
        steps = None
    elif (
        isinstance(steps, bool)
        or not isinstance(steps, int | float)
        or not float(steps).is_integer()
        or steps < 0
    ):
        raise _RowError("steps", f"{_short(raw_steps)} is not a whole number of steps (or null)")
    steps_source = row.get("steps_source")
    if not isinstance(steps_source, str) or not steps_source.strip():
        raise _RowError(
            "steps_source", f"must be text such as 'annotations', got {_short(steps_source)}"
        )
    source = row.get("source")
    return Problem(
        id=str(row["id"]),
        question=_question(row),
        answer=_numeric_answer(row),
        steps=None if steps is None else int(steps),
        steps_source=steps_source,
        solution=_optional_text(row, "solution"),
        source=source if isinstance(source, str) and source else context.source,
    )


LAYOUTS: list[Layout] = [
    Layout(
        "thoughtscope",
        "thoughtscope's own layout (id, question, answer, steps, steps_source, ...), "
        "as `thoughtscope data --out` writes it",
        lambda row: "steps" in row and "steps_source" in row,
        _convert_thoughtscope,
    ),
    Layout(
        "study",
        "original study's layout (question, answer, reasoning_steps)",
        lambda row: "reasoning_steps" in row,
        _convert_study,
    ),
    Layout(
        "gsm8k",
        "GSM8K layout (question, solution text ending in '#### N')",
        lambda row: isinstance(row.get("answer"), str) and "####" in row["answer"],
        _convert_gsm8k,
    ),
    Layout("plain", "plain layout (question, numeric answer)", lambda row: True, _convert_plain),
]
"""Row layouts in detection order; the first whose ``detect`` accepts the first row wins."""


# ---------------------------------------------------------------------------------------
# Readers: how a file becomes rows, each with its position for error messages
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RawRow:
    where: str
    data: dict[str, Any] | None  # None when the row could not be read
    problem: BadRow | None = None


_Reader = Callable[[Path, str], Iterator[_RawRow]]


def _read_jsonl(path: Path, name: str) -> Iterator[_RawRow]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{name}, line {number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                reason = (
                    f"not valid JSON ({error.msg} at column {error.colno}); each line must "
                    'be one JSON object like {"question": "...", "answer": 18}'
                )
                yield _RawRow(where, None, BadRow(where, None, reason))
                continue
            yield _object_row(where, data)


def _read_json(path: Path, name: str) -> Iterator[_RawRow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ProblemDataError(
            f"{name}, line {error.lineno}: not valid JSON ({error.msg} at column "
            f"{error.colno}); a .json source must be one JSON list of objects"
        ) from None
    if not isinstance(data, list):
        raise ProblemDataError(
            f"{name}: the top level is a JSON {type(data).__name__}, not a list; a .json "
            "source must be a list of objects like "
            '[{"question": "...", "answer": 18, "reasoning_steps": 2}]'
        )
    for number, item in enumerate(data, start=1):
        yield _object_row(f"{name}, item {number}", item)


def _object_row(where: str, data: Any) -> _RawRow:
    if isinstance(data, dict):
        return _RawRow(where, data)
    reason = f"is a JSON {type(data).__name__}, not an object with 'question' and 'answer'"
    return _RawRow(where, None, BadRow(where, None, reason))


def _read_csv(path: Path, name: str) -> Iterator[_RawRow]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in ("question", "answer") if c not in columns]
        if missing:
            raise ProblemDataError(
                f"{name}, line 1: the header has columns {columns}, missing "
                f"{', '.join(repr(c) for c in missing)}; the first line must name the "
                "columns, e.g. question,answer"
            )
        for row in reader:
            where = f"{name}, line {reader.line_num}"
            extra = row.pop(None, None)  # type: ignore[call-overload]
            short = [column for column, value in row.items() if value is None]
            if extra or short:
                found = len(columns) + len(extra or []) - len(short)
                reason = (
                    f"has {found} fields but the header has {len(columns)}; "
                    "quote fields that contain commas"
                )
                yield _RawRow(where, None, BadRow(where, None, reason))
                continue
            yield _RawRow(where, dict(row))


READERS: dict[str, _Reader] = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv}
"""File readers by extension."""


def _rows_to_problems(
    rows: Iterator[_RawRow],
    *,
    source: str,
    id_prefix: Callable[[str], str],
    skip_bad: bool,
    total_hint: int = 0,
) -> LoadResult:
    """Problems from raw rows, detecting the layout from the first readable row."""
    rows_list = list(rows)
    width = max(4, len(str(max(total_hint, len(rows_list)) - 1)))
    layout: Layout | None = None
    problems: list[Problem] = []
    skipped: list[BadRow] = []
    first_seen: dict[str, str] = {}

    def reject(bad: BadRow) -> None:
        if not skip_bad:
            raise ProblemDataError.for_row(bad)
        skipped.append(bad)

    for index, raw in enumerate(rows_list):
        if raw.data is None:
            assert raw.problem is not None
            reject(raw.problem)
            continue
        if layout is None:
            layout = next(candidate for candidate in LAYOUTS if candidate.detect(raw.data))
        context = _RowContext(index, source, id_prefix(layout.name), width)
        try:
            problem = layout.convert(raw.data, context)
        except _RowError as error:
            reject(BadRow(raw.where, error.field, error.reason))
            continue
        if problem.id in first_seen:
            reject(
                BadRow(
                    raw.where,
                    "id",
                    f"duplicate id {problem.id!r} (first at {first_seen[problem.id]}); "
                    "ids must be unique",
                )
            )
            continue
        first_seen[problem.id] = raw.where
        problems.append(problem)

    if not rows_list:
        raise ProblemDataError(f"{source}: no rows found; the source is empty")
    return LoadResult(problems, skipped, source, layout.name if layout else "unknown")


# ---------------------------------------------------------------------------------------
# Source kinds
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceKind:
    """One kind of ``--data`` spec: which specs it claims and how it loads them."""

    name: str
    form: str  # the accepted form, shown in error messages
    claims: Callable[[str], bool]
    load: Callable[[str, bool], LoadResult]


def _load_synthetic(spec: str, skip_bad: bool) -> LoadResult:
    parts = spec.split(":")[1:]
    options: dict[str, str] = {}
    split = "test"
    keys = ("seed", "n", "style", "min_steps", "max_steps")
    form = "synthetic[:SPLIT][:seed=S][:n=N][:style=compact|words][:min_steps=A][:max_steps=B]"
    for position, part in enumerate(parts):
        if "=" not in part:
            if position != 0:
                raise ProblemDataError(
                    f"{spec!r}: {part!r} must come first (it would be the split) or be "
                    f"KEY=VALUE; use {form}"
                )
            split = part
            continue
        key, value = part.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in keys:
            raise ProblemDataError(
                f"{spec!r}: unknown option {key!r}; options are {', '.join(keys)} ({form})"
            )
        if key in options:
            raise ProblemDataError(f"{spec!r}: option {key!r} is given twice")
        options[key] = value.strip()
    numbers: dict[str, int] = {}
    for key in ("seed", "n", "min_steps", "max_steps"):
        if key in options:
            try:
                numbers[key] = int(options[key])
            except ValueError:
                raise ProblemDataError(
                    f"{spec!r}: {key}={options[key]!r} is not a whole number"
                ) from None
    n = numbers.get("n", 500)
    try:
        problems = synthetic.generate(
            split,
            numbers.get("seed", 0),
            n,
            style=options.get("style", synthetic.DEFAULT_STYLE),
            min_steps=numbers.get("min_steps", 1),
            max_steps=numbers.get("max_steps", 6),
        )
    except ValueError as error:
        raise ProblemDataError(f"{spec!r}: {error} ({form})") from None
    source = (
        f"synthetic:{split}:seed={numbers.get('seed', 0)}:n={n}"
        f":style={options.get('style', synthetic.DEFAULT_STYLE)}"
        f":min_steps={numbers.get('min_steps', 1)}:max_steps={numbers.get('max_steps', 6)}"
    )
    return LoadResult(problems, [], source, "synthetic")


def _load_hub(spec: str, skip_bad: bool) -> LoadResult:
    form = "hf:OWNER/NAME[:SPLIT][:config=CONFIG]"
    parts = spec.split(":")[1:]
    if not parts or "/" not in parts[0]:
        raise ProblemDataError(f"{spec!r}: name the dataset as {form}, e.g. hf:openai/gsm8k:test")
    name, rest = parts[0], parts[1:]
    split = "test"
    config: str | None = "main" if name == "openai/gsm8k" else None
    for position, part in enumerate(rest):
        if part.startswith("config="):
            config = part.split("=", 1)[1] or None
        elif "=" not in part and position == 0:
            split = part
        else:
            raise ProblemDataError(f"{spec!r}: cannot read {part!r}; use {form}")
    try:
        import datasets  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise ProblemDataError(
            f"{spec!r} needs the optional 'datasets' package: pip install "
            f"'thoughtscope[hub]'; or, {GSM8K_JSONL_HINT}"
        ) from None
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # network, auth, unknown split: all mean "use the file"
        summary = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ProblemDataError(
            f"{spec!r}: could not load {name} (config {config}, split {split}) from the "
            f"Hugging Face Hub: {summary}; {GSM8K_JSONL_HINT}"
        ) from None
    short = "gsm8k" if name == "openai/gsm8k" else name.split("/")[-1]
    rows = (_object_row(f"{spec}, row {i + 1}", row) for i, row in enumerate(dataset))
    return _rows_to_problems(
        rows,
        source=spec,
        id_prefix=lambda layout: f"{short}-{split}",
        skip_bad=skip_bad,
        total_hint=len(dataset),
    )


def _load_file(spec: str, skip_bad: bool) -> LoadResult:
    path = Path(spec).expanduser()
    reader = READERS.get(path.suffix.lower())
    if not path.exists():
        raise ProblemDataError(f"no such file: {spec!r}. {accepted_forms()}")
    if path.is_dir():
        raise ProblemDataError(f"{spec!r} is a folder; pass one file. {accepted_forms()}")
    if reader is None:
        raise ProblemDataError(
            f"{spec!r}: cannot read {path.suffix or 'files without an extension'}; "
            f"use one of {', '.join(READERS)}. {accepted_forms()}"
        )
    stem = path.stem

    def id_prefix(layout: str) -> str:
        # GSM8K rows read gsm8k-test-0042, matching the Hub source's ids for the same rows.
        if layout == "gsm8k" and not stem.lower().startswith("gsm8k"):
            return f"gsm8k-{stem}"
        return stem

    try:
        return _rows_to_problems(
            reader(path, spec), source=spec, id_prefix=id_prefix, skip_bad=skip_bad
        )
    except UnicodeDecodeError as error:
        raise ProblemDataError(
            f"{spec!r}: not UTF-8 text (byte {error.start}); save the file as UTF-8"
        ) from None


SOURCE_KINDS: list[SourceKind] = [
    SourceKind(
        "synthetic",
        "synthetic[:SPLIT][:seed=S][:n=N][:style=compact|words][:min_steps=A][:max_steps=B]",
        lambda spec: spec == "synthetic" or spec.startswith("synthetic:"),
        _load_synthetic,
    ),
    SourceKind(
        "hub",
        "hf:OWNER/NAME[:SPLIT][:config=CONFIG] (e.g. hf:openai/gsm8k:test; needs 'datasets')",
        lambda spec: spec.startswith("hf:"),
        _load_hub,
    ),
    SourceKind(
        "file",
        "a .jsonl, .csv or .json file (GSM8K, original-study or plain question/answer rows)",
        lambda spec: True,
        _load_file,
    ),
]
"""Source kinds in the order they are asked to claim a spec; the file kind comes last."""


def accepted_forms() -> str:
    """One sentence listing every accepted ``--data`` form."""
    return "Accepted --data forms: " + "; ".join(kind.form for kind in SOURCE_KINDS) + "."


def load_problems(spec: str, *, skip_bad: bool = False) -> LoadResult:
    """The problems named by ``spec`` (see the module docstring for the grammar).

    Args:
        spec: ``synthetic…``, ``hf:…`` or a file path.
        skip_bad: Skip bad rows and list them in :attr:`LoadResult.skipped` instead of
            raising on the first one.

    Raises:
        ProblemDataError: The spec is unknown, the file is missing or unreadable, or a
            row is bad (without ``skip_bad``); the message says where and what to do.
    """
    spec = str(spec).strip()
    if not spec:
        raise ProblemDataError(f"the data spec is empty. {accepted_forms()}")
    kind = next(kind for kind in SOURCE_KINDS if kind.claims(spec))
    return kind.load(spec, skip_bad)
