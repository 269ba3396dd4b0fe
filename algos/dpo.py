"""Offline preference training: DPO, ORPO, SimPO and KTO on a preference dataset.

    python -m algos.preference env=math out=prefs.jsonl              # pairs from the tiny model's own samples
    python -m algos.dpo data=prefs.jsonl                             # DPO (loss=dpo)
    python -m algos.dpo data=prefs.jsonl loss=simpo                  # or orpo, kto
    python -m algos.dpo data=trl-lib/ultrafeedback_binarized policy.model=Qwen/Qwen2.5-0.5B-Instruct

``loss=``

* ``dpo`` (Rafailov et al. 2023): -log sigmoid(beta [(log pi(c) - log ref(c)) - (log pi(r) -
  log ref(r))]) with summed sequence logprobs and a frozen reference (the starting weights);
* ``orpo`` (Hong et al. 2024): NLL of the chosen response + orpo_lambda x odds-ratio term, no
  reference model;
* ``simpo`` (Meng et al. 2024): -log sigmoid(simpo_beta (avg log pi(c) - avg log pi(r)) -
  simpo_gamma), length-normalised, no reference model;
* ``kto`` (Ethayarajh et al. 2024): unpaired desirable/undesirable examples against a frozen
  reference, with the reference point estimated per batch from mismatched pairs.

Data: prompt/chosen/rejected rows for dpo, orpo, simpo; prompt/completion/label rows (or pairs,
split into one good and one bad example) for kto. Prompts may be text or chat messages,
responses text or chat messages. Each epoch visits the data in a new seeded order. When the
config names an environment (``env=``, default math), held-out greedy accuracy is measured
before and after, as in every RL module, and the run folder is the same as GRPO's.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from typing import Any, ClassVar, Literal

from algos import config as cfglib
from algos import dist
from algos.config import ANY, AT_LEAST_1, POLICY_RANGES, POSITIVE, Range  # noqa: F401
from algos.common import (Progress, RunConfig, adamw, eval_metrics, evaluate, finish, heldout_before, progress_bar,
                          reduce_stats, run_main, save_on_interrupt, set_lr, start, lr_at)
from algos import microbatch
from algos.preference import LossSettings, kto_step, load_preference_data, mismatched_prompts, pair_step
from policies import lora
from policies.hf import train_without_dropout


@dataclasses.dataclass
class DPOConfig(RunConfig):
    # defaults for any model but the built-in tiny ones (algos.config.TINY_MODELS); --help shows them
    REAL_MODEL_DEFAULTS: ClassVar[dict] = {"lr": 5e-7, "warmup_steps": 0, "max_new_tokens": 512, "heldout_size": 200,
                                              "micro_batch_tokens": microbatch.REAL_MODEL_TOKENS,
                                              "gradient_checkpointing": True}
    KEY_ALIASES: ClassVar[dict] = {"max_steps": "steps"}  # the old name (every other module says steps)
    data: str | None = None
    """preference dataset: hub name or local JSON/JSONL/Parquet (build one with python -m algos.preference)"""
    loss: Literal["dpo", "orpo", "simpo", "kto"] = "dpo"
    """preference loss"""
    beta: float = 0.1
    """DPO/KTO: strength of the implicit KL to the reference"""
    simpo_beta: float = 2.0
    """SimPO: reward scale"""
    simpo_gamma: float = 0.5
    """SimPO: target reward margin"""
    orpo_lambda: float = 0.1
    """ORPO: weight of the odds-ratio term next to the chosen NLL"""
    kto_desirable_weight: float = 1.0
    """KTO: weight of desirable examples"""
    kto_undesirable_weight: float = 1.0
    """KTO: weight of undesirable examples"""
    RANGES: ClassVar[dict] = {"epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE, "beta": POSITIVE, "simpo_beta": POSITIVE, "adam_beta2": Range(0, 1, hi_open=True)}  # algos.config.check_ranges
    epochs: int = 1
    """passes over the dataset"""
    shuffle: bool = True
    """visit the data in a new seeded order each epoch (false: file order)"""
    steps: int = 0
    """stop after this many optimizer steps (0: epochs decide; max_steps= is read as steps=, with a warning)"""
    save_every: int = 25
    """checkpoint every N steps (and at the end): a crashed run resumes from the last one"""
    batch_size: int = 32
    """pairs (or KTO examples) per optimizer step"""
    lr: float = 1e-4
    """learning rate (AdamW; warmup_steps, then lr_schedule)"""
    warmup_steps: int = 20
    """linear warmup steps"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    adam_beta2: float = 0.99
    """AdamW beta2"""
    grad_clip: float = 1.0
    """clip the gradient norm (0: off)"""


def loss_settings(cfg: Any) -> LossSettings:
    return LossSettings(cfg.loss, cfg.beta, cfg.simpo_beta, cfg.simpo_gamma, cfg.orpo_lambda)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # ------------------------------------------------------------------ setup
    s = start(DPOConfig, argv, "dpo")
    cfg, env, model, tok, run = s.cfg, s.env, s.model, s.tokenizer, s.run
    if not cfg.data:
        raise cfglib.ConfigError("data= is required: a preference dataset (build one with "
                                 "python -m algos.preference env=math out=prefs.jsonl)")
    rows = load_preference_data(cfg.data, tok, "thumbs" if cfg.loss == "kto" else "pairs")
    settings = loss_settings(cfg)
    limits = microbatch.Limits.of(cfg)
    kto = cfg.loss == "kto"
    longest = max((len(r.prompt_ids) + len(r.completion_ids) if kto else
                   2 * (len(r.prompt_ids) + max(len(r.chosen_ids), len(r.rejected_ids))) for r in rows), default=0)
    microbatch.check(cfg, -(-cfg.batch_size // s.world.size), "batch_size, split over processes", longest=longest,
                     unit="examples" if kto else "pairs",
                     longest_what=f"the longest {'example' if kto else 'pair (2 rows)'} of data={cfg.data}:")
    # the reference: the starting weights, frozen (ORPO and SimPO need none)
    ref = dist.frozen_copy(model) if cfg.loss in ("dpo", "kto") else None
    if ref is not None and s.step and not lora.enabled(model):  # resuming: the reference is the run's starting
        # model, not the checkpoint (a LoRA model's reference, its frozen base, already is)
        from policies import load_model

        ref = load_model(cfg.policy)[0].eval().requires_grad_(False)
    opt = adamw(s, model, cfg.lr, cfg.weight_decay, cfg.adam_beta2)
    per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = cfg.steps or per_epoch * cfg.epochs
    acc_before = heldout_before(s)
    print(f"{len(rows)} {'examples' if cfg.loss == 'kto' else 'pairs'} from {cfg.data}; {total} steps", file=sys.stderr)
    t_start = time.time() - s.state.get("wall_seconds", 0.0)
    bar = progress_bar(range(s.step, total), initial=s.step, total=total, desc=cfg.loss)
    w = s.world
    step = s.step
    loss_val = float("nan")
    progress = Progress(s.step, {"heldout_accuracy_before": acc_before, "wall_seconds": s.state.get("wall_seconds", 0.0)})
    with save_on_interrupt(s, progress, lambda st, state: run.save_checkpoint(st, model, tok, opt, state)):
        for step in bar:
            t0 = time.time()
            # -------------------------------------------------------------- minibatch: epoch-seeded order
            epoch, k = divmod(step, per_epoch)
            order = list(range(len(rows)))
            if cfg.shuffle:
                random.Random(cfg.seed * 7919 + epoch).shuffle(order)
            mb = [rows[i] for i in order[k * cfg.batch_size:(k + 1) * cfg.batch_size]]
            local = w.strided(mb)  # this rank's rows of the minibatch (all of them in one process)
            # -------------------------------------------------------------- loss and update
            train_without_dropout(model)  # no dropout: the policy's logprobs compare with the reference's (eval)
            set_lr(opt, lr_at(cfg, cfg.lr, step, total))
            if cfg.loss == "kto":
                gn, loss_val, stats = kto_step(opt, model, ref, local, tok.pad_token_id, settings, limits, cfg.grad_clip,
                                               cfg.kto_desirable_weight, cfg.kto_undesirable_weight,
                                               mismatched_prompts(mb, w.rank, w.size))
            else:
                gn, loss_val, stats = pair_step(opt, model, ref, local, tok.pad_token_id, settings, float(len(mb)), limits,
                                                cfg.grad_clip)
            loss_val = w.sum(loss_val)
            stats = reduce_stats(stats, len(local))
            # -------------------------------------------------------------- log
            metrics = {f"loss/{cfg.loss}": loss_val, "train/grad_norm": gn, "train/lr": opt.param_groups[0]["lr"],
                       "train/epoch": epoch, "perf/step_seconds": time.time() - t0, **stats}
            progress.finished(step + 1, {"heldout_accuracy_before": acc_before, "wall_seconds": time.time() - t_start},
                              metrics)
            if env is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < total:
                metrics.update(eval_metrics(evaluate(s)))
            run.log(step + 1, metrics)
            bar.set_postfix(loss=f"{loss_val:.3f}")
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total:
                run.save_checkpoint(step + 1, model, tok, opt, progress.state)
    bar.close()
    # ------------------------------------------------------------------ final evaluation and save
    return finish(s, total, opt, {}, acc_before, t_start,
                  {"loss": [f"loss/{cfg.loss}"], "preference": ["pref/accuracy", "pref/reward_margin"],
                   "accuracy": ["eval/accuracy"]}, f"{cfg.loss.upper()} on {cfg.data}",
                  extra={"loss": cfg.loss, "pairs_or_examples": len(rows), "final_loss": loss_val})


if __name__ == "__main__":
    run_main(main)
