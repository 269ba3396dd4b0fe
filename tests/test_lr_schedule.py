"""The learning-rate schedule every algorithm shares (algos.common.lr_at: linear warmup, then
lr_schedule=constant|linear|cosine down to lr x lr_final_ratio), against hand-computed values;
the rate each step used is logged as train/lr; held-out evaluation inside training shows a bar."""

import json
import math
import os
from types import SimpleNamespace as NS

import pytest

from algos import config as cfglib
from algos.common import lr_at


def _cfg(schedule, warmup=2, final=0.0):
    return NS(lr_schedule=schedule, warmup_steps=warmup, lr_final_ratio=final)


@pytest.mark.parametrize("schedule,step,want", [
    # warmup: (step + 1) / warmup_steps of lr, whatever the schedule
    ("constant", 0, 0.5), ("linear", 0, 0.5), ("cosine", 0, 0.5),
    ("constant", 1, 1.0), ("constant", 6, 1.0), ("constant", 10, 1.0),
    # linear over the 8 steps after warmup (total 10): p = (step - 2) / 8
    ("linear", 2, 1.0), ("linear", 4, 0.75), ("linear", 6, 0.5), ("linear", 9, 0.125), ("linear", 10, 0.0),
    # cosine: (1 + cos(pi p)) / 2
    ("cosine", 2, 1.0), ("cosine", 4, (1 + math.sqrt(0.5)) / 2), ("cosine", 6, 0.5), ("cosine", 10, 0.0),
])
def test_schedule_values_by_hand(schedule, step, want):
    assert lr_at(_cfg(schedule), 1.0, step, 10) == pytest.approx(want, abs=1e-12)


def test_final_ratio_and_progress():
    # lr 2, floor 10%: linear at p = 1/2 is 2 x (0.1 + 0.9 x 0.5) = 1.1; cosine at p = 1/4 is 2 x (0.1 + 0.9 x 0.85355...)
    assert lr_at(_cfg("linear", 0, 0.1), 2.0, 5, 10) == pytest.approx(1.1)
    assert lr_at(_cfg("cosine", 0, 0.1), 2.0, 0, 0, progress=0.25) == pytest.approx(2 * (0.1 + 0.9 * (1 + math.sqrt(0.5)) / 2))
    assert lr_at(_cfg("cosine", 0, 0.1), 2.0, 50, 10) == pytest.approx(0.2)  # past the end: the floor
    assert lr_at(_cfg("linear", 3, 0.0), 1.0, 1, 10, progress=0.9) == pytest.approx(2 / 3)  # warmup first


def test_every_algorithm_has_the_keys_and_sft_keeps_its_cosine():
    from algos import dpo, grpo, iterative_dpo, ppo, rejection_sampling, sft

    for mod, cls in ((grpo, "GRPOConfig"), (ppo, "PPOConfig"), (dpo, "DPOConfig"), (sft, "SFTConfig"),
                     (rejection_sampling, "RejectionSamplingConfig"), (iterative_dpo, "IterativeDPOConfig")):
        klass = getattr(mod, cls)
        keys = cfglib.all_keys(klass)
        assert {"lr_schedule", "lr_final_ratio", "warmup_steps"} <= set(keys), mod.__name__
        assert "lr_schedule" in cfglib.help_text(klass, mod.__name__)
        with pytest.raises(cfglib.ConfigError, match="lr_schedule"):
            cfglib.parse(klass, ["lr_schedule=exponential"])
    c = cfglib.parse(sft.SFTConfig, [])
    # SFT's cold start as it was trained: warmup 25, cosine to 10% of lr over 900 steps
    frac = (400 - 25) / (900 - 25)
    assert lr_at(c, c.lr, 400, c.steps) == pytest.approx(c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))))


def _lrs(out):
    return [r["train/lr"] for r in map(json.loads, open(os.path.join(out, "metrics.jsonl"))) if "train/lr" in r]


def test_grpo_logs_the_scheduled_lr_and_shows_a_heldout_bar(tmp_path, capsys):
    from algos import grpo

    out = tmp_path / "g"
    grpo.main(["env=math", "prompts_per_step=2", "group_size=2", "max_new_tokens=16", "heldout_size=4", "steps=3",
               "lr=1e-3", "warmup_steps=1", "lr_schedule=linear", f"out={out}"])
    # step 0: warmup 1/1; step 1: p = 0; step 2: p = 1/2
    assert _lrs(out) == pytest.approx([1e-3, 1e-3, 5e-4])
    err = capsys.readouterr().err
    assert err.count("held-out eval") >= 2 and "task" in err  # before and after, in tqdm's bar


def test_ppo_logs_both_scheduled_lrs(tmp_path):
    from algos import ppo

    out = tmp_path / "p"
    ppo.main(["env=math", "prompts_per_step=2", "samples_per_prompt=2", "minibatches=1", "max_new_tokens=16",
              "heldout_size=4", "steps=2", "lr=1e-3", "critic_lr=4e-3", "warmup_steps=0", "lr_schedule=cosine",
              f"out={out}"])
    rows = [r for r in map(json.loads, open(out / "metrics.jsonl")) if "train/lr" in r]
    # p = 0, then p = 1/2: (1 + cos(pi/2)) / 2 = 1/2 (the floor is reached at the end of the run, step 2)
    assert [r["train/lr"] for r in rows] == pytest.approx([1e-3, 5e-4])
    assert [r["train/critic_lr"] for r in rows] == pytest.approx([4e-3, 2e-3])
