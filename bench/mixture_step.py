"""What a mixed GRPO step costs next to the single-environment steps it mixes (issue 29's target: a
mixed step costs at most 1.1x the weighted mean of the single-environment steps).

    python bench/mixture_step.py [--steps 5] [--reps 2] [--weights 0.7,0.3] [--prompts 16]

In one process, on the built-in tiny model: GRPO runs of ``--steps`` steps on math alone, on IFEval's
training constraints alone (``../shared/data/ifeval``) and on the mixture ``env=[math,ifeval]``
with ``--weights``, interleaved ``--reps`` times; lr=1e-12 keeps the policy as it starts, so every run
samples from the same model. Per setting, the ``perf/step_seconds`` of every run's steps after the
first (the first pays for warm-up), pooled: their median, and the lowest run mean (the least disturbed
by other load on the machine). Prints each, the weighted mean of the single-environment steps and the
ratio mixed / weighted mean, for both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

IFEVAL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "ifeval")


def step_seconds(argv: list[str]) -> list[float]:
    from algos import grpo

    with tempfile.TemporaryDirectory() as d:
        grpo.main(argv + [f"out={d}/run"])
        rows = [json.loads(x) for x in open(os.path.join(d, "run", "metrics.jsonl"))]
    secs = [r["perf/step_seconds"] for r in rows if "perf/step_seconds" in r]
    return secs[1:] or secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--weights", default="0.7,0.3")
    ap.add_argument("--prompts", type=int, default=16)
    a = ap.parse_args()
    w = [float(x) for x in a.weights.split(",")]
    common = [f"steps={a.steps}", f"prompts_per_step={a.prompts}", "group_size=4", "max_new_tokens=48", "heldout_size=1",
              "lr=1e-12", "warmup_steps=0", "samples_every=0", "save_every=1000", "temperature=1.0"]
    runs = {"math": ["env=math"], "ifeval": ["env=ifeval", f"env.path={IFEVAL}"],
            "mixed": ["env=[math,ifeval]", f"env.weights=[{a.weights}]", f"env.ifeval.path={IFEVAL}"]}
    times: dict[str, list[list[float]]] = {k: [] for k in runs}
    for _ in range(a.reps):
        for name, argv in runs.items():
            times[name].append(step_seconds(common + argv))
    for label, stat in (("median step", lambda v: statistics.median(x for run in v for x in run)),
                        ("lowest run mean", lambda v: min(statistics.mean(run) for run in v))):
        med = {k: stat(v) for k, v in times.items()}
        mean = w[0] * med["math"] + w[1] * med["ifeval"]
        print(f"{label}: " + ", ".join(f"{k} {med[k]:.3f} s" for k in runs) +
              f"; weighted mean of single-environment steps ({a.weights}) {mean:.3f} s; "
              f"mixed / weighted mean {med['mixed'] / mean:.3f}x (target <= 1.1x)")
    for k, v in times.items():
        print(f"{k:>7} steps: " + " | ".join(", ".join(f"{x:.2f}" for x in run) for run in v))

if __name__ == "__main__":
    main()
