"""The GRPO update's forward + backward on a real model: tokens/s and the share of this machine's
matmul rate it reaches, measured in the same run.

    python bench/update_flops.py [--model smollm2-135m] [--rows 16] [--prompt 64] [--completion 128] [--dtype float32]

The update is what ``algos.grpo.policy_update`` runs for one minibatch: ``token_logprobs`` (the
lm_head on the completion positions only), a masked token-level loss, ``backward``. Model FLOPs
count the linear layers (2 x in x out per token forward, twice that backward), the lm_head on the
positions it runs on, and causal attention (QK^T and AV, half the square). The machine's rate is
the same linear shapes, forward and backward (``F.linear`` with gradients, the update's layout),
timed alone on the same rows. Prints the medians of ``--repeats`` and the share, next to the
target (50%).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def linear_shapes(model: torch.nn.Module) -> list[tuple[int, int, int]]:
    """(in, out, count) of the decoder's linear layers (the lm_head apart)."""
    seen: dict[tuple[int, int], int] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and not name.endswith("lm_head"):
            key = (mod.in_features, mod.out_features)
            seen[key] = seen.get(key, 0) + 1
    return [(i, o, c) for (i, o), c in seen.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--completion", type=int, default=128)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--full-lm-head", action="store_true", help="the lm_head on every position (the code before logits_to_keep)")
    args = ap.parse_args()
    from policies import PolicyConfig, load_model
    from policies.hf import collate, token_logprobs

    torch.set_num_threads(os.cpu_count() or 1)
    model, tok = load_model(PolicyConfig(model=args.model, dtype=args.dtype))
    model.train()
    if args.full_lm_head:
        import policies.hf

        policies.hf._FORWARD_PARAMS[type(model)] = policies.hf._forward_params(model) - {"logits_to_keep"}
    dtype = next(model.parameters()).dtype
    g = torch.Generator().manual_seed(0)
    V = model.config.vocab_size
    B, P, C = args.rows, args.prompt, args.completion
    batch = collate([torch.randint(10, V, (P,), generator=g).tolist() for _ in range(B)],
                    [torch.randint(10, V, (C,), generator=g).tolist() for _ in range(B)], tok.pad_token_id)
    adv = torch.randn(B, generator=g)

    def update() -> float:
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        logp = token_logprobs(model, batch)
        loss = -(logp * adv[:, None] * batch.completion_mask).sum() / batch.completion_mask.sum()
        loss.backward()
        return time.perf_counter() - t0

    update()  # warm-up
    t_update = statistics.median(update() for _ in range(args.repeats))
    T = P + C
    tokens = B * T
    cfg = model.config
    d, L = cfg.hidden_size, cfg.num_hidden_layers
    shapes = linear_shapes(model)
    fwd = sum(2 * i * o * c for i, o, c in shapes) * tokens  # decoder linears
    fwd += 2 * d * V * B * (T if args.full_lm_head else C + 1)  # the lm_head, on the positions it runs on
    fwd += L * B * 2 * 2 * T * T * d / 2  # causal attention: QK^T and AV
    model_flops = 3 * fwd  # forward + backward (two matmuls per forward one)

    # the machine: the same linear shapes, forward and backward, alone
    def linears() -> float:
        x_in = {i: torch.randn(tokens, i, dtype=dtype, requires_grad=True) for i, _, _ in shapes}
        ws = [(torch.randn(o, i, dtype=dtype, requires_grad=True), c) for i, o, c in shapes]
        head = torch.randn(V, d, dtype=dtype, requires_grad=True)
        h_in = torch.randn(B * (C + 1), d, dtype=dtype, requires_grad=True)
        t0 = time.perf_counter()
        for w, c in ws:
            for _ in range(c):
                F.linear(x_in[w.shape[1]], w).sum().backward()
        F.linear(h_in, head).sum().backward()
        return time.perf_counter() - t0

    linears()
    t_lin = statistics.median(linears() for _ in range(args.repeats))
    lin_flops = 3 * (sum(2 * i * o * c for i, o, c in shapes) * tokens + 2 * d * V * B * (C + 1))
    rate = lin_flops / t_lin
    achieved = model_flops / t_update
    share = achieved / rate
    print(f"\n{args.model} ({args.dtype}), GRPO update forward+backward on {B} rows x ({P} prompt + {C} completion) tokens, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"  update: {t_update:.2f} s, {tokens / t_update:,.0f} tokens/s, {achieved / 1e9:.1f} GFLOP/s of model FLOPs")
    print(f"  machine: the same linear shapes fwd+bwd alone: {rate / 1e9:.1f} GFLOP/s")
    print(f"  share of the matmul rate: {share:.1%} (target {args.target:.0%}: {'met' if share >= args.target else 'NOT met'})")


if __name__ == "__main__":
    main()
