"""Peak memory and seconds of one optimizer step of GRPO, DPO and PPO on synthetic rollouts of
R rows x T completion tokens, today's path ("old") and the new one side by side.

    python bench/update_memory.py                                   # smollm2-135m, R = 16,64,256, T = 512, all algos
    python bench/update_memory.py --algo grpo --rows 16 --tokens 128 --path new
    python bench/update_memory.py --model qwen2-0.5b-random --dtype bfloat16 --device cuda --tokens 4096 \
        --set micro_batch_tokens=16384   # a micro-batch must hold one whole row (prompt + 4096)

Each (algorithm, path, R) runs in a process of its own, which loads the model, builds the
algorithm's config from its command-line parser (so ``policy.model`` other than the tiny ones
gets the real-model defaults: ``micro_batch_tokens``, ``gradient_checkpointing``, ...), makes the
synthetic batch and runs exactly one optimizer step through the algorithm's own update code:
``algos.grpo.policy_update`` (groups of ``group_size`` with rewards 0/1, so no row is left
out), DPO's ``algos.preference.pair_step`` (R rows = R/2 pairs, chosen and rejected), and PPO's
``algos.ppo.minibatch_update`` after the reference's logprobs, the critic's values and GAE (one
minibatch, one epoch). Memory is the process's peak: resident set size on the CPU (weights, gradients, AdamW
state, the reference and critic copies, activations), ``torch.cuda.max_memory_allocated`` on a
GPU. Seconds are those of the step alone.

* ``new``: the code as it is, with the config's defaults (``--set KEY=VALUE`` overrides any key,
  e.g. ``--set micro_batch_tokens=8192 --set gradient_checkpointing=false``).
* ``old``: the code before issue 30: ``token_logprobs`` on the full-vocabulary float32 path
  (``chunk_size=0``), no micro-batches, no activation checkpointing. Its peak is estimated first
  (`old_estimate_gb`: five float32 rows x tokens x vocabulary tensors, the whole batch's
  activations, the weights and optimizer state); sizes over ``--limit-gb`` (default: this
  machine's memory) are skipped with the reason printed.

Models: ``smollm2-135m`` (default, real weights) or anything ``policy.model`` takes, and
``qwen2-0.5b-random`` / ``qwen2-1.5b-random``: Qwen2's architecture with random weights, built from
explicit numbers (no hub needed). The last line is one JSON object for GRPO's new path:
``{"rows": [...], "tokens": T, "peak_gb": [...], "seconds": [...]}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

# Qwen2-0.5B and Qwen2-1.5B as their config.json files give them (random weights here)
QWEN2 = {
    "qwen2-0.5b-random": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                              num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2-1.5b-random": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                              num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}


def load(name: str, dtype: str, device: str) -> torch.nn.Module:
    from policies import PolicyConfig, load_model
    from policies.hf import resolve_device, resolve_dtype

    if name not in QWEN2:
        return load_model(PolicyConfig(model=name, dtype=dtype, device=device))[0]
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(**QWEN2[name], max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                      bos_token_id=0, eos_token_id=1, pad_token_id=0, use_sliding_window=False)
    torch.manual_seed(0)
    with torch.device(resolve_device(device)):
        return Qwen2ForCausalLM(cfg).to(resolve_dtype(dtype))


def peak_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def old_path(*modules: object) -> None:
    """Today's path in the algorithm modules: full-vocabulary float32 logprobs."""
    from policies.hf import token_logprobs

    for mod in modules:
        mod.token_logprobs = functools.partial(token_logprobs, chunk_size=0)  # type: ignore[attr-defined]


def parse(cls: type, args: argparse.Namespace, extra: list[str]) -> object:
    from algos import config as cfglib

    argv = [f"policy.model={args.model}", f"policy.dtype={args.dtype}", f"policy.device={args.device}",
            f"max_new_tokens={args.tokens}", *extra, *[s for s in args.set]]
    if args.path == "old":  # the code before micro-batches and activation checkpointing
        argv += [f"{k}={v}" for k, v in (("micro_batch_size", 0), ("micro_batch_tokens", 0), ("gradient_checkpointing", "false"))
                 if k in cfglib.all_keys(cls)]
    return cfglib.parse(cls, argv, prog="bench.update_memory")


def synthetic(R: int, T: int, P: int, vocab: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randint(2, vocab, (R, P), generator=g).tolist()
    completions = torch.randint(2, vocab, (R, T), generator=g).tolist()
    return prompts, completions


def one(args: argparse.Namespace) -> dict:
    """One optimizer step of ``args.algo`` at ``args.rows`` x ``args.tokens``, in this process."""
    from algos import dist
    from policies.base import Rollout
    from policies.hf import enable_activation_checkpointing, resolve_device

    torch.set_num_threads(os.cpu_count() or 1)
    from policies.hf import return_freed_memory

    return_freed_memory()  # as every training process does (algos.common): freed activations leave the process
    device = resolve_device(args.device)
    model = load(args.model, args.dtype, args.device)
    vocab, R, T = model.config.vocab_size, int(args.rows), args.tokens
    prompts, completions = synthetic(R, T, args.prompt, vocab)
    g = torch.Generator().manual_seed(1)
    pad_id = 0
    if args.algo == "grpo":
        from algos import grpo

        cfg = parse(grpo.GRPOConfig, args, [f"prompts_per_step={max(1, R // 8)}", "group_size=8"])
    elif args.algo == "dpo":
        from algos import dpo

        cfg = parse(dpo.DPOConfig, args, ["data=synthetic", f"batch_size={max(1, R // 2)}"])
    else:
        from algos import ppo

        cfg = parse(ppo.PPOConfig, args, [f"prompts_per_step={max(1, R // 4)}", "samples_per_prompt=4", "minibatches=1",
                                          "ppo_epochs=1"])
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-7, betas=(0.9, 0.99))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    if args.algo == "grpo":
        if args.path == "old":
            old_path(grpo)
        G = cfg.group_size
        groups = []
        for k in range(0, R, G):
            ro = [Rollout("", "", tuple(prompts[i]), tuple(completions[i]),
                          tuple((-2.0 * torch.rand(T, generator=g)).tolist()), "eos") for i in range(k, min(k + G, R))]
            groups.append((ro, torch.tensor([float(j % 2) for j in range(len(ro))])))
        t0 = time.time()
        stats = grpo.policy_update(model, opt, groups, cfg, pad_id, None)
        seconds = time.time() - t0
        loss = stats["loss/policy"][0]
    elif args.algo == "dpo":
        from algos import microbatch, preference
        from algos.dpo import loss_settings
        from algos.preference import Pair

        if args.path == "old":
            old_path(preference)
        ref = dist.frozen_copy(model)
        n = max(1, R // 2)
        pairs = [Pair(prompts[i], completions[2 * i], completions[2 * i + 1]) for i in range(n)]
        t0 = time.time()
        _, loss, _ = preference.pair_step(opt, model, ref, pairs, pad_id, loss_settings(cfg), float(n),
                                          microbatch.Limits.of(cfg), cfg.grad_clip)
        seconds = time.time() - t0
    else:
        loss, seconds = ppo_step(model, opt, cfg, prompts, completions, pad_id, args.path == "old", g)
    return {"algo": args.algo, "path": args.path, "rows": R, "tokens": T, "peak_gb": round(peak_gb(device), 3),
            "seconds": round(seconds, 2), "loss": loss,
            "micro_batch_tokens": getattr(cfg, "micro_batch_tokens", None), "micro_batch_size": getattr(cfg, "micro_batch_size", None),
                    "gradient_checkpointing": cfg.gradient_checkpointing}


def ppo_step(model, opt, cfg, prompts, completions, pad_id, old, g) -> tuple[float, float]:
    """PPO's step as algos.ppo.main runs it: the reference's logprobs and the critic's values before
    the update (no gradients, in micro-batches), the per-token rewards and GAE, then
    ``ppo.minibatch_update`` (the policy's clipped loss and step, the critic's value loss and step)."""
    from algos import dist, losses, microbatch, ppo

    if old:
        old_path(ppo)
    ref = dist.frozen_copy(model)
    critic = ppo.Critic(model)
    copt = torch.optim.AdamW(critic.parameters(), lr=1e-7)
    dev = next(model.parameters()).device
    T = len(completions[0])
    rows = microbatch.Rows(prompts, completions, [None] * len(prompts),
                           {"old_logp": [-2.0 * torch.rand(T, generator=g) for _ in prompts]}).padded_as_a_whole()
    limits = microbatch.Limits.of(cfg)
    t0 = time.time()
    batch, v = rows.collate(pad_id, dev)
    mask, old_logp, lens = batch.completion_mask, v["old_logp"], [T] * len(prompts)
    final = torch.tensor([float(i % 2) for i in range(len(prompts))], device=dev)
    ref_logp = microbatch.pad(microbatch.token_values(
        ref, rows, limits, pad_id, lambda m, b: ppo.token_logprobs(m, b, temperature=cfg.temperature)), T).to(dev)
    old_values = microbatch.pad(microbatch.token_values(critic, rows, limits, pad_id, lambda m, b: m(b)), T).to(dev) * mask
    rewards = ppo.token_rewards(final, old_logp, ref_logp, mask, cfg.kl_coef)
    adv, returns = losses.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
    rows = rows.with_values({"adv": microbatch.unpad(adv, lens), "returns": microbatch.unpad(returns, lens),
                             "old_values": microbatch.unpad(old_values, lens)})
    model.train()
    critic.train()
    stats = ppo.minibatch_update(model, critic, opt, copt, rows, cfg, pad_id)
    return stats["loss/policy"], time.time() - t0


def old_estimate_gb(args: argparse.Namespace, R: int, vocab: int, hidden: int, layers: int, inter: int, heads: int) -> float:
    """The old path's peak, roughly (conservative: SmolLM2-135M, 16 rows, measured 6.3 GB at T=128
    and 23.2 GB at T=512 (issue 30) against 7.4 and 23.3 estimated): five float32 [rows, tokens, vocabulary]
    tensors (logits, log-softmax, its exp, the entropy's product, a gradient), every layer's
    activations of the whole batch (about 6 hidden-sized and 3 intermediate-sized values per token
    and layer), on the CPU the attention weights SDPA's masked kernel keeps (rows x heads x length^2
    per layer), and the weights, gradients and AdamW state (4x the weights; DPO and PPO add the
    reference, PPO the critic and its optimizer)."""
    bytes_ = {"float32": 4, "fp32": 4}.get(args.dtype, 2)
    L = args.tokens + args.prompt
    logits = 5 * R * args.tokens * vocab * 4
    acts = R * L * layers * (6 * hidden + 3 * inter) * bytes_
    cpu = not (args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available()))
    attn = R * heads * L * L * 4 * layers if cpu else 0
    params = vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * inter)
    copies = {"grpo": 4, "dpo": 5, "ppo": 10}[args.algo]
    return (logits + acts + attn + copies * params * bytes_) / 2**30


def machine_gb(device: str) -> float:
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_properties(0).total_memory / 2**30
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algo", default="all", choices=["grpo", "dpo", "ppo", "all"])
    ap.add_argument("--path", default="both", choices=["old", "new", "both"])
    ap.add_argument("--rows", default="16,64,256", help="R values, comma-separated")
    ap.add_argument("--tokens", type=int, default=512, help="T: completion tokens per row")
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens per row")
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m, qwen2-0.5b-random, qwen2-1.5b-random, or any policy.model")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config key of the algorithm for the new path (repeatable), e.g. micro_batch_tokens=8192")
    ap.add_argument("--limit-gb", type=float, default=0.0, help="skip old-path sizes estimated above this (default: the machine's memory)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per size")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: run one size in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args)), flush=True)
        return
    algos = ["dpo", "ppo", "grpo"] if args.algo == "all" else [args.algo]  # GRPO's JSON line last
    paths = ["old", "new"] if args.path == "both" else [args.path]
    sizes = [int(r) for r in args.rows.split(",")]
    limit = args.limit_gb or machine_gb(args.device)
    shape = model_shape(args.model)
    print(f"model {args.model} ({args.dtype}, device {args.device}), T = {args.tokens}, prompt {args.prompt}; "
          f"old-path sizes estimated above {limit:.1f} GB are skipped", flush=True)
    print(f"{'algo':<5} {'path':<4} {'rows':>5} {'peak GB':>8} {'seconds':>8}  settings", flush=True)
    new_grpo: list[dict] = []
    for algo in algos:
        for R in sizes:
            for path in paths:
                run = argparse.Namespace(**{**vars(args), "algo": algo, "path": path, "rows": R})
                if path == "old":
                    est = old_estimate_gb(run, R, *shape)
                    if est > limit:
                        print(f"{algo:<5} {path:<4} {R:>5} {'-':>8} {'-':>8}  skipped: estimated {est:.0f} GB > {limit:.0f} GB",
                              flush=True)
                        continue
                res = child(run)
                if "error" in res:
                    print(f"{algo:<5} {path:<4} {R:>5} {'-':>8} {'-':>8}  failed: {res['error']}", flush=True)
                    continue
                settings = (f"micro_batch_tokens={res['micro_batch_tokens']} micro_batch_size={res['micro_batch_size']} "
                            f"gradient_checkpointing={res['gradient_checkpointing']}")
                print(f"{algo:<5} {path:<4} {R:>5} {res['peak_gb']:>8.2f} {res['seconds']:>8.1f}  {settings}", flush=True)
                if algo == "grpo" and path == "new":
                    new_grpo.append(res)
    print(json.dumps({"rows": [r["rows"] for r in new_grpo], "tokens": args.tokens,
                      "peak_gb": [r["peak_gb"] for r in new_grpo], "seconds": [r["seconds"] for r in new_grpo]}))


def child(run: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", "--algo", run.algo, "--path", run.path, "--rows", str(run.rows),
           "--tokens", str(run.tokens), "--prompt", str(run.prompt), "--model", run.model, "--dtype", run.dtype,
           "--device", run.device, *[x for s in run.set for x in ("--set", s)]]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=run.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {run.timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        err = [ln for ln in p.stderr.splitlines() if ln and not ln[0].isspace()] or ["?"]
        why = "killed (out of memory?)" if p.returncode in (-9, 137) else err[-1]
        return {"error": f"exit {p.returncode}: {why}"}
    return json.loads(lines[-1])


def model_shape(name: str) -> tuple[int, int, int, int, int]:
    """(vocabulary, hidden, layers, intermediate, attention heads) of the model, from its config alone."""
    if name in QWEN2:
        c = QWEN2[name]
        return c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["num_attention_heads"]
    from transformers import AutoConfig

    from policies import gguf
    from policies.tiny import TINY_CONFIG, resolve_model_path

    if name == "tiny":
        from policies.tiny import build_tokenizer

        return (len(build_tokenizer()), TINY_CONFIG["hidden_size"], TINY_CONFIG["num_hidden_layers"],
                TINY_CONFIG["intermediate_size"], TINY_CONFIG["num_attention_heads"])
    c = AutoConfig.from_pretrained(resolve_model_path(name) or gguf.resolve(name) or name)
    return c.vocab_size, c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.num_attention_heads


if __name__ == "__main__":
    main()
