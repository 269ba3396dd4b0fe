"""Memory bounds that do not change the numbers: the generation token budget
(policy.max_batch_tokens) and activation checkpointing (gradient_checkpointing=true)."""

import copy

import pytest
import torch

import policies.hf as hf
from policies import PolicyConfig, SamplingParams, load
from policies.base import PolicyError
from policies.hf import TransformersEngine, collate, enable_activation_checkpointing, token_logprobs
from policies.tiny import SHIPPED, build_model

PROMPTS = ["Compute: 1 + 2", "Compute: 345 - 67 and a longer prompt", "x", "Compute: 9 * 9"]


def test_generation_chunks_by_the_token_budget_with_identical_greedy_outputs(monkeypatch):
    model, tok = build_model(seed=0)
    params = SamplingParams(n=3, temperature=0.0, max_new_tokens=16)
    unbounded = TransformersEngine(model, tok, max_batch_tokens=0).generate(PROMPTS, params)
    budget = 4 * (40 + 16)  # a few rows per pass
    engine = TransformersEngine(model, tok, max_batch_tokens=budget)
    seen: list[tuple[int, int]] = []
    real = engine._generate_rows

    def record(prompts, prompt_ids, p, gen):
        seen.append((len(prompt_ids), max(len(x) for x in prompt_ids)))
        return real(prompts, prompt_ids, p, gen)

    monkeypatch.setattr(engine, "_generate_rows", record)
    bounded = engine.generate(PROMPTS, params)
    assert len(seen) > 2 and sum(n for n, _ in seen) == len(PROMPTS) * 3
    assert all(n * (p + 16) <= budget for n, p in seen)
    for a, b in zip([r for o in bounded for r in o], [r for o in unbounded for r in o]):
        assert a.completion_ids == b.completion_ids and a.prompt == b.prompt
        assert max((abs(x - y) for x, y in zip(a.logprobs, b.logprobs)), default=0.0) < 1e-4
    # the recomputed logprobs go by the same budget and agree with the sampled ones
    flat = [r for o in bounded for r in o]
    for r, lp in zip(flat, engine.logprobs(flat)):
        assert max((abs(x - y) for x, y in zip(r.logprobs, lp)), default=0.0) < 1e-4


def test_token_budget_and_row_limit_together():
    model, tok = build_model(seed=0)
    engine = TransformersEngine(model, tok, max_batch_size=3, max_batch_tokens=70)
    rows = [(i, [1] * n) for i, n in enumerate([10, 10, 10, 10, 30, 5])]
    chunks = engine.chunks(rows, max_new_tokens=10)
    assert [[i for i, _ in c] for c in chunks] == [[0, 1, 2], [3], [4], [5]]  # at most 3 rows; 2 x (30 + 10) > 70
    assert TransformersEngine(model, tok, max_batch_tokens=0).chunks(rows, 10) == [rows]


def test_token_budget_smaller_than_one_row_is_an_error():
    model, tok = build_model(seed=0)
    with pytest.raises(PolicyError, match=r"policy.max_batch_tokens=20 .*raise it to at least"):
        TransformersEngine(model, tok, max_batch_tokens=20).generate(PROMPTS, SamplingParams(max_new_tokens=16))
    with pytest.raises(PolicyError, match="max_batch_tokens=-1"):
        TransformersEngine(model, tok, max_batch_tokens=-1)


def test_policy_config_key_reaches_the_engine():
    engine, _, _ = load(PolicyConfig(model="tiny", max_batch_tokens=1234))
    assert engine.max_batch_tokens == 1234


def _grads(model, batch) -> tuple[dict[str, torch.Tensor], int]:
    """Gradients of a logprob-and-entropy loss, and the elements kept for the backward pass."""
    saved = [0]

    def pack(t):
        saved[0] += t.numel()
        return t

    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logp, ent = token_logprobs(model, batch, 0.7, with_entropy=True)
        loss = ((logp + 0.1 * ent) * batch.completion_mask).sum()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, saved[0]


def test_activation_checkpointing_same_gradients_less_saved():
    model, _ = build_model(seed=0)
    batch = collate([[5, 6, 7]] * 4, [[20 + (i * j) % 40 for j in range(32)] for i in range(4)], 0)
    ref, kept = _grads(copy.deepcopy(model), batch)
    ckpt = copy.deepcopy(model)
    enable_activation_checkpointing(ckpt)
    got, kept_ckpt = _grads(ckpt, batch)
    assert got.keys() == ref.keys()
    for n, g in ref.items():
        assert torch.allclose(got[n], g, atol=1e-5), n
    assert kept_ckpt < kept / 3  # only the layers' inputs are kept
    # sampling is unaffected (no gradients there)
    p = SamplingParams(n=2, temperature=0.0, max_new_tokens=8)
    assert ([r.completion_ids for o in TransformersEngine(ckpt, _tok()).generate(PROMPTS, p) for r in o]
            == [r.completion_ids for o in TransformersEngine(model, _tok()).generate(PROMPTS, p) for r in o])


def _tok():
    return build_model(seed=0)[1]


def test_activation_checkpointing_unsupported_model_is_an_error():
    class Plain(torch.nn.Module):
        supports_gradient_checkpointing = False

    with pytest.raises(PolicyError, match="gradient_checkpointing=false"):
        enable_activation_checkpointing(Plain())


FAST = ["env=math", "prompts_per_step=4", "max_new_tokens=96", "heldout_size=4", "samples_every=0",
        "lr=1e-3", "warmup_steps=1", "steps=1", "save_every=0"]


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_gradient_checkpointing_key_same_update(tmp_path, monkeypatch, algo):
    """gradient_checkpointing=true reaches the trained model (and PPO's critic, a copy of its body) and
    gives the update of gradient_checkpointing=false."""
    import importlib

    from transformers import AutoModelForCausalLM

    mod = importlib.import_module(f"algos.{algo}")
    enabled = []
    real = hf.enable_activation_checkpointing
    monkeypatch.setattr(hf, "enable_activation_checkpointing", lambda m: (enabled.append(m), real(m)))
    extra = ["samples_per_prompt=4"] if algo == "ppo" else ["group_size=4"]
    runs = {}
    for flag in ("false", "true"):
        s = mod.main(FAST + extra + [f"gradient_checkpointing={flag}", f"out={tmp_path / flag}"])
        runs[flag] = AutoModelForCausalLM.from_pretrained(s["checkpoint"])
    assert len(enabled) == 1 and enabled[0].model.gradient_checkpointing
    for a, b in zip(runs["false"].parameters(), runs["true"].parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    start = AutoModelForCausalLM.from_pretrained(SHIPPED["tiny-sft"])
    assert any(not torch.equal(a, b) for a, b in zip(runs["true"].parameters(), start.parameters()))  # it trained


def test_update_memory_benchmark_runs_and_ends_with_grpos_json_line():
    """bench/update_memory.py at a toy size: the old path is skipped when its estimate is over the limit
    (with the reason), the new path runs GRPO's update in a process of its own, the last line is the JSON."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, os.path.join(root, "bench", "update_memory.py"), "--model", "tiny", "--algo", "grpo",
                        "--rows", "4,8", "--tokens", "8", "--prompt", "8", "--limit-gb", "1e-6"],
                       capture_output=True, text=True, timeout=600, cwd=root)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.strip().splitlines()
    assert sum("old" in ln and "skipped: estimated" in ln for ln in lines) == 2
    last = json.loads(lines[-1])
    assert last["rows"] == [4, 8] and last["tokens"] == 8 and len(last["seconds"]) == 2
    assert all(0.1 < g < 8 for g in last["peak_gb"])
