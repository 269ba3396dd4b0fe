"""Reward-model over-optimisation, measured (issue 25 #5; Gao, Schulman and Hilton 2022, "Scaling laws
for reward model overoptimization"): RL against a learned verifier, with the true verifier watching.

    python bench/rm_overoptimisation.py [--policy tiny-sft] [--env math] [--env-opt difficulty=2]
        [--pair-tasks 512] [--steps 40] [--beta 0.001] [--out runs/overopt] [--grpo KEY=VALUE ...]

1. Pairs from the policy itself (`algos.preference`): for each of ``--pair-tasks`` training tasks,
   ``--samples`` completions scored by the environment's verifier; the best and the worst by reward
   make a pair (ties skipped): the learned verifier's data, correct (chosen) vs wrong (rejected).
2. A reward model on them (`algos.reward_model`, its defaults: 10% of the prompts held out, none shared
   with training pairs) on ``--rm-model`` (the policy's model by default): its held-out pairwise accuracy.
3. GRPO from the same policy against the reward model alone (``env=rm env.tasks_from=ENV``,
   ``verifier_weight=0``): the reward is the proxy; the environment's verifier is still run on every
   sample and on the greedy held-out tasks (``eval_every``), never rewarded. ``--beta`` is small: it is
   there so the run logs the KL to the starting model (``loss/kl``: the per-token k3 estimate on each
   step's samples), not to hold the policy back.

Writes, in ``--out``: pairs.jsonl, rm/, grpo/, overoptimisation.json (per step: KL, proxy reward and
true accuracy on the step's samples; per evaluation: greedy held-out proxy and true accuracy) and
overoptimisation.png (proxy and true against KL, as Gao et al. plot them, and against the step).
Prints the reward model's accuracy, true accuracy at the start, at its peak and at the end, the proxy
at the same points, and whether the true score turned down while the proxy kept rising (the
over-optimisation point). The README's figures: SmolLM2-135M, see "Reward models and judges".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def smooth(xs: list[float], k: int = 5) -> list[float]:
    """Centred running mean over up to ``k`` points (fewer at the ends)."""
    h = k // 2
    return [statistics.fmean(xs[max(0, i - h):i + h + 1]) for i in range(len(xs))]


def analyse(rows: list[dict]) -> dict:
    """Per-step and per-evaluation series from a GRPO run's metrics.jsonl rows, and the over-optimisation
    point: where the true score peaks (greedy held-out accuracy when evaluated at 2 points or more, else the
    smoothed accuracy of the step's samples), and whether after it the true score fell while the proxy rose."""
    steps = [r for r in rows if "reward/rm" in r and "step" in r]
    if not steps:
        raise SystemExit("no GRPO step rows with reward/rm in metrics.jsonl: was the run env=rm?")
    series = {"step": [r["step"] for r in steps], "kl": [r.get("loss/kl", float("nan")) for r in steps],
              "proxy": [r["reward/rm"] for r in steps], "true": [r["train/accuracy"] for r in steps]}
    evals = [r for r in rows if "eval/accuracy" in r and "step" in r]
    kl_at = dict(zip(series["step"], series["kl"]))
    ev = {"step": [r["step"] for r in evals], "kl": [kl_at.get(r["step"], 0.0 if r["step"] == 0 else float("nan")) for r in evals],
          "proxy": [r["eval/mean_reward"] for r in evals], "true": [r["eval/accuracy"] for r in evals]}
    if len(ev["step"]) >= 2:
        src, true, proxy, idx = "greedy held-out", ev["true"], ev["proxy"], ev["step"]
    else:
        src, true, proxy, idx = "step samples, smoothed", smooth(series["true"]), smooth(series["proxy"]), series["step"]
    peak = max(range(len(true)), key=lambda i: true[i])
    out = {"series": series, "eval": ev, "true_from": src,
           "start": {"step": idx[0], "true": true[0], "proxy": proxy[0]},
           "peak": {"step": idx[peak], "true": true[peak], "proxy": proxy[peak]},
           "end": {"step": idx[-1], "true": true[-1], "proxy": proxy[-1]}}
    out["overoptimised"] = bool(peak < len(true) - 1 and true[-1] < true[peak] and proxy[-1] > proxy[peak])
    return out


def plot(a: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, ev = a["series"], a["eval"]
    # the per-step KL estimate is noisy: smoothed, then its running maximum, so the KL axis runs forward with training
    kl, run = [], 0.0
    for x in smooth([0.0 if math.isnan(v) else v for v in s["kl"]]):
        run = max(run, x)
        kl.append(run)
    kl_at = dict(zip(s["step"], kl))
    kl_ev = [kl_at.get(st, 0.0) for st in ev["step"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, x, xe, xl in ((axes[0], kl, kl_ev, "KL to the start (nats/token; smoothed, running max)"),
                          (axes[1], s["step"], ev["step"], "GRPO step")):
        ax.plot(x, smooth(s["proxy"]), color="tab:orange", label="proxy: reward model (samples, smoothed)")
        ax.plot(x, smooth(s["true"]), color="tab:blue", label="true: verifier accuracy (samples, smoothed)")
        ax.scatter(x, s["proxy"], color="tab:orange", s=6, alpha=0.3)
        ax.scatter(x, s["true"], color="tab:blue", s=6, alpha=0.3)
        if ev["step"]:
            ax.plot(xe, ev["proxy"], "s--", color="tab:red", ms=4, label="proxy, greedy held-out")
            ax.plot(xe, ev["true"], "o--", color="tab:green", ms=4, label="true accuracy, greedy held-out")
        ax.set_xlabel(xl)
        ax.grid(alpha=0.3)
    peak = a["peak"]["step"]
    axes[1].axvline(peak, color="gray", ls=":", lw=1)
    axes[1].annotate(f"true peak (step {peak})", (peak, 0.02), fontsize=8, color="gray")
    axes[0].set_ylabel("reward / accuracy")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="tiny-sft", help="the policy: tiny-sft, smollm2-135m, a checkpoint folder")
    ap.add_argument("--rm-model", default=None, help="the reward model's base (default: --policy)")
    ap.add_argument("--env", default="math")
    ap.add_argument("--env-opt", action="append", default=[], help="an environment option KEY=VALUE (repeatable)")
    ap.add_argument("--pair-tasks", type=int, default=512)
    ap.add_argument("--samples", type=int, default=4, help="completions per task when building pairs")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--rm", action="append", default=[], help="an algos.reward_model key KEY=VALUE (repeatable)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--prompts", type=int, default=8, help="GRPO prompts per step")
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--lr", type=float, default=None, help="GRPO lr (default: the module's for the model)")
    ap.add_argument("--beta", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--grpo", action="append", default=[], help="another algos.grpo key KEY=VALUE (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join("runs", f"overopt-{time.strftime('%Y%m%d-%H%M%S')}"))
    args = ap.parse_args(argv)

    from algos import grpo, preference, reward_model

    os.makedirs(args.out, exist_ok=True)
    env_opts = [f"env.{o}" for o in args.env_opt]
    pairs, rm_dir, grpo_dir = (os.path.join(args.out, n) for n in ("pairs.jsonl", "rm", "grpo"))
    t0 = time.time()
    preference.build_main([f"env={args.env}", *env_opts, f"policy.model={args.policy}", f"tasks={args.pair_tasks}",
                     f"samples_per_task={args.samples}", f"max_new_tokens={args.max_new_tokens}", f"seed={args.seed}",
                     f"out={pairs}"])
    n_pairs = sum(1 for _ in open(pairs))
    t_pairs = time.time() - t0
    t0 = time.time()
    rm = reward_model.main([f"data={pairs}", f"policy.model={args.rm_model or args.policy}", f"seed={args.seed}",
                            f"out={rm_dir}", "overwrite=true", *args.rm])
    t_rm = time.time() - t0
    t0 = time.time()
    # the environment's options go to the inner environment (env.tasks_from's), as env=rm passes them on
    grpo.main(["env=rm", f"env.model={rm_dir}", f"env.tasks_from={args.env}", *env_opts, f"policy.model={args.policy}",
               f"steps={args.steps}", f"prompts_per_step={args.prompts}", f"group_size={args.group}", f"beta={args.beta}",
               f"eval_every={args.eval_every}", f"heldout_size={args.heldout}", f"max_new_tokens={args.max_new_tokens}",
               f"seed={args.seed}", f"out={grpo_dir}", "overwrite=true", *([f"lr={args.lr}"] if args.lr else []), *args.grpo])
    t_grpo = time.time() - t0
    rows = [json.loads(x) for x in open(os.path.join(grpo_dir, "metrics.jsonl"))]
    a = analyse(rows)
    a.update({"policy": args.policy, "rm_model": args.rm_model or args.policy, "env": args.env, "env_opts": args.env_opt,
              "pairs": n_pairs, "rm_heldout_pair_accuracy": rm["heldout_pair_accuracy"], "rm_heldout_pairs": rm["heldout_pairs"],
              "seconds": {"pairs": round(t_pairs, 1), "reward_model": round(t_rm, 1), "grpo": round(t_grpo, 1)}})
    with open(os.path.join(args.out, "overoptimisation.json"), "w") as f:
        json.dump(a, f, indent=1)
    title = (f"{args.policy} on {args.env} {' '.join(args.env_opt)}: GRPO against a learned verifier "
             f"(held-out pair accuracy {rm['heldout_pair_accuracy']:.1%} on {rm['heldout_pairs']} pairs)")
    plot(a, os.path.join(args.out, "overoptimisation.png"), title)
    se = lambda p, n: math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))  # noqa: E731
    print(f"pairs: {n_pairs} from {args.pair_tasks} tasks x {args.samples} ({t_pairs:.0f} s); reward model: held-out "
          f"pair accuracy {rm['heldout_pair_accuracy']:.1%} on {rm['heldout_pairs']} pairs ({t_rm:.0f} s); GRPO {args.steps} "
          f"steps ({t_grpo:.0f} s)")
    print(f"true accuracy ({a['true_from']}" + (f", {args.heldout} tasks, se ~{se(a['start']['true'], args.heldout):.3f}"
                                                if a['true_from'].startswith('greedy') else "") + "):")
    for k in ("start", "peak", "end"):
        print(f"  {k:5s} step {a[k]['step']:4d}: true {a[k]['true']:.3f}  proxy {a[k]['proxy']:.3f}")
    kl = [x for x in a["series"]["kl"] if not math.isnan(x)]
    print(f"KL to the start at the last step: {kl[-1]:.4f} nats/token" if kl else "KL: not logged (beta=0)")
    print("over-optimised: the true score fell after its peak while the proxy rose" if a["overoptimised"] else
          "not over-optimised within this run: the true score did not fall after its peak while the proxy rose")
    print(f"wrote {os.path.join(args.out, 'overoptimisation.png')} and overoptimisation.json")
    return a


if __name__ == "__main__":
    main()
