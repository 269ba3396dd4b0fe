"""Every GPU path that can run on this machine, with a table of what ran and how fast.

    python bench/gpu_check.py [--model tiny-sft] [--steps 5]

Runs, each only if possible here (a CUDA GPU; vLLM importable for its rows):
  1. transformers engine, bf16: sampling tokens/s (ours vs model.generate on the same batch)
  2. SFT steps in bf16: step time and tokens/s
  3. GRPO steps in bf16 (transformers engine): step time and tokens/s
  4. vLLM engine: generation tokens/s, weight update from the training model, sleep/wake
  5. torchrun, 2 processes: GRPO data parallel (NCCL with 2+ GPUs; with one GPU, both ranks on it
     with gloo) and FSDP2 (NCCL, 2+ GPUs only): step time and held-out accuracy
A row that cannot run says why (SKIPPED: no GPU / vllm not installed); a row that fails says FAILED.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

ROWS: list[tuple[str, str, str]] = []


def row(name: str, status: str, detail: str) -> None:
    ROWS.append((name, status, detail))
    print(f"[{status}] {name}: {detail}", flush=True)


def check(name: str, fn) -> None:
    try:
        row(name, "OK", fn())
    except Exception as e:  # noqa: BLE001 - a GPU check that fails is reported in the table, not hidden
        traceback.print_exc()
        row(name, "FAILED", f"{type(e).__name__}: {e}"[:200])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny-sft")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    has_gpu = torch.cuda.is_available()
    print(f"torch {torch.__version__}, cuda available: {has_gpu}" + (f", {torch.cuda.get_device_name(0)}" if has_gpu else ""))
    if not has_gpu:
        for n in ("transformers engine bf16", "SFT bf16", "GRPO bf16", "vLLM engine", "torchrun 2 ranks ddp",
                  "torchrun 2 ranks fsdp"):
            row(n, "SKIPPED", "no CUDA GPU on this machine")
        return _table()

    from policies import PolicyConfig, SamplingParams, load
    import envs

    def gen_bf16() -> str:
        engine, model, tok = load(PolicyConfig(model=args.model, device="cuda", dtype="bfloat16"))
        env = envs.make("math")
        prompts = [env.unwrapped.prompt_of(t) for t in env.unwrapped.tasks(128, "heldout")]
        p = SamplingParams(n=8, temperature=1.0, max_new_tokens=64, seed=0)
        engine.generate(prompts[:8], p)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = engine.generate(prompts, p)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        n = sum(len(r.completion_ids) for rs in out for r in rs)
        flat = [r for rs in out for r in rs][:64]
        rec = engine.logprobs(flat)
        err = max(abs(a - b) for r, l in zip(flat, rec) for a, b in zip(r.logprobs, l))
        return f"{n / dt:,.0f} tokens/s over {len(prompts) * 8} rows; max |logprob sampled - recomputed| = {err:.3g} (bf16)"

    def sft_bf16() -> str:
        from algos import sft

        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            s = sft.main(["env=math", "policy.model=tiny", "policy.device=cuda", "policy.dtype=bfloat16",
                          f"steps={args.steps}", "heldout_size=64", f"out={d}"])
            dt = time.perf_counter() - t0
            rows = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl")) if "loss/sft" in x]
            toks = sum(r["perf/tokens"] for r in rows)
        return f"{args.steps} steps in {dt:.1f}s incl. eval; {toks / dt:,.0f} trained tokens/s; final loss {s['final_loss']:.3f}"

    def grpo_bf16() -> str:
        from algos import grpo

        with tempfile.TemporaryDirectory() as d:
            grpo.main([f"policy.model={args.model}", "policy.device=cuda", "policy.dtype=bfloat16", f"steps={args.steps}",
                       "heldout_size=64", f"out={d}"])
            rows = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl")) if "perf/step_seconds" in x]
        st = sorted(r["perf/step_seconds"] for r in rows)[len(rows) // 2]
        tps = sorted(r["perf/tokens_per_second"] for r in rows)[len(rows) // 2]
        return f"median step {st:.2f}s, {tps:,.0f} sampled tokens/s (16 prompts x 8)"

    def vllm_engine() -> str:
        try:
            import vllm  # noqa: F401
        except ImportError:
            return "SKIPPED"
        engine, model, tok = load(PolicyConfig(model=args.model, engine="vllm", device="cuda", dtype="bfloat16"))
        env = envs.make("math")
        prompts = [env.unwrapped.prompt_of(t) for t in env.unwrapped.tasks(128, "heldout")]
        p = SamplingParams(n=8, temperature=1.0, max_new_tokens=64, seed=0)
        t0 = time.perf_counter()
        out = engine.generate(prompts, p)
        dt = time.perf_counter() - t0
        n = sum(len(r.completion_ids) for rs in out for r in rs)
        # per-prompt seeds: the same prompt twice in one call must not give the same 8 samples
        twin = engine.generate([prompts[0], prompts[0]], p)
        distinct = [r.completion_ids for r in twin[0]] != [r.completion_ids for r in twin[1]]
        again = engine.generate([prompts[0], prompts[0]], p)  # and the same call again reproduces them
        same = [r.completion_ids for r in again[0]] == [r.completion_ids for r in twin[0]]
        # the training order: sleep after rollouts, an update (wakes weights only), then generate (wakes the KV cache)
        engine.sleep()
        free_asleep = torch.cuda.mem_get_info()[0]
        with torch.no_grad():
            for prm in model.parameters():
                prm.add_(0.01)
        engine.update_weights(model)
        out2 = engine.generate(prompts[:4], p)
        assert distinct and same, (distinct, same)
        return (f"{n / dt:,.0f} tokens/s; per-prompt seeds distinct and reproducible; sleep -> update -> generate ok "
                f"({free_asleep / 2 ** 30:.1f} GiB free while asleep); {sum(len(r) for r in out2)} rollouts after update")

    def torchrun_grpo(parallel: str) -> str:
        import subprocess

        n_gpu = torch.cuda.device_count()
        extra = [] if n_gpu >= 2 else ["dist_backend=gloo"]  # one GPU: NCCL refuses two ranks on one device
        with tempfile.TemporaryDirectory() as d:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "algos.grpo",
                   f"policy.model={args.model}", "policy.dtype=bfloat16", f"steps={args.steps}", "heldout_size=64",
                   f"parallel={parallel}", f"out={d}", *extra]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            if p.returncode != 0:
                raise RuntimeError(p.stderr[-600:])
            rows = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl")) if "perf/step_seconds" in x]
            summ = json.load(open(os.path.join(d, "summary.json")))
        st = sorted(r["perf/step_seconds"] for r in rows)[len(rows) // 2]
        return (f"{'2 GPUs, nccl' if n_gpu >= 2 else '1 GPU shared by 2 ranks, gloo'}: median step {st:.2f}s, held-out "
                f"{summ['heldout_accuracy_before']:.1%} -> {summ['heldout_accuracy_after']:.1%}, "
                f"{time.perf_counter() - t0:.0f}s in all")

    check("transformers engine bf16", gen_bf16)
    check("SFT bf16", sft_bf16)
    check("GRPO bf16", grpo_bf16)
    try:
        import vllm  # noqa: F401
        check("vLLM engine", vllm_engine)
    except ImportError:
        row("vLLM engine", "SKIPPED", "vllm is not installed (pip install 'rlvr-gym[vllm]')")
    check("torchrun 2 ranks ddp", lambda: torchrun_grpo("ddp"))
    if torch.cuda.device_count() >= 2:
        check("torchrun 2 ranks fsdp", lambda: torchrun_grpo("fsdp"))
    else:
        row("torchrun 2 ranks fsdp", "SKIPPED", "one GPU: FSDP2 over gloo cannot reduce-scatter CUDA tensors and NCCL "
            "refuses two ranks on one device")
    _table()


def _table() -> None:
    print("\n| check | status | result |\n| --- | --- | --- |")
    for n, s, d in ROWS:
        print(f"| {n} | {s} | {d} |")


if __name__ == "__main__":
    main()
