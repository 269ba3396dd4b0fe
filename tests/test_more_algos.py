from algos.config import ConfigError
"""PPO, rejection sampling, iterative DPO and offline DPO/ORPO/SimPO/KTO: the pure pieces by
hand, then smoke tests on the tiny model (parameters change, logs finite, run folder complete)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

import envs
from algos import dpo, iterative_dpo, ppo, preference, rejection_sampling
from algos.preference import build_pairs
from envs.math_procedural import slipped_solution
from policies.tiny import SHIPPED

FAST = ["env=math", "max_new_tokens=48", "heldout_size=8", "samples_every=1", "lr=1e-3", "warmup_steps=1"]


def _rows(d):
    return [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]


def _check_run(out, summary, key):
    rows = [r for r in _rows(out) if key in r]
    assert rows
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                assert math.isfinite(v), (k, v)
    trained = AutoModelForCausalLM.from_pretrained(summary["checkpoint"])
    start = AutoModelForCausalLM.from_pretrained(SHIPPED["tiny-sft"])
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), start.parameters()))
    saved = json.load(open(out / "summary.json"))
    assert {"heldout_accuracy_before", "heldout_accuracy_after", "steps", "wall_seconds"} <= set(saved)
    assert (out / "curves.png").exists() and (out / "config.yaml").exists()
    return rows


# ---------------------------------------------------------------------- pure functions


def test_build_pairs_by_hand():
    # best: reward 1 and shortest first; worst: reward 0 and longest first
    assert build_pairs([1.0, 0.0, 1.0, 0.0], [10, 5, 7, 9], max_pairs=1) == [(2, 3)]
    assert build_pairs([1.0, 0.0, 1.0, 0.0], [10, 5, 7, 9], max_pairs=4) == [(2, 3), (0, 1)]
    assert build_pairs([1.0, 1.0, 1.0], [3, 2, 1], max_pairs=3) == []  # all tied: no preference
    assert build_pairs([0.0, 0.0], [3, 2]) == []
    # one right answer among four: one pair; the next candidates tie (0.1 vs 0.1), so no second pair
    assert build_pairs([0.1, 1.1, 0.0, 0.1], [4, 4, 4, 6], max_pairs=2) == [(1, 2)]
    # two right answers: the shorter one pairs with the worst, the longer with the next worst
    assert build_pairs([0.1, 1.1, 0.0, 1.1], [4, 4, 4, 6], max_pairs=2) == [(1, 2), (3, 0)]
    # three-way rewards stop once chosen is no better than rejected
    assert build_pairs([0.5, 0.5, 0.5, 1.0], [1, 2, 3, 4], max_pairs=4) == [(3, 2)]
    with pytest.raises(ValueError):
        build_pairs([1.0], [1, 2])


def test_token_rewards_by_hand():
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -0.5], [-0.5, -1.0, -3.0]])
    r = ppo.token_rewards(torch.tensor([1.0, 0.0]), old, ref, mask, kl_coef=0.1)
    want = torch.tensor([[-0.05, 0.0, 1.0], [0.05, 0.0, 0.0]])
    assert torch.allclose(r, want)
    r0 = ppo.token_rewards(torch.tensor([1.0, 0.5]), old, None, mask, kl_coef=0.1)
    assert torch.allclose(r0, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.5, 0.0]]))


class _V:
    def __init__(self, correct):
        self.correct = correct


class _R:
    def __init__(self, reward, correct):
        self.reward, self.verdicts = reward, {"correct": _V(correct)}


class _Ro:
    def __init__(self, text, n):
        self.text, self.completion_ids = text, tuple(range(n))


def test_rejection_select_by_hand():
    ro = [_Ro("a", 5), _Ro("b", 3), _Ro("c", 4), _Ro("b", 3), _Ro("x", 2), _Ro("y", 2)]
    res = [_R(1.1, True), _R(1.1, True), _R(0.1, False), _R(1.1, True), _R(0.0, False), _R(0.1, False)]
    # tasks are groups of 3: [0,1,2] and [3,4,5]
    assert rejection_sampling.select(ro, res, 3, "best") == [1, 3]
    assert rejection_sampling.select(ro, res, 3, "all") == [0, 1, 3]
    # a wrong answer with the best reward is never accepted
    assert rejection_sampling.select([_Ro("z", 1)], [_R(0.1, False)], 1, "best") == []


def test_slipped_solutions_by_hand():
    assert slipped_solution("Compute: 381 + 592") == (["1+2=3", "8+9=17 carry 1", "3+5=8", "381+592=873"], 873)
    assert slipped_solution("Compute: 310 + 646") is None  # no carry into the leading column
    assert slipped_solution("Compute: 768 - 280") == (["8-0=8", "16-8=8 borrow 1", "7-2=5", "768-280=588"], 588)
    assert slipped_solution("Compute: 971 - 241") is None
    assert slipped_solution("Compute: 45 * 5") == (["40*5=200", "5*5=25", "200+25=205"], 205)
    assert slipped_solution("Compute: 62 * 3") is None
    assert slipped_solution("Solve for x: 3x + 5 = 20") is None


def test_demonstrations_slip_at_the_configured_rate():
    clean = envs.make("math").unwrapped
    slip = envs.make("math", demo_slip_rate=0.6).unwrapped
    always = envs.make("math", demo_slip_rate=1.0).unwrapped
    tasks = clean.tasks(1000, "train")
    assert all(clean.demonstration(t) == clean.gold_completion(t) for t in tasks)
    spots = [t for t in tasks if slipped_solution(t.prompt) is not None]
    assert all(always.demonstration(t) != always.gold_completion(t) for t in spots)
    share = sum(slip.demonstration(t) != slip.gold_completion(t) for t in spots) / len(spots)
    assert 0.55 < share < 0.65
    # a slipped demonstration is scored wrong by the verifier; rewards do not change
    t = spots[0]
    res = slip.score_batch([always.demonstration(t), slip.gold_completion(t)], [t, t])
    assert res[0].parts["correct"] == 0.0 and res[1].parts["correct"] == 1.0
    with pytest.raises(envs.EnvError, match="demo_slip_rate"):
        envs.make("math", demo_slip_rate=1.5)


# ---------------------------------------------------------------------- preference data


def _write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def test_preference_file_builder_and_loader(tmp_path):
    out = tmp_path / "prefs.jsonl"
    r = preference.build_main([f"out={out}", "tasks=16", "samples_per_task=4", "max_new_tokens=48", "pairs_per_task=2"])
    rows = [json.loads(line) for line in open(out)]
    assert r["rows"] == len(rows) > 0
    assert all(x["chosen_reward"] > x["rejected_reward"] for x in rows)
    from policies import PolicyConfig, load_model

    _, tok = load_model(PolicyConfig())
    pairs = preference.load_preference_data(str(out), tok, "pairs")
    assert len(pairs) == len(rows) and pairs[0].chosen_ids[-1] == tok.eos_token_id
    thumbs = preference.load_preference_data(str(out), tok, "thumbs")  # pairs split into good and bad
    assert len(thumbs) == 2 * len(rows) and thumbs[0].desirable and not thumbs[1].desirable
    kto = tmp_path / "kto.jsonl"
    r = preference.build_main([f"out={kto}", "tasks=8", "samples_per_task=4", "max_new_tokens=48", "format=kto"])
    krows = [json.loads(line) for line in open(kto)]
    assert {"prompt", "completion", "label"} <= set(krows[0]) and r["rows"] == len(krows)
    bad = tmp_path / "bad.jsonl"
    _write_jsonl(bad, [{"question": "q", "answer": "a"}])
    with pytest.raises(ConfigError, match="prompt, chosen"):
        preference.load_preference_data(str(bad), tok, "pairs")


# ---------------------------------------------------------------------- smoke tests of each module


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    d = tmp_path_factory.mktemp("prefs")
    path = d / "prefs.jsonl"
    preference.build_main([f"out={path}", "tasks=24", "samples_per_task=4", "max_new_tokens=48"])
    return path


@pytest.mark.parametrize("loss", ["dpo", "orpo", "simpo", "kto"])
def test_dpo_losses_smoke(tmp_path, prefs, loss):
    out = tmp_path / loss
    s = dpo.main(FAST + [f"data={prefs}", f"loss={loss}", "batch_size=4", "steps=3", f"out={out}"])
    rows = _check_run(out, s, f"loss/{loss}")
    assert len(rows) == 3 and s["steps"] == 3


def test_dpo_first_step_loss_is_log2(tmp_path, prefs):
    """At step 0 the policy equals the reference, so every pair's DPO loss is -log sigmoid(0) = log 2."""
    out = tmp_path / "d"
    dpo.main(FAST + [f"data={prefs}", "loss=dpo", "batch_size=4", "steps=1", f"out={out}"])
    first = [r for r in _rows(out) if "loss/dpo" in r][0]
    assert abs(first["loss/dpo"] - math.log(2)) < 1e-5


def test_dpo_needs_data_and_right_columns(tmp_path):
    p = subprocess.run([sys.executable, "-m", "algos.dpo", f"out={tmp_path / 'x'}"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "data= is required" in p.stderr
    bad = tmp_path / "bad.jsonl"
    _write_jsonl(bad, [{"prompt": "p", "completion": "c", "label": True}])
    p = subprocess.run([sys.executable, "-m", "algos.dpo", f"data={bad}", f"out={tmp_path / 'y'}"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "use loss=kto" in p.stderr


def test_rejection_sampling_smoke(tmp_path):
    out = tmp_path / "rs"
    s = rejection_sampling.main(FAST + ["rounds=2", "tasks_per_round=8", "samples_per_task=4", "batch_size=4",
                                        "temperature=1.0", f"out={out}"])
    _check_run(out, s, "rs/accepted")
    accepted = [json.loads(line) for line in open(out / "accepted.jsonl")]
    assert accepted and all(r["reward"] >= 1.0 for r in accepted)
    # the accepted set is an SFT dataset
    from algos import sft

    r = sft.main([f"data={out / 'accepted.jsonl'}", "steps=2", "batch_size=4", f"out={tmp_path / 'sft'}"])
    assert math.isfinite(r["final_loss"])


def test_iterative_dpo_smoke(tmp_path):
    out = tmp_path / "idpo"
    s = iterative_dpo.main(FAST + ["rounds=2", "tasks_per_round=8", "samples_per_task=4", "batch_size=4",
                                   "ref_refresh_every=1", "temperature=1.0", f"out={out}"])
    rows = _check_run(out, s, "pref/pairs")
    assert any(r["pref/pairs"] > 0 for r in rows)


def test_ppo_smoke(tmp_path):
    out = tmp_path / "ppo"
    s = ppo.main(FAST + ["steps=2", "prompts_per_step=4", "samples_per_prompt=2", "minibatches=2", f"out={out}"])
    rows = _check_run(out, s, "loss/value")
    assert all(k in rows[0] for k in ("loss/policy", "policy/kl_ref", "value/mean", "policy/approx_kl"))
    assert os.path.exists(os.path.join(s["checkpoint"], "critic.pt"))


def test_ctrl_c_saves_then_resume_finishes(tmp_path, monkeypatch):
    out = tmp_path / "rs"
    real = rejection_sampling.sample_and_score
    calls = []

    def interrupt_second_round(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(rejection_sampling, "sample_and_score", interrupt_second_round)
    args = FAST + ["rounds=3", "tasks_per_round=8", "samples_per_task=4", "batch_size=4", "temperature=1.0", "save_every=0"]
    with pytest.raises(SystemExit) as e:
        rejection_sampling.main(args + [f"out={out}"])
    assert e.value.code == 130
    assert (out / "checkpoints" / "step-1" / "trainer_state.pt").exists()
    monkeypatch.setattr(rejection_sampling, "sample_and_score", real)
    s = rejection_sampling.main([f"resume={out}"])
    assert s["rounds"] == 3 and "heldout_accuracy_after" in s
    assert [r["step"] for r in _rows(out) if "rs/accepted" in r] == [1, 2, 3]


def test_sft_rejects_a_bad_slip_rate(tmp_path):
    p = subprocess.run([sys.executable, "-m", "algos.sft", "demo_slip_rate=1.5", "steps=1", f"out={tmp_path / 's'}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "demo_slip_rate=1.5 is out of range: it must be in [0, 1]" in p.stderr
