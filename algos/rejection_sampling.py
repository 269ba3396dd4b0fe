"""Rejection sampling fine-tuning (expert iteration, STaR / RAFT / ReST-EM style).

    python -m algos.rejection_sampling env=math
    python -m algos.sft data=runs/<this run>/accepted.jsonl policy.model=OTHER_MODEL   # reuse the accepted set

Each round:

1. sample ``samples_per_task`` completions for each of ``tasks_per_round`` fresh training
   tasks at ``temperature``;
2. score them with the environment's verifiers and keep, per task, the best completion by
   reward (ties broken by the shorter one) if the verifier accepts it as correct
   (``keep=best``); or every distinct accepted completion (``keep=all``);
3. append the kept ones to ``accepted.jsonl`` in the run folder (columns prompt, response,
   reward, task_id, round: the prompt/response shape `algos.sft data=` reads);
4. fine-tune on this round's kept completions with the SFT loss (`algos.sft.sft_loss`:
   response tokens only, the exact sampled token ids, no re-tokenization) for ``epochs``
   passes in minibatches of ``batch_size``.

Distillation (the guide's "synthetic data from a stronger model -> filter -> SFT"): with
``teacher.model=M`` the completions are sampled from the teacher instead of the policy (any engine:
``teacher.engine=transformers|vllm|openai|server``, ``teacher.base_url=`` for an endpoint), filtered
by the environment as above (its verifiers; ``env=rm`` a reward model; ``env=judge`` an LLM judge),
and the student (``policy.model``) is fine-tuned on them. The teacher's text is re-tokenized with
the student's tokenizer (prompt through its chat template, the response, then its end-of-sequence
token unless the teacher stopped at the length limit), so teacher and student may differ in
tokenizer; multi-turn tool episodes of a teacher keep no tool masks (single-turn environments).

Only correct samples are ever trained on, so there is no negative gradient; the price is
that tasks the model never solves teach nothing. Writes the run folder of GRPO
(metrics, samples, checkpoints per round, curves, ``summary.json`` with held-out accuracy
before and after) and resumes from the last finished round with ``resume=RUN_DIR``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from typing import Any, ClassVar, Literal


import torch

from algos import microbatch
from algos.config import ANY, AT_LEAST_1, POLICY_RANGES, POSITIVE, Range  # noqa: F401
from algos.common import (Progress, RunConfig, adamw, eval_metrics, evaluate, finish, heldout_before, progress_bar,
                          reward_metrics, run_main, sample_and_score, save_on_interrupt, say, set_lr, start, sync_engine,
                          lr_at)
from algos.sft import sft_loss
from policies import PolicyConfig, SamplingParams


@dataclasses.dataclass
class RejectionSamplingConfig(RunConfig):
    # defaults for any model but the built-in tiny ones (algos.config.TINY_MODELS); --help shows them
    REAL_MODEL_DEFAULTS: ClassVar[dict] = {"lr": 1e-5, "warmup_steps": 0, "max_new_tokens": 512, "heldout_size": 200,
                                              "micro_batch_tokens": microbatch.REAL_MODEL_TOKENS,
                                              "gradient_checkpointing": True}
    RANGES: ClassVar[dict] = {"rounds": AT_LEAST_1, "tasks_per_round": AT_LEAST_1, "samples_per_task": AT_LEAST_1, "temperature": Range(0, lo_open=True, why="training samples; for greedy decoding evaluate with algos.evaluate"), "top_p": Range(0, 1, lo_open=True), "epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE}  # algos.config.check_ranges
    rounds: int = 12
    """sample-filter-train rounds"""
    save_every: int = 4
    """checkpoint every N rounds (and at the end): a crashed run resumes from the last one"""
    tasks_per_round: int = 256
    """fresh training tasks sampled each round"""
    samples_per_task: int = 8
    """completions per task (N of best-of-N)"""
    temperature: float = 1.0
    """sampling temperature"""
    top_p: float = 1.0
    """nucleus sampling"""
    keep: Literal["best", "all"] = "best"
    """per task: the best accepted completion (ties: shorter), or every distinct accepted one"""
    epochs: int = 2
    """passes over each round's accepted completions"""
    batch_size: int = 32
    """completions per gradient step"""
    lr: float = 1e-4
    """learning rate (AdamW; warmup_steps, then lr_schedule over rounds)"""
    warmup_steps: int = 10
    """linear warmup of the learning rate (gradient steps)"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    grad_clip: float = 1.0
    """clip the gradient norm to this (0: off)"""
    teacher: PolicyConfig = dataclasses.field(default_factory=lambda: PolicyConfig(model=""))
    """distillation: sample from this model instead of the policy (teacher.model=M, and teacher.engine=, teacher.base_url=, ... as policy.*); empty teacher.model: the policy samples"""


def select(rollouts: list, results: list, n_per_task: int, keep: str) -> list[int]:
    """Indices of the rollouts to keep: per task (consecutive groups of ``n_per_task``), only
    verifier-accepted ones; ``best`` keeps the highest reward, ties broken by fewer tokens,
    then by sample order; ``all`` keeps every distinct accepted text."""
    chosen: list[int] = []
    for g in range(0, len(rollouts), n_per_task):
        idx = [i for i in range(g, min(g + n_per_task, len(rollouts))) if _accepted(results[i])]
        if not idx:
            continue
        if keep == "best":
            chosen.append(min(idx, key=lambda i: (-results[i].reward, len(rollouts[i].completion_ids), i)))
        else:
            seen: set[str] = set()
            for i in idx:
                if rollouts[i].text not in seen:
                    seen.add(rollouts[i].text)
                    chosen.append(i)
    return chosen


def load_teacher(cfg: PolicyConfig) -> Any:
    """The teacher's generation engine (None without ``teacher.model``)."""
    if not cfg.model:
        return None
    from policies import load

    return load(cfg)[0]


def student_ids(tok: Any, prompt: Any, rollout: Any) -> tuple[list[int], list[int], None]:
    """A teacher's completion as the student's tokens: (prompt ids through the student's chat template,
    response ids + end-of-sequence unless the teacher hit the length limit, no tool mask)."""
    from policies.hf import encode_prompt

    eos = [] if rollout.finish_reason == "length" else [tok.eos_token_id]
    return encode_prompt(tok, prompt), tok(rollout.text, add_special_tokens=False)["input_ids"] + eos, None


def _accepted(result: Any) -> bool:
    v = next(iter(result.verdicts.values()), None)  # the correctness part's (TextEnv.with_correctness)
    return bool(v is not None and v.correct)


def _truncate_accepted(path: str, last_round: int) -> None:
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [line for line in f if json.loads(line)["round"] <= last_round]
    with open(path, "w") as f:
        f.writelines(rows)


def finetune(model: Any, opt: Any, rows: list, cfg: RejectionSamplingConfig, w: Any, rnd: int, updates: int,
             pad_id: int) -> tuple[list[float], int]:
    """One round's fine-tuning: ``cfg.epochs`` passes over ``rows`` (the round's accepted completions of
    every rank, as ``(prompt_ids, completion_ids, loss_mask)``, the same list on every rank) in minibatches of
    ``cfg.batch_size``, shuffled per round; each rank trains on its strided rows of each minibatch, the loss
    the minibatch's token mean over all ranks. The same update on any number of ranks as in one process
    (tests/test_distributed.py). Returns each minibatch's loss and the updated count of gradient steps."""
    model.train()
    shuffle = random.Random(cfg.seed * 1_000_003 + rnd)  # per round, so a resumed run matches
    losses: list[float] = []
    for _ in range(cfg.epochs):
        order = list(range(len(rows)))
        shuffle.shuffle(order)
        for lo in range(0, len(order), cfg.batch_size):
            mb = w.strided([rows[i] for i in order[lo:lo + cfg.batch_size]])  # this rank's rows
            set_lr(opt, lr_at(cfg, cfg.lr, updates, 0, progress=rnd / cfg.rounds))
            part_rows = microbatch.Rows([p for p, _, _ in mb], [c for _, c, _ in mb], [m for _, _, m in mb])  # tool results: no loss
            tokens = w.sum(part_rows.tokens().sum().item() if mb else 0.0)  # the minibatch's, over every rank
            parts_loss: list[float] = []

            def loss_of(part: microbatch.Rows) -> torch.Tensor:  # a micro-batch's share of the minibatch's loss
                loss = sft_loss(model, part.collate(pad_id, model.device)[0], tokens)
                parts_loss.append(loss.item())
                return loss

            microbatch.step(opt, model, part_rows.split(microbatch.Limits.of(cfg)), loss_of, cfg.grad_clip)
            updates += 1
            losses.append(w.sum(sum(parts_loss)))
    return losses, updates


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # ------------------------------------------------------------------ setup
    s = start(RejectionSamplingConfig, argv, "rejection_sampling")
    cfg, env, engine, model, tok, run = s.cfg, s.env, s.engine, s.model, s.tokenizer, s.run
    base = env.unwrapped
    opt = adamw(s, model, cfg.lr, cfg.weight_decay)
    w = s.world
    teacher = load_teacher(cfg.teacher)  # distillation: the teacher samples (None: the policy)
    share = w.shard(cfg.tasks_per_round, "a round's tasks", "tasks_per_round")
    microbatch.check(cfg, -(-cfg.batch_size // w.size), "batch_size accepted completions, split over processes",
                     longest=cfg.max_new_tokens + 1)
    position, updates = s.state.get("position", 0), s.state.get("updates", 0)
    acc_before = heldout_before(s)
    accepted_path = os.path.join(run.dir, "accepted.jsonl")
    t_start = time.time() - s.state.get("wall_seconds", 0.0)
    if s.step and w.is_main:  # resuming: forget what rounds after the checkpoint had appended
        _truncate_accepted(accepted_path, s.step)
    bar = progress_bar(range(s.step, cfg.rounds), initial=s.step, total=cfg.rounds, desc="rejection sampling")
    rnd = s.step
    progress = Progress(s.step, {"position": position, "updates": updates, "heldout_accuracy_before": acc_before,
                                 "wall_seconds": s.state.get("wall_seconds", 0.0)})
    with save_on_interrupt(s, progress, lambda st, state: run.save_checkpoint(st, model, tok, opt, state)):
        for rnd in bar:
            t0 = time.time()
            # -------------------------------------------------------------- sample and filter
            tasks = base.source.tasks(cfg.tasks_per_round, "train", start=position)[share]  # this rank's share
            position += cfg.tasks_per_round
            params = SamplingParams(n=cfg.samples_per_task, temperature=cfg.temperature, top_p=cfg.top_p,
                                    max_new_tokens=cfg.max_new_tokens, seed=cfg.seed * 1_000_003 + rnd + 104_729 * w.rank)
            rollouts, results, flat_tasks = sample_and_score(teacher or engine, env, tasks, params,
                                                             check_version=teacher is None)
            kept = select(rollouts, results, cfg.samples_per_task, cfg.keep)
            metrics = reward_metrics(results, rollouts, flat_tasks, cfg.samples_per_task)  # a mixture: per environment too
            # every rank fine-tunes on its rows of the same minibatches of the round's accepted completions (all ranks')
            accepted = w.gather([{"prompt": base.prompt_of(flat_tasks[i]), "response": rollouts[i].text,
                                  "reward": results[i].reward, "task_id": flat_tasks[i].id, "round": rnd + 1,
                                  "ids": student_ids(tok, base.prompt_of(flat_tasks[i]), rollouts[i]) if teacher else
                                  (list(rollouts[i].prompt_ids), list(rollouts[i].completion_ids),
                                   list(rollouts[i].loss_mask) if rollouts[i].loss_mask is not None else None)}
                                 for i in kept])
            metrics["rs/accepted"] = len(accepted)
            metrics["rs/tasks_solved"] = len({a["task_id"] for a in accepted}) / cfg.tasks_per_round
            if w.is_main:
                with open(accepted_path, "a") as f:
                    for a in accepted:
                        f.write(json.dumps({k: v for k, v in a.items() if k != "ids"}) + "\n")
            # -------------------------------------------------------------- fine-tune on the kept completions
            losses_, updates = finetune(model, opt, [a["ids"] for a in accepted], cfg, w, rnd, updates, tok.pad_token_id)
            progress.finished(rnd + 1, {"position": position, "updates": updates, "heldout_accuracy_before": acc_before,
                                        "wall_seconds": time.time() - t_start}, metrics)
            sync_engine(s)
            # -------------------------------------------------------------- log
            dt = time.time() - t0
            metrics.update({"loss/sft": sum(losses_) / len(losses_) if losses_ else float("nan"), "train/updates": updates,
                            "train/lr": opt.param_groups[0]["lr"], "perf/round_seconds": dt, "perf/completions_per_second": w.sum(len(rollouts)) / dt})
            if cfg.eval_every and (rnd + 1) % cfg.eval_every == 0 and rnd + 1 < cfg.rounds:
                metrics.update(eval_metrics(evaluate(s)))
            run.log(rnd + 1, metrics)
            if cfg.samples_every:
                kept_set = set(kept)
                run.log_samples(rnd + 1, [{"task_id": flat_tasks[i].id, "prompt": flat_tasks[i].prompt, "completion": rollouts[i].text,
                                           "reward": results[i].reward, "accepted": i in kept_set} for i in range(min(16, len(rollouts)))])
            bar.set_postfix(acc=f"{metrics['train/accuracy']:.2f}", kept=len(accepted), loss=f"{metrics['loss/sft']:.3f}")
            if cfg.save_every and (rnd + 1) % cfg.save_every == 0 and rnd + 1 < cfg.rounds:
                run.save_checkpoint(rnd + 1, model, tok, opt, progress.state)
    bar.close()
    # ------------------------------------------------------------------ final evaluation and save
    say(f"accepted set: {accepted_path}")
    return finish(s, cfg.rounds, opt, {"position": position, "updates": updates}, acc_before, t_start,
                  {"accuracy": ["train/accuracy", "eval/accuracy", "rs/tasks_solved"], "loss": ["loss/sft"]},
                  f"Rejection sampling on {cfg.env} ({cfg.policy.model})",
                  extra={"rounds": cfg.rounds, "updates": updates, "accepted": accepted_path})


if __name__ == "__main__":
    run_main(main)
