"""Deterministic multi-step arithmetic word problems with GSM8K-style solutions.

Every problem is a *chain*: a start value followed by 1 to 6 operations, each applied to
the previous result (``a``, ``a+5``, ``(a+5)*2``, …). Because every step consumes the
previous result, a model cannot answer without carrying the intermediate values, which
is what makes these problems useful for probing continuous thoughts.

Two surface styles render the same kind of chain:

``compact`` (the default, and what the shipped toy model trains on)
    Short equation-like statements for a tiny character-level model trained from scratch
    on CPU::

        question: a=7;b=a+5;c=b-9;d=c*4;d=?
        solution: <<7+5=12>> <<12-9=3>> <<3*4=12>>
                  #### 12

``words``
    Varied English templates (several per operation, varied names and objects) with
    modest numbers, in GSM8K's solution layout (one explained line per step).

Why the generator looks the way it does:

- **Same arguments, same problems, everywhere.** Draws come from a
  :class:`~thoughtscope.problems.seeded.SeededStream` keyed by the arguments, which is
  stable across machines and Python versions.
- **Prefix-stable.** ``n=1000`` starts with exactly the ``n=500`` problems, so growing a
  run never changes the problems already seen.
- **Splits never share a problem.** A chain belongs to exactly one split, decided by a
  SHA-256 of its canonical form (start value and operations), independent of seed and
  style; chains drawn for the wrong split are rejected. Disjoint chains imply disjoint
  questions, and a words-style test problem never reuses the arithmetic of a compact
  training problem either.
- **Balanced difficulty.** Step counts cycle through ``min_steps..max_steps`` in
  shuffled blocks, so every count appears equally often (up to one partial block).
- **Few repeats.** Within one call a chain is not repeated while fresh ones can be found;
  when a split's space of short chains is exhausted (there are only ~200 one-step
  compact chains in all), repeats are allowed rather than failing.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

from thoughtscope.problems.problem import Problem
from thoughtscope.problems.seeded import SeededStream

__all__ = [
    "DEFAULT_STYLE",
    "MAX_STEPS",
    "SPLITS",
    "STYLES",
    "Twin",
    "counterfactual_twin",
    "generate",
    "split_of",
]

DEFAULT_STYLE = "compact"
"""Style of plain ``synthetic``: the toy model is trained on it."""

MAX_STEPS = 10
"""Largest accepted ``max_steps`` (the default range is 1 to 6)."""

SPLITS: dict[str, tuple[int, int]] = {"test": (0, 20), "val": (20, 30), "train": (30, 100)}
"""Split name → half-open range of the chain's hash bucket (0..99) that belongs to it."""

# Bump when generation changes on purpose; tests pin problems. Kept at v1 when the compact
# values were capped at 19: the version seeds every draw, and the shipped toy model's
# training data (and its byte-for-byte reproduction) depends on it.
_GENERATOR_VERSION = "v1"
_MAX_FRESH_ATTEMPTS = 30  # draws to look for an unused chain before accepting a repeat
_MAX_SPLIT_ATTEMPTS = 10_000  # draws to find a chain of the requested split at all


# ---------------------------------------------------------------------------------------
# Chains: the arithmetic every style renders
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    op: str  # one of + - * /
    operand: int
    before: int
    after: int

    def annotation(self) -> str:
        """The GSM8K calculator annotation, e.g. ``<<7+5=12>>``."""
        return f"<<{self.before}{self.op}{self.operand}={self.after}>>"


@dataclass(frozen=True)
class _Chain:
    start: int
    steps: tuple[_Step, ...]

    @property
    def answer(self) -> int:
        return self.steps[-1].after

    def key(self) -> str:
        """Canonical form, e.g. ``7|+5|*2|-9``: the identity used for splits and repeats."""
        return "|".join([str(self.start), *(f"{s.op}{s.operand}" for s in self.steps)])


@dataclass(frozen=True)
class _Rules:
    """Number ranges of a style (all inclusive)."""

    ops: tuple[str, ...]
    start: tuple[int, int]
    values: tuple[int, int]  # every intermediate and final value
    add_sub: tuple[int, int]  # operand of + and -
    factor: tuple[int, int]  # operand of * and /

    def candidates(self, op: str, value: int) -> list[int]:
        """Operands of ``op`` that keep ``value op operand`` integral and in range."""
        low, high = self.values
        if op == "+":
            return [k for k in range(self.add_sub[0], self.add_sub[1] + 1) if value + k <= high]
        if op == "-":
            return [k for k in range(self.add_sub[0], self.add_sub[1] + 1) if value - k >= low]
        if op == "*":
            return [k for k in range(self.factor[0], self.factor[1] + 1) if value * k <= high]
        if op == "/":
            return [
                k
                for k in range(self.factor[0], self.factor[1] + 1)
                if value % k == 0 and value // k >= low
            ]
        raise ValueError(f"unknown operation {op!r}")


def _apply(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a // b  # only exact divisions are ever drawn


def _draw_chain(stream: SeededStream, n_steps: int, rules: _Rules) -> _Chain:
    """A random chain of ``n_steps`` operations that respects ``rules``."""
    value = rules.start[0] + stream.below(rules.start[1] - rules.start[0] + 1)
    start = value
    steps: list[_Step] = []
    while len(steps) < n_steps:
        op = stream.choice(rules.ops)
        options = rules.candidates(op, value)
        if not options:
            continue  # e.g. no exact divisor; "+" or "-" is always possible, so this ends
        operand = stream.choice(options)
        after = _apply(op, value, operand)
        steps.append(_Step(op, operand, value, after))
        value = after
    return _Chain(start, tuple(steps))


def split_of(chain_key: str) -> str:
    """The split a canonical chain (``7|+5|*2``) belongs to, from a SHA-256 bucket."""
    digest = hashlib.sha256(f"thoughtscope.synthetic.split|{chain_key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    for name, (low, high) in SPLITS.items():
        if low <= bucket < high:
            return name
    raise AssertionError("SPLITS must cover 0..99")


# ---------------------------------------------------------------------------------------
# Style "compact" — surface for the tiny character-level toy model.
# Self-contained on purpose: tune the ranges and rendering below without touching the
# rest (bump _GENERATOR_VERSION and the pinned problems in tests/problems/test_synthetic.py).
# ---------------------------------------------------------------------------------------

# Values stay below 20 so that every step is one small table look-up: the toy model
# (0.9 M parameters, trained for under an hour on a CPU) then learns to carry each
# intermediate value in one continuous thought.
COMPACT_RULES = _Rules(
    ops=("+", "-", "*"),
    start=(1, 9),
    values=(0, 19),
    add_sub=(1, 9),
    factor=(2, 9),
)
_COMPACT_VARIABLES = "abcdefghijklmnopqrstuvwxyz"


def _render_compact(chain: _Chain, stream: SeededStream) -> tuple[str, str]:
    """Question ``a=7;b=a+5;b=?`` and solution ``<<7+5=12>>\\n#### 12``."""
    names = _COMPACT_VARIABLES
    parts = [f"{names[0]}={chain.start}"]
    for i, step in enumerate(chain.steps):
        parts.append(f"{names[i + 1]}={names[i]}{step.op}{step.operand}")
    parts.append(f"{names[len(chain.steps)]}=?")
    question = ";".join(parts)
    solution = " ".join(s.annotation() for s in chain.steps) + f"\n#### {chain.answer}"
    return question, solution


# ---------------------------------------------------------------------------------------
# Style "words" — varied English wording, GSM8K-like solutions.
# ---------------------------------------------------------------------------------------

WORDS_RULES = _Rules(
    ops=("+", "-", "*", "/"),
    start=(2, 20),
    values=(2, 100),  # never 0 or 1, so every count reads as a plural
    add_sub=(2, 20),
    factor=(2, 9),
)

# (name, subject pronoun, object pronoun, possessive)
_PEOPLE = (
    ("Mia", "she", "her", "her"),
    ("Leo", "he", "him", "his"),
    ("Ava", "she", "her", "her"),
    ("Noah", "he", "him", "his"),
    ("Zoe", "she", "her", "her"),
    ("Omar", "he", "him", "his"),
    ("Lena", "she", "her", "her"),
    ("Ravi", "he", "him", "his"),
    ("Sofia", "she", "her", "her"),
    ("Ben", "he", "him", "his"),
    ("Priya", "she", "her", "her"),
    ("Tomás", "he", "him", "his"),
)
# (plural, singular)
_THINGS = (
    ("apples", "apple"),
    ("marbles", "marble"),
    ("stickers", "sticker"),
    ("pencils", "pencil"),
    ("coins", "coin"),
    ("cookies", "cookie"),
    ("shells", "shell"),
    ("stamps", "stamp"),
    ("cards", "card"),
    ("beads", "bead"),
    ("eggs", "egg"),
    ("books", "book"),
)

_WORDS_START = (
    "{Name} has {v} {things}.",
    "{Name} starts the day with {v} {things}.",
    "There are {v} {things} in {Name}'s box.",
    "{Name} collected {v} {things} last week.",
    "{Name}'s shelf holds {v} {things}.",
)
_WORDS_STEP: dict[str, tuple[str, ...]] = {
    "+": (
        "{He} buys {k} more {things}.",
        "A friend gives {him} {k} more {things}.",
        "{He} finds {k} {things} on the way home.",
        "Then {Name} gets {k} extra {things}.",
        "Later, {k} more {things} are added.",
    ),
    "-": (
        "{He} gives {k} {things} to a friend.",
        "{He} loses {k} of them.",
        "{He} uses {k} {things} for a school project.",
        "Then {k} {things} are sold.",
        "{Name} misplaces {k} of the {things}.",
    ),
    "*": (
        "{He} ends up with {k} times as many {things} as before.",
        "Each {thing} is swapped for {k} new ones.",
        "The number of {things} grows to {k} times what it was.",
        "{His} aunt gives {him} enough to make it {k} times as many {things}.",
    ),
    "/": (
        "{He} splits the {things} into {k} equal piles and keeps only one pile.",
        "{He} keeps one out of every {k} {things} and gives the rest away.",
        "The {things} are shared equally among {k} children, {Name} included, "
        "and {Name} keeps {his} share.",
    ),
}
_WORDS_QUESTION = (
    "How many {things} does {Name} have now?",
    "How many {things} does {Name} end up with?",
    "In the end, how many {things} does {he} have?",
)
_WORDS_SOLUTION_LINE = {
    "+": "{Name} then has {a} + {k} = {ann}{r} {things}.",
    "-": "{Name} then has {a} - {k} = {ann}{r} {things}.",
    "*": "{Name} then has {a} * {k} = {ann}{r} {things}.",
    "/": "{Name} then has {a} / {k} = {ann}{r} {things}.",
}


def _render_words(chain: _Chain, stream: SeededStream) -> tuple[str, str]:
    """An English question with one sentence per operation and a GSM8K-style solution."""
    name, he, him, his = stream.choice(_PEOPLE)
    things, thing = stream.choice(_THINGS)
    slots = {
        "Name": name,
        "he": he,
        "He": he.capitalize(),
        "him": him,
        "his": his,
        "His": his.capitalize(),
        "things": things,
        "thing": thing,
    }
    sentences = [stream.choice(_WORDS_START).format(v=chain.start, **slots)]
    lines = []
    for step in chain.steps:
        sentences.append(stream.choice(_WORDS_STEP[step.op]).format(k=step.operand, **slots))
        lines.append(
            _WORDS_SOLUTION_LINE[step.op].format(
                a=step.before, k=step.operand, ann=step.annotation(), r=step.after, **slots
            )
        )
    sentences.append(stream.choice(_WORDS_QUESTION).format(**slots))
    return " ".join(sentences), "\n".join([*lines, f"#### {chain.answer}"])


# ---------------------------------------------------------------------------------------
# Style registry and the public generator
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Style:
    rules: _Rules
    render: Callable[[_Chain, SeededStream], tuple[str, str]]


STYLES: dict[str, _Style] = {
    "compact": _Style(COMPACT_RULES, _render_compact),
    "words": _Style(WORDS_RULES, _render_words),
}
"""Surface styles by name; add one by registering its rules and renderer here."""


def generate(
    split: str,
    seed: int,
    n: int,
    *,
    style: str = DEFAULT_STYLE,
    min_steps: int = 1,
    max_steps: int = 6,
) -> list[Problem]:
    """``n`` deterministic chained-arithmetic problems of one split.

    Args:
        split: ``train``, ``val`` or ``test``; no chain ever appears in two splits.
        seed: Any integer; the same arguments give the same problems on every machine.
        n: Number of problems (``n=1000`` begins with the ``n=500`` problems).
        style: ``compact`` (default; the toy model trains on it) or ``words``.
        min_steps: Fewest operations per problem (at least 1).
        max_steps: Most operations per problem (at most :data:`MAX_STEPS`); step counts
            are spread evenly over ``min_steps..max_steps``.

    Returns:
        Problems with ids like ``synthetic-test-s7-00042``, ``steps`` = number of
        ``<<…>>`` annotations and ``steps_source="annotations"``.

    Raises:
        ValueError: An argument is out of range; the message names it and the valid values.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}: use one of {', '.join(STYLES)}")
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    if not 1 <= min_steps <= max_steps <= MAX_STEPS:
        raise ValueError(
            f"need 1 <= min_steps <= max_steps <= {MAX_STEPS}, "
            f"got min_steps={min_steps}, max_steps={max_steps}"
        )
    chosen = STYLES[style]
    stream = SeededStream(
        f"thoughtscope.synthetic|{_GENERATOR_VERSION}|{style}|{split}|{seed}"
        f"|{min_steps}|{max_steps}"
    )
    # n is left out so that a prefix of a longer run is the same problems, source included.
    source = (
        f"synthetic:{split}:seed={seed}:style={style}:min_steps={min_steps}:max_steps={max_steps}"
    )
    step_counts = list(range(min_steps, max_steps + 1))
    used: set[str] = set()
    block: list[int] = []
    problems: list[Problem] = []
    for index in range(n):
        if not block:
            block = stream.shuffled(step_counts)
        n_steps = block.pop()
        chain = _draw_for_split(stream, n_steps, chosen.rules, split, used)
        used.add(chain.key())
        question, solution = chosen.render(chain, stream)
        problems.append(
            Problem(
                id=f"synthetic-{split}-s{seed}-{index:05d}",
                question=question,
                answer=float(chain.answer),
                steps=n_steps,
                steps_source="annotations",
                solution=solution,
                source=source,
            )
        )
    return problems


def _draw_for_split(
    stream: SeededStream, n_steps: int, rules: _Rules, split: str, used: set[str]
) -> _Chain:
    """A chain of ``split``, fresh if one turns up within a few tries, else a repeat."""
    repeat: _Chain | None = None
    repeats_seen = 0
    for _ in range(_MAX_SPLIT_ATTEMPTS):
        chain = _draw_chain(stream, n_steps, rules)
        if split_of(chain.key()) != split:
            continue
        if chain.key() not in used:
            return chain
        repeat = repeat or chain
        repeats_seen += 1
        if repeats_seen >= _MAX_FRESH_ATTEMPTS:
            break
    if repeat is None:
        raise RuntimeError(f"no {n_steps}-step chain of split {split!r} found; widen the rules")
    return repeat


# ---------------------------------------------------------------------------------------
# Counterfactual twins: the same problem with one number changed
# ---------------------------------------------------------------------------------------

_ANNOTATION = re.compile(r"<<(\d+)([-+*/])(\d+)=(\d+)>>")


@dataclass(frozen=True)
class Twin:
    """A counterfactual twin of a synthetic problem.

    Attributes:
        problem: The twin: the same chain with one number changed (id ``<id>~cf``).
        changed: Which number changed: ``start`` or ``operand:J`` (J 1-based: the J-th
            operation's operand).
        first_changed_step: The first step (1-based) whose result differs; every step
            before it has the same result in both problems.
    """

    problem: Problem
    changed: str
    first_changed_step: int


def _chain_of(solution: str) -> _Chain | None:
    """The chain a synthetic solution's ``<<a op k=r>>`` annotations describe."""
    found = _ANNOTATION.findall(solution)
    if not found:
        return None
    steps = tuple(_Step(op, int(k), int(a), int(r)) for a, op, k, r in found)
    if any(s.after != _apply(s.op, s.before, s.operand) for s in steps):
        return None
    if any(b.before != a.after for a, b in itertools.pairwise(steps)):
        return None
    return _Chain(steps[0].before, steps)


def _rerun(start: int, ops: list[tuple[str, int]], rules: _Rules) -> _Chain | None:
    """The chain ``start`` with these operations, or ``None`` if it leaves ``rules``."""
    value, steps = start, []
    for op, operand in ops:
        if operand not in rules.candidates(op, value):
            return None
        after = _apply(op, value, operand)
        steps.append(_Step(op, operand, value, after))
        value = after
    return _Chain(start, tuple(steps))


def _first_difference(chain: _Chain, other: _Chain) -> int | None:
    """The first step (1-based) whose result differs between two chains of equal length."""
    pairs = zip(chain.steps, other.steps, strict=True)
    return next((i + 1 for i, (a, b) in enumerate(pairs) if a.after != b.after), None)


def counterfactual_twin(problem: Problem, seed: int = 0) -> Twin | None:
    """The same compact problem with one number (the start value or one operand)
    changed, so that some intermediate value differs; ``None`` when ``problem`` is not a
    compact synthetic problem or no change keeps every value in the style's ranges.

    Among the valid changes, those that also change the final answer are preferred (so a
    patched answer can be told apart); the choice is seeded by ``seed`` and the problem's
    id, so the same arguments give the same twin on every machine.
    """
    chain = _chain_of(problem.solution or "")
    rules = COMPACT_RULES
    if chain is None or _render_compact(chain, SeededStream(""))[0] != problem.question:
        return None
    ops = [(s.op, s.operand) for s in chain.steps]
    options: list[tuple[str, _Chain]] = []
    for start in range(rules.start[0], rules.start[1] + 1):
        if start != chain.start and (twin := _rerun(start, ops, rules)) is not None:
            options.append(("start", twin))
    for j, (op, operand) in enumerate(ops):
        for other in rules.candidates(op, chain.steps[j].before):
            altered = [*ops[:j], (op, other), *ops[j + 1 :]]
            if other != operand and (twin := _rerun(chain.start, altered, rules)) is not None:
                options.append((f"operand:{j + 1}", twin))
    # Keep changes that change some intermediate result (b*2 with b=0 hides any change).
    options = [o for o in options if _first_difference(chain, o[1]) is not None]
    if not options:
        return None
    differing = [o for o in options if o[1].answer != chain.answer]
    stream = SeededStream(f"thoughtscope.counterfactual|{seed}|{problem.id}")
    changed, twin = stream.choice(differing or options)
    first = _first_difference(chain, twin)
    assert first is not None
    question, solution = _render_compact(twin, SeededStream(""))
    return Twin(
        Problem(
            id=f"{problem.id}~cf",
            question=question,
            answer=float(twin.answer),
            steps=problem.steps,
            steps_source=problem.steps_source,
            solution=solution,
            source=f"{problem.source}|counterfactual:seed={seed}",
        ),
        changed,
        first,
    )
