"""Batched latent reasoning with the published CODI protocol, and per-row edits.

Protocol (per problem): the question's token ids (with the tokenizer's own special
tokens) [+ ``<eos>`` unless ``remove_eos``] are encoded once; then ``<bot>``; then N
times the last layer's (normed) hidden state at the last position goes through the
projection and is fed back as the next input embedding; then ``<eot>`` [+ ``<eos>``];
then greedy decoding over every id except ``<eot>``, each row stopping at ``<eos>`` or
``max_new_tokens``. The KV cache is kept throughout.

Batching: problems are left-padded; every step passes the full attention mask and
explicit position ids, so a row's answer does not depend on what else is in the batch
(the published batched code passes no mask during the latent steps). Each question is
encoded once and its KV cache is shared by all of that problem's *conditions* (rows);
rows that reach ``<eos>`` are retired from the batch.

Conditions: a :class:`Condition` maps ``(site, position)`` to an :class:`Edit`, a
function that receives the activations of the rows it applies to and returns their
replacement. The runner knows nothing about ablation kinds; see
:mod:`thoughtscope.analyses.interventions`. Sites and positions are defined in
:mod:`thoughtscope.engine.sites`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from thoughtscope.engine.batching import AUTO, BatchSize, auto_batch_size, check_batch_size
from thoughtscope.engine.sites import BOT, EOT, LATENT, Position, Site
from thoughtscope.model.codi import CodiModel


@dataclass(frozen=True)
class EditContext:
    """What an :class:`Edit` may need to know about the rows it edits.

    Attributes:
        site: Where the activation was read.
        position: ``BOT`` or the thought index.
        problems: ``(rows,)`` index of each edited row's problem in the runner's input.
        condition: Name of the condition being applied.
    """

    site: Site
    position: Position
    problems: Tensor
    condition: str


class Edit(Protocol):
    """Replaces activations: ``hidden (rows, d) -> (rows, d)``, same dtype and device."""

    def __call__(self, hidden: Tensor, context: EditContext) -> Tensor: ...


@dataclass(frozen=True)
class Condition:
    """One way to run the latents: a name, edits and, optionally, an early exit.

    Attributes:
        name: Unique within a run; says exactly what changes (e.g. ``zero@L8:{0,1,2}``).
        edits: ``(site, position) -> edit``. Empty for the baseline.
        num_latent: Feed ``<eot>`` after this many thoughts (``None``: the model's N).
        meta: Free-form description carried into results (kind, site, positions...).
    """

    name: str
    edits: Mapping[tuple[Site, Position], Edit] = field(default_factory=dict)
    num_latent: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


BASELINE = Condition("baseline")


@dataclass
class Generation:
    """The result of one problem under one condition.

    Attributes:
        problem: Index of the problem in the runner's input.
        condition: The condition's name.
        answer_ids: Generated ids, without the final ``<eos>``.
        text: Decoded answer, special tokens skipped.
        finished: Whether the row stopped at ``<eos>`` (else at ``max_new_tokens``).
        thoughts: ``(n_latent, d)`` the vectors fed back (after any ``latent`` edit).
        hidden: ``(positions, layers + 1, d)`` on request: the input embedding and every
            block's output (after edits) at positions ``[bot, 0, …, n_latent-1, eot]``.
        answer_logits: ``(len(answer_ids) + finished, V+3)`` on request: the logits
            that chose each generated token.
        target_logprobs: For each named target given to :meth:`Runner.run`,
            ``(len(target),)`` log-probabilities of its tokens, teacher-forced after
            ``<eot>`` [+ ``<eos>``].
        target_logits: On request, for each named target, ``(len(target), V+3)`` logits
            along it (float32).
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


@dataclass(frozen=True)
class RunOptions:
    """How to run a batch.

    Attributes:
        max_new_tokens: Decoding stops after this many tokens.
        batch_size: Rows (problem × condition) per forward pass; ``"auto"`` (or ``None``)
            chooses it to fit memory (:mod:`thoughtscope.engine.batching`).
        record_hidden: Return every layer's hidden state at every latent position.
        record_answer_logits: Return the logits along the generated answer.
        record_target_logits: Return the logits along the teacher-forced target.
        progress: Show a progress bar.
    """

    max_new_tokens: int = 64
    batch_size: BatchSize = AUTO
    record_hidden: bool = False
    record_answer_logits: bool = False
    record_target_logits: bool = False
    progress: bool = False


# ----------------------------------------------------------------------------- state
@dataclass
class _Rows:
    """The mutable state of a batch of rows sharing one KV cache."""

    cache: DynamicCache
    mask: Tensor  # (rows, length) 1 for real tokens
    next_position: Tensor  # (rows,) position id of the next input
    problems: Tensor  # (rows,) index into the runner's input

    def step_inputs(self) -> tuple[Tensor, Tensor]:
        """Attention mask and position ids for one more single-token step."""
        ones = torch.ones_like(self.mask[:, :1])
        self.mask = torch.cat([self.mask, ones], dim=1)
        position_ids = self.next_position[:, None]
        self.next_position = self.next_position + 1
        return self.mask, position_ids

    def select(self, keep: Tensor) -> None:
        """Keeps only the rows at indices ``keep``."""
        self.cache.batch_select_indices(keep)
        self.mask = self.mask[keep]
        self.next_position = self.next_position[keep]
        self.problems = self.problems[keep]


class _ReservedLayer(DynamicLayer):
    """A cache layer that writes new keys and values into storage reserved up front.

    ``DynamicLayer`` concatenates at every step, copying the whole cache of every layer
    once per generated token; here each step writes one slice, and ``keys`` / ``values``
    are views of the filled part (the same numbers, so the same results). Grows by
    doubling if a step ever needs more than was reserved.
    """

    def __init__(self, keys: Tensor, values: Tensor, capacity: int):
        super().__init__()
        rows, heads, length, _ = keys.shape
        capacity = max(capacity, length)
        self._keys = keys.new_empty((rows, heads, capacity, keys.shape[-1]))
        self._values = values.new_empty((rows, heads, capacity, values.shape[-1]))
        self._keys[:, :, :length] = keys
        self._values[:, :, :length] = values
        self._length = length
        self.device = keys.device
        self.is_initialized = True
        self._expose()

    def _expose(self) -> None:
        self.keys = self._keys[:, :, : self._length]
        self.values = self._values[:, :, : self._length]

    def update(
        self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        end = self._length + key_states.shape[-2]
        if end > self._keys.shape[2]:
            grow = max(end, 2 * self._keys.shape[2]) - self._keys.shape[2]
            self._keys = torch.nn.functional.pad(self._keys, (0, 0, 0, grow))
            self._values = torch.nn.functional.pad(self._values, (0, 0, 0, grow))
        self._keys[:, :, self._length : end] = key_states
        self._values[:, :, self._length : end] = value_states
        self._length = end
        self._expose()
        return self.keys, self.values  # type: ignore[return-value]

    def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
        return self._length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes the negative number of tokens to remove")
        self._length += tokens_to_remove
        self._expose()

    def batch_select_indices(self, indices: Tensor) -> None:
        self._keys = self._keys.index_select(0, indices)
        self._values = self._values.index_select(0, indices)
        self._expose()


def _expand_cache(cache: DynamicCache, index: Tensor, capacity: int = 0) -> DynamicCache:
    """A new cache whose row ``i`` is row ``index[i]`` of ``cache``, with room reserved
    for ``capacity`` positions in all (the rows' whole generation)."""
    out = DynamicCache()
    out.layers = [
        _ReservedLayer(layer.keys[index], layer.values[index], capacity)  # type: ignore[union-attr,index]
        for layer in cache.layers
    ]
    return out


# ----------------------------------------------------------------------------- hooks
class _BlockHooks:
    """Forward hooks on every decoder block that apply edits and record outputs.

    ``plan`` for the current step maps a layer to ``[(edit, rows, context), ...]``;
    ``recorder`` (when set) receives each block's output at the current step.
    """

    def __init__(self, model: CodiModel):
        self.model = model
        self.plan: dict[int, list[tuple[Edit, Tensor, EditContext]]] = {}
        self.recorder: list[Tensor] | None = None
        self.record_index = -1
        self._handles: list[Any] = []

    def _hook(self, layer: int) -> Callable[..., Any]:
        def hook(_module: Any, _inputs: Any, output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output
            edits = self.plan.get(layer)
            if edits:
                last = hidden[:, -1, :].clone()
                for edit, rows, context in edits:
                    last[rows] = edit(last[rows], context).to(last.dtype)
                hidden = torch.cat([hidden[:, :-1, :], last[:, None, :]], dim=1)
            if self.recorder is not None:
                self.recorder.append(hidden[:, self.record_index, :])
            if not edits:
                return output
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    @contextmanager
    def installed(self) -> Iterator[_BlockHooks]:
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


# ---------------------------------------------------------------------------- runner
class Runner:
    """Runs CODI latent reasoning for many problems and conditions at once.

    Example::

        runner = Runner(model)
        results = runner.run(["What is 2+3?"], [BASELINE])
        results[0][0].text
    """

    def __init__(self, model: CodiModel):
        self.model = model
        self.config = model.config
        self.decoder = model.base_lm.base_model  # the transformer stack, final norm included
        self.head = model.base_lm.get_output_embeddings()
        self._hooks = _BlockHooks(model)
        # transformers >= 5.x names the KV-cache argument ``cache``; older ones
        # ``past_key_values``.
        parameters = inspect.signature(self.decoder.forward).parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"

    # -- low-level steps ------------------------------------------------------------
    def _forward(
        self, embeds: Tensor, mask: Tensor, position_ids: Tensor, cache: DynamicCache
    ) -> Tensor:
        """One forward pass; returns the normed last-layer states ``(rows, seq, d)``."""
        out = self.decoder(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            use_cache=True,
            **{self._cache_arg: cache},
        )
        return out.last_hidden_state

    def encode_prefixes(self, questions: Sequence[str]) -> _Rows:
        """Encodes each question once (left-padded): the cache before ``<bot>``."""
        ids = [self.model.question_ids(q) for q in questions]
        width = max(len(x) for x in ids)
        device = self.model.device
        input_ids = torch.full((len(ids), width), self.config.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = DynamicCache()
        self._forward(self.model.embed(input_ids), mask, position_ids, cache)
        return _Rows(
            cache=cache,
            mask=mask,
            next_position=mask.sum(dim=1),
            problems=torch.arange(len(ids), device=device),
        )

    def _latents(
        self,
        rows: _Rows,
        conditions: Sequence[Condition],
        condition_of_row: Tensor,
        num_latent: int,
        record_hidden: bool,
        after_bot: tuple[Tensor, Tensor | None] | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Runs ``<bot>`` and ``num_latent`` thought steps for every row.

        ``after_bot`` (thought 0 ``(rows, 1, d)`` and the recorded bot states) means the
        ``<bot>`` step already ran: only the thought steps run.

        Returns the fed-back thoughts ``(rows, num_latent, d)``, on request the recorded
        states ``(rows, num_latent + 1, layers + 1, d)`` (bot, thoughts), and the next
        input the last step produced ``(rows, 1, d)``.
        """
        n_rows = len(condition_of_row)
        device = self.model.device
        if after_bot is None:
            inputs = self.model.embed(torch.full((n_rows, 1), self.config.bot_id, device=device))
            positions = [BOT, *range(num_latent)]
        else:
            inputs, positions = after_bot[0], list(range(num_latent))
        # (site, position) -> [(edit, rows, context)]
        plan: dict[tuple[Site, Position], list[tuple[Edit, Tensor, EditContext]]] = {}
        for c_index, condition in enumerate(conditions):
            members = (condition_of_row == c_index).nonzero().flatten()
            if len(members) == 0:
                continue
            for (site, position), edit in condition.edits.items():
                context = EditContext(site, position, rows.problems[members], condition.name)
                plan.setdefault((site, position), []).append((edit, members, context))
        thoughts: list[Tensor] = []
        recorded: list[Tensor] = []
        if after_bot is not None and record_hidden and after_bot[1] is not None:
            recorded.append(after_bot[1])
        d_model = inputs.shape[-1]
        hooks = self._hooks
        with hooks.installed():
            for position in positions:
                if position != BOT:
                    for edit, members, context in plan.get((LATENT, position), []):
                        inputs = inputs.clone()
                        inputs[members, 0] = edit(inputs[members, 0], context).to(inputs.dtype)
                    thoughts.append(inputs[:, 0])
                hooks.plan = {
                    site.layer: edits
                    for (site, pos), edits in plan.items()
                    if pos == position and site.layer is not None
                }
                hooks.recorder = [] if record_hidden else None
                mask, position_ids = rows.step_inputs()
                last = self._forward(inputs, mask, position_ids, rows.cache)[:, -1:]
                if hooks.recorder is not None:
                    recorded.append(torch.stack([inputs[:, 0], *hooks.recorder], dim=1))
                inputs = self.model.projection(last)
        stacked = torch.stack(thoughts, dim=1) if thoughts else inputs.new_zeros(n_rows, 0, d_model)
        return stacked, (torch.stack(recorded, dim=1) if record_hidden else None), inputs

    def _eot(self, rows: _Rows, record_hidden: bool) -> tuple[Tensor, Tensor | None]:
        """Feeds ``<eot>`` [+ ``<eos>``]; returns logits for the first answer token."""
        ids = (
            [self.config.eot_id]
            if self.config.remove_eos
            else [
                self.config.eot_id,
                self.config.eos_id,
            ]
        )
        n_rows = len(rows.problems)
        embeds = self.model.embed(torch.tensor(ids, device=self.model.device)).expand(
            n_rows, -1, -1
        )
        masks, positions = zip(*(rows.step_inputs() for _ in ids), strict=True)
        recorder: list[Tensor] | None = None
        if record_hidden:
            recorder = []
            with self._hooks.installed():
                self._hooks.recorder, self._hooks.record_index = recorder, 0
                hidden = self._forward(embeds, masks[-1], torch.cat(positions, 1), rows.cache)
        else:
            hidden = self._forward(embeds, masks[-1], torch.cat(positions, 1), rows.cache)
        eot_states = None
        if recorder is not None:
            # The hooks recorded each block's output at the eot input (index 0).
            eot_states = torch.stack([embeds[:, 0], *recorder], dim=1)
        return self.head(hidden[:, -1]), eot_states

    def _teacher_force(
        self, rows: _Rows, first_logits: Tensor, targets: Sequence[Sequence[int]], keep: bool
    ) -> tuple[list[Tensor], list[Tensor] | None]:
        """Log-probabilities of each row's target after ``<eot>``; the cache is restored."""
        n_rows = len(rows.problems)
        lengths = [len(t) for t in targets]
        width = max(lengths, default=0)
        logits = first_logits[:, None, :]
        if width > 1:
            device = self.model.device
            ids = torch.full((n_rows, width - 1), self.config.pad_id, dtype=torch.long)
            for row, target in enumerate(targets):
                ids[row, : len(target) - 1] = torch.tensor(list(target[:-1]), dtype=torch.long)
            ones = torch.ones((n_rows, width - 1), dtype=rows.mask.dtype, device=device)
            mask = torch.cat([rows.mask, ones], dim=1)
            offsets = torch.arange(width - 1, device=device)
            position_ids = rows.next_position[:, None] + offsets[None, :]
            hidden = self._forward(self.model.embed(ids.to(device)), mask, position_ids, rows.cache)
            rows.cache.crop(-(width - 1))  # drop the teacher-forced tokens again
            logits = torch.cat([logits, self.head(hidden)], dim=1)
        logprobs = logits.float().log_softmax(dim=-1)
        out: list[Tensor] = []
        kept: list[Tensor] | None = [] if keep else None
        for row, target in enumerate(targets):
            index = torch.tensor(list(target), dtype=torch.long, device=logits.device)
            out.append(logprobs[row, : len(target)].gather(1, index[:, None])[:, 0].cpu())
            if kept is not None:
                kept.append(logits[row, : len(target)].float().cpu())
        return out, kept

    def _decode(
        self, rows: _Rows, first_logits: Tensor, max_new_tokens: int, keep_logits: bool
    ) -> tuple[list[list[int]], list[bool], list[Tensor] | None]:
        """Greedy decoding; each row stops at ``<eos>`` or ``max_new_tokens``.

        Tokens stay on the device until the end (no copy per step); the one host sync
        per step is whether any row finished, to retire it from the batch.
        """
        n_rows = len(rows.problems)
        device = first_logits.device
        eos, eot = self.config.eos_id, self.config.eot_id
        tokens = torch.full((n_rows, max_new_tokens), eos, dtype=torch.long, device=device)
        n_tokens = torch.full((n_rows,), max_new_tokens, dtype=torch.long, device=device)
        kept_rows: list[Tensor] = []
        kept_logits: list[Tensor] = []
        alive = torch.arange(n_rows, device=device)  # original row index of each live row
        logits = first_logits
        for step in range(max_new_tokens):
            if keep_logits:
                kept_rows.append(alive)
                kept_logits.append(logits.float().cpu())
            # Mask a copy when the logits are also kept or belong to the caller.
            masked = logits.clone() if keep_logits or step == 0 else logits
            masked[:, eot] = -math.inf  # never choose <eot>, as in the published decoder
            chosen = masked.argmax(dim=-1)
            tokens[alive, step] = chosen
            done = chosen == eos
            if bool(done.any()):
                n_tokens[alive[done]] = step
                keep = (~done).nonzero().flatten()
                if len(keep) == 0:
                    break
                alive = alive[keep]
                rows.select(keep)
                chosen = chosen[keep]
            if step == max_new_tokens - 1:
                break
            mask, position_ids = rows.step_inputs()
            hidden = self._forward(
                self.model.embed(chosen[:, None]), mask, position_ids, rows.cache
            )
            logits = self.head(hidden[:, -1])
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
        return answers, finished, per_row_logits

    # -- public API ----------------------------------------------------------------
    @torch.inference_mode()
    def run(
        self,
        questions: Sequence[str],
        conditions: Sequence[Condition] = (BASELINE,),
        options: RunOptions | None = None,
        *,
        targets: Mapping[str, Sequence[Sequence[int]]] | None = None,
    ) -> list[list[Generation]]:
        """Runs every question under every condition.

        Args:
            questions: Question texts.
            conditions: Conditions to apply; names must be unique.
            options: Batch size, decoding length, what to record.
            targets: Named token sequences, one per question, to teacher-force after
                ``<eot>`` (e.g. ``{"gold": model.answer_ids(expected)}``): fills
                ``target_logprobs`` (and ``target_logits`` on request). Each sequence
                needs at least one token.

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
        targets: Mapping[str, Sequence[Sequence[int]]] | None = None,
    ) -> Iterator[tuple[int, list[Generation]]]:
        """Like :meth:`run`, but yields ``(i, [question i under each condition])`` as each
        batch finishes, so a caller can write results out and hold one batch at a time.

        Problems come in batch order (grouped by question length), not input order.
        """
        options = options or RunOptions()
        names = [c.name for c in conditions]
        if len(set(names)) != len(names):
            raise ValueError(f"condition names must be unique, got {names}")
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

    def _rows_per_batch(
        self,
        questions: Sequence[str],
        n_conditions: int,
        options: RunOptions,
        targets: Mapping[str, Sequence[Sequence[int]]] | None,
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
        n_latent = self.config.num_latent
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

    def _run_batch(
        self,
        questions: Sequence[str],
        batch: list[int],
        conditions: Sequence[Condition],
        options: RunOptions,
        targets: Mapping[str, Sequence[Sequence[int]]] | None,
    ) -> Iterator[Generation]:
        prefix = self.encode_prefixes([questions[i] for i in batch])
        device = self.model.device
        # Without an edit at <bot>, every condition's <bot> step is the same: run it once
        # per problem, before the rows are fanned out.
        after_bot: tuple[Tensor, Tensor | None] | None = None
        if not any(position == BOT for c in conditions for _, position in c.edits):
            no_rows = torch.zeros(len(batch), dtype=torch.long, device=device)
            _, bot_states, first = self._latents(prefix, [], no_rows, 0, options.record_hidden)
            after_bot = (first, None if bot_states is None else bot_states[:, 0])
        # Conditions with the same number of latent steps share one set of rows.
        groups: dict[int, list[int]] = {}
        for c_index, condition in enumerate(conditions):
            steps = self.config.num_latent if condition.num_latent is None else condition.num_latent
            groups.setdefault(steps, []).append(c_index)
        for steps, members in groups.items():
            group = [conditions[c] for c in members]
            n_problems, n_cond = len(batch), len(group)
            # Problem-major rows: row = problem * n_cond + condition.
            index = torch.arange(n_problems, device=device).repeat_interleave(n_cond)
            condition_of_row = torch.arange(n_cond, device=device).repeat(n_problems)
            # Room for every position the rows will see, so no step copies the cache.
            after_prefix = (after_bot is None) + steps + (1 if self.config.remove_eos else 2)
            longest_target = max(
                (len(seq) for seqs in (targets or {}).values() for seq in seqs), default=0
            )
            capacity = (
                prefix.mask.shape[1] + after_prefix + max(options.max_new_tokens, longest_target)
            )
            rows = _Rows(
                cache=_expand_cache(prefix.cache, index, capacity),
                mask=prefix.mask[index],
                next_position=prefix.next_position[index],
                problems=torch.tensor(batch, device=device)[index],  # caller's numbering
            )
            thoughts, hidden, _ = self._latents(
                rows,
                group,
                condition_of_row,
                steps,
                options.record_hidden,
                None
                if after_bot is None
                else (after_bot[0][index], None if after_bot[1] is None else after_bot[1][index]),
            )
            first_logits, eot_states = self._eot(rows, options.record_hidden)
            target_lp: dict[str, list[Tensor]] = {}
            target_logits: dict[str, list[Tensor]] = {}
            for target_name, sequences in (targets or {}).items():
                row_targets = [sequences[batch[p]] for p in index.tolist()]
                lp, lg = self._teacher_force(
                    rows, first_logits, row_targets, options.record_target_logits
                )
                target_lp[target_name] = lp
                if lg is not None:
                    target_logits[target_name] = lg
            answers, finished, answer_logits = self._decode(
                rows, first_logits, options.max_new_tokens, options.record_answer_logits
            )
            if hidden is not None and eot_states is not None:
                hidden = torch.cat([hidden, eot_states[:, None]], dim=1)
            for r in range(len(answers)):
                yield Generation(
                    problem=batch[r // n_cond],
                    condition=group[r % n_cond].name,
                    answer_ids=answers[r],
                    text=self.model.decode(answers[r]),
                    finished=finished[r],
                    thoughts=thoughts[r].float().cpu(),
                    hidden=None if hidden is None else hidden[r].float().cpu(),
                    answer_logits=None if answer_logits is None else answer_logits[r],
                    target_logprobs={k: v[r] for k, v in target_lp.items()},
                    target_logits={k: v[r] for k, v in target_logits.items()},
                )
