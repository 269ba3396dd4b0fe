from algos.config import ConfigError
import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from algos import sft
from policies.tiny import build_model

FAST = ["env=math", "policy.model=tiny", "batch_size=8", "heldout_size=8", "max_new_tokens=24", "lr=3e-3", "warmup_steps=2"]


def _metrics(d):
    return [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]


def test_sft_smoke_params_change_loss_falls(tmp_path):
    out = tmp_path / "run"
    summary = sft.main(FAST + ["steps=12", f"out={out}"])
    rows = [r for r in _metrics(out) if "loss/sft" in r]
    losses = [r["loss/sft"] for r in rows]
    assert len(losses) == 12 and all(l == l and l < 1e4 for l in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    trained = AutoModelForCausalLM.from_pretrained(summary["checkpoint"])
    fresh, _ = build_model(seed=0)
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), fresh.parameters()))
    s = json.load(open(out / "summary.json"))
    assert {"steps", "wall_seconds", "final_loss", "heldout_accuracy"} <= set(s)
    assert (out / "curves.png").exists() and (out / "config.yaml").exists()


def test_sft_on_a_dataset_file(tmp_path):
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"say {i}", "response": f"<think>ok</think><answer>{i}</answer>"} for i in range(10)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    s = sft.main(["policy.model=tiny", f"data={data}", "steps=3", "batch_size=4", f"out={tmp_path / 'd'}"])
    assert s["steps"] == 3 and s["final_loss"] == s["final_loss"]
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}))
    assert sft.main(["policy.model=tiny", f"data={chat}", "steps=2", "batch_size=2", f"out={tmp_path / 'c'}"])["steps"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"x": 1}))
    with pytest.raises(ConfigError, match="prompt"):
        sft.main(["policy.model=tiny", f"data={bad}", "steps=1", f"out={tmp_path / 'b'}"])


def test_recipe_runs_stages_from_the_previous_checkpoint(tmp_path):
    import yaml

    from algos import recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "stages": [
        {"algo": "sft", "args": {"policy.model": "tiny", "env": "math", "steps": 2, "batch_size": 4, "heldout_size": 4,
                                 "max_new_tokens": 16}},
        {"algo": "grpo", "args": {"env": "math", "steps": 1, "prompts_per_step": 2, "group_size": 2,
                                  "heldout_size": 4, "max_new_tokens": 16}}]}))
    rep = recipe.run(str(path), ["seed=3", f"out={tmp_path / 'out'}"])
    first, second = rep["stages"]
    assert f"policy.model={first['summary']['checkpoint']}" in second["argv"] and "seed=3" in second["argv"]
    assert json.load(open(tmp_path / "out" / "recipe.json"))["checkpoint"] == second["summary"]["checkpoint"]
    with pytest.raises(ConfigError, match="stages"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: x\n")
        recipe.run(str(bad), [])
