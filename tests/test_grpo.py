import json
import math
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from algos import grpo
from policies.tiny import SHIPPED

FAST = ["env=math", "prompts_per_step=4", "group_size=4", "max_new_tokens=48", "heldout_size=8", "samples_every=1",
        "lr=1e-3", "warmup_steps=1"]


def _rows(d):
    return [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]


def test_grpo_smoke_params_change_logs_finite(tmp_path):
    out = tmp_path / "run"
    s = grpo.main(FAST + ["steps=3", "beta=0.05", "mu=2", "minibatches=2", f"out={out}"])
    rows = [r for r in _rows(out) if "loss/policy" in r]
    assert len(rows) == 3
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                assert math.isfinite(v), (k, v)
    assert all(k in rows[0] for k in ("reward/mean", "reward/correct", "reward/format", "policy/entropy", "loss/kl",
                                       "rollout/zero_std_groups", "perf/tokens_per_second", "policy/clip_frac"))
    trained = AutoModelForCausalLM.from_pretrained(s["checkpoint"])
    start = AutoModelForCausalLM.from_pretrained(SHIPPED["tiny-sft"])
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), start.parameters()))
    summary = json.load(open(out / "summary.json"))
    assert {"heldout_accuracy_before", "heldout_accuracy_after", "steps", "wall_seconds"} <= set(summary)
    assert (out / "curves.png").exists() and (out / "samples.jsonl").exists() and (out / "config.yaml").exists()
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out))


@pytest.mark.parametrize("opts", [["advantage=none", "loss_agg=constant"], ["advantage=batch", "loss_agg=sequence"],
                                  ["dynamic_sampling=true", "truncation=penalty", "max_new_tokens=8"]])
def test_grpo_variants_run(tmp_path, opts):
    s = grpo.main(FAST + ["steps=1", f"out={tmp_path / 'v'}"] + opts)
    assert s["steps"] == 1


def test_cli_errors_unknown_key_and_env():
    p = subprocess.run([sys.executable, "-m", "algos.grpo", "group_sise=4"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "did you mean 'group_size'" in p.stderr
    p = subprocess.run([sys.executable, "-m", "algos.grpo", "env=maths"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Did you mean: math" in p.stderr
    p = subprocess.run([sys.executable, "-m", "algos.grpo", "env.difficulty=9", "steps=1"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "difficulty must be an integer from 1 to 5" in p.stderr
    p = subprocess.run([sys.executable, "-m", "algos.grpo", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "eps_high" in p.stdout and "dynamic_sampling" in p.stdout


@pytest.mark.parametrize("agg", ["token", "sequence", "constant"])
def test_leaving_out_zero_advantage_rows_keeps_loss_and_gradients(agg):
    from algos import losses
    from policies import PolicyConfig, load_model
    from policies.hf import collate, token_logprobs

    model, tok = load_model(PolicyConfig())
    g = torch.Generator().manual_seed(0)
    prompts = [[5 + i, 6, 7][: 1 + i % 3] for i in range(6)]
    comps = [torch.randint(5, 30, (3 + i,), generator=g).tolist() for i in range(6)]
    batch = collate(prompts, comps, tok.pad_token_id)
    mask = batch.completion_mask.clone()
    mask[4] = 0.0  # a masked (truncated) row
    adv = torch.tensor([0.5, 0.0, -1.0, 0.0, 2.0, 0.0])
    with torch.no_grad():
        old = token_logprobs(model, batch) - 0.05

    def loss_and_grad(b, o, m, a, scale):
        model.zero_grad()
        pg, _ = losses.clipped_pg_loss(token_logprobs(model, b), o, a, 0.2, 0.28)
        loss = losses.aggregate(pg, m, agg, 16) * scale
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    full, gf = loss_and_grad(batch, old, mask, adv, 1.0)
    live = ((adv != 0) & (mask.sum(-1) > 0)).nonzero().squeeze(-1)
    assert live.tolist() == [0, 2]
    kept, gk = loss_and_grad(batch.rows(live), old[live], mask[live], adv[live], grpo._kept_share(mask, live, agg))
    assert kept == pytest.approx(full, rel=1e-5, abs=1e-7)
    assert len(gf) == len(gk) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(gf, gk))
