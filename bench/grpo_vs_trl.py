"""GRPO steps through TRL's GRPOTrainer and through algos.grpo, same model, tasks, reward, sizes.

    python bench/grpo_vs_trl.py [--steps 10] [--prompts 16] [--group 8] [--max-new-tokens 96]
    python bench/grpo_vs_trl.py --model smollm2-135m --difficulty 1 --steps 3 --prompts 4 --group 4 --lr 1e-6

Both start from the shipped cold-start checkpoint (tiny-sft), train on the same procedural math
tasks (difficulty 3, train split, in the same order), with the same reward (the environment's
weighted correctness + format), the same number of prompts, group size, completion length,
temperature, learning rate, clip range and loss (token-level, group-std advantages, beta=0).
Prints the median step time of each, completions per second, their ratio, the per-step mean
reward of each, and the held-out greedy accuracy of both models afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import envs  # noqa: E402
from algos import grpo  # noqa: E402
from algos.heldout import heldout_eval  # noqa: E402
from policies import PolicyConfig, load  # noqa: E402
from policies.hf import TransformersEngine  # noqa: E402


def run_trl(args, env) -> tuple[list[float], list[float], object, object]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    base = env.unwrapped
    tasks = base.source.tasks(args.prompts * args.steps, "train")
    ds = Dataset.from_list([{"prompt": base.prompt_of(t), "answer": t.reference} for t in tasks])

    def reward(prompts, completions, answer, **kw):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [r.reward for r in base.rubric.score(texts, answer)]

    _, model, tok = load(PolicyConfig(model=args.model))
    times: list[float] = []
    rewards: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                rewards.append(logs["reward"])

    with tempfile.TemporaryDirectory() as d:
        cfg = GRPOConfig(output_dir=d, per_device_train_batch_size=args.prompts * args.group, num_generations=args.group,
                         steps_per_generation=1, max_completion_length=args.max_new_tokens, max_steps=args.steps,
                         learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, beta=0.0,
                         temperature=args.temperature, loss_type="dapo", scale_rewards="group", epsilon=0.2,
                         epsilon_high=0.28, mask_truncated_completions=True, logging_steps=1, report_to=[],
                         save_strategy="no", use_cpu=True, seed=0, shuffle_dataset=False, top_k=0,
                         dataloader_num_workers=0, bf16=False)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds, processing_class=tok,
                              callbacks=[Timer()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
    return times, rewards, trainer.model, tok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--heldout", type=int, default=200)
    ap.add_argument("--model", default="tiny-sft", help="any policy.model (smollm2-135m: the real model)")
    ap.add_argument("--difficulty", type=int, default=3, help="procedural math difficulty (1-5)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    env = envs.make("math", difficulty=args.difficulty)

    with tempfile.TemporaryDirectory() as d:
        s = grpo.main([f"policy.model={args.model}", f"env.difficulty={args.difficulty}", f"steps={args.steps}",
                       f"prompts_per_step={args.prompts}", f"group_size={args.group}",
                       f"max_new_tokens={args.max_new_tokens}", f"lr={args.lr}", "warmup_steps=0",
                       f"temperature={args.temperature}", f"heldout_size={args.heldout}", f"out={d}", "samples_every=0",
                       "save_every=0"])
        rows = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl"))]
    ours_t = [r["perf/step_seconds"] for r in rows if "perf/step_seconds" in r]
    ours_r = [r["reward/mean"] for r in rows if "reward/mean" in r]

    trl_t, trl_r, trl_model, tok = run_trl(args, env)
    trl_acc = heldout_eval(TransformersEngine(trl_model, tok), env, args.heldout, args.max_new_tokens)["accuracy"]

    n = args.prompts * args.group
    mo, mt = statistics.median(ours_t), statistics.median(trl_t)
    print(f"\nsame model ({args.model}), tasks (math, difficulty {args.difficulty}), reward, {args.prompts} prompts x {args.group} completions, "
          f"max {args.max_new_tokens} new tokens, {args.steps} steps, lr {args.lr}, temperature {args.temperature}")
    print(f"  {'':22s} {'median step s':>14s} {'completions/s':>14s}")
    print(f"  {'algos.grpo':22s} {mo:14.2f} {n / mo:14.1f}")
    print(f"  {'TRL GRPOTrainer':22s} {mt:14.2f} {n / mt:14.1f}")
    print(f"  throughput ratio ours/TRL: {mt / mo:.2f}x   (target >= 2x)")
    print(f"  mean reward per step, ours: {' '.join(f'{x:.2f}' for x in ours_r)}")
    print(f"  mean reward per step, TRL:  {' '.join(f'{x:.2f}' for x in trl_r)}")
    print(f"  held-out greedy accuracy after ({args.heldout} tasks): ours {s['heldout_accuracy_after']:.1%}, "
          f"TRL {trl_acc:.1%} (before: {s['heldout_accuracy_before']:.1%})")


if __name__ == "__main__":
    main()
