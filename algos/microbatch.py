"""Micro-batches with gradient accumulation: memory set by the micro-batch, never by the batch.

An optimizer step (a whole batch, or one ``minibatches`` slice of it) is run as micro-batches of
at most ``micro_batch_size`` rows and/or ``micro_batch_tokens`` tokens, each forward and backward
on its own (its activations freed before the next), gradients summed, then one
``optimizer.step``. The loss normaliser (tokens, rows or pairs of the whole step, over every
rank) is computed before the split, so each micro-batch's loss is its share of the unsplit loss
and the summed gradient is the unsplit one (tests/test_microbatch.py checks it, parameter by
parameter, for every algorithm).

* Packing (`plan`): with a token budget, rows are sorted longest-first and packed greedily, as
  verl's dynamic batch size does; a micro-batch's cost is what its forward pass holds, rows x
  (longest prompt + longest completion), padding included, since each micro-batch is padded on
  its own (`Rows.collate`). Without limits the step is one micro-batch, rows in their order:
  exactly the unsplit computation.
* Under torchrun, data parallel (``parallel=ddp``) sums gradients over ranks once per optimizer
  step, after the last micro-batch (the ``no_sync`` of torch's DDP, by construction: no
  gradient hook runs in backward). Under FSDP2 the reduce-scatter runs in backward, so it is
  switched off (``set_requires_gradient_sync(False)``) for all but the last micro-batch, and
  every rank runs as many passes as the rank with the most micro-batches (a rank out of rows
  runs a zero-weighted one: a sharded forward needs every rank).

What it does not do: remove padding inside a micro-batch (verl's ``use_remove_padding``), or
balance micro-batches across ranks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Sequence, TypeVar

import torch

from algos import dist
from algos.config import ConfigError
from policies.hf import Batch, collate

T = TypeVar("T")


# micro_batch_tokens for any model but the built-in tiny ones (their steps stay one pass each, as before): a
# step's activations then stay those of about this many tokens, whatever the batch (REAL_MODEL_DEFAULTS)
REAL_MODEL_TOKENS = 4096


class BudgetError(ConfigError):
    """A row that does not fit the token budget. Seen by one rank only (the data differ per rank), so
    every rank that sees it says it (`algos.common.run_main`)."""

    rank_local = True


@dataclasses.dataclass(frozen=True)
class Limits:
    """At most ``rows`` units (rows, or pairs) and ``tokens`` padded tokens per micro-batch; 0: no limit."""

    rows: int = 0
    tokens: int = 0

    @classmethod
    def of(cls, cfg: Any) -> "Limits":
        return cls(cfg.micro_batch_size, cfg.micro_batch_tokens)

    @property
    def splits(self) -> bool:
        return self.rows > 0 or self.tokens > 0


def check(cfg: Any, step_rows: int, what: str, longest: int | None = None, unit: str = "rows",
          longest_what: str = "") -> None:
    """Bad micro-batch settings, found before any work: negative values, a micro-batch larger than
    this rank's share of an optimizer step (``step_rows`` units, ``what`` says how it is counted),
    and a token budget smaller than the longest row the step can hold (``longest`` tokens, when
    known: e.g. a completion of max_new_tokens). One line each, naming the key and the fix."""
    for key in ("micro_batch_size", "micro_batch_tokens"):
        v = getattr(cfg, key)
        if v < 0:
            raise ConfigError(f"{key}={v} is negative; use a positive limit, or {key}=0 for none")
    w = dist.world()
    on = f" on each of {w.size} processes" if w.distributed else ""
    if cfg.micro_batch_size > step_rows:
        raise ConfigError(f"micro_batch_size={cfg.micro_batch_size} is larger than an optimizer step's {step_rows} {unit}{on} "
                          f"({what}); use micro_batch_size<={step_rows}, or micro_batch_size=0 for no limit")
    if cfg.micro_batch_tokens and longest is not None and cfg.micro_batch_tokens < longest:
        what = longest_what or f"a completion of max_new_tokens={cfg.max_new_tokens} and its prompt, at least"
        raise ConfigError(f"micro_batch_tokens={cfg.micro_batch_tokens} is smaller than the longest row a step can hold "
                          f"({what} {longest} tokens); use micro_batch_tokens>={longest}, or micro_batch_tokens=0 for no budget")


def plan(lengths: Sequence[tuple[int, int]], limits: Limits, rows_per_unit: int = 1, strict: bool = True,
         unit: str = "row") -> list[list[int]]:
    """The micro-batches of a step: lists of indices into ``lengths`` ((prompt, completion) tokens of
    each unit; a unit of ``rows_per_unit`` rows is a pair: chosen and rejected after one prompt).

    Without limits, one micro-batch of every index in order. Otherwise units are sorted
    longest-first (prompt + completion, stable) and packed greedily: a unit joins the open
    micro-batch while it keeps at most ``limits.rows`` units and at most ``limits.tokens`` of
    rows x (longest prompt + longest completion). A unit over the budget by itself is a
    `BudgetError` (``strict``), or its own micro-batch (passes without gradients)."""
    n = len(lengths)
    if not limits.splits or n == 0:
        return [list(range(n))] if n else []
    order = sorted(range(n), key=lambda i: -(lengths[i][0] + lengths[i][1]))
    if limits.tokens:
        big = max(order, key=lambda i: lengths[i][0] + lengths[i][1])
        cost = rows_per_unit * (lengths[big][0] + lengths[big][1])
        if strict and cost > limits.tokens:
            p, c = lengths[big]
            what = f"{unit} (prompt {p} + completion {c} tokens" + (f", x{rows_per_unit} rows)" if rows_per_unit > 1 else ")")
            raise BudgetError(f"micro_batch_tokens={limits.tokens} is smaller than the longest {what} = {cost} tokens; "
                              f"use micro_batch_tokens>={cost}, or micro_batch_tokens=0 for no budget")
    out: list[list[int]] = []
    cur: list[int] = []
    P = C = 0
    for i in order:
        p, c = max(P, lengths[i][0]), max(C, lengths[i][1])
        full = (limits.rows and len(cur) >= limits.rows) or \
            (limits.tokens and rows_per_unit * (len(cur) + 1) * (p + c) > limits.tokens)
        if cur and full:
            out.append(cur)
            cur, p, c = [], lengths[i][0], lengths[i][1]
        cur.append(i)
        P, C = p, c
    out.append(cur)
    return out


def split(items: Sequence[T], lengths: Sequence[tuple[int, int]], limits: Limits, rows_per_unit: int = 1,
          unit: str = "row") -> list[list[T]]:
    """``items`` in the micro-batches of `plan`."""
    return [[items[i] for i in mb] for mb in plan(lengths, limits, rows_per_unit, unit=unit)]


# ---------------------------------------------------------------------- rows of an update, padded per micro-batch


@dataclasses.dataclass(frozen=True)
class Rows:
    """The rows of an update, unpadded: each row's prompt and completion ids and its loss mask (None:
    every completion token), with named per-token values (one [C_i] tensor per row) and per-row
    values (one [N] tensor). `collate` pads a micro-batch of them on its own."""

    prompt_ids: Sequence[Sequence[int]]
    completion_ids: Sequence[Sequence[int]]
    loss_masks: Sequence[Sequence[float] | None]
    per_token: dict[str, list[torch.Tensor]] = dataclasses.field(default_factory=dict)
    per_row: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    pad_to: tuple[int, int] = (0, 0)  # pad to at least this (prompt, completion): the unsplit batch's layout

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def lengths(self) -> list[tuple[int, int]]:
        return [(len(p), len(c)) for p, c in zip(self.prompt_ids, self.completion_ids)]

    def tokens(self) -> torch.Tensor:
        """Loss tokens of each row [N] (its completion tokens, less those its loss mask zeroes)."""
        return torch.tensor([float(len(c)) if m is None else float(sum(m))
                             for c, m in zip(self.completion_ids, self.loss_masks)])

    def select(self, idx: Sequence[int] | range) -> "Rows":
        idx = list(idx)
        t = torch.tensor(idx, dtype=torch.long)
        return Rows([self.prompt_ids[i] for i in idx], [self.completion_ids[i] for i in idx],
                    [self.loss_masks[i] for i in idx], {k: [v[i] for i in idx] for k, v in self.per_token.items()},
                    {k: v[t] for k, v in self.per_row.items()}, self.pad_to)

    def with_values(self, per_token: dict[str, list[torch.Tensor]] | None = None,
                    per_row: dict[str, torch.Tensor] | None = None) -> "Rows":
        return dataclasses.replace(self, per_token={**self.per_token, **(per_token or {})},
                                   per_row={**self.per_row, **(per_row or {})})

    def collate(self, pad_id: int, device: Any) -> tuple[Batch, dict[str, torch.Tensor]]:
        """The rows as one `Batch` (padded to their own longest prompt and completion) and their
        values: per-token ones as [n, C] (zeros after each row's end), per-row ones as [n]."""
        batch = widen(collate(self.prompt_ids, self.completion_ids, pad_id, self.loss_masks), pad_id, *self.pad_to).to(device)
        C = batch.completion_mask.shape[1]
        vals = {k: pad(v, C).to(device) for k, v in self.per_token.items()}
        vals.update({k: v.to(device) for k, v in self.per_row.items()})
        return batch, vals

    def split(self, limits: Limits) -> list["Rows"]:
        """These rows in the micro-batches of `plan`, each padded on its own (unsplit: as they are)."""
        if not limits.splits:
            return [self] if len(self) else []
        return [dataclasses.replace(self.select(mb), pad_to=(0, 0)) for mb in plan(self.lengths(), limits)]

    def padded_as_a_whole(self) -> "Rows":
        """Unsplit, these rows (and any subset) are padded as one batch of all of them, the layout
        of the code before micro-batches: without limits the computation stays bit for bit."""
        lens = self.lengths()
        return dataclasses.replace(self, pad_to=(max((p for p, _ in lens), default=0), max((c for _, c in lens), default=0)))


def widen(batch: Batch, pad_id: int, P: int, C: int) -> Batch:
    """``batch`` with its prompts left-padded to at least P tokens and its completions right-padded to at least C."""
    dp, dc = max(0, P - batch.prompt_len), max(0, C - batch.completion_mask.shape[1])
    if not dp and not dc:
        return batch
    F = torch.nn.functional
    return Batch(F.pad(batch.input_ids, (dp, dc), value=pad_id), F.pad(batch.attention_mask, (dp, dc)),
                 F.pad(batch.completion_mask, (0, dc)), batch.prompt_len + dp)


def pad(rows: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """Per-row 1-D tensors right-padded with zeros into [n, width]."""
    out = torch.zeros((len(rows), width), dtype=rows[0].dtype if rows else torch.float32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def unpad(t: torch.Tensor, lengths: Iterable[int]) -> list[torch.Tensor]:
    """[n, C] -> one tensor of its first ``length`` values per row (on the CPU)."""
    t = t.detach().cpu()
    return [t[i, :n].clone() for i, n in enumerate(lengths)]


def token_values(module: Any, rows: Rows, limits: Limits, pad_id: int,
                 fn: Callable[[Any, Batch], torch.Tensor]) -> list[torch.Tensor]:
    """``fn(module, batch)`` -> [n, C] on each micro-batch, without gradients, as one tensor per row
    (a reference model's logprobs, the values before an update). Under FSDP every rank runs as
    many passes as the rank with the most."""
    parts = plan(rows.lengths(), limits, strict=False)
    out: list[torch.Tensor | None] = [None] * len(rows)
    with torch.no_grad():
        for idx in aligned(module, parts):
            if idx is None:
                dist.world().empty_loss(module)  # a rank out of rows: its share of the sharded pass
                continue
            sub = rows.select(idx)
            batch, _ = sub.collate(pad_id, _device(module))
            for i, v in zip(idx, unpad(fn(module, batch), [len(c) for c in sub.completion_ids])):
                out[i] = v
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------- accumulation and the optimizer step


def aligned(module: Any, parts: Sequence[T]) -> list[T | None]:
    """The passes this rank runs: its micro-batches, then (FSDP only) None up to the most any rank has."""
    w = dist.world()
    if not (w.distributed and dist._is_fsdp(module)):
        return list(parts)
    most = max(w.gather_counts(len(parts)))
    return list(parts) + [None] * (most - len(parts))


def backward(module: Any, parts: Sequence[T], loss_of: Callable[[T], torch.Tensor | None]) -> None:
    """Backward of ``loss_of(part)`` for each micro-batch, one at a time (each graph is freed before
    the next is built); gradients add up in ``.grad``. ``loss_of`` returns the micro-batch's share
    of the step's loss (None: nothing to learn from it). Under FSDP the gradients are reduced over
    ranks in the last pass only."""
    w = dist.world()
    fsdp = w.distributed and dist._is_fsdp(module)
    passes = aligned(module, parts)
    if fsdp and not passes:
        passes = [None]  # every rank takes part in the step's reduction
    for k, part in enumerate(passes):
        if fsdp:
            module.set_requires_gradient_sync(k == len(passes) - 1)
        loss = loss_of(part) if part is not None else None
        if loss is None:
            loss = w.empty_loss(module)
        if loss is not None:
            loss.backward()


def step(opt: torch.optim.Optimizer, module: Any, parts: Sequence[T], loss_of: Callable[[T], torch.Tensor | None],
         grad_clip: float) -> float:
    """One optimizer step over micro-batches: zero the gradients, accumulate every micro-batch's
    (`backward`), sum them over ranks (data parallel), clip the norm (0: off), step. Returns the
    gradient norm before clipping."""
    w = dist.world()
    opt.zero_grad(set_to_none=True)
    backward(module, parts, loss_of)
    w.reduce_grads(module)
    norm = torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip if grad_clip > 0 else 1e9)
    opt.step()
    w.updates += 1
    if hasattr(norm, "full_tensor"):  # a DTensor under fsdp
        norm = norm.full_tensor()
    return norm.item()


class Means:
    """Means of statistics over a step's micro-batches, each weighted by its rows (the unsplit means)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0.0
        self.parts: list[dict[str, float]] = []

    def add(self, stats: dict[str, float], n: float) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.n += n
        self.parts.append(stats)

    def result(self) -> dict[str, float]:
        if len(self.parts) == 1:  # one micro-batch: its means as they are (x * n / n may differ in the last bit)
            return dict(self.parts[0])
        return {k: v / self.n for k, v in self.sums.items()} if self.n else {}


def _device(module: Any) -> torch.device:
    return next(module.parameters()).device
