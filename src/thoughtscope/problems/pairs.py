"""Pairs of problems for counterfactual patching: a *target* run and a *source* whose
states are patched into it.

Pairs are chosen by a rule, not by chance (:data:`PAIR_RULES`, :func:`register_pair_rule`):

* ``self``: every problem with itself (patching must then change nothing: a check).
* ``counterfactual``: every problem with its counterfactual twin, the same problem with
  one number changed so that an intermediate value differs
  (:func:`thoughtscope.problems.synthetic.counterfactual_twin`; compact synthetic
  problems). Problems without a twin are left out and counted.
* ``same-value[:K]`` / ``different-value[:K]``: every problem with another problem
  whose step ``K`` (1-based, default 1) has the same / a different result, read from the
  ``<<…=r>>`` annotations of the solutions; seeded.
* ``random``: every problem with another problem of a different question; seeded.
* a file (``.jsonl``, ``.json`` or ``.csv``) of ``target``/``source`` problem ids.

Seeded choices depend only on (seed, rule, target id) and the selection, so adding pairs
to a file or re-running never moves another pair.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from thoughtscope.problems.problem import Problem
from thoughtscope.problems.seeded import SeededStream
from thoughtscope.problems.synthetic import counterfactual_twin

__all__ = [
    "PAIR_RULES",
    "Pair",
    "PairSet",
    "make_pairs",
    "register_pair_rule",
    "step_values",
]

_RESULT = re.compile(r"<<[^<>=]*=\s*(-?[\d.,]+)\s*>>")


def step_values(problem: Problem) -> list[float] | None:
    """The result of each step, from the solution's ``<<expression=result>>``
    annotations; ``None`` without any."""
    found = _RESULT.findall(problem.solution or "")
    values = []
    for text in found:
        try:
            values.append(float(text.replace(",", "").rstrip(".")))
        except ValueError:
            return None
    return values or None


@dataclass(frozen=True)
class Pair:
    """One target problem and the source patched into it.

    Attributes:
        target: The problem that is run and edited.
        source: The problem whose recorded states replace the target's.
        note: What the rule knows about the pair (e.g. ``start`` or ``step 2 = 12``).
    """

    target: Problem
    source: Problem
    note: str = ""

    @property
    def id(self) -> str:
        """``target<-source``: unique within a run."""
        return f"{self.target.id}<-{self.source.id}"


@dataclass(frozen=True)
class PairSet:
    """The pairs of a run and what the rule could not pair.

    Attributes:
        rule: As written (``same-value:2``, ``counterfactual``, a file path).
        pairs: In target order.
        unpaired: Ids of selected problems the rule found no source for.
    """

    rule: str
    pairs: list[Pair]
    unpaired: list[str]


PairRule = Callable[[Sequence[Problem], str, int], PairSet]
PAIR_RULES: dict[str, PairRule] = {}
"""Rule name → ``(problems, argument, seed) -> PairSet``."""


def register_pair_rule(name: str) -> Callable[[PairRule], PairRule]:
    """Registers a pair rule under ``name`` (``--pairs name[:argument]``)."""

    def decorate(rule: PairRule) -> PairRule:
        PAIR_RULES[name] = rule
        return rule

    return decorate


@register_pair_rule("self")
def _self(problems: Sequence[Problem], argument: str, seed: int) -> PairSet:
    return PairSet("self", [Pair(p, p, "self") for p in problems], [])


@register_pair_rule("counterfactual")
def _counterfactual(problems: Sequence[Problem], argument: str, seed: int) -> PairSet:
    pairs, unpaired = [], []
    for problem in problems:
        twin = counterfactual_twin(problem, seed)
        if twin is None:
            unpaired.append(problem.id)
            continue
        note = f"{twin.changed}; first differing step {twin.first_changed_step}"
        pairs.append(Pair(problem, twin.problem, note))
    return PairSet("counterfactual", pairs, unpaired)


def _seeded_partner(
    problems: Sequence[Problem],
    target: Problem,
    rule: str,
    seed: int,
    accept: Callable[[Problem], bool],
) -> Problem | None:
    order = SeededStream(f"thoughtscope.pairs|{rule}|{seed}|{target.id}").shuffled(list(problems))
    return next(
        (p for p in order if p.id != target.id and p.question != target.question and accept(p)),
        None,
    )


def _value_rule(same: bool) -> PairRule:
    name = "same-value" if same else "different-value"

    def rule(problems: Sequence[Problem], argument: str, seed: int) -> PairSet:
        if (argument and not argument.isdigit()) or argument == "0":
            raise ValueError(
                f"--pairs {name}:{argument}: the step must be a whole number of 1 or more "
                f"(1 is the first operation), e.g. {name}:2"
            )
        k = int(argument or 1)
        values = {p.id: step_values(p) for p in problems}

        def value(p: Problem) -> float | None:
            v = values[p.id]
            return v[k - 1] if v is not None and len(v) >= k else None

        pairs, unpaired = [], []
        for target in problems:
            mine = value(target)
            partner = None
            if mine is not None:

                def matches(p: Problem, mine: float = mine) -> bool:
                    v = value(p)
                    return v is not None and (v == mine) == same

                partner = _seeded_partner(problems, target, name, seed, matches)
            if partner is None:
                unpaired.append(target.id)
                continue
            note = f"step {k}: {mine:g} and {value(partner):g}"
            pairs.append(Pair(target, partner, note))
        return PairSet(f"{name}:{k}", pairs, unpaired)

    return rule


register_pair_rule("same-value")(_value_rule(True))
register_pair_rule("different-value")(_value_rule(False))


@register_pair_rule("random")
def _random(problems: Sequence[Problem], argument: str, seed: int) -> PairSet:
    pairs, unpaired = [], []
    for target in problems:
        partner = _seeded_partner(problems, target, "random", seed, lambda p: True)
        if partner is None:
            unpaired.append(target.id)
        else:
            pairs.append(Pair(target, partner, "random"))
    return PairSet("random", pairs, unpaired)


def _read_pair_file(path: Path) -> list[tuple[str, str, int]]:
    """``(target, source, line)`` rows of a pair file."""
    rows: list[tuple[str, str, int]] = []
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            rows.append((str(row.get("target", "")), str(row.get("source", "")), line))
    elif path.suffix == ".json":
        for line, item in enumerate(json.loads(text), start=1):
            rows.append((str(item.get("target", "")), str(item.get("source", "")), line))
    else:
        for line, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                item = json.loads(raw)
                rows.append((str(item.get("target", "")), str(item.get("source", "")), line))
    return rows


def _from_file(problems: Sequence[Problem], path: Path) -> PairSet:
    by_id = {p.id: p for p in problems}
    pairs = []
    try:
        rows = _read_pair_file(path)
    except (ValueError, AttributeError, TypeError) as error:
        raise ValueError(
            f"--pairs {path}: not a pair file ({error}); give JSON lines or a CSV with "
            "target and source problem ids"
        ) from None
    for target, source, line in rows:
        for which, pid in (("target", target), ("source", source)):
            if pid not in by_id:
                raise ValueError(
                    f"--pairs {path}, line {line}: {which} {pid!r} is not a problem of "
                    "--data; use ids from `thoughtscope data`"
                )
        pairs.append(Pair(by_id[target], by_id[source], "file"))
    if not pairs:
        raise ValueError(f"--pairs {path}: the file holds no pairs")
    return PairSet(str(path), pairs, [])


def make_pairs(problems: Sequence[Problem], spec: str, seed: int = 0) -> PairSet:
    """The pairs ``spec`` names over ``problems`` (see the module docstring).

    Raises:
        ValueError: Unknown rule or bad argument or file; the message names ``--pairs``,
            what was wrong and the accepted forms.
    """
    name, _, argument = spec.strip().partition(":")
    if name in PAIR_RULES:
        return PAIR_RULES[name](problems, argument, seed)
    path = Path(spec)
    if path.suffix in (".jsonl", ".json", ".csv"):
        if not path.is_file():
            raise ValueError(f"--pairs {spec}: no such file")
        return _from_file(problems, path)
    raise ValueError(
        f"--pairs: unknown rule {spec!r}; use {', '.join(PAIR_RULES)} (same-value:K and "
        "different-value:K for step K), or a .jsonl/.json/.csv file of target,source ids"
    )
