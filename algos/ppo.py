"""Actor-critic PPO for language models (InstructGPT / Ziegler et al. 2019 style, as in
TRL's PPOTrainer and OpenRLHF).

    python -m algos.ppo env=math

Per step:

1. sample ``samples_per_prompt`` completions for each of ``prompts_per_step`` training
   tasks at ``temperature``, recording the sampling logprobs (the "old" policy);
2. score them with the environment's verifiers; token-level rewards are
   ``-kl_coef * (log pi_old - log ref)`` at every completion token (the per-token KL penalty
   to the frozen reference, the starting weights) plus the verifier reward at the last token;
   truncated completions get ``truncation_reward`` instead of the verifier's;
3. a separate critic (a copy of the policy's transformer with a zero-initialised scalar
   head) gives a value per completion position; GAE(``gamma``, ``lam``) gives advantages
   (whitened over the batch) and returns;
4. ``ppo_epochs`` passes over the batch in ``minibatches`` shuffled minibatches: the clipped
   policy loss (token-level mean) on the actor and the clipped value loss on the critic,
   each with its own AdamW.

Writes the run folder of GRPO, with held-out accuracy before and after in ``summary.json``;
``resume=RUN_DIR`` continues from the last checkpoint (actor, critic, both optimizers).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from typing import Any, ClassVar

import torch

from algos import dist, losses, microbatch
from algos.config import ANY, AT_LEAST_1, POLICY_RANGES, POSITIVE, Range  # noqa: F401
from algos.common import (Progress, RunConfig, adamw, eval_metrics, has_error, evaluate, finish, heldout_before, progress_bar,
                          log_samples, reward_metrics, run_main, sample_and_score, save_on_interrupt, set_lr, start,
                          sync_engine, lr_at)
from policies import SamplingParams, lora
from policies.hf import Batch, _positions, token_logprobs, train_without_dropout


@dataclasses.dataclass
class PPOConfig(RunConfig):
    # defaults for any model but the built-in tiny ones (algos.config.TINY_MODELS); --help shows them
    REAL_MODEL_DEFAULTS: ClassVar[dict] = {"lr": 1e-6, "critic_lr": 1e-5, "warmup_steps": 0, "temperature": 1.0, "max_new_tokens": 512,
                                              "heldout_size": 200, "micro_batch_tokens": microbatch.REAL_MODEL_TOKENS,
                                              "gradient_checkpointing": True}
    RANGES: ClassVar[dict] = {"steps": AT_LEAST_1, "prompts_per_step": AT_LEAST_1, "samples_per_prompt": AT_LEAST_1, "temperature": Range(0, lo_open=True, why="training samples; for greedy decoding evaluate with algos.evaluate"), "lr": POSITIVE, "critic_lr": POSITIVE, "ppo_epochs": AT_LEAST_1, "minibatches": AT_LEAST_1, "eps": Range(0, 1), "gamma": Range(0, 1), "lam": Range(0, 1), "truncation_reward": ANY}  # algos.config.check_ranges
    steps: int = 60
    """PPO iterations (sample a batch, then optimise on it)"""
    save_every: int = 20
    """checkpoint every N iterations (and at the end): a crashed run resumes from the last one"""
    prompts_per_step: int = 32
    """training tasks per step"""
    samples_per_prompt: int = 4
    """completions per task"""
    temperature: float = 0.7
    """sampling temperature (logprobs and the loss use the same tempered policy)"""
    lr: float = 5e-5
    """actor learning rate (AdamW; warmup_steps, then lr_schedule)"""
    critic_lr: float = 1e-4
    """critic learning rate"""
    warmup_steps: int = 5
    """linear warmup of both learning rates (PPO iterations); lr_schedule then applies to both"""
    ppo_epochs: int = 2
    """passes over each batch"""
    minibatches: int = 2
    """minibatches per pass"""
    eps: float = 0.2
    """policy ratio clip range"""
    value_clip: float = 0.2
    """value clip range around the sampling-time values"""
    gamma: float = 1.0
    """discount over tokens"""
    lam: float = 0.95
    """GAE lambda"""
    kl_coef: float = 0.02
    """per-token KL penalty to the reference in the reward (0: no reference model)"""
    whiten_advantages: bool = True
    """normalise advantages to mean 0, std 1 over the batch's completion tokens"""
    truncation_reward: float = 0.0
    """reward of a completion cut at max_new_tokens (instead of the verifier's)"""
    grad_clip: float = 1.0
    """clip each model's gradient norm (0: off)"""


class Critic(torch.nn.Module):
    """A value model: the policy's transformer body (a copy) and a scalar head, zero-initialised
    so the first values are 0."""

    def __init__(self, policy: Any):
        super().__init__()
        self.body = copy.deepcopy(policy.get_decoder() if hasattr(policy, "get_decoder") else policy.base_model)
        self.head = torch.nn.Linear(policy.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        self.head.to(next(self.body.parameters()).device)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Value of the state before each completion token, [B, C]."""
        out = self.body(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                        position_ids=_positions(batch.attention_mask), use_cache=False)
        h = out.last_hidden_state[:, batch.prompt_len - 1:-1, :]
        return self.head(h.float()).squeeze(-1)


def token_rewards(final: torch.Tensor, logp_old: torch.Tensor, ref_logp: torch.Tensor | None, mask: torch.Tensor,
                  kl_coef: float) -> torch.Tensor:
    """Per-token rewards [B, C]: -kl_coef (log pi_old - log ref) at each token, plus the final
    reward at each row's last real token."""
    r = torch.zeros_like(logp_old)
    if ref_logp is not None and kl_coef:
        r = -kl_coef * (logp_old - ref_logp)
    r = r * mask
    pos = torch.arange(1, mask.shape[-1] + 1, device=mask.device)
    last = ((mask > 0) * pos).argmax(-1)  # the last token the model wrote (tool results may follow none, precede it)
    r[torch.arange(r.shape[0]), last] += final
    return r


def minibatch_update(model: Any, critic: Critic, opt: Any, copt: Any, rows: microbatch.Rows, cfg: PPOConfig,
                     pad_id: int) -> dict[str, float]:
    """One optimizer step of the actor (clipped policy loss) and one of the critic (clipped value loss)
    on a minibatch's ``rows`` (per token: old_logp, adv, returns, old_values), each run as
    micro-batches with gradients accumulated. Both losses are token means over the whole
    minibatch on every rank, normalised before the split. Returns the step's statistics, over every rank."""
    w = dist.world()
    n_tok = max(w.sum(rows.tokens().sum().item()), 1.0)  # the minibatch's tokens over every rank
    sums = {"loss/policy": 0.0, "loss/value": 0.0, "policy/clip_frac": 0.0, "policy/entropy": 0.0, "policy/approx_kl": 0.0}
    limits = microbatch.Limits.of(cfg)
    parts = rows.split(limits)

    def policy_loss(part: microbatch.Rows) -> torch.Tensor:
        batch, v = part.collate(pad_id, model.device)
        m = batch.completion_mask
        logp, entropy = token_logprobs(model, batch, temperature=cfg.temperature, with_entropy=True)
        pg, clipped = losses.clipped_pg_loss(logp, v["old_logp"], v["adv"], cfg.eps, cfg.eps)
        loss = (pg * m).sum() / n_tok
        sums["loss/policy"] += loss.item()
        sums["policy/clip_frac"] += (clipped * m).sum().item() / n_tok
        sums["policy/entropy"] += (entropy.detach() * m).sum().item() / n_tok
        sums["policy/approx_kl"] += ((v["old_logp"] - logp.detach()) * m).sum().item() / n_tok
        return loss

    def value_loss(part: microbatch.Rows) -> torch.Tensor:
        batch, v = part.collate(pad_id, model.device)
        m, old, ret = batch.completion_mask, v["old_values"], v["returns"]
        val = critic(batch)
        v_clipped = old + (val - old).clamp(-cfg.value_clip, cfg.value_clip)
        vf = 0.5 * torch.maximum((val - ret) ** 2, (v_clipped - ret) ** 2)
        loss = (vf * m).sum() / n_tok
        sums["loss/value"] += loss.item()
        return loss

    microbatch.step(opt, model, parts, policy_loss, cfg.grad_clip)
    microbatch.step(copt, critic, parts, value_loss, cfg.grad_clip)
    return {k: w.sum(v) for k, v in sums.items()}


def ppo_epochs(model: Any, critic: Critic, opt: Any, copt: Any, rows: microbatch.Rows, cfg: PPOConfig, pad_id: int,
               gen: torch.Generator) -> list[dict[str, float]]:
    """``ppo_epochs`` passes of `minibatch_update` over ``minibatches`` shuffled minibatches. The minibatches
    are those of one process on any number of ranks: a permutation (``gen``, the same on every rank) of the
    whole step's rows in rank order, cut in ``minibatches``; each rank runs its rows of each (its global
    rows ``[off, off + len(rows))``). Returns each minibatch's statistics."""
    w = dist.world()
    n = len(rows)
    counts = w.gather_counts(n)
    off = sum(counts[:w.rank])
    out = []
    for _ in range(cfg.ppo_epochs):
        perm = torch.randperm(sum(counts), generator=gen)
        for idx in perm.chunk(cfg.minibatches):
            mine = [i - off for i in idx.tolist() if off <= i < off + n]
            out.append(minibatch_update(model, critic, opt, copt, rows.select(mine), cfg, pad_id))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # ------------------------------------------------------------------ setup
    s = start(PPOConfig, argv, "ppo")
    cfg, env, engine, model, tok, run = s.cfg, s.env, s.engine, s.model, s.tokenizer, s.run
    base = env.unwrapped
    w = s.world
    share = w.shard(cfg.prompts_per_step, "the step's prompts", "prompts_per_step")
    limits = microbatch.Limits.of(cfg)
    microbatch.check(cfg, -(-(share.stop - share.start) * cfg.samples_per_prompt // cfg.minibatches),
                     "prompts_per_step x samples_per_prompt / minibatches", longest=cfg.max_new_tokens + 1)
    critic = Critic(w.full_copy if w.full_copy is not None else model)  # replicated on every rank (gradients summed)
    ref = dist.frozen_copy(model) if cfg.kl_coef > 0 else None
    opt = adamw(s, model, cfg.lr)
    copt = torch.optim.AdamW(critic.parameters(), lr=cfg.critic_lr, betas=(0.9, 0.99))
    if s.optimizer_state is not None:
        extra = torch.load(os.path.join(run.latest_checkpoint(), "critic.pt"), weights_only=False)
        critic.load_state_dict(extra["critic"])
        copt.load_state_dict(extra["optimizer"])
        if ref is not None and not lora.enabled(model):  # the reference is the run's starting model, not the
            from policies import load_model  # checkpoint (a LoRA model's reference, its frozen base, already is)

            ref = load_model(cfg.policy)[0].eval().requires_grad_(False)
    position = s.state.get("position", 0)
    acc_before = heldout_before(s)

    def save(step: int, state: dict) -> str:
        return run.save_checkpoint(step, model, tok, opt, state,
                                   extra={"critic.pt": {"critic": critic.state_dict(), "optimizer": copt.state_dict()}})

    t_start = time.time() - s.state.get("wall_seconds", 0.0)
    bar = progress_bar(range(s.step, cfg.steps), initial=s.step, total=cfg.steps, desc="ppo")
    progress = Progress(s.step, {"position": position, "heldout_accuracy_before": acc_before,
                                 "wall_seconds": s.state.get("wall_seconds", 0.0)})
    with save_on_interrupt(s, progress, save):
        for step in bar:
            t0 = time.time()
            # -------------------------------------------------------------- rollout and score
            tasks = base.source.tasks(cfg.prompts_per_step, "train", start=position)[share]  # this rank's share
            position += cfg.prompts_per_step
            params = SamplingParams(n=cfg.samples_per_prompt, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                    seed=cfg.seed * 1_000_003 + step + 104_729 * w.rank)
            rollouts, results, flat_tasks = sample_and_score(engine, env, tasks, params)
            metrics = reward_metrics(results, rollouts, flat_tasks, cfg.samples_per_prompt)  # a mixture: per environment too
            rows = microbatch.Rows([r.prompt_ids for r in rollouts], [r.completion_ids for r in rollouts],
                                   # tool results: no loss; a completion with an error verdict: none at all (masked)
                                   [[0.0] * len(r.completion_ids) if has_error(x) else r.loss_mask
                                    for r, x in zip(rollouts, results)],
                                   {"old_logp": [torch.tensor(r.logprobs, dtype=torch.float32) for r in rollouts]}
                                   ).padded_as_a_whole()
            batch, v = rows.collate(tok.pad_token_id, model.device)  # the whole batch's [N, C] tensors (no model pass)
            mask, old_logp, C = batch.completion_mask, v["old_logp"], batch.completion_mask.shape[1]
            lens = [len(c) for c in rows.completion_ids]
            final = torch.tensor([cfg.truncation_reward if r.truncated else x.reward for r, x in zip(rollouts, results)],
                                 device=mask.device)
            # -------------------------------------------------------------- rewards, values, GAE
            ref_logp = None  # the passes without gradients run in micro-batches too
            if ref is not None:
                ref_logp = microbatch.pad(microbatch.token_values(
                    ref, rows, limits, tok.pad_token_id, lambda m, b: token_logprobs(m, b, temperature=cfg.temperature)),
                    C).to(mask.device)
            old_values = microbatch.pad(microbatch.token_values(critic, rows, limits, tok.pad_token_id, lambda m, b: m(b)),
                                        C).to(mask.device) * mask
            rewards = token_rewards(final, old_logp, ref_logp, mask, cfg.kl_coef)
            adv, returns = losses.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            if cfg.whiten_advantages:  # over every rank's tokens
                n_tok = w.sum(mask.sum()).clamp(min=1.0)  # every row masked (error verdicts): no 0/0
                mu = w.sum((adv * mask).sum()) / n_tok
                sd = (w.sum((((adv - mu) ** 2) * mask).sum()) / n_tok).sqrt()
                adv = (adv - mu) / (sd + 1e-8) * mask
            rows = rows.with_values({"adv": microbatch.unpad(adv, lens), "returns": microbatch.unpad(returns, lens),
                                     "old_values": microbatch.unpad(old_values, lens)})
            # -------------------------------------------------------------- PPO epochs over minibatches
            train_without_dropout(model)  # the loss's logprobs and values are the sampler's: no dropout
            train_without_dropout(critic)
            for o, lr in ((opt, cfg.lr), (copt, cfg.critic_lr)):
                set_lr(o, lr_at(cfg, lr, step, cfg.steps))
            n = len(rollouts)
            stats: dict[str, list[float]] = {}
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # per step, so a resumed run matches
            for st in ppo_epochs(model, critic, opt, copt, rows, cfg, tok.pad_token_id, gen):
                for k, val in st.items():
                    stats.setdefault(k, []).append(val)
            progress.finished(step + 1, {"position": position, "heldout_accuracy_before": acc_before,
                                         "wall_seconds": time.time() - t_start}, metrics)
            sync_engine(s)
            # -------------------------------------------------------------- log
            dt = time.time() - t0
            metrics.update({k: sum(v) / len(v) for k, v in stats.items()})
            if ref_logp is not None:
                metrics["policy/kl_ref"] = w.mean(losses.masked_mean(old_logp - ref_logp, mask).item())
            metrics.update({"value/mean": w.mean(losses.masked_mean(old_values, mask).item()),
                            "perf/step_seconds": dt, "perf/completions_per_second": w.sum(n) / dt,
                            "train/lr": opt.param_groups[0]["lr"], "train/critic_lr": copt.param_groups[0]["lr"]})
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                metrics.update(eval_metrics(evaluate(s)))
            run.log(step + 1, metrics)
            log_samples(s, step + 1, cfg.steps, [t for t in tasks for _ in range(cfg.samples_per_prompt)], rollouts, results,
                        cfg.samples_per_prompt * 2)  # every samples_every steps and at the last
            bar.set_postfix(reward=f"{metrics['reward/mean']:.2f}", acc=f"{metrics['train/accuracy']:.2f}")
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                save(step + 1, progress.state)
    bar.close()
    # ------------------------------------------------------------------ final evaluation and save
    return finish(s, cfg.steps, opt, {"position": position}, acc_before, t_start,
                  {"reward": ["reward/mean", "reward/correct"], "accuracy": ["train/accuracy", "eval/accuracy"],
                   "losses": ["loss/value", "policy/kl_ref"]}, f"PPO on {cfg.env} ({cfg.policy.model})", save=save)


if __name__ == "__main__":
    run_main(main)
