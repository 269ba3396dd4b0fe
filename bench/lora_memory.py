"""Peak memory of one DPO step with LoRA against full fine-tuning: the same model, pairs and
micro-batches, each in a fresh process (CPU: peak resident set size, ``ru_maxrss``; GPU:
``torch.cuda.max_memory_allocated``).

    python bench/lora_memory.py                                   # smollm2-135m, 8 pairs x 256 tokens, r = 16
    python bench/lora_memory.py --pairs 8 --tokens 256 --r 16 --set micro_batch_size=2

Each process loads the model (``policies.load_model``, with ``lora.r`` for LoRA), builds DPO's config
from its command-line parser (so the real-model defaults apply: ``micro_batch_tokens``,
``gradient_checkpointing``), takes the reference as DPO does (`algos.dist.frozen_copy`: a frozen copy
of the weights for full fine-tuning, the base with the adapters off for LoRA), and runs one optimizer
step of AdamW through ``algos.preference.pair_step`` on synthetic pairs (random token ids). The peak
is the process's: weights, the reference, gradients, AdamW's state and the activations of one
micro-batch. Each process first fixes glibc's mmap threshold as training does
(`policies.hf.return_freed_memory`): freed activations leave the process, so the peak is that of live
tensors rather than of the heap left behind (issue 30). The last line is one JSON object:
``{"full_gb", "lora_gb", "ratio", ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402


def peak_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def one(args: argparse.Namespace) -> dict:
    """One DPO step in this process, with LoRA when ``args.r > 0``."""
    from algos import config as cfglib
    from algos import dist, dpo, microbatch, preference
    from policies import PolicyConfig, load_model
    from policies.hf import enable_activation_checkpointing, resolve_device, return_freed_memory

    return_freed_memory()  # as algos.common's setup does for every training process

    device = resolve_device(args.device)
    argv = [f"policy.model={args.model}", f"policy.dtype={args.dtype}", f"policy.device={args.device}", "data=synthetic",
            f"batch_size={args.pairs}", f"lora.r={args.r}", *args.set]
    cfg = cfglib.parse(dpo.DPOConfig, argv, prog="bench.lora_memory")
    model, tok = load_model(cfg.policy, cfg.lora)
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    loaded = peak_gb(device)
    g = torch.Generator().manual_seed(0)
    V = model.config.vocab_size
    pairs = [preference.Pair(torch.randint(2, V, (args.prompt,), generator=g).tolist(),
                             torch.randint(2, V, (args.tokens,), generator=g).tolist(),
                             torch.randint(2, V, (args.tokens,), generator=g).tolist()) for _ in range(args.pairs)]
    ref = dist.frozen_copy(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-6, betas=(0.9, 0.99))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.time()
    _, loss, _ = preference.pair_step(opt, model, ref, pairs, tok.pad_token_id, dpo.loss_settings(cfg), float(args.pairs),
                                      microbatch.Limits.of(cfg), cfg.grad_clip)
    return {"lora_r": args.r, "peak_gb": round(peak_gb(device), 3), "after_load_gb": round(loaded, 3),
            "seconds": round(time.time() - t0, 1), "loss": loss, "trainable": sum(p.numel() for p in trainable),
            "micro_batch_size": cfg.micro_batch_size, "micro_batch_tokens": cfg.micro_batch_tokens,
            "gradient_checkpointing": cfg.gradient_checkpointing}


def child(args: argparse.Namespace, r: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", "--r", str(r), "--model", args.model, "--dtype", args.dtype,
           "--device", args.device, "--pairs", str(args.pairs), "--tokens", str(args.tokens), "--prompt", str(args.prompt),
           *[x for s in args.set for x in ("--set", s)]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"error: the {'LoRA' if r else 'full'} run failed (exit {p.returncode}): {p.stderr[-1500:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="any policy.model")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--r", type=int, default=16, help="LoRA rank of the LoRA run")
    ap.add_argument("--pairs", type=int, default=8, help="pairs in the step (batch_size)")
    ap.add_argument("--tokens", type=int, default=256, help="tokens of each chosen and rejected completion")
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a DPO config key for both runs (repeatable), e.g. micro_batch_size=2")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one run in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args)), flush=True)
        return
    print(f"DPO step on {args.model} ({args.dtype}): {args.pairs} pairs, prompt {args.prompt} + {args.tokens} tokens each "
          f"side; {' '.join(args.set) or 'default micro-batches'}", flush=True)
    full, lora = child(args, 0), child(args, args.r)
    for name, res in (("full", full), (f"lora r={args.r}", lora)):
        print(f"{name:<12} peak {res['peak_gb']:.2f} GB (after loading {res['after_load_gb']:.2f} GB), "
              f"{res['trainable'] / 1e6:.2f}M trainable, {res['seconds']:.0f} s; micro_batch_size={res['micro_batch_size']} "
              f"micro_batch_tokens={res['micro_batch_tokens']} gradient_checkpointing={res['gradient_checkpointing']}",
              flush=True)
    print(json.dumps({"model": args.model, "pairs": args.pairs, "tokens": args.tokens, "full_gb": full["peak_gb"],
                      "lora_gb": lora["peak_gb"], "ratio": round(lora["peak_gb"] / full["peak_gb"], 3)}))


if __name__ == "__main__":
    main()
