"""Load on the generation server (`python -m policies serve`): N concurrent clients with mixed long
and short requests, against one in-process `generate` call per kind on the same work, same run.

    python bench/server_load.py [--model tiny-sft] [--clients 8] [--requests 48] [--long-share 0.25]

Phase 1 (throughput): ``--requests`` requests, a ``--long-share`` of them long (``--long-n``
samples of ``--long-tokens`` at temperature 1), the rest short (greedy, ``--short-tokens``), sent
by ``--clients`` threads; prints completion tokens/s, and the latency p50/p99 of all, short and
long requests. The baseline is the same work as two `TransformersEngine.generate` calls in this
process (all long prompts in one call, all short ones in another), after the server's phase
(the server is idle then); the ratio is server tokens/s over that.

Phase 2 (head-of-line blocking): ``--probes`` short requests one after another, first on an idle
server, then while a long request (``--hog-n`` rows of ``--hog-tokens`` at temperature 2, which
rarely ends early) is in flight, resent as soon as it ends; prints the short requests' p50/p99
in each case and the ratio of the p99s (target: at most 2x). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * len(xs) + 0.5)) - 1))]


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RLVR_API_KEY", None)
    p = subprocess.Popen([sys.executable, "-m", "policies", "serve", f"policy.model={model}", "port=0", "batch_wait_ms=5",
                          "read_timeout=600"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"at (http://\S+/v1)", line)
    if not m:
        p.kill()
        raise SystemExit(f"error: the server did not start: {line!r}")
    return p, m.group(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny-sft")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--long-share", type=float, default=0.25)
    ap.add_argument("--long-n", type=int, default=8)
    ap.add_argument("--long-tokens", type=int, default=128)
    ap.add_argument("--short-tokens", type=int, default=8)
    ap.add_argument("--probes", type=int, default=30)
    ap.add_argument("--hog-n", type=int, default=32)
    ap.add_argument("--hog-tokens", type=int, default=256)
    args = ap.parse_args()

    from policies import PolicyConfig, SamplingParams, load

    prompts = [f"{11 + i}+{37 + 3 * i}=" for i in range(args.requests)]
    n_long = round(args.requests * args.long_share)
    long_p = SamplingParams(n=args.long_n, temperature=1.0, max_new_tokens=args.long_tokens, seed=0)
    short_p = SamplingParams(temperature=0, max_new_tokens=args.short_tokens)
    work = [(p, long_p if i < n_long else short_p) for i, p in enumerate(prompts)]
    order = sorted(range(len(work)), key=lambda i: (i * 7919) % len(work))  # long and short mixed in arrival order

    proc, url = start_server(args.model)
    try:
        def send(prompt: str, sp: SamplingParams) -> tuple[float, int]:
            body = {"model": args.model, "prompt": prompt, "n": sp.n, "temperature": sp.temperature,
                    "max_tokens": sp.max_new_tokens, "seed": sp.seed}
            t0 = time.perf_counter()
            r = requests.post(url + "/completions", json=body, timeout=600)
            r.raise_for_status()
            return time.perf_counter() - t0, r.json()["usage"]["completion_tokens"]

        send("1+1=", short_p)  # warm up
        lat: dict[int, float] = {}
        toks: dict[int, int] = {}
        queue = list(order)
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop(0)
                lat[i], toks[i] = send(*work[i])

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        served_tps = sum(toks.values()) / wall
        short_lat = [lat[i] for i in lat if work[i][1] is short_p]
        long_lat = [lat[i] for i in lat if work[i][1] is long_p]

        # phase 2: short requests alone, then with a long request in flight
        def probes() -> list[float]:
            return [send("12+30=", short_p)[0] for _ in range(args.probes)]

        alone = probes()
        stop = threading.Event()
        hog = SamplingParams(n=args.hog_n, temperature=2.0, max_new_tokens=args.hog_tokens, seed=1)
        hogs = [0]

        def hogger() -> None:
            while not stop.is_set():
                send("zq#@!", hog)
                hogs[0] += 1

        h = threading.Thread(target=hogger)
        h.start()
        time.sleep(0.5)
        loaded = probes()
        stop.set()
        h.join()
    finally:
        proc.kill()
        proc.wait()

    # the baseline: the same work through one generate call per kind, in this process
    engine, _, _ = load(PolicyConfig(model=args.model))
    engine.generate(["1+1="], short_p)
    t0 = time.perf_counter()
    base_toks = 0
    for sp in (long_p, short_p):
        out = engine.generate([p for p, q in work if q is sp], sp)
        base_toks += sum(len(r.completion_ids) for g in out for r in g)
    base_wall = time.perf_counter() - t0
    base_tps = base_toks / base_wall

    ratio_p99 = pct(loaded, 99) / pct(alone, 99)
    print(f"model {args.model}: {args.requests} requests ({n_long} long: n={args.long_n} x {args.long_tokens} tokens; "
          f"{args.requests - n_long} short: greedy, {args.short_tokens} tokens) by {args.clients} clients")
    print(f"  server:   {sum(toks.values())} tokens in {wall:.2f} s = {served_tps:,.0f} tokens/s; latency p50/p99 "
          f"all {pct(list(lat.values()), 50):.3f}/{pct(list(lat.values()), 99):.3f} s, short "
          f"{pct(short_lat, 50):.3f}/{pct(short_lat, 99):.3f} s, long {pct(long_lat, 50):.3f}/{pct(long_lat, 99):.3f} s")
    print(f"  generate: {base_toks} tokens in {base_wall:.2f} s = {base_tps:,.0f} tokens/s (one call per kind, in process)"
          f"; server / generate = {served_tps / base_tps:.2f}x")
    print(f"  short requests ({args.probes}, one at a time): alone p50/p99 {pct(alone, 50) * 1e3:.1f}/"
          f"{pct(alone, 99) * 1e3:.1f} ms; with a long request in flight (n={args.hog_n} x {args.hog_tokens} tokens, "
          f"{hogs[0]} sent) {pct(loaded, 50) * 1e3:.1f}/{pct(loaded, 99) * 1e3:.1f} ms: p99 {ratio_p99:.2f}x "
          f"(target <= 2x: {'met' if ratio_p99 <= 2 else 'not met'})")
    print(json.dumps({"model": args.model, "server_tokens_per_s": served_tps, "generate_tokens_per_s": base_tps,
                      "ratio": served_tps / base_tps, "p50_s": pct(list(lat.values()), 50),
                      "p99_s": pct(list(lat.values()), 99), "short_p99_alone_s": pct(alone, 99),
                      "short_p99_loaded_s": pct(loaded, 99), "short_p99_ratio": ratio_p99}))


if __name__ == "__main__":
    main()
