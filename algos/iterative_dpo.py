"""Online (iterative) DPO with verifier-built preference pairs.

    python -m algos.iterative_dpo env=math

Each round:

1. sample ``samples_per_task`` completions for each of ``tasks_per_round`` fresh training
   tasks with the current policy at ``temperature``;
2. score them with the environment's verifiers and build up to ``pairs_per_task``
   (chosen, rejected) pairs per task with `algos.preference.build_pairs`: higher reward
   wins, ties (all right or all wrong) are skipped, shorter chosen / longer rejected first;
3. train ``epochs`` passes over the round's pairs with the DPO loss against the reference
   model, plus ``nll_weight`` x the chosen response's mean token NLL (Iterative RPO, Pang et
   al. 2024, which found the NLL term necessary on reasoning tasks; 0 gives plain DPO);
4. every ``ref_refresh_every`` rounds the reference becomes a copy of the current policy
   (Xiong et al. 2024; Xu et al. 2023), so the implicit KL anchors to a recent model. A
   resumed run takes the resumed weights as its reference until the next refresh.

``loss=simpo`` or ``loss=orpo`` swap in the reference-free losses. The pairs use the exact
sampled token ids. Writes the run folder of GRPO, with held-out accuracy before and after
in ``summary.json``; ``resume=RUN_DIR`` continues from the last saved round.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from typing import Any, ClassVar, Literal

import torch

from algos import dist
from algos.config import ANY, AT_LEAST_1, POLICY_RANGES, POSITIVE, Range  # noqa: F401
from algos.common import (Progress, RunConfig, adamw, eval_metrics, has_error, evaluate, finish, heldout_before, progress_bar,
                          reduce_stats, reward_metrics, run_main, sample_and_score, save_on_interrupt, set_lr, start,
                          sync_engine, lr_at)
from algos import microbatch
from algos.preference import LossSettings, Pair, build_pairs, pair_step
from policies import SamplingParams
from policies.hf import train_without_dropout


@dataclasses.dataclass
class IterativeDPOConfig(RunConfig):
    # defaults for any model but the built-in tiny ones (algos.config.TINY_MODELS); --help shows them
    REAL_MODEL_DEFAULTS: ClassVar[dict] = {"lr": 5e-7, "warmup_steps": 0, "temperature": 1.0, "max_new_tokens": 512, "heldout_size": 200,
                                              "micro_batch_tokens": microbatch.REAL_MODEL_TOKENS,
                                              "gradient_checkpointing": True}
    RANGES: ClassVar[dict] = {"rounds": AT_LEAST_1, "tasks_per_round": AT_LEAST_1, "samples_per_task": Range(2, why="a pair needs two completions of a task"), "pairs_per_task": AT_LEAST_1, "temperature": Range(0, lo_open=True, why="training samples; for greedy decoding evaluate with algos.evaluate"), "beta": POSITIVE, "simpo_beta": POSITIVE, "epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE}  # algos.config.check_ranges
    rounds: int = 16
    """sample-pair-train rounds"""
    save_every: int = 4
    """checkpoint every N rounds (and at the end): a crashed run resumes from the last one"""
    tasks_per_round: int = 256
    """fresh training tasks per round"""
    samples_per_task: int = 8
    """completions per task"""
    pairs_per_task: int = 2
    """at most this many (chosen, rejected) pairs per task"""
    temperature: float = 0.7
    """sampling temperature"""
    loss: Literal["dpo", "simpo", "orpo"] = "dpo"
    """preference loss on the pairs"""
    beta: float = 0.1
    """DPO: strength of the implicit KL to the reference"""
    simpo_beta: float = 2.0
    """SimPO: reward scale"""
    simpo_gamma: float = 0.5
    """SimPO: target margin"""
    orpo_lambda: float = 0.1
    """ORPO: odds-ratio weight"""
    nll_weight: float = 1.0
    """weight of the chosen response's mean token NLL added to the loss (0: plain DPO)"""
    ref_refresh_every: int = 4
    """copy the current policy into the reference every K rounds (0: never)"""
    epochs: int = 2
    """passes over each round's pairs"""
    batch_size: int = 32
    """pairs per gradient step"""
    lr: float = 1e-4
    """learning rate (AdamW; warmup_steps, then lr_schedule over rounds)"""
    warmup_steps: int = 10
    """linear warmup (gradient steps)"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    grad_clip: float = 1.0
    """clip the gradient norm (0: off)"""


def _mask(r: Any) -> list[int] | None:
    return list(r.loss_mask) if r.loss_mask is not None else None


def train_round(model: Any, ref: Any, opt: Any, pairs: list[Pair], cfg: IterativeDPOConfig, settings: LossSettings,
                limits: microbatch.Limits, w: Any, rnd: int, updates: int, pad_id: int) -> tuple[dict[str, list[float]], int]:
    """One round's preference training: ``cfg.epochs`` passes over ``pairs`` (every rank's pairs of the round,
    the same list on every rank), shuffled per round, in minibatches of ``cfg.batch_size``; each rank takes its
    strided pairs of each minibatch, the loss the minibatch's mean over all ranks. The same update on any
    number of ranks as in one process (tests/test_distributed.py). Returns the per-minibatch statistics and
    the updated count of gradient steps."""
    train_without_dropout(model)  # no dropout: the policy's logprobs compare with the reference's (eval)
    shuffle = random.Random(cfg.seed * 1_000_003 + rnd)  # per round, so a resumed run matches
    pairs = list(pairs)
    stats: dict[str, list[float]] = {}
    for _ in range(cfg.epochs):
        shuffle.shuffle(pairs)
        for lo in range(0, len(pairs), cfg.batch_size):
            set_lr(opt, lr_at(cfg, cfg.lr, updates, 0, progress=rnd / cfg.rounds))
            mb = pairs[lo:lo + cfg.batch_size]
            local = w.strided(mb)
            _, loss, st = pair_step(opt, model, ref, local, pad_id, settings, float(len(mb)), limits, cfg.grad_clip)
            updates += 1
            st = reduce_stats(st, len(local))
            for k, v in {f"loss/{cfg.loss}": w.sum(loss), **st}.items():
                stats.setdefault(k, []).append(v)
    return stats, updates


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # ------------------------------------------------------------------ setup
    s = start(IterativeDPOConfig, argv, "iterative_dpo")
    cfg, env, engine, model, tok, run = s.cfg, s.env, s.engine, s.model, s.tokenizer, s.run
    base = env.unwrapped
    settings = LossSettings(cfg.loss, cfg.beta, cfg.simpo_beta, cfg.simpo_gamma, cfg.orpo_lambda, cfg.nll_weight)
    w = s.world
    share = w.shard(cfg.tasks_per_round, "a round's tasks", "tasks_per_round")
    limits = microbatch.Limits.of(cfg)
    microbatch.check(cfg, -(-cfg.batch_size // w.size), "batch_size pairs, split over processes",
                     longest=2 * (cfg.max_new_tokens + 1), unit="pairs",
                     longest_what=f"a pair: 2 rows of a completion of max_new_tokens={cfg.max_new_tokens} and its prompt, at least")
    ref = dist.frozen_copy(model) if cfg.loss == "dpo" else None
    if ref is not None and s.step:  # resuming: the reference as it was (last refreshed at a multiple of K rounds)
        ref.load_state_dict(torch.load(os.path.join(run.latest_checkpoint(), "reference.pt"), weights_only=True))

    def save(step: int, state: dict) -> str:
        return run.save_checkpoint(step, model, tok, opt, state,
                                   extra={"reference.pt": ref.state_dict()} if ref is not None else None)

    opt = adamw(s, model, cfg.lr, cfg.weight_decay)
    position, updates = s.state.get("position", 0), s.state.get("updates", 0)
    acc_before = heldout_before(s)
    t_start = time.time() - s.state.get("wall_seconds", 0.0)
    bar = progress_bar(range(s.step, cfg.rounds), initial=s.step, total=cfg.rounds, desc="iterative dpo")
    progress = Progress(s.step, {"position": position, "updates": updates, "heldout_accuracy_before": acc_before,
                                 "wall_seconds": s.state.get("wall_seconds", 0.0)})
    with save_on_interrupt(s, progress, save):
        for rnd in bar:
            t0 = time.time()
            # -------------------------------------------------------------- sample, score, pair
            tasks = base.source.tasks(cfg.tasks_per_round, "train", start=position)[share]  # this rank's share
            position += cfg.tasks_per_round
            params = SamplingParams(n=cfg.samples_per_task, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                    seed=cfg.seed * 1_000_003 + rnd + 104_729 * w.rank)
            rollouts, results, flat_tasks = sample_and_score(engine, env, tasks, params)
            pairs: list[Pair] = []
            G = cfg.samples_per_task
            for g in range(0, len(rollouts), G):
                ro, res = rollouts[g:g + G], results[g:g + G]
                if any(has_error(x) for x in res):  # an error is not a rejected answer: no pair from this group
                    continue
                for c, r in build_pairs([x.reward for x in res], [len(x.completion_ids) for x in ro], cfg.pairs_per_task):
                    pairs.append(Pair(list(ro[c].prompt_ids), list(ro[c].completion_ids), list(ro[r].completion_ids),
                                      _mask(ro[c]), _mask(ro[r])))  # tool results: no loss
            metrics = reward_metrics(results, rollouts, flat_tasks, G)  # a mixture: per environment too
            pairs = w.gather(pairs)  # every rank trains on its rows of the same minibatches of all ranks' pairs
            metrics["pref/pairs"] = len(pairs)
            # -------------------------------------------------------------- train on the round's pairs
            stats, updates = train_round(model, ref, opt, pairs, cfg, settings, limits, w, rnd, updates, tok.pad_token_id)
            if ref is not None and cfg.ref_refresh_every and (rnd + 1) % cfg.ref_refresh_every == 0:
                ref.load_state_dict(dist.full_state_dict(model))
            progress.finished(rnd + 1, {"position": position, "updates": updates, "heldout_accuracy_before": acc_before,
                                        "wall_seconds": time.time() - t_start}, metrics)
            sync_engine(s)
            # -------------------------------------------------------------- log
            dt = time.time() - t0
            metrics.update({k: sum(v) / len(v) for k, v in stats.items()})
            metrics.update({"train/updates": updates, "train/lr": opt.param_groups[0]["lr"], "perf/round_seconds": dt, "perf/completions_per_second": w.sum(len(rollouts)) / dt})
            if cfg.eval_every and (rnd + 1) % cfg.eval_every == 0 and rnd + 1 < cfg.rounds:
                metrics.update(eval_metrics(evaluate(s)))
            run.log(rnd + 1, metrics)
            bar.set_postfix(acc=f"{metrics['train/accuracy']:.2f}", pairs=len(pairs))
            if cfg.save_every and (rnd + 1) % cfg.save_every == 0 and rnd + 1 < cfg.rounds:
                save(rnd + 1, progress.state)
    bar.close()
    # ------------------------------------------------------------------ final evaluation and save
    return finish(s, cfg.rounds, opt, {"position": position, "updates": updates}, acc_before, t_start,
                  {"accuracy": ["train/accuracy", "eval/accuracy"], "preference": ["pref/accuracy", "pref/reward_margin"],
                   "loss": [f"loss/{cfg.loss}"]}, f"Iterative {cfg.loss.upper()} on {cfg.env} ({cfg.policy.model})",
                  extra={"rounds": cfg.rounds, "updates": updates}, save=save)


if __name__ == "__main__":
    run_main(main)
