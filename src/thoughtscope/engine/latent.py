"""The latent-reasoning loop as step functions, the same for every thought family.

A problem runs as: :func:`encode_prompts` (the family's prompt, left-padded, encoded
once) → :func:`fan_out` (one row per condition, sharing the prompt's cache) →
:func:`think` (the start ids, then one single-token step per thought, each thought made
from the last step's state by the family, with per-row edits and recording) →
:func:`close` (the family's closing ids; logits of the first answer token) →
:func:`teacher_force` (log-probabilities, and KL to a reference, along given targets) →
:func:`decode` (greedy, each row stopping at ``<eos>``).

Every step passes the full attention mask and explicit position ids, so a row's result
does not depend on what else is in its batch (the published batched CODI code passes no
mask during the thought steps). The runner (:mod:`thoughtscope.engine.runner`) drives
these steps over batches; the training objective calls :func:`encode` and :func:`think`
with gradients on. Cache details live in :mod:`thoughtscope.engine.backend`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from thoughtscope.engine import backend
from thoughtscope.engine.edits import Condition, Edit, EditContext
from thoughtscope.engine.sites import BOT, LATENT, Position, Site
from thoughtscope.model.thought_model import ThoughtModel


# ----------------------------------------------------------------------------- rows
@dataclass
class Rows:
    """The mutable state of a batch of rows sharing one KV cache.

    Attributes:
        cache: Keys and values of every position so far.
        mask: ``(rows, length)`` 1 for real tokens, 0 for left padding.
        next_position: ``(rows,)`` position id of the next input.
        problems: ``(rows,)`` each row's problem, in the caller's numbering.
    """

    cache: backend.Cache
    mask: Tensor
    next_position: Tensor
    problems: Tensor

    def step_inputs(self, tokens: int = 1) -> tuple[Tensor, Tensor]:
        """Attention mask ``(rows, length + tokens)`` and position ids ``(rows, tokens)``
        for ``tokens`` more inputs; the rows now include them."""
        ones = torch.ones_like(self.mask[:, :1]).expand(-1, tokens)
        self.mask = torch.cat([self.mask, ones], dim=1)
        position_ids = self.next_position[:, None]
        if tokens > 1:
            offsets = torch.arange(tokens, device=position_ids.device)
            position_ids = position_ids + offsets[None, :]
        self.next_position = self.next_position + tokens
        return self.mask, position_ids

    def select(self, keep: Tensor, capacity: int | None = None) -> None:
        """Keeps the rows at indices ``keep`` ``(kept,)``, which may repeat a row; with
        ``capacity``, in a new cache with room for that many positions."""
        if capacity is None:
            backend.select_rows(self.cache, keep)
        else:
            backend.reserve_rows(self.cache, keep, capacity)
        self.mask = self.mask[keep]
        self.next_position = self.next_position[keep]
        self.problems = self.problems[keep]

    def extend(self, source: Tensor) -> None:
        """Appends copies of the rows at indices ``source`` ``(new,)`` after the rows (a
        fork); the rows already there stay where they are, and so does their cache when
        it has room for more rows (:func:`fan_out`'s ``row_capacity``)."""
        backend.append_rows(self.cache, source)
        self.mask = torch.cat([self.mask, self.mask[source]])
        self.next_position = torch.cat([self.next_position, self.next_position[source]])
        self.problems = torch.cat([self.problems, self.problems[source]])


def forward(
    model: ThoughtModel,
    embeds: Tensor,
    mask: Tensor,
    position_ids: Tensor,
    cache: backend.Cache,
    *,
    hidden_states: bool = False,
) -> Any:
    """One pass of the decoder stack: ``embeds (rows, s, d)`` after what ``cache`` holds.

    Returns the HF output; ``last_hidden_state`` ``(rows, s, d)`` is normed.
    """
    return backend.forward(
        model.decoder,
        cache,
        hidden_states=hidden_states,
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=position_ids,
    )


# ---------------------------------------------------------------------------- prompt
def pad_left(
    prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Left-padded ids and mask, both ``(len(prompts), longest)``."""
    width = max(len(x) for x in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, seq in enumerate(prompts):
        ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def encode(model: ThoughtModel, ids: Tensor, mask: Tensor) -> tuple[Rows, Tensor]:
    """Encodes left-padded prompts ``ids, mask (rows, q)``.

    Returns the rows (problems numbered ``0…rows-1``) and the normed last-layer states
    ``(rows, q, d)``.
    """
    cache = backend.new_cache()
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    out = forward(model, model.embed(ids), mask, position_ids, cache)
    rows = Rows(
        cache=cache,
        mask=mask,
        next_position=mask.sum(dim=1),
        problems=torch.arange(len(ids), device=ids.device),
    )
    return rows, out.last_hidden_state


def encode_prompts(model: ThoughtModel, prompts: Sequence[Sequence[int]]) -> Rows:
    """Encodes token-id prompts once each (left-padded): the cache before the thoughts."""
    ids, mask = pad_left(prompts, model.family.pad_id, model.device)
    rows, _ = encode(model, ids, mask)
    return rows


def fan_out(
    prefix: Rows, index: Tensor, problems: Tensor, capacity: int = 0, row_capacity: int = 0
) -> Rows:
    """Rows whose row ``i`` continues row ``index[i]`` of ``prefix`` (its own copy of the
    cache, room for ``capacity`` positions and for ``row_capacity`` rows, so that forks
    append rows without moving the others); ``problems`` ``(len(prefix),)`` renumbers."""
    return Rows(
        cache=backend.expand_rows(prefix.cache, index, capacity, row_capacity),
        mask=prefix.mask[index],
        next_position=prefix.next_position[index],
        problems=problems[index],
    )


# ----------------------------------------------------------------------------- edits
PlannedEdit = tuple[Edit, Tensor, EditContext]
"""An edit, the rows it applies to ``(k,)`` and its context."""
EditPlan = dict[tuple[Site, Position], list[PlannedEdit]]


def edits_at(condition: Condition, position: Position) -> dict[Site, Edit]:
    """The edits ``condition`` makes at ``position``, by site."""
    return {site: edit for (site, pos), edit in condition.edits.items() if pos == position}


def same_edits(a: dict[Site, Edit], b: dict[Site, Edit]) -> bool:
    """Whether two sets of edits certainly do the same: the same sites, and at each the
    same edit object or edits that compare equal (an edit whose ``==`` cannot say, e.g.
    one holding tensors, counts as different)."""
    if a.keys() != b.keys():
        return False
    for site, edit in a.items():
        other = b[site]
        if edit is other:
            continue
        try:
            if not bool(edit == other):
                return False
        except (RuntimeError, TypeError, ValueError):
            return False
    return True


@dataclass
class Branches:
    """Conditions that share rows: while their edits agree, a problem's conditions run
    as one row (a *branch*) and fork when the edits first differ.

    Rows are branch-major: row ``b * n_problems + p`` is problem ``p`` in branch ``b``,
    so a fork appends the new branches' rows after the existing ones, which stay where
    they are. ``members[b]`` lists the condition indices branch ``b`` stands for.
    """

    conditions: Sequence[Condition]
    members: list[list[int]]
    n_problems: int

    @classmethod
    def start(cls, conditions: Sequence[Condition], n_problems: int) -> Branches:
        """One branch for all conditions (one row per problem)."""
        return cls(conditions, [list(range(len(conditions)))], n_problems)

    def separate(self) -> Tensor:
        """Gives every condition its own branch; returns the new rows' source rows."""
        parent = [b for b, branch in enumerate(self.members) for _ in branch]
        index = self._rows(torch.tensor(parent))
        self.members = [[c] for branch in self.members for c in branch]
        return index

    def split(self, position: Position) -> Tensor | None:
        """Splits every branch whose conditions edit ``position`` differently: each
        branch keeps its first part, the other parts become new branches after the
        existing ones. Returns the source rows ``(new rows,)`` of the rows to append
        (branch-major), or ``None`` when nothing split."""
        members: list[list[int]] = []
        parent: list[int] = []
        appended: list[list[int]] = []
        for b, branch in enumerate(self.members):
            parts: list[tuple[dict[Site, Edit], list[int]]] = []
            for c in branch:
                signature = edits_at(self.conditions[c], position)
                for seen, part in parts:
                    if same_edits(seen, signature):
                        part.append(c)
                        break
                else:
                    parts.append((signature, [c]))
            members.append(parts[0][1])
            for _, part in parts[1:]:
                appended.append(part)
                parent.append(b)
        if not appended:
            return None
        self.members = members + appended
        return self._rows(torch.tensor(parent))

    def per_condition(self) -> Tensor:
        """Source rows ``(n_conditions * n_problems,)`` of one row per condition and
        problem, condition-major (row ``c * n_problems + p``), in the conditions' order:
        the rows as they are when every condition has its own branch and the branches
        were made in the conditions' order (as for the ``prefix``, ``single`` and
        ``suffix`` schedules), so that nothing moves."""
        branch_of = torch.zeros(len(self.conditions), dtype=torch.long)
        for b, branch in enumerate(self.members):
            branch_of[branch] = b
        return self._rows(branch_of)

    def rows_of(self, branch: int, device: torch.device | None = None) -> Tensor:
        """The rows ``(n_problems,)`` of ``branch``, in problem order."""
        return torch.arange(self.n_problems, device=device) + branch * self.n_problems

    def _rows(self, branch: Tensor) -> Tensor:
        """Branch-major rows ``(len(branch) * n_problems,)`` of the branches ``branch``."""
        problem = torch.arange(self.n_problems)[None, :]
        return (branch[:, None] * self.n_problems + problem).flatten()

    def plan(self, position: Position, rows: Rows) -> EditPlan:
        """The edits at ``position`` of each branch's rows (every member of a branch
        makes the same ones; the context names the first)."""
        plan: EditPlan = {}
        device = rows.problems.device
        # The reference rows: the branch of the first condition without edits.
        reference = next(
            (b for b, m in enumerate(self.members) if any(not self.conditions[c].edits for c in m)),
            None,
        )
        ref_rows = None if reference is None else self.rows_of(reference, device)
        ref_problems = None if ref_rows is None else rows.problems[ref_rows]
        for b, branch in enumerate(self.members):
            condition = self.conditions[branch[0]]
            edits = edits_at(condition, position)
            if not edits:
                continue
            members = self.rows_of(b, device)
            for site, edit in edits.items():
                context = EditContext(
                    site,
                    position,
                    rows.problems[members],
                    condition.name,
                    reference_problems=ref_problems,
                    reference_rows=ref_rows,
                )
                plan.setdefault((site, position), []).append((edit, members, context))
        return plan


class BlockHooks:
    """Forward hooks on every decoder block that apply edits and record outputs.

    ``plan`` for the current step maps a layer to its planned edits, applied to the last
    position; ``recorder`` (when set) receives each block's output at ``record_index``.
    """

    def __init__(self, model: ThoughtModel):
        self.model = model
        self.plan: dict[int, list[PlannedEdit]] = {}
        self.recorder: list[Tensor] | None = None
        self.record_index = -1
        self._handles: list[Any] = []

    def _hook(self, layer: int) -> Callable[..., Any]:
        def hook(_module: Any, _inputs: Any, output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output
            edits = self.plan.get(layer)
            if edits:
                unedited = hidden[:, -1, :]  # what reference-reading edits see
                last = unedited.clone()
                for edit, rows, context in edits:
                    context = replace(context, activations=unedited)
                    last[rows] = edit(last[rows], context).to(last.dtype)
                hidden = torch.cat([hidden[:, :-1, :], last[:, None, :]], dim=1)
            if self.recorder is not None:
                self.recorder.append(hidden[:, self.record_index, :])
            if not edits:
                return output
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    @contextmanager
    def installed(self) -> Iterator[BlockHooks]:
        """Registers the hooks for the duration of the ``with`` block."""
        try:
            for layer, module in enumerate(self.model.blocks):
                self._handles.append(module.register_forward_hook(self._hook(layer)))
            yield self
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            self.plan = {}
            self.recorder = None
            self.record_index = -1


# ---------------------------------------------------------------------------- thinking
@dataclass
class RowStops:
    """Per-row thinking lengths, for a family with a stopping rule (soft thinking).

    A row that stopped sits out the remaining thought steps: its inputs there are
    masked out and its positions do not advance, so its cache, positions and answer
    are exactly those of a run in which it alone had stopped there.

    Attributes:
        active: ``(rows,)`` bool, still thinking.
        counts: ``(rows,)`` long, thoughts fed so far.
        capped: ``(rows,)`` bool, reached the family's cap without its rule stopping it.
        memory: The rule's per-row memory (``StopCheck.memory``), ``None`` before the
            first check.
    """

    active: Tensor
    counts: Tensor
    capped: Tensor
    memory: Tensor | None = None

    @classmethod
    def start(cls, n_rows: int, device: torch.device) -> RowStops:
        """Every row thinking, none fed yet."""
        return cls(
            active=torch.ones(n_rows, dtype=torch.bool, device=device),
            counts=torch.zeros(n_rows, dtype=torch.long, device=device),
            capped=torch.zeros(n_rows, dtype=torch.bool, device=device),
        )

    def select(self, index: Tensor) -> RowStops:
        """The rows at ``index`` ``(kept,)``, as a new object."""
        return RowStops(
            active=self.active[index],
            counts=self.counts[index],
            capped=self.capped[index],
            memory=None if self.memory is None else self.memory[index],
        )


@dataclass
class Thinking:
    """What :func:`think` returns.

    Attributes:
        thoughts: ``(rows, n, d)`` the thought inputs fed back (after ``latent`` edits).
        recorded: On request, ``(rows, steps, layers + 1, d)``: each step's input and
            every block's output (after edits) at its last position, start step first
            when it ran.
        next_input: ``(rows, 1, d)`` the thought the last step produced (unused after
            the last thought; the first thought when only the start step ran).
        stops: For a family with a stopping rule, each row's thought count (row ``r``
            fed ``thoughts[r, :counts[r]]``; later entries and their recorded steps
            are masked-out filler) and whether it was capped; ``None`` for a fixed
            count.
    """

    thoughts: Tensor
    recorded: Tensor | None
    next_input: Tensor
    stops: RowStops | None = None


def think(
    model: ThoughtModel,
    rows: Rows,
    num_thoughts: int,
    *,
    first: Tensor | None = None,
    conditions: Sequence[Condition] | None = None,
    fork: bool = True,
    capacity: int = 0,
    hooks: BlockHooks | None = None,
    record: bool = False,
    stops: RowStops | None = None,
    hold: str | None = None,
    lengths: Tensor | None = None,
) -> Thinking:
    """Feeds the family's start ids, then ``num_thoughts`` thoughts, for every row.

    ``first`` ``(rows, 1, d)``: the start step already ran and produced this thought;
    only the thought steps run. With ``conditions``, ``rows`` holds one row per problem
    and ends with one row per condition and problem (condition-major: row
    ``c * problems + p``), in a cache with room for ``capacity`` positions: with ``fork``,
    a problem's conditions share one row while their edits agree and fork at the first
    position where they differ (same results, fewer rows computed; when ``rows``' cache
    has room for every row and position, forks append rows in place and, for conditions
    that fork in their own order, no row is copied at the end). Edits at the
    ``latent`` site change the thought before it enters; edits at blocks go through
    ``hooks`` (made when needed). Gradients flow when the caller enables them.

    When the family has a stopping rule (:meth:`ThoughtFamily.stopped`), rows stop at
    different steps (``num_thoughts`` is then a cap) and the loop ends when every row
    has stopped. ``stops`` resumes the rows' lengths after a separate start step (with
    ``first``). ``hold`` names a condition whose rows set the length of every row of
    the same problem (edited rows keep the baseline's length); ``lengths``
    ``(problems,)`` caps each problem's count (a length held from an earlier call).
    An edit at position k applies only to rows that reached k.
    """
    family = model.family
    n_problems = len(rows.problems)
    if first is None:
        start = torch.tensor(family.start_ids(), device=rows.mask.device)
        inputs = model.embed(start).expand(n_problems, -1, -1)
        positions: list[Position] = [BOT, *range(num_thoughts)]
    else:
        inputs, positions = first, list(range(num_thoughts))
    branches = None if conditions is None else Branches.start(conditions, n_problems)
    if hooks is None and (record or (conditions and any(c.edits for c in conditions))):
        hooks = BlockHooks(model)
    thoughts: list[Tensor] = []
    recorded: list[Tensor] = []
    held = None
    if hold is not None and conditions is not None:
        names = [c.name for c in conditions]
        held = names.index(hold) if hold in names else None

    def regroup(index: Tensor, room: int | None = None) -> None:
        nonlocal inputs, stops
        index = index.to(rows.mask.device)
        rows.select(index, room)
        inputs = inputs[index]
        thoughts[:] = [t[index] for t in thoughts]
        recorded[:] = [r[index] for r in recorded]
        if stops is not None:
            stops = stops.select(index)

    def fork_rows(source: Tensor) -> None:
        """Appends the rows ``source`` ``(new,)`` (a fork; the others stay in place)."""
        nonlocal inputs, stops
        source = source.to(rows.mask.device)
        rows.extend(source)
        index = torch.cat([torch.arange(len(inputs), device=source.device), source])
        inputs = inputs[index]
        thoughts[:] = [t[index] for t in thoughts]
        recorded[:] = [r[index] for r in recorded]
        if stops is not None:
            stops = stops.select(index)

    if branches is not None and not fork:
        regroup(branches.separate(), capacity)
    with hooks.installed() if hooks is not None else _nothing():
        for position in positions:
            plan: EditPlan = {}
            if branches is not None:
                forked = branches.split(position)
                if forked is not None:
                    fork_rows(forked)
                plan = branches.plan(position, rows)
            if stops is not None and position != BOT:
                plan = _reached(plan, stops.active)
            if position != BOT:
                unedited = inputs[:, -1]  # what reference-reading edits see
                for edit, members, context in plan.get((LATENT, position), []):
                    context = replace(context, activations=unedited)
                    inputs = inputs.clone()
                    inputs[members, -1] = edit(inputs[members, -1], context).to(inputs.dtype)
                thoughts.append(inputs[:, -1])
                if stops is not None:
                    stops.counts = stops.counts + stops.active.long()
            if hooks is not None:
                hooks.plan = {
                    site.layer: edits for (site, _), edits in plan.items() if site.layer is not None
                }
                hooks.recorder = [] if record else None
            mask, position_ids = rows.step_inputs(inputs.shape[1])
            if stops is not None and position != BOT:
                # A stopped row sits this step out: masked, its position not advanced.
                rows.mask[:, -1] = stops.active.to(rows.mask.dtype)
                rows.next_position = rows.next_position - (~stops.active).long()
            state = forward(model, inputs, mask, position_ids, rows.cache).last_hidden_state
            state = state[:, -1:]
            if hooks is not None and hooks.recorder is not None:
                recorded.append(torch.stack([inputs[:, -1], *hooks.recorder], dim=1))
            memory = None if stops is None else stops.memory
            check = family.stopped(model, len(thoughts), state, memory)
            if check is not None:
                if stops is None:
                    stops = RowStops.start(len(rows.problems), state.device)
                stop = check.stop & stops.active
                width = 1 if branches is None else len(branches.members)
                if held is not None and branches is not None:
                    branch = next(b for b, m in enumerate(branches.members) if held in m)
                    stop = stop.view(width, n_problems)[branch].repeat(width)
                if lengths is not None:
                    limit = lengths.to(state.device).repeat(width)
                    stop = stop | (stops.counts >= limit)
                stops.active = stops.active & ~stop
                stops.memory = check.memory
                if not bool(stops.active.any()):
                    break
            inputs = family.next_thought(model, state)
    if stops is not None and num_thoughts == family.num_thoughts:
        stops.capped = stops.active.clone()
    if branches is not None:
        regroup(branches.per_condition(), capacity)
    n_rows = len(rows.problems)
    d_model = inputs.shape[-1]
    stacked = torch.stack(thoughts, dim=1) if thoughts else inputs.new_zeros(n_rows, 0, d_model)
    return Thinking(stacked, torch.stack(recorded, dim=1) if record else None, inputs, stops)


def _reached(plan: EditPlan, active: Tensor) -> EditPlan:
    """The planned edits restricted to rows still thinking (``active`` ``(rows,)``); each
    context says which reference rows still think."""
    kept: EditPlan = {}
    for key, planned in plan.items():
        for edit, members, context in planned:
            if context.reference_rows is not None:
                reached = active[context.reference_rows]
                context = replace(context, reference_active=reached)
            keep = active[members]
            if bool(keep.all()):
                kept.setdefault(key, []).append((edit, members, context))
            elif bool(keep.any()):
                narrowed = replace(context, problems=context.problems[keep])
                kept.setdefault(key, []).append((edit, members[keep], narrowed))
    return kept


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def close(
    model: ThoughtModel, rows: Rows, *, hooks: BlockHooks | None = None
) -> tuple[Tensor, Tensor | None]:
    """Feeds the family's closing ids; returns the logits of the first answer token
    ``(rows, vocab)`` and, when ``hooks`` are given, the states at the first closing id
    ``(rows, layers + 1, d)`` (its input embedding and every block's output)."""
    ids = model.family.closing_ids()
    n_rows = len(rows.problems)
    embeds = model.embed(torch.tensor(ids, device=rows.mask.device)).expand(n_rows, -1, -1)
    mask, position_ids = rows.step_inputs(len(ids))
    if hooks is None:
        hidden = forward(model, embeds, mask, position_ids, rows.cache).last_hidden_state
        return model.head(hidden[:, -1]), None
    recorder: list[Tensor] = []
    with hooks.installed():
        hooks.recorder, hooks.record_index = recorder, 0
        hidden = forward(model, embeds, mask, position_ids, rows.cache).last_hidden_state
    return model.head(hidden[:, -1]), torch.stack([embeds[:, 0], *recorder], dim=1)


# ------------------------------------------------------------------------ the answer
@dataclass
class Forced:
    """What :func:`teacher_force` returns, one entry per row (CPU tensors).

    Attributes:
        logprobs: ``(len(target),)`` log-probability of each target token.
        logits: On request, ``(len(target), vocab)`` float32 logits along the target.
        kl: With a reference, ``(len(target),)`` KL(reference ‖ row) per token.
        kept: On request (``keep_rows``), those rows' float32 log-probabilities
            ``(kept, width, vocab)``, on the device, to serve as a later reference.
    """

    logprobs: list[Tensor]
    logits: list[Tensor] | None
    kl: list[Tensor] | None
    kept: Tensor | None


def teacher_force(
    model: ThoughtModel,
    rows: Rows,
    first_logits: Tensor,
    targets: Sequence[Sequence[int]],
    *,
    keep_logits: bool = False,
    reference: Tensor | None = None,
    reference_rows: Tensor | None = None,
    keep_rows: Tensor | None = None,
) -> Forced:
    """Scores each row's target after the closing ids; the cache is restored after.

    ``first_logits`` ``(rows, vocab)`` predict the first target token. The reference a
    row is compared with (per-token KL(reference ‖ row), both along the row's target) is
    ``reference`` ``(rows, width, vocab)``, log-probabilities kept from an earlier call,
    or, with ``reference_rows`` ``(rows,)``, another row of this call. Everything of
    vocabulary size stays on the device.
    """
    n_rows = len(rows.problems)
    lengths = [len(t) for t in targets]
    width = max(lengths, default=0)
    logits = first_logits[:, None, :]
    device = first_logits.device
    if width > 1:
        ids = torch.full((n_rows, width - 1), model.family.pad_id, dtype=torch.long)
        for row, target in enumerate(targets):
            ids[row, : len(target) - 1] = torch.tensor(list(target[:-1]), dtype=torch.long)
        ones = torch.ones((n_rows, width - 1), dtype=rows.mask.dtype, device=device)
        mask = torch.cat([rows.mask, ones], dim=1)
        offsets = torch.arange(width - 1, device=device)
        position_ids = rows.next_position[:, None] + offsets[None, :]
        hidden = forward(model, model.embed(ids.to(device)), mask, position_ids, rows.cache)
        backend.drop_last(rows.cache, width - 1)  # forget the teacher-forced tokens
        logits = torch.cat([logits, model.head(hidden.last_hidden_state)], dim=1)
    logprobs = logits.float().log_softmax(dim=-1)
    index = torch.zeros((n_rows, width), dtype=torch.long)
    for row, target in enumerate(targets):
        index[row, : len(target)] = torch.tensor(list(target), dtype=torch.long)
    chosen = logprobs.gather(2, index.to(device)[:, :, None])[:, :, 0].cpu()
    if reference is None and reference_rows is not None:
        reference = logprobs[reference_rows]
    kl = None
    if reference is not None:
        per_token = (reference.exp() * (reference - logprobs)).sum(dim=-1).cpu()
        kl = [per_token[row, :n] for row, n in enumerate(lengths)]
    kept = logits.float().cpu() if keep_logits else None
    return Forced(
        logprobs=[chosen[row, :n] for row, n in enumerate(lengths)],
        logits=None if kept is None else [kept[row, :n] for row, n in enumerate(lengths)],
        kl=kl,
        kept=None if keep_rows is None else logprobs[keep_rows],
    )


@dataclass
class Decoded:
    """What :func:`decode` returns, one entry per row.

    Attributes:
        ids: Generated ids, without the final ``<eos>``.
        finished: Whether the row stopped at its last ``<eos>`` (else at the limit).
        logits: On request, ``(len(ids) + finished, vocab)`` float32 logits that chose
            each token (CPU).
    """

    ids: list[list[int]]
    finished: list[bool]
    logits: list[Tensor] | None


def decode(
    model: ThoughtModel,
    rows: Rows,
    first_logits: Tensor,
    max_new_tokens: int,
    *,
    banned: Sequence[int] | None = None,
    keep_logits: bool = False,
    eos_count: int = 1,
    pin_last: bool = False,
) -> Decoded:
    """Greedy decoding; each row stops at its ``eos_count``-th ``<eos>`` or after
    ``max_new_tokens`` tokens, never choosing ``banned`` (default: the family's). A
    first token ``<eos>`` is kept and fed on when the family's ``first_token_may_end``
    is False (Coconut's published ``generate``).

    ``first_logits`` ``(rows, vocab)`` choose the first token. Tokens stay on the
    device until the end; the one host sync per step is whether a row finished, to
    retire it from the batch.

    With ``pin_last``, the last row (a ballast row, :class:`RunOptions.ballast
    <thoughtscope.engine.runner.RunOptions>`) stays the last row until no other row is
    alive: when it finishes, its answer ends there but it keeps decoding, and rows that
    retire are replaced around it (:func:`backend.retire_order` with ``pin_last``).
    """
    n_rows = len(rows.problems)
    device = first_logits.device
    eos = model.family.eos_id
    banned = list(model.family.banned_ids() if banned is None else banned)
    # One banned id (CODI's <eot>) is a plain column: cheaper than an index tensor.
    ban: int | Tensor | None = (
        None
        if not banned
        else banned[0]
        if len(banned) == 1
        else torch.tensor(banned, dtype=torch.long, device=device)
    )
    # Coconut's published decoder keeps a first-token <eos> and goes on.
    first_may_end = model.family.first_token_may_end
    tokens = torch.full((n_rows, max_new_tokens), eos, dtype=torch.long, device=device)
    n_tokens = torch.full((n_rows,), max_new_tokens, dtype=torch.long, device=device)
    seen = torch.zeros(n_rows, dtype=torch.long, device=device) if eos_count > 1 else None
    kept_rows: list[Tensor] = []
    kept_logits: list[Tensor] = []
    alive = torch.arange(n_rows, device=device)  # original row index of each live row
    # With pin_last: whether the pinned last row has given its answer (it stays on).
    pinned_done = False
    logits = first_logits
    for step in range(max_new_tokens):
        if keep_logits:
            kept_rows.append(alive)
            kept_logits.append(logits.float().cpu())
        # Mask a copy when the logits are also kept or belong to the caller.
        masked = logits
        if ban is not None:
            masked = logits.clone() if keep_logits or step == 0 else logits
            masked[:, ban] = -math.inf
        chosen = masked.argmax(dim=-1)
        tokens[alive, step] = chosen
        done = chosen == eos
        if step == 0 and not first_may_end:
            done = torch.zeros_like(done)
        if seen is not None:
            seen = seen + done.long()
            done = seen >= eos_count
        if pin_last:
            # The pinned row's answer ends at its first finish; it retires only last.
            if not pinned_done and bool(done[-1]):
                n_tokens[n_rows - 1] = step
                pinned_done = True
            done = done.clone()
            done[-1] = False
        if bool(done.any()):
            n_tokens[alive[done]] = step
            # Finished rows' places are filled from the end: the cache moves few rows.
            keep = backend.retire_order(done, pin_last=pin_last)
            if len(keep) == int(pin_last):
                break
            alive = alive[keep]
            rows.select(keep)
            chosen = chosen[keep]
            if seen is not None:
                seen = seen[keep]
        if step == max_new_tokens - 1:
            break
        mask, position_ids = rows.step_inputs()
        hidden = forward(model, model.embed(chosen[:, None]), mask, position_ids, rows.cache)
        logits = model.head(hidden.last_hidden_state[:, -1])
    lengths = n_tokens.tolist()
    answers = [ids[:n] for ids, n in zip(tokens.tolist(), lengths, strict=True)]
    finished = [n < max_new_tokens for n in lengths]
    per_row_logits: list[Tensor] | None = None
    if keep_logits:
        # Each step's logits, regrouped by row in step order without a per-token loop.
        row_of = torch.cat(kept_rows).cpu()
        order = torch.argsort(row_of, stable=True)
        counts = torch.bincount(row_of, minlength=n_rows).tolist()
        per_row_logits = list(torch.cat(kept_logits)[order].split(counts))
    return Decoded(answers, finished, per_row_logits)
