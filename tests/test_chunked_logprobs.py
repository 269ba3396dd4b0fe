"""Chunked logprobs and entropy (policies.hf.token_logprobs, ChunkedLogprobs) against the direct
full-vocabulary path: values and gradients, tied and untied heads, temperature, entropy, a head
with a bias, the path without logits_to_keep, and what is kept for the backward pass."""

import copy

import pytest
import torch

from policies.hf import ChunkedLogprobs, _token_logprobs_full, collate, token_logprobs
from policies.tiny import build_model, build_tokenizer

PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14]]
COMPLETIONS = [[20, 21, 22, 23, 24, 25], [30, 31], [40, 41, 42], []]


def _random_model(arch: str):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = build_tokenizer()
    kw = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, eos_token_id=tok.eos_token_id,
              pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**kw)) if arch == "llama" else Qwen2ForCausalLM(Qwen2Config(**kw))


def _model(arch: str):
    if arch == "tiny":
        model, _ = build_model(seed=0)
        assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as SmolLM2's
        return model
    return _random_model(arch)


def _run(model, fn, batch, temperature, with_entropy, **kw):
    """(outputs at real completion tokens, gradients of every parameter) of a loss that uses logp and entropy."""
    model.zero_grad(set_to_none=True)
    out = fn(model, batch, temperature, with_entropy, **kw)
    outs = out if with_entropy else (out,)
    m = batch.completion_mask
    weights = torch.linspace(-1.0, 2.0, m.shape[1])  # a different upstream gradient per token
    loss = sum((o * m * weights * (i + 1.5)).sum() for i, o in enumerate(outs))
    loss.backward()
    return [o.detach() * m for o in outs], {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["tiny", "llama", "qwen2"])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("with_entropy", [False, True])
def test_chunked_matches_the_full_path_values_and_gradients(arch, temperature, with_entropy):
    model = _model(arch).train()
    batch = collate(PROMPTS, COMPLETIONS, 0)
    ref_out, ref_grad = _run(copy.deepcopy(model), _token_logprobs_full, batch, temperature, with_entropy)
    for chunk in (1, 4, None):  # token by token, chunks across rows, the default (one chunk here)
        out, grad = _run(copy.deepcopy(model), token_logprobs, batch, temperature, with_entropy, chunk_size=chunk)
        for a, b in zip(out, ref_out):
            assert torch.allclose(a, b, atol=2e-5), (chunk, (a - b).abs().max())
        assert grad.keys() == ref_grad.keys()
        for name, g in ref_grad.items():
            assert torch.allclose(grad[name], g, atol=2e-5, rtol=1e-4), (chunk, name, (grad[name] - g).abs().max())
    head = "model.embed_tokens.weight" if arch == "tiny" else "lm_head.weight"
    assert ref_grad[head].abs().sum() > 0  # the head's gradient (the shared embedding when tied) is compared


def test_without_logits_to_keep_and_chunk_size_zero():
    """A model whose forward has no logits_to_keep gets the same numbers; chunk_size=0 is the full path."""
    import policies.hf as hf

    model = _model("llama")
    batch = collate(PROMPTS, COMPLETIONS, 0)
    ref = _token_logprobs_full(model, batch, 0.8, True)
    cls = type(model)
    saved = hf._forward_params(model)
    hf._FORWARD_PARAMS[cls] = saved - {"logits_to_keep"}
    try:
        assert not hf._takes_logits_to_keep(model)
        got = token_logprobs(model, batch, 0.8, True)
    finally:
        hf._FORWARD_PARAMS[cls] = saved
    m = batch.completion_mask
    for a, b in zip(got, ref):
        assert torch.allclose(a * m, b * m, atol=2e-5)
    full = token_logprobs(model, batch, 0.8, True, chunk_size=0)
    assert all(torch.equal(a, b) for a, b in zip(full, ref))


def test_function_gradients_with_a_head_bias_in_float64():
    """ChunkedLogprobs' hand-written backward (h, weight and bias; logp and entropy) against autograd's
    numerical gradient."""
    torch.manual_seed(0)
    N, H, V = 7, 5, 11
    h = torch.randn(N, H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, H, dtype=torch.float64, requires_grad=True)
    b = torch.randn(V, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, V, (N,))
    for temperature in (1.0, 0.7):
        assert torch.autograd.gradcheck(lambda h, w, b: ChunkedLogprobs.apply(h, w, b, t, temperature, 3, True),
                                        (h, w, b))
    lp, ent = ChunkedLogprobs.apply(h, w, b, t, 0.7, 3, True)
    logp_all = torch.log_softmax((h @ w.T + b) / 0.7, -1)
    assert torch.allclose(lp, logp_all.gather(-1, t[:, None]).squeeze(-1))
    assert torch.allclose(ent, -(logp_all.exp() * logp_all).sum(-1))


def test_entropy_used_only_detached_and_frozen_head():
    """GRPO logs the entropy (no gradient through it); LoRA freezes the head: the gradients that remain
    are still those of the full path."""
    model = _model("llama").train()
    model.lm_head.weight.requires_grad_(False)
    batch = collate(PROMPTS, COMPLETIONS, 0)
    grads = []
    for fn in (token_logprobs, _token_logprobs_full):
        m = copy.deepcopy(model)
        logp, ent = fn(m, batch, 0.9, True)
        ((logp * batch.completion_mask).sum() + 0 * ent.detach().sum()).backward()
        assert m.lm_head.weight.grad is None
        grads.append(m.model.layers[0].mlp.down_proj.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=2e-5)


def test_no_rows_x_tokens_x_vocabulary_tensor_is_kept_for_backward():
    """The full path keeps [rows, tokens, vocabulary] float32 tensors for its backward pass; the
    chunked path keeps nothing larger than the hidden states."""
    model = _model("llama").train()
    rows, C = 4, 24
    batch = collate([[5, 6, 7]] * rows, [[20 + (i + j) % 50 for j in range(C)] for i in range(rows)], 0)
    V = model.config.vocab_size

    def largest_saved(fn) -> int:
        sizes = []

        def pack(t):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(model, batch, 0.7, True)
        return max(sizes)

    assert largest_saved(_token_logprobs_full) >= rows * C * V
    hidden = batch.input_ids.numel() * model.config.hidden_size
    assert largest_saved(lambda *a: token_logprobs(*a, chunk_size=8)) <= max(hidden, model.config.intermediate_size * batch.input_ids.numel())


def test_bfloat16_close_to_float32():
    model = _model("qwen2")
    batch = collate(PROMPTS, COMPLETIONS, 0)
    ref = _token_logprobs_full(model, batch, 0.7)
    half = copy.deepcopy(model).to(torch.bfloat16)
    got = token_logprobs(half, batch, 0.7)
    full_half = _token_logprobs_full(half, batch, 0.7)
    m = batch.completion_mask
    assert got.dtype == torch.float32
    assert (got * m - full_half * m).abs().max() < 1e-2  # same bf16 products, float32 reductions
    assert (got * m - ref * m).abs().max() < 0.1


def test_lean_sampler_records_what_the_chunked_path_recomputes():
    """The logprobs the lean decoder records while sampling (one [rows, vocabulary] row of logits per
    step) are those the chunked training path recomputes, at a temperature != 1."""
    from policies import SamplingParams, lean
    from policies.hf import TransformersEngine

    model, tok = build_model(seed=0)
    assert lean.supports(model)
    out = TransformersEngine(model, tok).generate(["Compute: 1 + 2", "Compute: 34 - 5"],
                                                  SamplingParams(n=3, temperature=0.7, max_new_tokens=20, seed=3))
    flat = [r for o in out for r in o]
    batch = collate([r.prompt_ids for r in flat], [r.completion_ids for r in flat], tok.pad_token_id)
    with torch.no_grad():
        lp = token_logprobs(model, batch, 0.7, chunk_size=5)
    for i, r in enumerate(flat):
        assert torch.allclose(lp[i, :len(r.logprobs)], torch.tensor(r.logprobs), atol=1e-4)
