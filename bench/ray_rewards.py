"""HumanEval's 164 canonical solutions scored through the local pool and through 1 and 2 Ray actors.

    python bench/ray_rewards.py [--repeats 3] [--address ADDR]

Every path runs the same environment's ``score_batch`` (Docker sandbox): locally in this
process's pool, or in Ray actors with a pool each (``reward_workers=ray``). Prints the median
wall time of each, solutions/s, the ratio to the local pool, and whether the verdicts agree.
On one 2-core machine the actors share the cores with the local daemon; the point of actors is
more machines (``--address`` of a cluster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--address", default=None)
    args = ap.parse_args()
    import ray

    import envs
    from envs.ray_scoring import RayScorer

    base = envs.make("humaneval").unwrapped
    tasks = base.tasks(164, "heldout")
    completions = [base.gold_completion(t) for t in tasks]
    base.score_batch(completions[:8], tasks[:8])  # warm the local pool

    def timed(fn):
        times, out = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn(completions, tasks)
            times.append(time.perf_counter() - t0)
        return statistics.median(times), out

    rows = [("local pool", *timed(base.score_batch))]
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False,
             **({} if args.address else {"num_cpus": 2}))
    for n in (1, 2):
        scorer = RayScorer("humaneval", {}, actors=n)
        scorer.score_batch(completions[:8], tasks[:8])  # warm the actors' pools
        rows.append((f"Ray, {n} actor{'s' if n > 1 else ''}", *timed(scorer.score_batch)))
        scorer.close()
    ref = [(r.reward, r.verdicts["correct"].status) for r in rows[0][2]]
    print(f"\nHumanEval, 164 canonical solutions, median of {args.repeats}\n")
    print("| path | seconds | solutions/s | vs local pool | correct | verdicts as local |\n| --- | --- | --- | --- | --- | --- |")
    for name, sec, out in rows:
        same = [(r.reward, r.verdicts["correct"].status) for r in out] == ref
        print(f"| {name} | {sec:.2f} | {164 / sec:.0f} | {rows[0][1] / sec:.2f}x | "
              f"{sum(r.reward == 1.0 for r in out)}/164 | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
