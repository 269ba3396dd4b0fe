"""DPO steps through TRL's DPOTrainer and through algos.dpo (loss=dpo), same model, data, settings.

    python bench/dpo_vs_trl.py [--pairs 512] [--batch 32] [--steps 16]

Builds a preference file from the shipped cold start's own samples (`python -m algos.preference`),
then trains the same starting checkpoint (tiny-sft) on the same pairs in the same order (no
shuffling on either side), with the same loss (sigmoid DPO, beta 0.1, summed logprobs against the
frozen starting weights), optimizer (AdamW, betas 0.9/0.99, no weight decay), constant learning
rate, no warmup and gradient clipping at 1. Prints the median step time of each, their ratio,
and the loss of each at the first and last step (the first is log 2 for both: policy = reference).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from algos import dpo, preference  # noqa: E402
from policies import PolicyConfig, load  # noqa: E402


def run_trl(args, path: str) -> tuple[list[float], list[float]]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    _, model, tok = load(PolicyConfig(model="tiny-sft"))
    rows = [json.loads(x) for x in open(path)]
    # the same tokens our loader makes: the chat-templated prompt text, then response + EOS
    ds = Dataset.from_list([{"prompt": tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
                             "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    times: list[float] = []
    losses: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    class InOrder(DPOTrainer):  # file order, like algos.dpo shuffle=false
        def _get_train_sampler(self, *a, **k):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    with tempfile.TemporaryDirectory() as d:
        cfg = DPOConfig(output_dir=d, per_device_train_batch_size=args.batch, max_steps=args.steps, learning_rate=args.lr,
                        lr_scheduler_type="constant", warmup_steps=0, beta=0.1, loss_type=["sigmoid"],
                        adam_beta2=0.99, weight_decay=0.0, max_grad_norm=1.0, logging_steps=1, report_to=[],
                        save_strategy="no", use_cpu=True, seed=0, dataloader_num_workers=0, bf16=False,
                        max_length=None)
        trainer = InOrder(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[Timer()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
    return times, losses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs-from-tasks", type=int, default=1024, help="tasks sampled to build the preference file")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "prefs.jsonl")
        built = preference.build_main([f"out={path}", f"tasks={args.pairs_from_tasks}", "samples_per_task=8"])
        if built["rows"] < args.batch * args.steps:
            print(f"note: {built['rows']} pairs for {args.steps} steps of {args.batch}: the data repeats", file=sys.stderr)
        out = os.path.join(d, "run")
        dpo.main([f"data={path}", "loss=dpo", "beta=0.1", f"batch_size={args.batch}", f"steps={args.steps}",
                  "epochs=100", "shuffle=false", f"lr={args.lr}", "warmup_steps=0", "adam_beta2=0.99",
                  "weight_decay=0", "grad_clip=1.0", "env=", f"out={out}", "save_every=0"])
        rows = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
        ours_l = [r["loss/dpo"] for r in rows if "loss/dpo" in r]
        ours_t = [r["perf/step_seconds"] for r in rows if "perf/step_seconds" in r]
        trl_t, trl_l = run_trl(args, path)
    mo, mt = statistics.median(ours_t), statistics.median(trl_t)
    print(f"\nsame model (tiny-sft), {built['rows']} pairs from its own samples, batch {args.batch}, {args.steps} steps, "
          f"lr {args.lr}, beta 0.1, same order")
    print(f"  {'':18s} {'median step s':>14s} {'pairs/s':>10s} {'loss step 1':>12s} {'loss last':>10s}")
    print(f"  {'algos.dpo':18s} {mo:14.3f} {args.batch / mo:10.1f} {ours_l[0]:12.5f} {ours_l[-1]:10.5f}")
    print(f"  {'TRL DPOTrainer':18s} {mt:14.3f} {args.batch / mt:10.1f} {trl_l[0]:12.5f} {trl_l[-1]:10.5f}")
    print(f"  speed ratio ours/TRL: {mt / mo:.2f}x; log 2 = {math.log(2):.5f}; "
          f"largest per-step loss difference: {max(abs(a - b) for a, b in zip(ours_l, trl_l)):.5f}")


if __name__ == "__main__":
    main()
