"""A lean forward pass for sampling from Llama-family models (Llama, Qwen2, Mistral-style
decoders without sliding windows), used by the transformers engine when the model qualifies.

Why: for a small model a decode step is bound by Python and dispatch overhead, not by
arithmetic. ``model(...)`` with a KV cache object builds masks, cache bookkeeping and output
records on every token. Here the K/V cache is one preallocated tensor per layer, q/k/v and
gate/up projections are fused into one matmul each (re-fused from the live weights at every
``generate`` call, so training updates are always seen), the mask is a boolean tensor updated
in place, and the model's own modules supply the norms and rotary embeddings (so RoPE
variants behave as in transformers). The numbers are those of the transformers forward pass:
the engine's tests compare sampled logprobs with `token_logprobs` recomputed by transformers.

`supports(model)` says whether a model qualifies; others use the generic path.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def supports(model: Any) -> bool:
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in ("llama", "qwen2", "mistral"):
        return False
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return False
    if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "mlp_bias", False):
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False  # windowed attention is not implemented here
    if getattr(cfg, "pretraining_tp", 1) != 1:
        return False
    attn = inner.layers[0].self_attn
    return all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")) and attn.o_proj.bias is None


class LeanDecoder:
    """Prefill and one-token steps over a preallocated KV cache; rows can be dropped."""

    def __init__(self, model: Any, batch: int, max_len: int, rows: int | None = None):
        """``batch`` rows to prefill, a cache of ``max_len`` positions; ``rows``: the decode batch
        (after `select` copies prompts for their samples), the row count the weights are packed for."""
        cfg = model.config
        inner = model.model
        self.model, self.inner = model, inner
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.scale = self.head_dim ** -0.5
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device
        self.linear = _packed_linear(rows or batch) if _can_pack(p) else _plain_linear
        self.layers = []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            w_qkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight], 0)
            b_qkv = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias], 0) if a.q_proj.bias is not None else None
            w_gu = torch.cat([m.gate_proj.weight, m.up_proj.weight], 0)
            self.layers.append((layer.input_layernorm, self.linear.pack(w_qkv), b_qkv, self.linear.pack(a.o_proj.weight),
                                layer.post_attention_layernorm, self.linear.pack(w_gu),
                                self.linear.pack(m.down_proj.weight)))
        head = model.lm_head
        self.head = (self.linear.pack(head.weight), getattr(head, "bias", None))
        shape = (batch, self.n_kv, max_len, self.head_dim)
        self.k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.valid = torch.zeros((batch, 1, 1, max_len), dtype=torch.bool, device=self.device)
        self.length = 0  # positions filled in the cache (the same for every row: prompts are left-padded)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gqa = self.n_kv != self.n_heads
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale, enable_gqa=gqa)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the new tokens ids [B, T] at cache slots [length, length + T) with the given mask."""
        B, T = ids.shape
        x = self.inner.embed_tokens(ids)
        cos, sin = self.inner.rotary_emb(x, positions)
        cos, sin = cos[:, None], sin[:, None]
        lo, hi = self.length, self.length + T
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        linear = self.linear
        for i, (ln1, w_qkv, b_qkv, w_o, ln2, w_gu, w_down) in enumerate(self.layers):
            h = ln1(x)
            qkv = linear(h, w_qkv, b_qkv)
            q, k, v = qkv.split([H * D, KV * D, KV * D], dim=-1)
            q = q.view(B, T, H, D).transpose(1, 2)
            k = k.view(B, T, KV, D).transpose(1, 2)
            v = v.view(B, T, KV, D).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            self.k[i][:, :, lo:hi] = k
            self.v[i][:, :, lo:hi] = v
            o = self._attend(q, self.k[i][:, :, :hi], self.v[i][:, :, :hi], mask)
            x = x + linear(o.transpose(1, 2).reshape(B, T, H * D), w_o)
            g, u = linear(ln2(x), w_gu).chunk(2, dim=-1)
            x = x + linear(F.silu(g) * u, w_down)
        self.length = hi
        return linear(self.inner.norm(x[:, -1, :]), *self.head)

    def prefill(self, ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits after the (left-padded) prompts [B, P]."""
        P = ids.shape[1]
        key_ok = attention_mask.bool()
        self.valid[:, 0, 0, :P] = key_ok
        causal = torch.ones((P, P), dtype=torch.bool, device=ids.device).tril()
        mask = (causal[None] & key_ok[:, None, :]) | torch.eye(P, dtype=torch.bool, device=ids.device)[None]
        return self._forward(ids, positions, mask[:, None])  # a pad query sees itself only: no all-masked rows

    def step(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits after one more token per row: ids [B], positions [B]."""
        self.valid[:, 0, 0, self.length] = True
        return self._forward(ids[:, None], positions[:, None], self.valid[:, :, :, :self.length + 1])

    def select(self, idx: torch.Tensor) -> None:
        """Keep only these rows (finished rows leave the batch)."""
        self.k = [k[idx] for k in self.k]
        self.v = [v[idx] for v in self.v]
        self.valid = self.valid[idx]


def _plain_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    return F.linear(x, w, b)


_plain_linear.pack = lambda w: w  # type: ignore[attr-defined]


def _can_pack(p: torch.Tensor) -> bool:
    return (p.device.type == "cpu" and p.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


class _packed_linear:
    """Linear layers on oneDNN with weights reordered once per `generate` call into its blocked
    layout (the prepacking torch.compile's freezing does on CPU). A plain `F.linear` repacks the
    weight on every call; at decode-sized row counts that costs as much as the product:
    `bench/generate.py` prints both rates."""

    def __init__(self, rows: int):
        self.rows = rows

    def pack(self, w: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(w.detach(), self.rows)

    def __call__(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)
