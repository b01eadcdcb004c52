"""The typed form of ``summary.json``: what the statistics give the report.

:func:`~thoughtscope.statistics.summary.summary_from_records` lays a run's statistics out
as JSON; :meth:`Summary.from_dict` reads that layout into these dataclasses and
:meth:`Summary.to_dict` writes it back unchanged (the writers round-trip every summary
through them, so the types cover the file). The report reads :class:`Summary` only, so
mypy checks both sides of the contract. Every figure is a :class:`Metric`: an estimate
with its bootstrap interval, for two populations (:data:`VIEWS`), overall and within each
difficulty stratum (:class:`Scoped`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from thoughtscope.results.conditions import ConditionSpec

__all__ = [
    "VIEWS",
    "BaselineAccuracy",
    "ConditionFigures",
    "EarlyLate",
    "FamilyRef",
    "McNemar",
    "Metric",
    "OriginalLayout",
    "PrefixMarginals",
    "Scoped",
    "Step",
    "Summary",
    "View",
]

VIEWS = ("unconditional", "conditional")
"""``unconditional``: every problem with a result; ``conditional``: the baseline-correct
ones among them."""

_Json = dict[str, Any]


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _ci(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


@dataclass(frozen=True)
class Metric:
    """One figure: ``estimate`` with its interval ``ci`` over ``n`` problems; ``reason``
    says why the estimate or the interval is missing."""

    estimate: float | None
    ci: tuple[float, float] | None
    n: int
    reason: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metric:
        return cls(_opt_float(data.get("estimate")), _ci(data.get("ci")), int(data["n"]),
                   data.get("reason"))  # fmt: skip

    def to_dict(self) -> _Json:
        ci = None if self.ci is None else list(self.ci)
        return {"estimate": self.estimate, "ci": ci, "n": self.n, "reason": self.reason}


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: ``b`` right→wrong, ``c`` wrong→right; ``p_value_holm`` only in
    the overall scope (``None`` elsewhere)."""

    b: int
    c: int
    discordant: int
    p_value: float | None
    note: str | None
    p_value_holm: float | None = None
    has_holm: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> McNemar:
        return cls(int(data["b"]), int(data["c"]), int(data["discordant"]),
                   _opt_float(data.get("p_value")), data.get("note"),
                   _opt_float(data.get("p_value_holm")), "p_value_holm" in data)  # fmt: skip

    def to_dict(self) -> _Json:
        out: _Json = {"b": self.b, "c": self.c, "discordant": self.discordant,
                      "p_value": self.p_value, "note": self.note}  # fmt: skip
        if self.has_holm:
            out["p_value_holm"] = self.p_value_holm
        return out


@dataclass(frozen=True)
class View:
    """The figures of one population (``unconditional`` or ``conditional``)."""

    population: str
    n: int
    metrics: dict[str, Metric]
    note: str | None = None
    mcnemar: McNemar | None = None

    def metric(self, name: str) -> Metric | None:
        """The figure ``name`` (``None`` when this view has no such figure)."""
        return self.metrics.get(name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> View:
        test = data.get("mcnemar")
        return cls(
            population=str(data.get("population", "")),
            n=int(data["n"]),
            metrics={k: Metric.from_dict(m) for k, m in data["metrics"].items()},
            note=data.get("note"),
            mcnemar=None if test is None else McNemar.from_dict(test),
        )

    def to_dict(self) -> _Json:
        out: _Json = {"population": self.population, "n": self.n}
        if self.mcnemar is not None:
            out["note"] = self.note
        out["metrics"] = {k: m.to_dict() for k, m in self.metrics.items()}
        if self.mcnemar is not None:
            out["mcnemar"] = self.mcnemar.to_dict()
        return out


@dataclass(frozen=True)
class Scoped:
    """Views overall and within each stratum: ``overall[view]``, ``by_stratum[label][view]``."""

    overall: dict[str, View]
    by_stratum: dict[str, dict[str, View]]

    def view(self, view: str, stratum: str | None = None) -> View | None:
        """One view overall (``stratum=None``) or within a stratum."""
        block = self.overall if stratum is None else self.by_stratum.get(stratum, {})
        return block.get(view)

    def metric(self, view: str, name: str, stratum: str | None = None) -> Metric | None:
        """One figure of one view, overall or within a stratum."""
        found = self.view(view, stratum)
        return None if found is None else found.metric(name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scoped:
        return cls(
            {v: View.from_dict(x) for v, x in data["overall"].items()},
            {
                s: {v: View.from_dict(x) for v, x in b.items()}
                for s, b in data["by_stratum"].items()
            },
        )

    def to_dict(self) -> _Json:
        return {
            "overall": {v: x.to_dict() for v, x in self.overall.items()},
            "by_stratum": {
                s: {v: x.to_dict() for v, x in b.items()} for s, b in self.by_stratum.items()
            },
        }


@dataclass(frozen=True)
class ConditionFigures:
    """The figures of one condition as a member of one of its schedules."""

    condition: ConditionSpec
    schedule: str
    scopes: Scoped

    @property
    def name(self) -> str:
        """The condition's name."""
        return self.condition.name

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionFigures:
        return cls(ConditionSpec.from_dict(data), str(data["schedule"]), Scoped.from_dict(data))

    def to_dict(self) -> _Json:
        described = {"name": self.name, "schedule": self.schedule, **self.condition.to_dict()}
        return {**described, **self.scopes.to_dict()}


@dataclass(frozen=True)
class FamilyRef:
    """A schedule family as the summary names it: its shared fields and members in order."""

    schedule: str
    site: str
    layers: list[int]
    ablation: str
    num_latent: int | None
    members: list[str]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FamilyRef:
        return cls(str(data["schedule"]), str(data["site"]), [int(x) for x in data["layers"]],
                   str(data["ablation"]), data.get("num_latent"),
                   [str(m) for m in data["members"]])  # fmt: skip

    def to_dict(self) -> _Json:
        return {"schedule": self.schedule, "site": self.site, "layers": self.layers,
                "ablation": self.ablation, "num_latent": self.num_latent,
                "members": self.members}  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One marginal step of a prefix family (``to`` minus ``from``, paired)."""

    from_name: str
    to_name: str
    from_positions: list[int]
    to_positions: list[int]
    added_positions: list[int]
    scopes: Scoped

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        return cls(str(data["from"]), str(data["to"]), list(data["from_positions"]),
                   list(data["to_positions"]), list(data["added_positions"]),
                   Scoped.from_dict(data))  # fmt: skip

    def to_dict(self) -> _Json:
        return {"from": self.from_name, "to": self.to_name,
                "from_positions": self.from_positions, "to_positions": self.to_positions,
                "added_positions": self.added_positions, **self.scopes.to_dict()}  # fmt: skip


@dataclass(frozen=True)
class PrefixMarginals:
    """The marginal steps of one prefix family."""

    family: FamilyRef
    label: str
    steps: list[Step]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrefixMarginals:
        return cls(FamilyRef.from_dict(data["family"]), str(data["label"]),
                   [Step.from_dict(s) for s in data["steps"]])  # fmt: skip

    def to_dict(self) -> _Json:
        return {"family": self.family.to_dict(), "label": self.label,
                "steps": [s.to_dict() for s in self.steps]}  # fmt: skip


@dataclass(frozen=True)
class EarlyLate:
    """The original study's early/late means of one family.

    Attributes:
        parts: ``early``/``late`` → ``{"indices": [...], "members": [...]}``.
    """

    family: FamilyRef
    label: str
    semantics: str
    parts: dict[str, dict[str, list[Any]]]
    scopes: Scoped

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EarlyLate:
        parts = {p: {k: list(v) for k, v in data[p].items()} for p in ("early", "late")}
        return cls(FamilyRef.from_dict(data["family"]), str(data["label"]),
                   str(data["semantics"]), parts, Scoped.from_dict(data))  # fmt: skip

    def to_dict(self) -> _Json:
        return {"family": self.family.to_dict(), "label": self.label,
                "semantics": self.semantics, **self.parts, **self.scopes.to_dict()}  # fmt: skip


@dataclass(frozen=True)
class BaselineAccuracy:
    """Baseline accuracy of one group of problems."""

    accuracy: float | None
    ci: tuple[float, float] | None
    n: int
    n_correct: int
    reason: str | None
    n_unfinished: int | None = None
    """Baseline answers that ran to ``--max-new-tokens`` (``None``: not recorded)."""
    n_unclean: int | None = None
    """Baseline answers without one clean number (``None``: not recorded)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaselineAccuracy:
        return cls(_opt_float(data.get("accuracy")), _ci(data.get("ci")), int(data["n"]),
                   int(data["n_correct"]), data.get("reason"), data.get("n_unfinished"),
                   data.get("n_unclean"))  # fmt: skip

    def to_dict(self) -> _Json:
        ci = None if self.ci is None else list(self.ci)
        return {"accuracy": self.accuracy, "ci": ci, "n": self.n,
                "n_correct": self.n_correct, "reason": self.reason,
                "n_unfinished": self.n_unfinished, "n_unclean": self.n_unclean}  # fmt: skip


@dataclass(frozen=True)
class OriginalLayout:
    """Which family fills the original study's files (an adapter over the summary) and
    the original's own figures, recomputed (``figures``, free-form as the original)."""

    written: bool
    reason: str
    family: FamilyRef | None
    positions: dict[str, str]
    figures: dict[str, Any] | None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OriginalLayout:
        family = data.get("family")
        known = {"written", "reason", "family", "positions", "figures"}
        return cls(bool(data["written"]), str(data["reason"]),
                   None if family is None else FamilyRef.from_dict(family),
                   dict(data.get("positions", {})), data.get("figures"),
                   {k: v for k, v in data.items() if k not in known})  # fmt: skip

    def to_dict(self) -> _Json:
        family = None if self.family is None else self.family.to_dict()
        return {"written": self.written, "reason": self.reason, "family": family,
                "positions": self.positions, "figures": self.figures, **self.extra}  # fmt: skip


@dataclass(frozen=True)
class Summary:
    """A run's statistics: the content of ``summary.json``.

    Attributes:
        schema: ``thoughtscope.summary/1``.
        source: ``run`` or ``original-file``.
        strata: Stratum labels in order.
        baseline: Over every problem; ``baseline_by_stratum`` within each stratum.
        conditions: One entry per (condition, schedule) member.
        definitions: Plain-words definitions of every figure.
        caveats: Caveats that apply to this run.
        original_layout: What the original-layout adapter wrote (added by the writers;
            ``None`` for a bare :func:`~thoughtscope.statistics.summary_from_records`).
        extra: Keys the writers add (``files``, ``source_file``).
    """

    schema: str
    source: str
    selection: str
    selection_rule: str
    n_problems: int
    n_with_conditions: int
    n_baseline_correct: int
    strata: list[str]
    bootstrap: dict[str, Any]
    baseline: BaselineAccuracy
    baseline_population: str
    baseline_by_stratum: dict[str, BaselineAccuracy]
    conditions: list[ConditionFigures]
    prefix_marginals: list[PrefixMarginals]
    early_late: list[EarlyLate]
    definitions: dict[str, str]
    caveats: list[str]
    original_layout: OriginalLayout | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_original_file(self) -> bool:
        """Whether this re-analyses a file in the original study's layout."""
        return self.source == "original-file"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        """Reads the JSON layout (see :mod:`~thoughtscope.statistics.summary`).

        Raises:
            KeyError, TypeError, ValueError: A required key is missing or malformed.
        """
        base = data["baseline"]
        known = {
            "schema", "source", "selection", "selection_rule", "n_problems",
            "n_with_conditions", "n_baseline_correct", "strata", "bootstrap", "baseline",
            "conditions", "prefix_marginals", "early_late", "original_layout",
            "definitions", "caveats",
        }  # fmt: skip
        return cls(
            schema=str(data["schema"]),
            source=str(data["source"]),
            selection=str(data["selection"]),
            selection_rule=str(data["selection_rule"]),
            n_problems=int(data["n_problems"]),
            n_with_conditions=int(data["n_with_conditions"]),
            n_baseline_correct=int(data["n_baseline_correct"]),
            strata=[str(s) for s in data["strata"]],
            bootstrap=dict(data["bootstrap"]),
            baseline=BaselineAccuracy.from_dict(base),
            baseline_population=str(base.get("population", "")),
            baseline_by_stratum={
                s: BaselineAccuracy.from_dict(b) for s, b in base["by_stratum"].items()
            },
            conditions=[ConditionFigures.from_dict(c) for c in data["conditions"]],
            prefix_marginals=[PrefixMarginals.from_dict(p) for p in data["prefix_marginals"]],
            early_late=[EarlyLate.from_dict(e) for e in data["early_late"]],
            original_layout=(
                None
                if data.get("original_layout") is None
                else OriginalLayout.from_dict(data["original_layout"])
            ),
            definitions={str(k): str(v) for k, v in data["definitions"].items()},
            caveats=[str(c) for c in data["caveats"]],
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> _Json:
        """The JSON layout, key for key as :meth:`from_dict` read it."""
        baseline = {
            **self.baseline.to_dict(),
            "population": self.baseline_population,
            "by_stratum": {s: b.to_dict() for s, b in self.baseline_by_stratum.items()},
        }
        out: _Json = {
            "schema": self.schema,
            "source": self.source,
            "selection": self.selection,
            "selection_rule": self.selection_rule,
            "n_problems": self.n_problems,
            "n_with_conditions": self.n_with_conditions,
            "n_baseline_correct": self.n_baseline_correct,
            "strata": self.strata,
            "bootstrap": self.bootstrap,
            "baseline": baseline,
            "conditions": [c.to_dict() for c in self.conditions],
            "prefix_marginals": [p.to_dict() for p in self.prefix_marginals],
            "early_late": [e.to_dict() for e in self.early_late],
            "definitions": self.definitions,
            "caveats": self.caveats,
        }
        if self.original_layout is not None:
            out["original_layout"] = self.original_layout.to_dict()
        return {**out, **self.extra}
