"""The transformers engine: batched sampling with a KV cache, and logprob recomputation.

Prompts are left-padded; positions come from the attention mask, so a prompt's tokens see
the same positions whatever its padding. The sampling loop is our own (not
``model.generate``) so that it records, for every sampled token, its logprob under the
policy, and stops each row at EOS, at a stop string or at the length limit.
`token_logprobs` recomputes the same logprobs, with gradients, in one forward pass over
the same layout (left-padded prompt, right-padded completion).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generator, Sequence

import torch
import torch.nn.functional as F

from policies import lean
from policies.base import PolicyError, Prompt, Rollout, SamplingParams, truncate_at_stop

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PolicyError(f"policy.device={device!r} but no CUDA GPU is available; use policy.device=cpu (or auto)")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise PolicyError(f"policy.dtype={dtype!r} is not one of {sorted(DTYPES)}; use policy.dtype=float32 or bfloat16")
    return DTYPES[dtype]


def encode_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of a prompt: chat messages go through the tokenizer's chat template; a list of
    token ids (what a trainer sends a generation server) is taken as it is."""
    if isinstance(prompt, (list, tuple)) and all(isinstance(t, int) for t in prompt) and prompt:
        return list(prompt)
    if isinstance(prompt, str):
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the prompt is a list of chat messages but the tokenizer has no chat template; "
                         "use env.prompt_format=text or a tokenizer with a chat_template")
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclasses.dataclass
class Batch:
    """Prompt (left-padded) then completion (right-padded), as one tensor per row."""

    input_ids: torch.Tensor  # [B, P + C]
    attention_mask: torch.Tensor  # [B, P + C]
    completion_mask: torch.Tensor  # [B, C], 1 on real completion tokens
    prompt_len: int  # P

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.completion_mask.to(device),
                     self.prompt_len)

    def rows(self, idx: torch.Tensor | slice) -> "Batch":
        """The batch restricted to these rows (same layout and prompt length)."""
        return Batch(self.input_ids[idx], self.attention_mask[idx], self.completion_mask[idx], self.prompt_len)


def collate(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_id: int,
            loss_masks: Sequence[Sequence[int] | None] | None = None) -> Batch:
    """One batch; ``loss_masks`` (per row, per completion token, or None) zero the completion mask
    where the environment wrote the tokens (tool results), so no loss is taken there."""
    P = max(len(p) for p in prompt_ids)
    C = max(1, max(len(c) for c in completion_ids))
    B = len(prompt_ids)
    ids = torch.full((B, P + C), pad_id, dtype=torch.long)
    att = torch.zeros((B, P + C), dtype=torch.long)
    cm = torch.zeros((B, C), dtype=torch.float32)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        ids[i, P - len(p):P] = torch.tensor(p, dtype=torch.long)
        att[i, P - len(p):P] = 1
        if c:
            ids[i, P:P + len(c)] = torch.tensor(c, dtype=torch.long)
            att[i, P:P + len(c)] = 1
            cm[i, :len(c)] = 1
            if loss_masks is not None and loss_masks[i] is not None:
                cm[i, :len(c)] = torch.tensor(loss_masks[i], dtype=torch.float32)
    return Batch(ids, att, cm, P)


_FORWARD_PARAMS: dict[type, frozenset[str]] = {}


def _forward_params(model: Any) -> frozenset[str]:
    """The keyword arguments ``model.forward`` takes, looked up once per model class."""
    import inspect

    cls = type(model)
    if cls not in _FORWARD_PARAMS:
        try:
            _FORWARD_PARAMS[cls] = frozenset(inspect.signature(model.forward).parameters)
        except (TypeError, ValueError):
            _FORWARD_PARAMS[cls] = frozenset()
    return _FORWARD_PARAMS[cls]


def _cache_kwarg(model: Any) -> str:
    """transformers >= 5.2x calls the KV cache argument ``cache``; earlier releases ``past_key_values``."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def _cache_of(out: Any) -> Any:
    return out["cache"] if "cache" in out else out.past_key_values


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def _takes_logits_to_keep(model: Any) -> bool:
    """transformers' causal LMs compute the lm_head on the last N positions only with ``logits_to_keep=N``."""
    return "logits_to_keep" in _forward_params(model)


# The lm_head, the logsumexp, the gather and the entropy of this many tokens at a time: about
# 2^25 float32 logits (128 MB) per chunk, so the extra memory of `token_logprobs` is that of one
# chunk, never rows x tokens x vocabulary.
CHUNK_ELEMENTS = 1 << 25

# causal LMs whose logits are exactly ``lm_head(final hidden state)`` (no soft-capping or scaling
# after it), so the chunked path computes what ``model(...).logits`` would
_PLAIN_HEAD = frozenset({"llama", "qwen2", "qwen3", "mistral"})


def token_logprobs(model: Any, batch: Batch, temperature: float = 1.0, with_entropy: bool = False,
                   chunk_size: int | None = None):
    """Per-token logprobs of the completion tokens, [B, C] (and per-token entropy if asked).

    Differentiable: this is the training-time recomputation of `Rollout.logprobs`. The model runs
    to its final hidden states; the lm_head then sees only the real completion positions, a chunk
    of ``chunk_size`` tokens at a time (default: about `CHUNK_ELEMENTS` logits), through
    `ChunkedLogprobs`, which recomputes each chunk's logits in the backward pass. Padding positions
    get 0. ``chunk_size=0`` (and models whose head is not a plain linear layer) take the full path:
    the logits of every completion position at once, in float32.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    plain = (chunk_size != 0 and type(head) is torch.nn.Linear
             and getattr(getattr(model, "config", None), "model_type", None) in _PLAIN_HEAD)
    if not plain:
        return _token_logprobs_full(model, batch, temperature, with_entropy)
    P = batch.prompt_len
    C = batch.input_ids.shape[1] - P
    keep = _takes_logits_to_keep(model)
    real = batch.attention_mask[:, P:].bool()
    targets = batch.input_ids[:, P:][real]
    hidden: list[torch.Tensor] = []

    # The whole model is called (not its decoder and head apart): under FSDP the root module's forward
    # is what gathers the embedding and head weights, and a peft wrapper reaches the base model through
    # it. Two hooks, on for this call only, make the head run on an empty slice and replace its output
    # with the chunked logprobs of the hidden states it was given.
    def capture(mod: Any, args: tuple) -> tuple:
        hidden.append(args[0])
        return (args[0][:, :0],)

    def chunked(mod: Any, args: tuple, out: torch.Tensor) -> torch.Tensor:
        h = hidden.pop()
        h = h[:, :-1] if keep else h[:, P - 1:-1]  # the state before each completion token
        n = chunk_size or max(1, CHUNK_ELEMENTS // mod.weight.shape[0])
        lp, ent = ChunkedLogprobs.apply(h[real], mod.weight, mod.bias, targets, temperature, n, with_entropy)
        both = lp.new_zeros((*real.shape, 2))  # [B, C, (logp, entropy)], 0 at padding
        both[real] = torch.stack([lp, ent], -1)
        return both

    hooks = [head.register_forward_pre_hook(capture), head.register_forward_hook(chunked)]
    try:
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    position_ids=_positions(batch.attention_mask), use_cache=False,
                    **({"logits_to_keep": C + 1} if keep else {}))
    finally:
        for hk in hooks:
            hk.remove()
    logp, entropy = out.logits.unbind(-1)
    return (logp, entropy) if with_entropy else logp


def _token_logprobs_full(model: Any, batch: Batch, temperature: float = 1.0, with_entropy: bool = False):
    """`token_logprobs` the direct way: the float32 logits of every completion position, a full
    log_softmax and (for the entropy) its exp, [B, C, vocabulary] each. Kept as the reference the
    chunked path is tested against, for models whose head is not plain, and for
    ``bench/update_memory.py --path old``."""
    P = batch.prompt_len
    C = batch.input_ids.shape[1] - P
    kw = {"logits_to_keep": C + 1} if _takes_logits_to_keep(model) else {}  # the lm_head only where it is read
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=_positions(batch.attention_mask), use_cache=False, **kw)
    logits = (out.logits[:, :-1, :] if kw else out.logits[:, P - 1:-1, :]).float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    targets = batch.input_ids[:, P:]
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return logp
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def _chunk_stats(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                 temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunk's tempered float32 logits z [n, V], their logsumexp [n] and the targets' z [n]."""
    z = F.linear(h, weight, bias)  # the product in the model's dtype, the reductions in float32 (or float64)
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    if temperature != 1.0:
        z.div_(temperature)  # z is this call's own tensor
    return z, torch.logsumexp(z, -1), z.gather(-1, targets[:, None]).squeeze(-1)


class ChunkedLogprobs(torch.autograd.Function):
    """log softmax(h W^T + b)[target] / temperature and the entropy of that distribution, for
    hidden states h [N, H], a chunk of tokens at a time, as Liger-Kernel's fused linear
    cross-entropy does: no [N, V] tensor is kept. The forward saves h, the targets and per token
    the logsumexp and the entropy; the backward recomputes each chunk's logits and takes, with
    z = logits / T, p = softmax(z), logp = z[target] - lse, H = -sum p log p:

        d logp / dz = onehot(target) - p,     dH / dz = -p (log p + H),

    then d/d logits = (g_logp d logp/dz + g_H dH/dz) / T, grad_h = that @ W, grad_W += that^T @ h
    (accumulated in float32), grad_b += its column sums.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                temperature: float, chunk: int, with_entropy: bool):
        N, acc = h.shape[0], torch.promote_types(h.dtype, torch.float32)
        logp, lse, ent = h.new_empty(N, dtype=acc), h.new_empty(N, dtype=acc), h.new_zeros(N, dtype=acc)
        for s in range(0, N, chunk):
            z, lse[s:s + chunk], zt = _chunk_stats(h[s:s + chunk], weight, bias, targets[s:s + chunk], temperature)
            logp[s:s + chunk] = zt - lse[s:s + chunk]
            if with_entropy:
                z.sub_(lse[s:s + chunk, None])  # log p
                ent[s:s + chunk] = -(z.exp() * z).sum(-1)
        ctx.save_for_backward(h, weight, bias, targets, lse, ent)
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.set_materialize_grads(False)  # an output nothing depends on (the logged entropy) gets None
        if not with_entropy:
            ctx.mark_non_differentiable(ent)
        return logp, ent

    @staticmethod
    def backward(ctx, g_logp: torch.Tensor | None, g_ent: torch.Tensor | None):
        h, weight, bias, targets, lse, ent = ctx.saved_tensors
        T, chunk = ctx.temperature, ctx.chunk
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(h) if need_h else None
        acc = lse.dtype
        grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=acc) if need_b and bias is not None else None
        if g_logp is None and g_ent is None:
            return None, None, None, None, None, None, None
        for s in range(0, h.shape[0], chunk):
            sl = slice(s, s + chunk)
            hc = h[sl]
            z, _, _ = _chunk_stats(hc, weight, bias, targets[sl], T)
            z.sub_(lse[sl, None])  # log p
            p = z.exp()
            if g_ent is not None:  # -p (log p + H) g_H
                g = z.add_(ent[sl, None]).mul_(p).mul_(-g_ent[sl, None])
                if g_logp is not None:
                    g.addcmul_(p, g_logp[sl, None], value=-1.0)
            else:
                g = p.mul_(-g_logp[sl, None])
            if g_logp is not None:
                g.scatter_add_(-1, targets[sl, None], g_logp[sl, None])
            if T != 1.0:
                g.div_(T)
            g = g.to(h.dtype)
            if need_h:
                grad_h[sl] = g @ weight
            if need_w and g.dtype == grad_w.dtype:
                grad_w.addmm_(g.t(), hc)  # no [V, H] temporary
            elif need_w:
                grad_w.add_(g.t() @ hc)  # bfloat16 products, accumulated in float32
            if grad_b is not None:
                grad_b.add_(g.sum(0))
        return (grad_h, grad_w.to(weight.dtype) if grad_w is not None else None,
                grad_b.to(bias.dtype) if grad_b is not None else None, None, None, None, None)


def _filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        cum = probs.cumsum(-1)
        remove = cum - probs > top_p  # keep the smallest set whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
    return logits


LARGE_VOCAB = 8192


def _sample(probs: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """One token per row from ``probs``. Both branches draw exactly from the distribution; they
    differ in cost. ``torch.multinomial`` draws one exponential variate per vocabulary entry (the
    race of exponentials), which dominates a decode step on a 49k vocabulary on a CPU (58 ms of a
    64-row step); for large vocabularies one uniform per row and the inverse of the cumulative
    distribution do the same job. Small vocabularies (the tiny models) keep the first, so their
    seeded samples, and every figure measured with them, stay as they were."""
    if probs.shape[-1] <= LARGE_VOCAB:
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    cdf = probs.cumsum(-1)
    u = torch.rand((probs.shape[0], 1), generator=gen, device=probs.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(-1)


class TransformersEngine:
    """Generation with a Hugging Face causal LM, on CPU or GPU.

    Args:
        model, tokenizer: a causal LM and its tokenizer (``pad_token`` set).
        max_batch_size: rows (prompts x n) per forward pass.
        max_batch_tokens: and at most this many rows x (longest prompt + max_new_tokens) per pass (0: no
            limit), so the KV cache of a step of many long completions is that of a few rows at a time.
        lean: sample through `policies.lean` (a preallocated KV cache and fused projections) when the
            model is a Llama-family decoder; False always uses ``model(...)`` with a transformers cache.
    """

    def __init__(self, model: Any, tokenizer: Any, max_batch_size: int = 256, lean: bool = True,
                 max_batch_tokens: int = 32768):
        if max_batch_size < 1 or max_batch_tokens < 0:
            raise PolicyError(f"policy.max_batch_size={max_batch_size}, policy.max_batch_tokens={max_batch_tokens}: "
                              f"use max_batch_size >= 1 and max_batch_tokens >= 0 (0: no token limit)")
        self.lean = lean
        self.max_batch_tokens = max_batch_tokens
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.eos_ids = {tokenizer.eos_token_id}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            self.eos_ids |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        self.eos_ids.discard(None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _rows(self, prompts: Sequence[Prompt], params: SamplingParams) -> tuple[list[tuple[int, list[int]]], Any]:
        """(prompt index, prompt ids) per sample, ``n`` per prompt, and the seeded generator (None unseeded)."""
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        gen = None if params.seed is None else torch.Generator(device=self.device).manual_seed(params.seed)
        return [(i, ids) for i, ids in enumerate(encoded) for _ in range(params.n)], gen

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Rollout]]:
        rows, gen = self._rows(prompts, params)
        outs: list[Rollout] = []
        for chunk in self.chunks(rows, params.max_new_tokens):
            outs += self._generate_rows([prompts[i] for i, _ in chunk], [ids for _, ids in chunk], params, gen)
        return [outs[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    def generate_steps(self, prompts: Sequence[Prompt], params: SamplingParams,
                       abort: Callable[[], bool] | None = None) -> Generator[None, None, list[list[Rollout]]]:
        """`generate` one decode step at a time, for a server that interleaves requests: a generator that
        yields after every forward pass and returns what `generate` returns (the same tokens and
        logprobs). ``close()`` it to cancel (nothing more is computed). When ``abort()`` turns true the
        rows still running end where they are with finish reason ``abort`` (vLLM's), and rows not yet
        started end empty with ``abort``."""
        rows, gen = self._rows(prompts, params)
        outs: list[Rollout] = []
        for chunk in self.chunks(rows, params.max_new_tokens):
            chunk_prompts = [prompts[i] for i, _ in chunk]
            if abort is not None and abort():
                outs += [Rollout(p, "", tuple(ids), (), (), "abort") for p, (_, ids) in zip(chunk_prompts, chunk)]
                continue
            outs += yield from self._row_steps(chunk_prompts, [ids for _, ids in chunk], params, gen, abort)
        return [outs[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    def chunks(self, rows: list[tuple[int, list[int]]], max_new_tokens: int) -> list[list[tuple[int, list[int]]]]:
        """Consecutive runs of rows, each at most ``max_batch_size`` rows and ``max_batch_tokens``
        rows x (its longest prompt + ``max_new_tokens``) tokens: what the forward passes and the KV
        cache of one chunk hold."""
        out: list[list[tuple[int, list[int]]]] = []
        longest = 0  # the longest prompt in the last chunk
        for row in rows:
            if self.max_batch_tokens and len(row[1]) + max_new_tokens > self.max_batch_tokens:
                raise PolicyError(f"policy.max_batch_tokens={self.max_batch_tokens} is smaller than one row (a "
                                  f"{len(row[1])}-token prompt + max_new_tokens {max_new_tokens}); raise it to at "
                                  f"least {len(row[1]) + max_new_tokens}, or 0 for no token limit")
            longest_with = max(longest, len(row[1]))
            if out and len(out[-1]) < self.max_batch_size and (not self.max_batch_tokens or (
                    len(out[-1]) + 1) * (longest_with + max_new_tokens) <= self.max_batch_tokens):
                out[-1].append(row)
                longest = longest_with
            else:
                out.append([row])
                longest = len(row[1])
        return out

    def _generate_rows(self, prompts: list[Prompt], prompt_ids: list[list[int]], params: SamplingParams,
                       gen: torch.Generator | None) -> list[Rollout]:
        steps = self._row_steps(prompts, prompt_ids, params, gen)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    @torch.inference_mode()
    def _row_steps(self, prompts: list[Prompt], prompt_ids: list[list[int]], params: SamplingParams,
                   gen: torch.Generator | None, abort: Callable[[], bool] | None = None
                   ) -> Generator[None, None, list[Rollout]]:
        """The sampling loop over one chunk of rows, yielding after each forward pass (`_generate_rows`
        runs it through; `generate_steps` interleaves it with other requests')."""
        model, tok, dev = self.model, self.tokenizer, self.device
        was_training = model.training
        model.eval()
        try:
            return (yield from self._row_loop(model, tok, dev, prompts, prompt_ids, params, gen, abort))
        finally:
            if was_training:
                model.train()

    def _row_loop(self, model: Any, tok: Any, dev: torch.device, prompts: list[Prompt], prompt_ids: list[list[int]],
                  params: SamplingParams, gen: torch.Generator | None, abort: Callable[[], bool] | None
                  ) -> Generator[None, None, list[Rollout]]:
        B = len(prompt_ids)
        P = max(len(p) for p in prompt_ids)
        # each distinct prompt is run once (n samples of a prompt share it): the lean decoder shares its KV
        # cache among them, the generic path copies it to each
        slot: dict[tuple[int, ...], int] = {}
        of_row = [slot.setdefault(tuple(p), len(slot)) for p in prompt_ids]
        pad = tok.pad_token_id
        ids = torch.full((len(slot), P), pad, dtype=torch.long)
        mask = torch.zeros((len(slot), P), dtype=torch.long)
        for p, i in slot.items():
            ids[i, P - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, P - len(p):] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        pos = _positions(mask)
        dec = lean.LeanDecoder(model, len(slot), P + params.max_new_tokens, rows=B) \
            if self.lean and lean.supports(model) else None
        if dec is not None:
            past, logits = None, dec.prefill(ids, mask, pos)
        else:
            cache_kw = _cache_kwarg(model)
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
            past, logits = _cache_of(out), out.logits[:, -1, :]
        yield
        expand = torch.tensor(of_row, device=dev)
        if dec is not None:
            dec.select(expand)  # every sample row gets its prompt's cache
        elif len(slot) < B:
            past.batch_select_indices(expand)
        logits, mask, pos = logits[expand], mask[expand], pos[expand]
        next_pos = pos[:, -1:] + 1
        eos = torch.tensor(sorted(self.eos_ids), device=dev)
        active = list(range(B))  # original row of each row still in the batch
        toks: list[list[int]] = [[] for _ in range(B)]
        lps: list[list[float]] = [[] for _ in range(B)]
        finish = ["length"] * B
        stop_at = [0] * B  # completion tokens to keep, for rows stopped by a stop string
        max_stop = max((len(s) for s in params.stop), default=0)
        for t in range(params.max_new_tokens):
            logits = logits.float()
            # the sampling distribution's logprobs: logits / temperature (raw logits when greedy)
            scaled = logits / params.temperature if params.temperature not in (0, 1) else logits  # x / 1 == x
            logp_all = F.log_softmax(scaled, dim=-1)
            if params.temperature == 0:
                nxt = logits.argmax(-1)
            else:
                filtered = params.top_k > 0 or params.top_p < 1.0
                probs = _filter_logits(logits, params.temperature, params.top_k, params.top_p).softmax(-1) \
                    if filtered else logp_all.exp()
                nxt = _sample(probs, gen)
            lp = logp_all.gather(-1, nxt[:, None]).squeeze(-1)
            hit_eos = torch.isin(nxt, eos)
            keep: list[int] = []
            for j, (tok_id, l, e) in enumerate(zip(nxt.tolist(), lp.tolist(), hit_eos.tolist())):
                row = active[j]
                toks[row].append(tok_id)
                lps[row].append(l)
                if e:
                    finish[row] = "eos"
                elif params.stop and any(s in tok.decode(toks[row][-(max_stop + 1):], skip_special_tokens=True)
                                         for s in params.stop):
                    finish[row], stop_at[row] = "stop", len(toks[row])
                else:
                    keep.append(j)
            if not keep or t + 1 == params.max_new_tokens:
                break
            if abort is not None and abort():  # the rows still running end here, as vLLM's abort leaves them
                for j in keep:
                    finish[active[j]] = "abort"
                break
            if len(keep) < len(active):  # drop finished rows from the batch and its KV cache
                idx = torch.tensor(keep, device=dev)
                if dec is not None:
                    dec.select(idx)
                else:
                    past.batch_select_indices(idx)
                mask, next_pos, nxt = mask[idx], next_pos[idx], nxt[idx]
                active = [active[j] for j in keep]
            if dec is not None:
                logits = dec.step(nxt, next_pos[:, 0])
            else:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos, use_cache=True,
                            **{cache_kw: past})
                past, logits = _cache_of(out), out.logits[:, -1, :]
            next_pos = next_pos + 1
            yield
        rollouts = []
        for i in range(B):
            n = stop_at[i] if finish[i] == "stop" else len(toks[i])  # an EOS token is kept
            comp = toks[i][:n]
            text = tok.decode(comp, skip_special_tokens=True)
            if finish[i] == "stop":
                text, _ = truncate_at_stop(text, params.stop)
            rollouts.append(Rollout(prompts[i], text, tuple(prompt_ids[i]), tuple(comp), tuple(lps[i][:n]), finish[i]))  # type: ignore[arg-type]
        return rollouts

    def logprobs(self, rollouts: Sequence[Rollout], temperature: float = 1.0) -> list[list[float]]:
        """Recompute each rollout's completion-token logprobs under the current weights (no grad),
        at the temperature it was sampled with."""
        out: list[list[float]] = []
        rows = [(i, list(r.prompt_ids)) for i, r in enumerate(rollouts)]
        for chunk in self.chunks(rows, max((len(r.completion_ids) for r in rollouts), default=0)):  # the token budget
            part = [rollouts[i] for i, _ in chunk]
            batch = collate([r.prompt_ids for r in part], [r.completion_ids for r in part],
                            self.tokenizer.pad_token_id).to(self.device)
            with torch.inference_mode():
                lp = token_logprobs(self.model, batch, temperature=temperature)
            out += [lp[i, :len(r.completion_ids)].tolist() for i, r in enumerate(part)]
        return out


# glibc's malloc serves a request of at least this many bytes by mmap, so freeing it gives the memory
# back to the system at once (see `return_freed_memory`)
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def return_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc malloc's mmap threshold at ``threshold`` bytes for this process, so that the CPU
    tensors a training step frees go back to the system instead of staying in the heap.

    By default glibc raises the threshold to the size of each mmap'd block freed (up to 32 MiB): after
    the first activations of a step are freed, tensors of up to 32 MiB come from the heap, whose free
    space is returned only from its top, and a step's small live tensors (a LoRA layer's rank-r
    products, the checkpointed layers' inputs) pin it there. Measured (issue 30, SmolLM2-135M, one
    checkpointed forward of 8 x 320 tokens): resident memory +1.22 GB full fine-tuning, +2.35 GB LoRA,
    with the live tensors of both about the same; with the threshold fixed +0.70 GB each. Setting it
    also turns glibc's dynamic adjustment off. Does nothing (returns False) without glibc or when
    ``MALLOC_MMAP_THRESHOLD_`` is set in the environment (the user's choice stands)."""
    import ctypes
    import os
    import platform

    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


def enable_activation_checkpointing(model: Any) -> None:
    """Keep only each decoder layer's input in the forward pass and recompute the layer in the
    backward (transformers' activation checkpointing, non-reentrant ``torch.utils.checkpoint``).
    Generation is unaffected: it runs without gradients."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise PolicyError(f"gradient_checkpointing=true: {type(model).__name__} does not support activation "
                          f"checkpointing in transformers; use gradient_checkpointing=false")
    kw = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x (the old name warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)


def train_without_dropout(model: Any) -> Any:
    """Training mode with the model's own dropout off: ``model.train()`` (activation checkpointing, which
    transformers runs in training mode only, stays on), then every ``nn.Dropout`` and every module with an
    ``attention_dropout`` (transformers' attention applies it in training mode only) back in eval mode. The
    training forward is then the sampling one, so the loss's logprobs are the sampler's (RL's ratios and
    KL assume it; TRL's ``disable_dropout`` does the same). LoRA's own dropout (``lora.dropout``, an explicit
    choice) is left on. Returns the model."""
    import torch.nn as nn

    model.train()
    for name, m in model.named_modules():
        if "lora_" in name:
            continue
        if isinstance(m, nn.modules.dropout._DropoutNd) or isinstance(getattr(m, "attention_dropout", None), float):
            m.eval()
    return model
