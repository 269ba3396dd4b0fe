"""GRPO against a generation server: synchronous steps vs one step off-policy (max_off_policy_steps=1).

    python bench/async_grpo.py [--model tiny-sft] [--steps 8] [--prompts 16] [--group 8] [--max-new-tokens 96]

Starts ``python -m policies serve`` (a separate process, its own CPU threads) and runs the same
GRPO twice against a fresh server: synchronous (generation, then update, then the weight push)
and one step off-policy (the next step's generation runs on the server while the trainer
updates). Prints steps per minute of each (median step time; the first step, with nothing to
overlap, is left out), their ratio, and the held-out accuracy after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(model: str, threads: int) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=ROOT)
    p = subprocess.Popen([sys.executable, "-c", f"import torch; torch.set_num_threads({threads}); "
                          "import sys; sys.argv = ['policies', 'serve', 'port=0', 'policy.model=" + model + "']; "
                          "from policies.__main__ import main; main()"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.search(r"at (http://\S+/v1)", line)
        if m:
            return p, m.group(1)
        if p.poll() is not None:
            break
    raise RuntimeError("the server did not start")


def run(mode: str, args: argparse.Namespace) -> dict:
    server, url = start_server(args.model, args.server_threads)
    try:
        with tempfile.TemporaryDirectory() as d:
            cmd = [sys.executable, "-m", "algos.grpo", f"policy.model={args.model}", "policy.engine=server",
                   f"policy.base_url={url}", f"steps={args.steps}", f"prompts_per_step={args.prompts}",
                   f"group_size={args.group}", f"max_new_tokens={args.max_new_tokens}", f"heldout_size={args.heldout}",
                   "temperature=1.0", f"max_off_policy_steps={1 if mode == 'async' else 0}", f"out={d}"]
            env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS=str(args.trainer_threads))
            t0 = time.time()
            subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
            wall = time.time() - t0
            rows = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl")) if "perf/step_seconds" in x]
            summary = json.load(open(os.path.join(d, "summary.json")))
    finally:
        server.kill()
        server.wait()
    steps = [r["perf/step_seconds"] for r in rows][1:]
    return {"median_step": statistics.median(steps), "wall": wall, "acc_after": summary["heldout_accuracy_after"],
            "acc_before": summary["heldout_accuracy_before"],
            "staleness": statistics.mean(r.get("rollout/staleness", 0.0) for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny-sft")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--server-threads", type=int, default=1)
    ap.add_argument("--trainer-threads", type=int, default=1)
    args = ap.parse_args()
    res = {m: run(m, args) for m in ("sync", "async")}
    print(f"\nGRPO against python -m policies serve ({args.model}; {args.steps} steps of {args.prompts} x {args.group}, "
          f"{args.max_new_tokens} new tokens; server {args.server_threads} thread(s), trainer {args.trainer_threads})")
    print("| mode | median step (s) | steps/min | staleness | held-out before -> after |\n| --- | --- | --- | --- | --- |")
    for m, r in res.items():
        print(f"| {m} | {r['median_step']:.2f} | {60 / r['median_step']:.1f} | {r['staleness']:.2f} | "
              f"{r['acc_before']:.1%} -> {r['acc_after']:.1%} |")
    print(f"\nsteps per minute, one step off-policy / synchronous: {res['sync']['median_step'] / res['async']['median_step']:.2f}x")


if __name__ == "__main__":
    main()
