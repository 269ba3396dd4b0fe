"""What ``policy.dtype=bfloat16`` gains and costs on this CPU, against float32, in one run.

    python bench/bf16_cpu.py [--model smollm2-135m] [--prompts 16] [--n 4] [--max-new-tokens 64]

Gains: sampling tokens/s (our engine, same prompts and seed) and the training forward+backward
tokens/s (`token_logprobs` with gradients, the GRPO update's core). Costs: how far the logprobs
that bf16 sampling records are from the float32 model's logprobs of the same tokens (mean and max
absolute difference per token), which is the error an importance ratio would carry.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import envs  # noqa: E402
from policies import PolicyConfig, SamplingParams, load  # noqa: E402
from policies.hf import collate, token_logprobs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    env = envs.make("math", difficulty=1).unwrapped
    prompts = [env.prompt_of(t) for t in env.tasks(args.prompts, "heldout")]
    params = SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    engines = {dt: load(PolicyConfig(model=args.model, dtype=dt)) for dt in ("float32", "bfloat16")}
    speed, train, outs = {}, {}, {}
    for dt, (engine, model, tok) in engines.items():
        engine.generate(prompts[:2], params)  # warm-up
        rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = engine.generate(prompts, params)
            rates.append(sum(len(r.completion_ids) for rs in out for r in rs) / (time.perf_counter() - t0))
        speed[dt], outs[dt] = statistics.median(rates), [r for rs in out for r in rs]
        batch = collate([r.prompt_ids for r in outs[dt]], [r.completion_ids for r in outs[dt]], tok.pad_token_id)
        n_tok = int(batch.completion_mask.sum())
        rates = []
        for _ in range(args.repeats):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            lp = token_logprobs(model, batch)
            (lp * batch.completion_mask).sum().backward()
            rates.append(n_tok / (time.perf_counter() - t0))
        train[dt] = statistics.median(rates)
    # cost: bf16 sampling logprobs against the float32 model's logprobs of the same tokens
    _, m32, tok = engines["float32"]
    rolls = outs["bfloat16"]
    batch = collate([r.prompt_ids for r in rolls], [r.completion_ids for r in rolls], tok.pad_token_id)
    with torch.no_grad():
        ref = token_logprobs(m32, batch)
    diffs = [abs(a - float(ref[i, j])) for i, r in enumerate(rolls) for j, a in enumerate(r.logprobs)]
    print(f"{args.model}: {args.prompts} prompts x {args.n}, max_new_tokens {args.max_new_tokens}, "
          f"{torch.get_num_threads()} threads")
    print(f"  sampling tokens/s      float32 {speed['float32']:8.0f}   bfloat16 {speed['bfloat16']:8.0f}   "
          f"ratio {speed['bfloat16'] / speed['float32']:.2f}x")
    print(f"  fwd+bwd tokens/s       float32 {train['float32']:8.0f}   bfloat16 {train['bfloat16']:8.0f}   "
          f"ratio {train['bfloat16'] / train['float32']:.2f}x")
    print(f"  bf16 sampling logprob vs float32 model: mean |diff| {statistics.mean(diffs):.4f}, "
          f"max {max(diffs):.4f} (over {len(diffs)} tokens)")


if __name__ == "__main__":
    main()
