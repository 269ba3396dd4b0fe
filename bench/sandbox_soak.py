"""Soak: many mixed jobs through one warm pool; every job must get its verdict, nothing may be left.

    python bench/sandbox_soak.py [--jobs 10000] [--workers 4] [--timeout 1] [--image NAME]

The mix (by job index): passes, assertion failures, exceptions, hard exits (``os._exit``),
crashes that kill the job (SIGKILL to itself), memory bombs, infinite loops (timeouts) and output
floods (over the output cap), each with the verdict it must get. Prints, next to the numbers the
run must meet: jobs with the expected verdict, jobs with none, containers and processes left
after ``close()``, and the calling process's resident memory after the first tenth and at the end
(flat means no growth with the job count), with throughput and container replacements.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox import Job, Sandbox  # noqa: E402
from sandbox.core import LABEL, list_ours  # noqa: E402

KINDS = [  # (name, share in 1000, program, tests, expected status)
    ("pass", 700, "def f(x):\n    return x + 1\n", ("assert f(1) == 2", "assert f(2) == 3"), "passed"),
    ("fail", 150, "def f(x):\n    return x\n", ("assert f(1) == 2",), "failed"),
    ("exception", 60, "def f(x):\n    raise ValueError(x)\n", ("assert f(1) == 2",), "failed"),
    ("exit", 30, "import os\nos._exit(0)\n", ("assert True",), "failed"),
    ("killed", 20, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", ("assert True",), "oom"),
    ("memory", 15, "x = bytearray(4 * 1024 ** 3)\n", ("assert True",), "oom"),
    ("timeout", 15, "while True:\n    pass\n", ("assert True",), "timeout"),
    ("flood", 10, "import sys\nsys.stdout.write('x' * (8 << 20))\n", ("assert True",), "failed"),
]


def kind_of(i: int) -> tuple:
    k = (i * 7919) % 1000  # spread the kinds over the run
    for kind in KINDS:
        if k < kind[1]:
            return kind
        k -= kind[1]
    return KINDS[0]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def children() -> int:
    me = str(os.getpid())
    n = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                n += f.read().rsplit(")", 1)[1].split()[1] == me
        except OSError:
            pass
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--image", default=None)
    args = ap.parse_args()
    import docker

    client = docker.from_env()
    jobs = [(kind_of(i), Job(kind_of(i)[2], kind_of(i)[3])) for i in range(args.jobs)]
    print(f"{args.jobs} jobs, pool of {args.workers}, timeout {args.timeout} s, mix: " +
          ", ".join(f"{k[0]} {k[1] / 10:g}%" for k in KINDS))
    t0 = time.perf_counter()
    sb = Sandbox("docker", image=args.image, workers=args.workers, timeout=args.timeout, memory_mb=256,
                 max_output=1 << 20)
    pool = sb.pool_id
    got: list = []
    rss = []
    chunk = max(args.jobs // 10, 1)
    for lo in range(0, args.jobs, chunk):
        got += [r.status for r in sb.run_many([j for _, j in jobs[lo:lo + chunk]])]  # keep verdicts, not outputs
        rss.append(rss_mb())
        print(f"  {len(got):6d} jobs  {time.perf_counter() - t0:7.1f} s  rss {rss[-1]:6.1f} MB  "
              f"replaced {sb.replaced}", flush=True)
    wall = time.perf_counter() - t0
    replaced = sb.replaced
    sb.close()
    left = len(list_ours(client, f"{LABEL}.pool={pool}"))
    procs = children()
    by_kind: dict = collections.defaultdict(collections.Counter)
    wrong = 0
    for (kind, _), status in zip(jobs, got):
        by_kind[kind[0]][status] += 1
        wrong += status != kind[4]
    print("\nverdicts by kind (expected status first):")
    for kind in KINDS:
        c = by_kind[kind[0]]
        print(f"  {kind[0]:10s} expected {kind[4]:8s} got " + ", ".join(f"{s} {n}" for s, n in c.most_common()))
    print(f"\njobs with a verdict    {len(got)} / {args.jobs}   (target: all)")
    print(f"unexpected verdicts    {wrong}   (target: 0)")
    print(f"containers left        {left}   (target: 0)")
    print(f"child processes left   {procs}   (target: 0)")
    print(f"caller RSS             {rss[0]:.1f} MB after {chunk} jobs -> {rss[-1]:.1f} MB after {len(got)} "
          f"({rss[-1] - rss[0]:+.1f} MB; target: flat, within a few MB)")
    print(f"throughput             {len(got) / wall:.0f} jobs/s over {wall:.0f} s; {replaced} container replacements")


if __name__ == "__main__":
    main()
