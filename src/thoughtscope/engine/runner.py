"""The batching driver: many problems × many conditions through the latent loop.

Each batch of problems is left-padded and encoded once (:mod:`thoughtscope.engine.latent`
holds the steps); the prompt's KV cache is fanned out to one row per condition, so all
conditions of a problem share its encoded question; conditions with the same number of
thoughts share one set of rows and a forward pass; rows that finish are retired. When
no condition edits the start step, it runs once per problem before the fan-out.

The protocol (prompt layout, start and closing ids, how a thought is fed back) is the
model's thought family's (:mod:`thoughtscope.model.families`). Conditions and edits are
defined in :mod:`thoughtscope.engine.edits`, sites and positions in
:mod:`thoughtscope.engine.sites`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from thoughtscope.engine import latent
from thoughtscope.engine.batching import AUTO, BatchSize, auto_batch_size, check_batch_size
from thoughtscope.engine.edits import BASELINE, Condition, Edit, EditContext
from thoughtscope.engine.sites import BOT, EOT, LATENT
from thoughtscope.model.thought_model import ThoughtModel

__all__ = [
    "BASELINE",
    "Condition",
    "Edit",
    "EditContext",
    "Generation",
    "RunOptions",
    "Runner",
]


@dataclass
class Generation:
    """The result of one problem under one condition.

    Attributes:
        problem: Index of the problem in the runner's input.
        condition: The condition's name.
        answer_ids: Generated ids, without the final ``<eos>``.
        text: Decoded answer, special tokens skipped.
        finished: Whether the row stopped at ``<eos>`` (else at ``max_new_tokens``).
        thoughts: ``(n_latent, d)`` the vectors fed back (after any ``latent`` edit);
            for a family with a stopping rule, ``n_latent`` is this row's own count.
        hidden: ``(positions, layers + 1, d)`` on request: the input embedding and every
            block's output (after edits) at positions ``[bot, 0, …, n_latent-1, eot]``.
        answer_logits: ``(len(answer_ids) + finished, vocab)`` on request: the logits
            that chose each generated token.
        target_logprobs: For each named target given to :meth:`Runner.run`,
            ``(len(target),)`` log-probabilities of its tokens, teacher-forced after the
            closing ids.
        target_logits: On request, for each named target, ``(len(target), vocab)``
            logits along it (float32).
        target_kl: With ``RunOptions.kl_reference``, for each named target,
            ``(len(target),)`` float32: per token, KL(reference row ‖ this row) between
            the next-token distributions, both teacher-forced along the target.
    """

    problem: int
    condition: str
    answer_ids: list[int]
    text: str
    finished: bool
    thoughts: Tensor
    hidden: Tensor | None = None
    answer_logits: Tensor | None = None
    target_logprobs: dict[str, Tensor] = field(default_factory=dict)
    target_logits: dict[str, Tensor] = field(default_factory=dict)
    target_kl: dict[str, Tensor] = field(default_factory=dict)
    thoughts_capped: bool = False
    """The family's stopping rule never stopped this row: it was closed at the cap."""


@dataclass(frozen=True)
class RunOptions:
    """How to run a batch.

    Attributes:
        max_new_tokens: Decoding stops after this many tokens.
        batch_size: Rows (problem × condition) per forward pass; ``"auto"`` (or ``None``)
            chooses it to fit memory (:mod:`thoughtscope.engine.batching`).
        record_hidden: Return every layer's hidden state at every latent position.
        record_layers: With ``record_hidden``, keep only these entries of the layer axis
            of ``Generation.hidden`` (0: the input embedding, ``L + 1``: block ``L``'s
            output), in this order; ``None``: all. Only they are copied to the CPU.
        record_answer_logits: Return the logits along the generated answer.
        record_target_logits: Return the logits along the teacher-forced target.
        kl_reference: Name of a condition of the same run: every row then gets
            ``target_kl`` against its problem's row under that condition, computed on
            the device.
        fork: Let a problem's conditions share rows while their edits agree, forking
            where they first differ (same answers, fewer rows computed).
        hold_thoughts: For a family with a stopping rule (rows think for different
            numbers of steps): the name of the condition whose thought count every
            other condition of the problem keeps (ablated runs held to the baseline's
            length, as arXiv 2602.08783 does); ``None``, or a name not in the run:
            every row stops on its own. Early-exit conditions stop at the earlier of
            the two.
        ballast: Add to every batch one extra problem, a copy of the batch's longest
            question (its targets: that question's), whose rows are the last row of
            every row tensor at every step (decoding never retires them while another
            row is alive) and whose results are dropped (never yielded, counted by the
            progress bar, or the KL or edit reference of a returned row). On a CPU,
            elementwise kernels compute the last few elements of a tensor on a scalar
            path that rounds differently, so the last row of a batch can differ in its
            last bit from an identical row elsewhere; with the ballast, no returned row
            is ever last, and identical rows give identical numbers (what a bit-for-bit
            comparison within a batch needs). Its rows come on top of ``batch_size``:
            the batches are cut as without it.
        progress: Show a progress bar.
    """

    max_new_tokens: int = 64
    batch_size: BatchSize = AUTO
    record_hidden: bool = False
    record_layers: tuple[int, ...] | None = None
    record_answer_logits: bool = False
    record_target_logits: bool = False
    kl_reference: str | None = None
    fork: bool = True
    hold_thoughts: str | None = BASELINE.name
    ballast: bool = False
    progress: bool = False


Targets = Mapping[str, Sequence[Sequence[int]]]


class Runner:
    """Runs latent reasoning for many problems and conditions at once.

    Example::

        runner = Runner(model)
        results = runner.run(["What is 2+3?"], [BASELINE])
        results[0][0].text
    """

    def __init__(self, model: ThoughtModel):
        self.model = model
        self._hooks = latent.BlockHooks(model)

    # -- public API ----------------------------------------------------------------
    @torch.inference_mode()
    def run(
        self,
        questions: Sequence[str],
        conditions: Sequence[Condition] = (BASELINE,),
        options: RunOptions | None = None,
        *,
        targets: Targets | None = None,
    ) -> list[list[Generation]]:
        """Runs every question under every condition.

        Args:
            questions: Question texts.
            conditions: Conditions to apply; names must be unique.
            options: Batch size, decoding length, what to record.
            targets: Named token sequences, one per question, to teacher-force after
                the closing ids (e.g. ``{"gold": model.answer_ids(expected)}``): fills
                ``target_logprobs`` (and ``target_logits``, ``target_kl`` on request).
                Each sequence needs at least one token.

        Returns:
            ``results[i][j]``: question ``i`` under condition ``j``.
        """
        results: list[list[Generation]] = [[] for _ in questions]
        for index, row in self.stream(questions, conditions, options, targets=targets):
            results[index] = row
        return results

    @torch.inference_mode()
    def stream(
        self,
        questions: Sequence[str],
        conditions: Sequence[Condition] = (BASELINE,),
        options: RunOptions | None = None,
        *,
        targets: Targets | None = None,
    ) -> Iterator[tuple[int, list[Generation]]]:
        """Like :meth:`run`, but yields ``(i, [question i under each condition])`` as each
        batch finishes, so a caller can write results out and hold one batch at a time.

        Problems come in batch order (grouped by question length), not input order.
        """
        options = options or RunOptions()
        names = [c.name for c in conditions]
        if len(set(names)) != len(names):
            raise ValueError(f"condition names must be unique, got {names}")
        if options.kl_reference is not None and options.kl_reference not in names:
            raise ValueError(
                f"kl_reference {options.kl_reference!r} is not one of the conditions {names}"
            )
        self._check_conditions(conditions)
        check_batch_size(options.batch_size)
        for target_name, sequences in (targets or {}).items():
            if len(sequences) != len(questions):
                raise ValueError(f"target {target_name!r} must have one entry per question")
            if any(len(seq) == 0 for seq in sequences):
                raise ValueError(f"target {target_name!r} has an empty sequence")
        if not questions:
            return
        rows_per_batch = self._rows_per_batch(questions, len(conditions), options, targets)
        per_batch = max(1, rows_per_batch // max(1, len(conditions)))
        # As many batches as needed, evened out: 100 problems at 73 a batch run as 50 + 50,
        # not 73 + a poorly filled 27.
        per_batch = math.ceil(len(questions) / math.ceil(len(questions) / per_batch))
        # Group similar lengths together: less padding, same results.
        order = sorted(range(len(questions)), key=lambda i: len(questions[i]))
        batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
        bar = tqdm(
            total=len(questions) * len(conditions),
            disable=not options.progress,
            desc="latent reasoning",
            unit="row",
        )
        for batch in batches:
            rows: dict[int, list[Generation | None]] = {i: [None] * len(conditions) for i in batch}
            for gen in self._run_batch(questions, batch, conditions, options, targets):
                rows[gen.problem][names.index(gen.condition)] = gen
            bar.update(len(batch) * len(conditions))
            for i in batch:
                yield i, [g for g in rows[i] if g is not None]
        bar.close()

    # -- the driver ------------------------------------------------------------------
    def _rows_per_batch(
        self,
        questions: Sequence[str],
        n_conditions: int,
        options: RunOptions,
        targets: Targets | None,
    ) -> int:
        """The batch size: ``options.batch_size``, or chosen to fit memory."""
        if isinstance(options.batch_size, int):
            return options.batch_size
        # The longest question sets the widest batch (questions are left-padded).
        longest = max(questions, key=len)
        prompt_length = len(self.model.question_ids(longest))
        longest_target = max((len(t) for seqs in (targets or {}).values() for t in seqs), default=0)
        return auto_batch_size(
            self.model,
            prompt_length=prompt_length,
            new_tokens=max(options.max_new_tokens, longest_target),
            conditions=n_conditions,
        )

    def _check_conditions(self, conditions: Sequence[Condition]) -> None:
        n_latent = self.model.num_thoughts
        n_layers = self.model.num_layers
        for condition in conditions:
            steps = n_latent if condition.num_latent is None else condition.num_latent
            if not 0 <= steps <= n_latent:
                raise ValueError(
                    f"condition {condition.name}: num_latent {steps} is outside 0…{n_latent}"
                )
            for site, position in condition.edits:
                if site.kind == "block" and not 0 <= (site.layer or 0) < n_layers:
                    raise ValueError(
                        f"condition {condition.name}: block {site.layer} does not exist "
                        f"(blocks 0…{n_layers - 1})"
                    )
                if position == EOT or (position != BOT and not 0 <= position < steps):
                    raise ValueError(
                        f"condition {condition.name}: position {position} is outside "
                        f"bot, 0…{steps - 1}"
                    )
                if site == LATENT and position == BOT:
                    raise ValueError(
                        f"condition {condition.name}: the latent site has no bot position"
                    )

    def _groups(
        self, conditions: Sequence[Condition], reference: str | None, held: str | None = None
    ) -> list[tuple[int, list[int]]]:
        """Condition indices by number of thoughts (those sharing rows); the group of
        the KL reference first, so its log-probabilities exist when the others run, and
        the group of the held-length condition before the rest, so its lengths do."""
        groups: dict[int, list[int]] = {}
        for c_index, condition in enumerate(conditions):
            n = self.model.num_thoughts if condition.num_latent is None else condition.num_latent
            groups.setdefault(n, []).append(c_index)
        ordered = list(groups.items())
        if reference is not None or held is not None:
            ordered.sort(
                key=lambda item: (
                    not any(conditions[c].name == reference for c in item[1]),
                    not any(conditions[c].name == held for c in item[1]),
                )
            )
        return ordered

    def _run_batch(
        self,
        questions: Sequence[str],
        batch: list[int],
        conditions: Sequence[Condition],
        options: RunOptions,
        targets: Targets | None,
    ) -> Iterator[Generation]:
        model = self.model
        record = options.record_hidden
        real = len(batch)  # problems whose results are returned
        if options.ballast:
            # The ballast: the longest question again, last, numbered as that problem
            # (so its edits and targets are that problem's); its rows are never yielded.
            batch = [*batch, max(batch, key=lambda i: len(questions[i]))]
        prefix = latent.encode_prompts(model, [model.question_ids(questions[i]) for i in batch])
        device = prefix.mask.device
        numbering = torch.tensor(batch, device=device)  # the caller's problem indices
        # Without an edit at the start step, every condition's start step is the same:
        # run it once per problem, before the rows are fanned out.
        after_start: latent.Thinking | None = None
        if not any(position == BOT for c in conditions for _, position in c.edits):
            hooks = self._hooks if record else None
            after_start = latent.think(model, prefix, 0, hooks=hooks, record=record)
        n_start = 0 if after_start is not None else len(model.family.start_ids())
        n_closing = len(model.family.closing_ids())
        longest_target = max(
            (len(seq) for seqs in (targets or {}).values() for seq in seqs), default=0
        )
        # Per target, the reference rows' log-probabilities (problems, width, vocab).
        references: dict[str, Tensor] = {}
        held = options.hold_thoughts
        # Each problem's thought count under the held condition, once its group ran.
        held_lengths: Tensor | None = None
        for steps, members in self._groups(conditions, options.kl_reference, held):
            group = [conditions[c] for c in members]
            n_problems, n_cond = len(batch), len(group)
            # Condition-major rows: row = condition * n_problems + problem.
            index = torch.arange(n_problems, device=device).repeat(n_cond)
            # Room for every position the rows will see, so no step copies the cache.
            capacity = (
                prefix.mask.shape[1]
                + n_start
                + steps
                + n_closing
                + max(options.max_new_tokens, longest_target)
            )
            # One row per problem, in storage with room for the thoughts and for the
            # rows of every condition: forks append rows without moving the others.
            # think() then copies the rows into storage with room for everything after.
            # (Reserving every position up front saves that copy but measured slower:
            # the thought steps then read their keys and values from more scattered
            # memory, and at this size attention is bound by memory traffic.)
            thinking_room = prefix.mask.shape[1] + n_start + steps
            each = torch.arange(n_problems, device=device)
            row_room = n_problems * n_cond if options.fork else 0
            rows = latent.fan_out(prefix, each, numbering, thinking_room, row_room)
            thinking = latent.think(
                model,
                rows,
                steps,
                first=None if after_start is None else after_start.next_input,
                conditions=group,
                fork=options.fork,
                capacity=capacity,
                hooks=self._hooks,
                record=record,
                stops=None
                if after_start is None or after_start.stops is None
                else after_start.stops.select(torch.arange(n_problems, device=device)),
                hold=held,
                lengths=held_lengths,
            )
            names = [c.name for c in group]
            if thinking.stops is not None and held in names:
                counts = thinking.stops.counts.view(n_cond, n_problems)
                held_lengths = counts[names.index(held)]
            hidden = thinking.recorded
            if after_start is not None and after_start.recorded is not None:
                start_states = after_start.recorded[index]
                hidden = start_states if hidden is None else torch.cat([start_states, hidden], 1)
            first_logits, closing_states = latent.close(
                model, rows, hooks=self._hooks if record else None
            )
            if options.record_layers is not None and hidden is not None:
                keep = list(options.record_layers)
                hidden = hidden[:, :, keep]
                closing_states = None if closing_states is None else closing_states[:, keep]
            # The reference condition's row of each problem, when it is in this group.
            own = _reference_rows(group, options.kl_reference, n_problems, device)
            forced: dict[str, latent.Forced] = {}
            for target_name, sequences in (targets or {}).items():
                row_targets = [sequences[batch[p]] for p in index.tolist()]
                stored = references.get(target_name)
                forced[target_name] = latent.teacher_force(
                    model,
                    rows,
                    first_logits,
                    row_targets,
                    keep_logits=options.record_target_logits,
                    reference=None if stored is None else stored[index],
                    reference_rows=None if own is None else own[index],
                    keep_rows=own,
                )
                kept = forced[target_name].kept
                if kept is not None:
                    references[target_name] = kept
                    forced[target_name].kept = None
            decoded = latent.decode(
                model,
                rows,
                first_logits,
                options.max_new_tokens,
                keep_logits=options.record_answer_logits,
                pin_last=options.ballast,
            )
            stops = thinking.stops
            n_fed = (
                [thinking.thoughts.shape[1]] * len(decoded.ids)
                if stops is None
                else stops.counts.tolist()
            )
            for r in range(len(decoded.ids)):
                if r % n_problems >= real:
                    continue  # the ballast's row
                row_hidden = None
                if hidden is not None and closing_states is not None:
                    # The start step, this row's own thoughts, the first closing id.
                    row_hidden = torch.cat([hidden[r, : 1 + n_fed[r]], closing_states[r, None]])
                yield Generation(
                    problem=batch[r % n_problems],
                    condition=group[r // n_problems].name,
                    answer_ids=decoded.ids[r],
                    text=model.decode(decoded.ids[r]),
                    finished=decoded.finished[r],
                    thoughts=thinking.thoughts[r, : n_fed[r]].float().cpu(),
                    hidden=None if row_hidden is None else row_hidden.float().cpu(),
                    answer_logits=None if decoded.logits is None else decoded.logits[r],
                    target_logprobs={k: f.logprobs[r] for k, f in forced.items()},
                    target_logits={
                        k: f.logits[r] for k, f in forced.items() if f.logits is not None
                    },
                    target_kl={k: f.kl[r] for k, f in forced.items() if f.kl is not None},
                    thoughts_capped=stops is not None and bool(stops.capped[r]),
                )


def _reference_rows(
    group: Sequence[Condition], reference: str | None, n_problems: int, device: torch.device
) -> Tensor | None:
    """Rows of the reference condition, one per problem, when it is in ``group``."""
    names = [c.name for c in group]
    if reference is None or reference not in names:
        return None
    return names.index(reference) * n_problems + torch.arange(n_problems, device=device)
