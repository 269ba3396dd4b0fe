"""Math verifier against math-verify, side by side, in one process.

    python bench/verify_math.py [--timeout 2] [--workers N] [--styles-limit 1319]

Prints (1) accuracy on ../shared/bench/math_equivalence/cases.jsonl with every case where
we and math-verify differ, and why; (2) throughput on GSM8K's test golds written as
completions in several styles, each also perturbed (must be judged wrong), and on the
equivalence cases; (3) how long math-verify's issue #65 input takes to come back as
``timeout``. Both sides are warmed up on other inputs first; each measured pass sees its
inputs for the first time. Our hard timeouts are on throughout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from math_verify import parse, verify  # noqa: E402

from envs.math_dataset import parse_gsm8k  # noqa: E402
from verifiers.math import MathVerifier  # noqa: E402

SHARED = os.environ.get("RLVR_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
CASES = os.path.join(SHARED, "bench", "math_equivalence", "cases.jsonl")
GSM8K_TEST = os.path.join(SHARED, "data", "gsm8k", "test.jsonl")
ISSUE_65 = r"\boxed{\dfrac{5^{(5^{(5^{(5^5)})}-4)}-5}{16}}"
WARMUP = [("\\boxed{\\frac{1}{2}}", "0.5"), ("$x^2+1$", "x^2+1"), ("\\boxed{(1,2)}", "(1,2)"), ("$[0,1)$", "[0,1)"),
          ("\\boxed{\\sqrt{2}}", "\\sqrt{2}"), ("x = 3", "3"), ("\\boxed{10\\%}", "10\\%")] * 3


def mv_check(pred: str, gold: str, **opts) -> bool:
    return verify(parse(gold), parse(pred), float_rounding=opts.get("precision", 6), strict=opts.get("strict", True),
                  allow_set_relation_comp=opts.get("allow_set_relation_comp", False))


def ours_batch(preds, golds, opts_list, timeout, workers):
    """Group by verifier options, verify each group as one batch, return verdicts in order."""
    groups: dict[tuple, list[int]] = {}
    for i, o in enumerate(opts_list):
        groups.setdefault((o.get("precision"), o.get("strict", True), o.get("allow_set_relation_comp", False)), []).append(i)
    out = [None] * len(preds)
    for (prec, strict, rel), idx in groups.items():
        v = MathVerifier(timeout=timeout, workers=workers, precision=prec, strict=strict, allow_set_relation_comp=rel)
        for i, verdict in zip(idx, v.verify_batch([preds[i] for i in idx], [golds[i] for i in idx])):
            out[i] = verdict
    return out


def gsm8k_styles(limit: int):
    rows = [json.loads(line) for line in open(GSM8K_TEST)][:limit]
    items = []  # (completion, gold, should_be_correct, style)
    for row in rows:
        steps, gold = parse_gsm8k(row["answer"])
        n = int(gold)
        wrong = n + 1 if n % 7 else n - 3
        for good, ans in ((True, n), (False, wrong)):
            sep = f"{ans:,}"
            items += [
                (f"{steps}\nSo the total is \\boxed{{{ans}}}.", gold, good, "boxed"),
                (f"{steps}\n#### {ans}", gold, good, "####"),
                (f"{steps}\nThe answer is {ans}.", gold, good, "answer is"),
                (f"{steps}\nThe answer is ${sep}.", gold, good, "answer is $1,234"),
                (f"<think>\n{steps}\n</think>\n<answer>{sep}</answer>", gold, good, "<answer>"),
            ]
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=2.0, help="our hard limit per check, seconds")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--styles-limit", type=int, default=1319, help="GSM8K test problems to use")
    args = ap.parse_args()
    cases = [json.loads(line) for line in open(CASES)]
    opts = [{k: c[k] for k in ("precision", "strict", "allow_set_relation_comp") if k in c} for c in cases]

    # warm-up: imports, worker start, sympy's first-call costs, on inputs not measured below
    ours_batch([p for p, _ in WARMUP], [g for _, g in WARMUP], [{}] * len(WARMUP), args.timeout, args.workers)
    for p, g in WARMUP:
        mv_check(p, g)

    # (1) + (3a) accuracy and throughput on the equivalence cases
    t0 = time.perf_counter()
    ours = ours_batch([c["pred"] for c in cases], [c["gold"] for c in cases], opts, args.timeout, args.workers)
    t_ours_cases = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = [mv_check(c["pred"], c["gold"], **o) for c, o in zip(cases, opts)]
    t_mv_cases = time.perf_counter() - t0
    ours_ok = [v.correct == c["expected"] for v, c in zip(ours, cases)]
    mv_ok = [t == c["expected"] for t, c in zip(theirs, cases)]
    print(f"== (1) accuracy on {len(cases)} equivalence cases ({os.path.relpath(CASES)})")
    print(f"   ours        {sum(ours_ok)}/{len(cases)} = {sum(ours_ok) / len(cases):.1%}")
    print(f"   math-verify {sum(mv_ok)}/{len(cases)} = {sum(mv_ok) / len(cases):.1%}   (0.9.0, default settings)")
    for i, c in enumerate(cases):
        if ours_ok[i] != mv_ok[i] or not ours_ok[i]:
            v = ours[i]
            print(f"   - case {i + 1} [{c['test']}] expected={c['expected']} ours={v.status.value} "
                  f"(extracted {v.extracted!r:.40}, {v.details.get('method')}/{v.details.get('path')}) "
                  f"math-verify={theirs[i]} | gold {c['gold']!r:.50} | pred ...{c['pred'][-60:]!r}")
    fp = [i + 1 for i, c in enumerate(cases) if ours[i].correct and not c["expected"]]
    print(f"   false positives (wrong answer scored 1): ours {len(fp)} {fp}, "
          f"math-verify {sum(1 for t, c in zip(theirs, cases) if t and not c['expected'])}")
    errs = sum(1 for v in ours if v.is_error)
    print(f"   ours: {errs} timeout/error verdicts")

    # (2) GSM8K golds in several styles
    items = gsm8k_styles(args.styles_limit)
    t0 = time.perf_counter()
    ov = MathVerifier(timeout=args.timeout, workers=args.workers).verify_batch([x[0] for x in items], [x[1] for x in items])
    t_ours_g = time.perf_counter() - t0
    t0 = time.perf_counter()
    mv = [mv_check(x[0], x[1]) for x in items]
    t_mv_g = time.perf_counter() - t0
    print(f"\n== (2) GSM8K test golds as completions: {len(items)} completions "
          f"({args.styles_limit} problems x 5 styles x gold/perturbed)")
    print(f"   {'style':18s} {'ours gold ok':>12s} {'ours pert. wrong':>16s} {'mv gold ok':>10s} {'mv pert. wrong':>14s}")
    for style in dict.fromkeys(x[3] for x in items):
        idx = [i for i, x in enumerate(items) if x[3] == style]
        g = [i for i in idx if items[i][2]]
        p = [i for i in idx if not items[i][2]]
        print(f"   {style:18s} {sum(ov[i].correct for i in g):>6d}/{len(g):<5d} {sum(not ov[i].correct for i in p):>10d}/{len(p):<5d}"
              f" {sum(mv[i] for i in g):>5d}/{len(g):<4d} {sum(not mv[i] for i in p):>9d}/{len(p):<4d}")
    print("\n== throughput (completions per second; both sides warm, inputs unseen)")
    rg, rc = t_mv_g / t_ours_g, t_mv_cases / t_ours_cases
    print(f"   GSM8K styles   ours {len(items) / t_ours_g:10.0f}/s   math-verify {len(items) / t_mv_g:8.0f}/s   ratio {rg:6.1f}x  (target >= 20x)")
    print(f"   equiv. cases   ours {len(cases) / t_ours_cases:10.0f}/s   math-verify {len(cases) / t_mv_cases:8.0f}/s   ratio {rc:6.2f}x  (target >= 1.5x)")

    # (3) issue #65
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        v = MathVerifier(timeout=args.timeout, workers=args.workers).verify(ISSUE_65, "5")
        times.append(time.perf_counter() - t0)
    print(f"\n== (3) math-verify issue #65 input, limit {args.timeout:.1f}s: status {v.status.value}, "
          f"median {statistics.median(times):.2f}s over 3 (target <= {2 * args.timeout:.1f}s)")


if __name__ == "__main__":
    main()
