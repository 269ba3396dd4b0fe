"""Reward model training: a Bradley-Terry model of pairwise preferences on a causal LM with a value head.

    python -m algos.preference env=math out=pairs.jsonl tasks=2048     # learned-verifier pairs: the policy's own
                                                                        # correct (chosen) vs wrong (rejected) samples
    python -m algos.reward_model data=pairs.jsonl out=runs/rm           # -> runs/rm: a Hugging Face folder
    python -m algos.grpo env=rm env.model=runs/rm env.tasks_from=math   # RL against it (envs.rm)

The loss is Bradley-Terry's (Ouyang et al. 2022, eq. 1): ``-log sigmoid(r(x, y_c) - r(x, y_r))``, mean over
a minibatch of pairs, with r the value head (transformers' ``AutoModelForSequenceClassification``,
``num_labels=1``) at the last token of prompt + response + end-of-sequence (`policies.reward_model`).

* Data: the prompt/chosen/rejected files ``algos.dpo`` reads (hub name or JSON/JSONL/Parquet; prompts
  as text or chat messages, responses as text or messages), tokenized by `algos.preference`. Pairs with
  an empty or whitespace-only response, or with chosen identical to rejected, teach nothing: counted,
  skipped, and the counts printed.
* Held-out split by prompt: ``heldout_fraction`` of the distinct prompts (seeded) and every pair of
  theirs are held out, so no held-out pair shares a prompt with a training pair. Held-out pairwise
  accuracy (share of pairs with r(chosen) > r(rejected)) and mean margin are measured before training,
  every ``eval_every`` steps and at the end; ``summary.json`` holds ``heldout_pair_accuracy``,
  ``heldout_reward_margin``, ``heldout_pairs``, ``train_pairs`` and the skipped counts.
* Micro-batches (`algos.microbatch`: ``micro_batch_size`` pairs / ``micro_batch_tokens`` per pass, a
  pair being 2 rows), LoRA (``lora.r``; the value head is trained in full next to the adapters, and the
  saved folder has the adapters merged), ``gradient_checkpointing``.
* ``center=true``: after training, the mean score of the training responses (chosen and rejected) is
  stored in the folder's config.json (``rlvr_reward_offset``) and subtracted whenever the model scores,
  so rewards have mean 0 on the training prompts (TRL and OpenRLHF offer the same; OpenRLHF subtracts
  a stored mean too).

Writes, in ``out=``: the model (config.json, weights, tokenizer: loadable by
``AutoModelForSequenceClassification`` and by ``env=rm env.model=OUT``), config.yaml, metrics.jsonl,
curves.png and summary.json. Left out: torchrun (one process), resume, TRL's per-pair margins and its
centring penalty (``center_rewards_coefficient``), ensembles.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
import time
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from algos import config as cfglib
from algos import microbatch
from algos.config import AT_LEAST_1, POLICY_RANGES, POSITIVE, Range
from algos.preference import Pair, load_preference_data
from policies import PolicyConfig
from policies import reward_model as rmlib
from policies.lora import LoRAConfig


@dataclasses.dataclass
class RewardModelConfig:
    REAL_MODEL_DEFAULTS: ClassVar[dict] = {"micro_batch_tokens": microbatch.REAL_MODEL_TOKENS,
                                              "gradient_checkpointing": True}
    RANGES: ClassVar[dict] = {**POLICY_RANGES, "heldout_fraction": Range(0, 1, hi_open=True), "epochs": AT_LEAST_1,
                              "batch_size": AT_LEAST_1, "lr": POSITIVE, "lora.alpha": POSITIVE,
                              "lora.dropout": Range(0, 1, hi_open=True), "adam_beta2": Range(0, 1, hi_open=True)}
    data: str | None = None
    """preference pairs: prompt/chosen/rejected rows, a hub name or local JSON/JSONL/Parquet (build them with python -m algos.preference)"""
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """the model whose body the reward model starts from (policy.model; a value head is added), its device and dtype"""
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    """train LoRA adapters (and the value head) instead of every weight (lora.r=0: full fine-tuning)"""
    out: str | None = None
    """output folder: the reward model (a Hugging Face folder) and the run's logs (default runs/reward_model-<time>)"""
    overwrite: bool = False
    """out= already holds a run: replace it"""
    heldout_fraction: float = 0.1
    """share of the distinct prompts whose pairs are held out (never trained on) to measure pairwise accuracy"""
    epochs: int = 1
    """passes over the training pairs"""
    steps: int = 0
    """stop after this many optimizer steps (0: epochs decide)"""
    batch_size: int = 16
    """pairs per optimizer step"""
    lr: float = 5e-5
    """learning rate (AdamW; warmup_steps, then lr_schedule)"""
    warmup_steps: int = 10
    """linear warmup steps"""
    lr_schedule: Literal["constant", "linear", "cosine"] = "linear"
    """after warmup: constant, linear or cosine decay to lr x lr_final_ratio at the last step"""
    lr_final_ratio: float = 0.0
    """linear/cosine: the learning rate at the end, as a share of lr"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    adam_beta2: float = 0.999
    """AdamW beta2"""
    grad_clip: float = 1.0
    """clip the gradient norm (0: off)"""
    micro_batch_size: int = 0
    """pairs per forward/backward pass (each is 2 rows), gradients accumulated (0: no limit)"""
    micro_batch_tokens: int = 0
    """tokens per forward/backward pass, padding included (0: no budget)"""
    gradient_checkpointing: bool = False
    """recompute each decoder layer in the backward pass instead of keeping its activations"""
    center: bool = False
    """store the mean score of the training responses in the folder's config (rlvr_reward_offset), subtracted when scoring: rewards with mean 0 on the training prompts"""
    eval_every: int = 0
    """also measure held-out accuracy every N steps (0: before and after training only)"""
    seed: int = 0
    """seed of the split, the data order and the value head's initialisation"""


@dataclasses.dataclass
class Split:
    train: list[Pair]
    heldout: list[Pair]
    empty: int
    identical: int


def clean_and_split(pairs: list[Pair], tok: Any, heldout_fraction: float, seed: int) -> Split:
    """Drop pairs that teach nothing (an empty or whitespace-only response; chosen == rejected), then hold
    out ``heldout_fraction`` of the distinct prompts (at least one when there are two or more prompts and
    the fraction is above 0) with all their pairs."""
    empty = identical = 0
    kept: list[Pair] = []
    for p in pairs:
        if any(not tok.decode(ids, skip_special_tokens=True).strip() for ids in (p.chosen_ids, p.rejected_ids)):
            empty += 1
        elif p.chosen_ids == p.rejected_ids:
            identical += 1
        else:
            kept.append(p)
    prompts = sorted({tuple(p.prompt_ids) for p in kept})
    random.Random(seed).shuffle(prompts)
    k = round(heldout_fraction * len(prompts))
    if heldout_fraction > 0 and len(prompts) >= 2:
        k = min(max(k, 1), len(prompts) - 1)
    held = set(prompts[:k])
    return Split([p for p in kept if tuple(p.prompt_ids) not in held], [p for p in kept if tuple(p.prompt_ids) in held],
                 empty, identical)


def pair_scores(model: Any, pairs: list[Pair], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """r(chosen), r(rejected) of each pair [n], in one forward pass of 2n rows."""
    n = len(pairs)
    s = rmlib.scores(model, [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs],
                     pad_id)
    return s[:n], s[n:]


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry's negative log-likelihood of each pair: -log sigmoid(r_c - r_r)."""
    return -F.logsigmoid(chosen - rejected)


def _lengths(pairs: list[Pair]) -> list[tuple[int, int]]:
    return [(len(p.prompt_ids), max(len(p.chosen_ids), len(p.rejected_ids))) for p in pairs]


def heldout_metrics(model: Any, pairs: list[Pair], pad_id: int, limits: microbatch.Limits) -> dict[str, float]:
    """Pairwise accuracy (r_c > r_r) and mean margin r_c - r_r on ``pairs``, without gradients."""
    if not pairs:
        return {}
    margins: list[float] = []
    was = model.training
    model.eval()
    lim = limits if limits.splits else microbatch.Limits(rows=16)
    with torch.no_grad():
        for part in microbatch.split(pairs, _lengths(pairs), lim, rows_per_unit=2, unit="pair"):
            c, r = pair_scores(model, part, pad_id)
            margins += (c - r).tolist()
    model.train(was)
    return {"heldout/pair_accuracy": sum(m > 0 for m in margins) / len(margins),
            "heldout/reward_margin": sum(margins) / len(margins)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from algos.common import lr_at, progress_bar, set_lr
    from algos.runs import Run, default_run_dir, seed_everything
    from policies import lora

    # ------------------------------------------------------------------ setup
    cfg = cfglib.parse(RewardModelConfig, argv, prog="algos.reward_model")
    if not cfg.data:
        raise cfglib.ConfigError("data= is required: prompt/chosen/rejected pairs (learned-verifier pairs from an "
                                 "environment: python -m algos.preference env=math out=pairs.jsonl)")
    microbatch.check(cfg, cfg.batch_size, "batch_size", unit="pairs")
    out = cfg.out or default_run_dir("reward_model", "data")
    if os.path.exists(os.path.join(out, "config.yaml")):
        if not cfg.overwrite:
            raise cfglib.ConfigError(f"out={out} already holds a run ({os.path.abspath(out)}); replace it with "
                                     f"overwrite=true, or choose another out=")
        import shutil

        shutil.rmtree(out)
    seed_everything(cfg.seed)
    model, tok = rmlib.from_causal_lm(cfg.policy.model, cfg.policy.device, cfg.policy.dtype)
    if cfg.lora.r:
        lora.attach(model, cfg.lora, base=cfg.policy.model)
        rmlib._head(model).requires_grad_(True)  # the value head is new: trained in full next to the adapters
    if cfg.gradient_checkpointing:
        from policies.hf import enable_activation_checkpointing

        enable_activation_checkpointing(model)
    pairs = load_preference_data(cfg.data, tok, "pairs")
    split = clean_and_split(pairs, tok, cfg.heldout_fraction, cfg.seed)
    if split.empty or split.identical:
        print(f"skipped {split.empty + split.identical} of {len(pairs)} pairs: {split.empty} with an empty response, "
              f"{split.identical} with chosen identical to rejected", file=sys.stderr)
    if not split.train:
        raise cfglib.ConfigError(f"data={cfg.data}: no pair left to train on ({len(pairs)} rows, {split.empty} empty, "
                                 f"{split.identical} identical, {len(split.heldout)} held out)")
    limits = microbatch.Limits.of(cfg)
    if cfg.micro_batch_tokens:
        longest = max(2 * (p + c) for p, c in _lengths(split.train + split.heldout))
        microbatch.check(cfg, cfg.batch_size, "batch_size", longest=longest, unit="pairs",
                         longest_what=f"the longest pair (2 rows) of data={cfg.data}:")
    run = Run("reward_model", "data", cfg, out=out)
    per_epoch = math.ceil(len(split.train) / cfg.batch_size)
    total = cfg.steps or per_epoch * cfg.epochs
    print(f"{len(split.train)} training pairs, {len(split.heldout)} held-out pairs (prompts never shared); "
          f"{total} steps", file=sys.stderr)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, cfg.adam_beta2))
    pad = tok.pad_token_id
    before = heldout_metrics(model, split.heldout, pad, limits)
    run.log(0, before)
    t_start = time.time()
    bar = progress_bar(range(total), total=total, desc="reward model")
    for step in bar:
        t0 = time.time()
        # -------------------------------------------------------------- minibatch: epoch-seeded order
        epoch, k = divmod(step, per_epoch)
        order = list(range(len(split.train)))
        random.Random(cfg.seed * 7919 + epoch).shuffle(order)
        mb = [split.train[i] for i in order[k * cfg.batch_size:(k + 1) * cfg.batch_size]]
        # -------------------------------------------------------------- loss and update, in micro-batches
        model.train()
        set_lr(opt, lr_at(cfg, cfg.lr, step, total))
        means, loss_total = microbatch.Means(), 0.0

        def loss_of(part: list[Pair]) -> torch.Tensor:
            nonlocal loss_total
            c, r = pair_scores(model, part, pad)
            loss = bt_loss(c, r).sum() / len(mb)  # this micro-batch's share of the minibatch's mean
            means.add({"train/pair_accuracy": (c > r).float().mean().item(),
                       "train/reward_margin": (c - r).mean().item(), "train/reward_chosen": c.mean().item(),
                       "train/reward_rejected": r.mean().item()}, len(part))
            loss_total += loss.item()
            return loss

        parts = microbatch.split(mb, _lengths(mb), limits, rows_per_unit=2, unit="pair")
        gn = microbatch.step(opt, model, parts, loss_of, cfg.grad_clip)
        # -------------------------------------------------------------- log
        metrics = {"loss/bradley_terry": loss_total, "train/grad_norm": gn, "train/lr": opt.param_groups[0]["lr"],
                   "train/epoch": epoch, "perf/step_seconds": time.time() - t0, **means.result()}
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < total:
            metrics.update(heldout_metrics(model, split.heldout, pad, limits))
        run.log(step + 1, metrics)
        bar.set_postfix(loss=f"{loss_total:.3f}")
    bar.close()
    # ------------------------------------------------------------------ held-out accuracy, centring, save
    after = heldout_metrics(model, split.heldout, pad, limits)
    run.log(total, after)
    wall = time.time() - t_start
    offset = 0.0
    if cfg.center:
        model.eval()
        with torch.no_grad():
            got = [pair_scores(model, part, pad) for part in
                   microbatch.split(split.train, _lengths(split.train), limits if limits.splits else microbatch.Limits(rows=16),
                                    rows_per_unit=2, unit="pair")]
        offset = float(torch.cat([torch.cat(x) for x in got]).mean())
    if lora.enabled(model):
        lora.merge(model)
    if cfg.gradient_checkpointing and hasattr(model, "gradient_checkpointing_disable"):
        model.gradient_checkpointing_disable()
    setattr(model.config, rmlib.OFFSET_KEY, offset)
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    summary = {"steps": total, "train_pairs": len(split.train), "heldout_pairs": len(split.heldout),
               "heldout_prompts": len({tuple(p.prompt_ids) for p in split.heldout}),
               "heldout_fraction": cfg.heldout_fraction, "skipped_empty": split.empty,
               "skipped_identical": split.identical,
               "heldout_pair_accuracy_before": before.get("heldout/pair_accuracy"),
               "heldout_pair_accuracy": after.get("heldout/pair_accuracy"),
               "heldout_reward_margin": after.get("heldout/reward_margin"), "reward_offset": offset,
               "wall_seconds": round(wall, 1), "model": out}
    run.write_summary(summary)
    run.plot({"accuracy": ["train/pair_accuracy", "heldout/pair_accuracy"],
              "margin": ["train/reward_margin", "heldout/reward_margin"], "loss": ["loss/bradley_terry"]},
             f"Reward model on {cfg.data} ({cfg.policy.model})")
    run.close()
    acc = after.get("heldout/pair_accuracy")
    shown = f"{before.get('heldout/pair_accuracy', float('nan')):.1%} -> {acc:.1%}" if acc is not None else "n/a (no held-out pairs)"
    print(f"held-out pairwise accuracy: {shown} ({len(split.heldout)} pairs, {wall:.0f}s); reward model in {out}")
    return summary


if __name__ == "__main__":
    from algos.common import run_main

    run_main(main)
