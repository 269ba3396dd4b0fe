"""The pieces of a training step every algorithm shares: sampling and scoring a batch of tasks
(`sample_and_score`), metrics of its rewards (`reward_metrics`, `has_error`), the optimizer (`adamw`,
`lr_at`, `update`), the reference model, the engine's weights (`sync_engine`) and sample logs."""

from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING, Any, Sequence

import torch

from algos import dist, microbatch, mixture
from policies import Rollout, SamplingParams
from policies.base import WeightSyncError
from verifiers.code import raise_if_sandbox_down


if TYPE_CHECKING:
    from algos.lifecycle import Setup


def sync_engine(s: Setup) -> None:
    """After an update: the generation engine gets the new weights (vLLM's own copy; the full copy under fsdp)."""
    if s.synced == s.world.updates:
        return
    model = dist.full_model(s.model, s.world)
    if hasattr(s.engine, "update_weights"):  # vLLM holds its own copy of the weights
        s.engine.update_weights(model)
    s.synced = s.world.updates


def reference(s: Setup, model: Any) -> Any:
    """The frozen reference of a KL term or a preference loss: the run's starting model, on resume too. A
    fresh run: a frozen copy of the weights it starts from; a resumed one: the model its config.yaml names
    (``policy.model``) loaded again, never the checkpoint it resumes from; a LoRA model's: its base with the
    adapters off, which already is (`dist.frozen_copy`)."""
    from policies import lora

    if s.cfg.resume and s.step and not lora.enabled(model):
        from policies import load_model

        return load_model(s.cfg.policy)[0].eval().requires_grad_(False)
    return dist.frozen_copy(model, s.world)


def adamw(s: Setup, module: Any, lr: float, weight_decay: float = 0.0, beta2: float = 0.99) -> torch.optim.AdamW:
    """AdamW over the module's parameters, with the optimizer state restored when resuming."""
    params = [p for p in module.parameters() if p.requires_grad]  # with LoRA: the adapters
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, beta2))
    if s.optimizer_state is not None:
        dist.load_optimizer_state(module, opt, s.optimizer_state)
    return opt


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def lr_at(cfg: Any, lr: float, step: int, total: int, progress: float | None = None) -> float:
    """The learning rate of 0-based ``step`` of ``total``: linear warmup to ``lr`` over ``cfg.warmup_steps``
    (``lr * (step + 1) / warmup_steps``), then ``cfg.lr_schedule``: ``constant``; ``linear`` or ``cosine`` decay
    from ``lr`` to ``lr * cfg.lr_final_ratio`` (reached at ``step == total``, after the last step), at fraction ``p = (step - warmup_steps) / (total - warmup_steps)``
    of the way (``lr * (f + (1 - f) * (1 - p))``; ``lr * (f + (1 - f) * (1 + cos(pi p)) / 2)``), the same curves as
    transformers' ``get_linear/cosine_schedule_with_warmup`` with a floor. ``progress`` gives ``p`` instead, for
    runs whose step count is not known in advance (rejection sampling and iterative DPO count warmup in gradient
    steps and decay over rounds)."""
    if step < cfg.warmup_steps:
        return lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return lr
    p = progress if progress is not None else (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    p, f = min(1.0, max(0.0, p)), cfg.lr_final_ratio
    shape = 1.0 - p if cfg.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * p))
    return lr * (f + (1.0 - f) * shape)


def update(opt: torch.optim.Optimizer, module: Any, loss: torch.Tensor | None, grad_clip: float) -> float:
    """One optimizer step on ``loss``: zero grads, backward, clip the norm (0: off), step.
    Returns the gradient norm before clipping. (`algos.microbatch.step` is the same step over
    micro-batches.)

    Under torchrun every rank calls it for every step: ``loss`` is this rank's share, normalised
    by the whole step's count, and gradients are summed over ranks (``None``: this rank has no
    rows this time and contributes zeros)."""
    return microbatch.step(opt, module, [loss] if loss is not None else [], lambda x: x, grad_clip)


def reduce_stats(stats: dict[str, float], n: float) -> dict[str, float]:
    """Means over this rank's ``n`` rows -> means over every rank's rows (identity in one process)."""
    w = dist.world()
    if not w.distributed:
        return stats
    parts = w.gather([(stats, float(n))])  # a rank without rows has no stats: gather, not a keyed all-reduce
    keys = sorted({k for st, _ in parts for k in st})
    out = {}
    for k in keys:
        have = [(st[k], m) for st, m in parts if k in st and m > 0]
        out[k] = sum(v * m for v, m in have) / max(sum(m for _, m in have), 1.0)
    return out


def sample_and_score(engine: Any, env: Any, tasks: Sequence[Any], params: SamplingParams,
                     check_version: bool = True) -> tuple[list[Rollout], list[Any], list[Any]]:
    """G rollouts per task, scored by the environment. Returns flat (rollouts, results, tasks).
    With generation servers, every rollout must come from the weights last pushed (``check_version``;
    off-policy steps check staleness themselves)."""
    from algos.episodes import generate

    base = env.unwrapped
    outs = generate(engine, base, tasks, params)  # one turn, or several with tools
    if hasattr(engine, "sleep"):  # vLLM: free its GPU memory for the update that follows
        engine.sleep()
    rollouts = [r for rs in outs for r in rs]
    if check_version and stale(engine, rollouts):  # a restarted server: bring it to the trainer's weights, again
        engine.resync()
        outs = generate(engine, base, tasks, params)
        rollouts = [r for rs in outs for r in rs]
        if stale(engine, rollouts):
            raise WeightSyncError(f"rollouts from weights version {sorted({r.version for r in rollouts})} after a "
                                  f"re-sync, but the trainer pushed version {engine.version}: a server does not "
                                  f"serve the trainer's weights")
    flat_tasks = [t for t, rs in zip(tasks, outs) for _ in rs]
    results = base.score_batch([r.text for r in rollouts], flat_tasks)
    raise_if_sandbox_down(results)  # error verdicts are not rewards: stop, with a checkpoint, instead
    return rollouts, results, flat_tasks


def reward_metrics(results: Sequence[Any], rollouts: Sequence[Rollout], tasks: Sequence[Any] | None = None,
                   group_size: int = 0) -> dict[str, float]:
    """Means of the reward and each part, the accuracy, verdict-status shares, lengths, the share of
    completions with self-correction markers (`algos.mixture.self_correction`): over every rank's
    rollouts under torchrun (every rank calls it). With ``tasks`` (``tasks[i]`` the task of
    ``rollouts[i]``) from a mixture, the same per environment (`algos.mixture.batch_metrics`; groups of
    ``group_size`` for the share of all-equal groups)."""
    rows = [(r.reward, dict(r.parts), r.status.value if r.status is not None else None) for r in results]
    lens = [(len(r.completion_ids), bool(r.truncated), _tool_calls(r)) for r in rollouts]
    per_env = [(mixture.env_label(tasks[i]) if tasks is not None else None, res.reward, dict(res.parts),
                res.status is not None and res.status.value == "correct", len(ro.completion_ids),
                mixture.self_correction(ro.text), mixture.revised_answer(ro.text))
               for i, (res, ro) in enumerate(zip(results, rollouts))]
    w = dist.world()
    if w.distributed:
        rows, lens, per_env = (w.gather(x) for x in (rows, lens, per_env))
    n = max(len(rows), 1)
    m: dict[str, float] = {"reward/mean": sum(r for r, _, _ in rows) / n}
    for part in dict.fromkeys(k for _, p, _ in rows for k in p):  # a mixture: each part over the rows that have it
        have = [p[part] for _, p, _ in rows if part in p]
        m[f"reward/{part}"] = sum(have) / len(have)
    statuses = collections.Counter(st for _, _, st in rows if st is not None)
    for s in ("correct", "wrong", "no_answer", "timeout", "error"):
        m[f"verdict/{s}"] = statuses.get(s, 0) / n
    m["train/accuracy"] = m["verdict/correct"]
    m["rollout/length"] = sum(k for k, _, _ in lens) / max(len(lens), 1)
    m["rollout/truncated"] = sum(t for _, t, _ in lens) / max(len(lens), 1)
    if any(c is not None for _, _, c in lens):  # environments with tools: calls per episode
        m["rollout/tool_calls"] = sum(c or 0 for _, _, c in lens) / max(len(lens), 1)
    m.update(mixture.batch_metrics(per_env, group_size))
    return m


def has_error(result: Any) -> bool:
    """Whether a scored completion has an ``error`` verdict in any part (a broken reference, a verifier or
    reward worker that failed): not a wrong answer, so no trainer learns from it as one. GRPO masks its
    group, PPO its row, iterative DPO builds no pair from its group; rejection sampling never accepts it
    (not correct). Counted apart as ``verdict/error``."""
    return any(getattr(v.status, "value", v.status) == "error" for v in getattr(result, "verdicts", {}).values())


def stale(engine: Any, rollouts: Sequence[Rollout]) -> bool:
    """Generation servers: whether a rollout comes from other weights than those last pushed (a replica
    restarted, or reset, since; `ServerEngine.resync` brings it back)."""
    served = getattr(engine, "version", None)
    return served is not None and any(r.version is not None and r.version != served for r in rollouts)


def log_samples(s: Setup, step: int, last: int, tasks: Sequence[Any], rollouts: Sequence[Rollout],
                results: Sequence[Any], limit: int) -> None:
    """Write the first ``limit`` completions of the step (with ``tasks[i]`` the task of ``rollouts[i]``)
    to samples.jsonl every ``samples_every`` steps and always at the ``last`` step, so a short run has some."""
    every = s.cfg.samples_every
    if not every or (step % every and step != last):
        return
    s.run.log_samples(step, [{"task_id": t.id, "prompt": t.prompt, "reference": t.reference, "completion": r.text,
                              "reward": res.reward, "parts": res.parts, "status": res.status,
                              "finish_reason": r.finish_reason} for t, r, res in zip(tasks, rollouts, results)][:limit])


def _tool_calls(r: Rollout) -> int | None:
    """Tool results in a rollout; None for a single-turn rollout."""
    from algos.episodes import tool_results

    return None if r.loss_mask is None else tool_results(r.loss_mask)
