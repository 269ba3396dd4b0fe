"""A lean forward pass for sampling from Llama-family models (Llama, Qwen2, Mistral-style
decoders without sliding windows), used by the transformers engine when the model qualifies.

Why: ``model(...)`` with a KV cache object builds masks, cache bookkeeping and output records on
every token, and recomputes a prompt for each of its samples. Here:

- q/k/v and gate/up projections are fused into one matmul each, re-fused from the live weights
  at every ``generate`` call (training updates are always seen; a LoRA layer's adapter is merged
  into its weight there, `policies.lora.effective_weight`); on the CPU the weights are then
  reordered once for oneDNN, which a plain ``F.linear`` does on every call;
- each distinct prompt is run once; its keys and values serve all its samples (see
  `LeanDecoder`), and the caches are preallocated tensors with an additive mask for left padding;
- the model's own modules supply the rotary embeddings and (where it is not the plain RMSNorm)
  the norms, so RoPE variants behave as in transformers.

The numbers are those of the transformers forward pass: the tests compare tokens and logprobs
with ``model(...)`` and with `token_logprobs`.

`supports(model)` says whether a model qualifies; others use the generic path.

Sampling only: no gradients flow here, so activation checkpointing has nothing to do, and a step's
logits are [rows, vocabulary] (rows bounded by ``policy.max_batch_size`` and ``max_batch_tokens``),
never [rows, tokens, vocabulary]. Training recomputes the logprobs with `hf.token_logprobs` (chunked).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from policies.lora import effective_weight


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
    """Prefill and one-token steps over preallocated KV caches; rows can be copied and dropped.

    The cache is split in two, as in vLLM's and FlashInfer's cascade attention: the prompts'
    keys and values (one copy per distinct prompt, from `prefill`) and the generated tokens' (one
    per row). The n samples of a prompt read its prompt cache once per step, not n times: a
    decode step's attention is bound by memory traffic on a CPU, and with GRPO's groups most of
    that traffic is the prompts' (SmolLM2-135M, 16 prompts x 4 samples, 49-token prompts: the
    attention of a 64-row step went from 23 to 14 ms). One softmax runs over both parts (no
    merging of partial sums), so the numbers are those of attention over the concatenated cache.
    """

    def __init__(self, model: Any, batch: int, max_len: int, rows: int | None = None):
        """``batch`` prompts to prefill, ``max_len`` positions in all (prompt and new tokens);
        ``rows``: the decode batch after `select` copies prompts for their samples (the row
        count the weights are packed for)."""
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
            # a LoRA layer's weight is merged here (W + (alpha / r) B A): the adapted model, fused
            w = effective_weight
            w_qkv = torch.cat([w(a.q_proj), w(a.k_proj), w(a.v_proj)], 0)
            b_qkv = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias], 0) if a.q_proj.bias is not None else None
            w_gu = torch.cat([w(m.gate_proj), w(m.up_proj)], 0)
            self.layers.append((layer.input_layernorm, self.linear.pack(w_qkv), b_qkv, self.linear.pack(w(a.o_proj)),
                                layer.post_attention_layernorm, self.linear.pack(w_gu),
                                self.linear.pack(w(m.down_proj))))
        head = model.lm_head
        self.head = (self.linear.pack(effective_weight(head)), getattr(head, "bias", None))
        self.max_len = max_len
        self.kp: list[torch.Tensor] = []  # per layer [prompts, KV, P, D], from prefill
        self.vp: list[torch.Tensor] = []
        self.prompt_bias = torch.zeros(0)  # [prompts, 1, P]: 0 at prompt tokens, -inf at left padding
        self.prompt_len = 0
        self.new = 0  # generated positions filled (the same for every row)
        self.kn: list[torch.Tensor] | None = None  # per layer [rows, KV, max_len - P, D], from the first `select`
        self.vn: list[torch.Tensor] | None = None
        self._rows(torch.arange(batch, device=self.device))

    def _rows(self, group: torch.Tensor) -> None:
        """Row r samples from prompt group[r]; where it sits in its prompt's block of queries."""
        count: dict[int, int] = {}
        slot = []
        for g in group.tolist():
            slot.append(count.get(g, 0))
            count[g] = slot[-1] + 1
        self.group, self.slot = group, torch.tensor(slot, dtype=group.dtype, device=group.device)
        self.width = max(count.values(), default=1)  # queries per prompt block (padded to the most rows)

    def prefill(self, ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits after the (left-padded) prompts [batch, P]."""
        B, P = ids.shape
        H, D = self.n_heads, self.head_dim
        key_ok = attention_mask.bool()
        causal = torch.ones((P, P), dtype=torch.bool, device=ids.device).tril()
        mask = (causal[None] & key_ok[:, None, :]) | torch.eye(P, dtype=torch.bool, device=ids.device)[None]
        mask = mask[:, None]  # a pad query sees itself only: no all-masked rows
        self.prompt_bias = torch.zeros((B, 1, P), dtype=self.dtype, device=self.device).masked_fill_(
            ~key_ok[:, None, :], float("-inf"))
        self.prompt_len = P
        gqa = self.n_kv != self.n_heads

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            q, k, v = (t.view(B, P, -1, D).transpose(1, 2) for t in (q, k, v))
            self.kp.append(k.contiguous())
            self.vp.append(v.contiguous())
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale, enable_gqa=gqa)
            return o.transpose(1, 2).reshape(B * P, H * D)

        x = self._forward(ids.reshape(-1), positions.reshape(-1), attend)
        return self._logits(x.view(B, P, -1)[:, -1])

    def step(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits after one more token per row: ids [rows], positions [rows]."""
        B = ids.shape[0]
        if self.kn is None:  # no `select` after prefill: one row per prompt
            self.select(torch.arange(self.kp[0].shape[0], device=self.device))
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        rep, W, U, t = H // KV, self.width, self.kp[0].shape[0], self.new
        group, slot = self.group, self.slot
        bias = self.prompt_bias[group]  # [rows, 1, P]

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            self.kn[i][:, :, t] = k.view(B, KV, D)
            self.vn[i][:, :, t] = v.view(B, KV, D)
            q = q.view(B, KV, rep, D)
            # prompt part: each prompt's queries in one block [U, KV, W * rep, D] against its cache
            qb = q.new_zeros((U, KV, W, rep, D))
            qb[group, :, slot] = q
            sp = torch.matmul(qb.view(U, KV, W * rep, D), self.kp[i].transpose(-1, -2))
            sp = sp.view(U, KV, W, rep, -1)[group, :, slot]  # [B, KV, rep, P]
            # generated part: per row
            kn, vn = self.kn[i][:, :, :t + 1], self.vn[i][:, :, :t + 1]
            sn = torch.matmul(q, kn.transpose(-1, -2))  # [B, KV, rep, t + 1]
            s = torch.cat([sp.view(B, H, -1).add_(bias), sn.view(B, H, -1)], -1).float().mul_(self.scale)
            a = s.softmax(-1).to(q.dtype)  # scores and softmax in fp32, as SDPA does for bf16
            ap, an = a.split([self.prompt_len, t + 1], -1)
            o = torch.matmul(an.view(B, KV, rep, t + 1), vn)  # [B, KV, rep, D]
            ab = a.new_zeros((U, KV, W, rep, self.prompt_len))
            ab[group, :, slot] = ap.view(B, KV, rep, -1)
            op = torch.matmul(ab.view(U, KV, W * rep, -1), self.vp[i]).view(U, KV, W, rep, D)[group, :, slot]
            return o.add_(op).view(B, H * D)

        x = self._forward(ids, positions, attend)
        self.new = t + 1
        return self._logits(x)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, attend) -> torch.Tensor:
        """The decoder layers over tokens ids [N] at positions [N]; attention is ``attend``'s."""
        x = self.inner.embed_tokens(ids)
        cos, sin = self.inner.rotary_emb(x[None], positions[None])
        cos, sin = cos[0, :, None], sin[0, :, None]  # [N, 1, D]
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        N = ids.shape[0]
        linear = self.linear
        for i, (ln1, w_qkv, b_qkv, w_o, ln2, w_gu, w_down) in enumerate(self.layers):
            qkv = linear(_norm(ln1, x), w_qkv, b_qkv)
            qk = qkv[:, :(H + KV) * D].view(N, H + KV, D)  # RoPE on q and k at once
            qk = qk * cos + _rotate_half(qk) * sin
            q, k = qk.split([H, KV], 1)
            o = attend(i, q, k, qkv[:, (H + KV) * D:])
            x = x + linear(o, w_o)
            g, u = linear(_norm(ln2, x), w_gu).chunk(2, dim=-1)
            x = x + linear(F.silu(g) * u, w_down)
        return x

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(_norm(self.inner.norm, x), *self.head)

    def select(self, idx: torch.Tensor) -> None:
        """Keep these rows, in this order (a row may be repeated: a prompt's n samples)."""
        if self.kn is None or self.vn is None:  # first call, after prefill: allocate the generated part
            shape = (len(idx), self.n_kv, self.max_len - self.prompt_len, self.head_dim)
            self.kn = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
            self.vn = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        else:
            self.kn = [k[idx] for k in self.kn]
            self.vn = [v[idx] for v in self.vn]
        group = self.group[idx]
        live = torch.unique(group)  # prompts with no row left leave the prompt cache
        if len(live) < self.kp[0].shape[0]:
            self.kp = [k[live] for k in self.kp]
            self.vp = [v[live] for v in self.vp]
            self.prompt_bias = self.prompt_bias[live]
            group = torch.searchsorted(live, group)
        self._rows(group)


def _norm(ln: Any, x: torch.Tensor) -> torch.Tensor:
    """The model's RMSNorm; ``F.rms_norm`` where it is the plain one (the same numbers in fp32, fewer ops)."""
    eps = getattr(ln, "variance_epsilon", None)
    if x.dtype == torch.float32 and eps is not None and type(ln).__name__ in _PLAIN_RMS:
        return F.rms_norm(x, (x.shape[-1],), ln.weight, eps)
    return ln(x)


_PLAIN_RMS = {"LlamaRMSNorm", "Qwen2RMSNorm", "MistralRMSNorm"}


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
