"""Faults in Ray rewards (issue 26 #12), on a local Ray instance: a remote scorer's error verdicts carry every
reward part (the trainer's metrics raised KeyError on ``format``), a scorer that raises gives error
verdicts (it crashed the trainer), concurrent batches take turns, and GRPO keeps error groups out of its
loss (they were scored 0, as wrong answers)."""

from __future__ import annotations

import json
import threading

import pytest
import torch

pytestmark = pytest.mark.faults
ray = pytest.importorskip("ray")

import envs  # noqa: E402
from envs.ray_scoring import RayScorer  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_error_verdicts_carry_every_part_and_the_metrics_take_them():
    from algos.common import reward_metrics
    from policies import Rollout

    env = "tests.hanging_env:HangingMathEnv"
    base = envs.make(env).unwrapped
    tasks = base.tasks(8, "heldout")
    completions = [base.gold_completion(t) for t in tasks]
    completions[5] = "HANG"
    scorer = RayScorer(env, {}, actors=2, chunk_size=4, timeout=3.0, retries=0)
    try:
        out = scorer.score_batch(completions, tasks)
    finally:
        scorer.close()
    local = base.score_batch(completions[:4], tasks[:4])
    assert all(set(r.parts) == set(local[0].parts) for r in out) and "format" in local[0].parts
    assert [r.status.value for r in out[4:]] == ["error"] * 4
    ro = [Rollout("", c, (1,), (2, 3), None, "stop") for c in completions]
    m = reward_metrics(out, ro)  # was KeyError: 'format'
    assert m["verdict/error"] == 0.5 and m["reward/format"] == pytest.approx(0.5 * local[0].parts["format"])


def test_a_scorer_that_raises_gives_error_verdicts_and_concurrent_batches_take_turns():
    env = "tests.hanging_env:FailingMathEnv"
    base = envs.make(env).unwrapped
    tasks = base.tasks(6, "heldout")
    scorer = RayScorer(env, {}, actors=2, chunk_size=2, timeout=30.0, retries=1)
    outs: list = [None, None]
    inside, most = [0], [0]
    real = scorer._score_batch

    def counted(*a):  # how many batches are inside the scorer at once (the actors and counters are shared)
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        try:
            import time

            time.sleep(0.5)
            return real(*a)
        finally:
            inside[0] -= 1

    scorer._score_batch = counted

    def score(k):
        outs[k] = scorer.score_batch([base.gold_completion(t) for t in tasks], tasks)

    try:
        threads = [threading.Thread(target=score, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        scorer.close()
    for out in outs:
        assert out is not None and len(out) == 6
        for r in out:
            v = next(iter(r.verdicts.values()))
            assert v.status.value == "error" and "RuntimeError: the grader's database is gone" in v.details["error"]
    assert scorer.replaced == 0  # a raising scorer is not a dead worker
    assert most[0] == 1  # the two batches took turns


def test_grpo_masks_error_groups_instead_of_scoring_them_zero():
    from algos import grpo
    from policies import Rollout
    from verifiers.rewards import RewardResult
    from verifiers.verdict import Status, Verdict

    def res(reward, status):
        return RewardResult(reward, {"correct": reward, "format": 1.0}, {"correct": Verdict(status, reward, None, {})})

    ro = [Rollout("", "", (1,), (2,), (0.0,), "stop") for _ in range(8)]
    results = [res(1.0, Status.CORRECT), res(0.0, Status.ERROR), res(1.0, Status.CORRECT), res(1.0, Status.CORRECT),
               res(1.0, Status.CORRECT), res(0.0, Status.WRONG), res(1.0, Status.CORRECT), res(0.0, Status.WRONG)]
    groups = grpo._groups(ro, results, grpo.GRPOConfig(group_size=4))
    assert torch.equal(groups[0][1], torch.zeros(4))  # masked: was [1, 0, 1, 1], the error taken as a wrong answer
    assert torch.equal(groups[1][1], torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_grpo_with_a_failing_ray_scorer_runs_and_logs_the_errors(tmp_path):
    from algos import grpo

    out = tmp_path / "r"
    grpo.main(["env=tests.hanging_env:FailingMathEnv", "steps=1", "prompts_per_step=2", "group_size=4",
               "max_new_tokens=16", "heldout_size=4", "reward_workers=ray", "ray_actors=1", f"out={out}"])
    rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
    step = [r for r in rows if r["step"] == 1 and "verdict/error" in r][0]
    assert step["verdict/error"] == 1.0 and "reward/format" in step


@pytest.mark.parametrize("module,args", [
    ("ppo", ["steps=1", "prompts_per_step=2", "samples_per_prompt=2"]),
    ("iterative_dpo", ["rounds=1", "tasks_per_round=2", "samples_per_task=4", "batch_size=2"]),
])
def test_ppo_and_iterative_dpo_take_error_verdicts_out_of_the_loss(tmp_path, module, args):
    """Every completion scored by a failing Ray scorer: PPO masks every row (nothing moves), iterative DPO builds
    no pair (an error is not a rejected answer); both run to the end and log the errors."""
    import importlib

    from policies import PolicyConfig, load_model
    from policies.weight_sync import weights_checksum

    out = tmp_path / "r"
    importlib.import_module(f"algos.{module}").main(
        ["env=tests.hanging_env:FailingMathEnv", "max_new_tokens=16", "heldout_size=4", "reward_workers=ray",
         "ray_actors=1", *args, f"out={out}"])
    rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
    assert any(r.get("verdict/error") == 1.0 for r in rows)
    if module == "iterative_dpo":
        assert [r["pref/pairs"] for r in rows if "pref/pairs" in r] == [0]
    else:
        assert all(r["loss/policy"] == 0.0 for r in rows if "loss/policy" in r)
    start = weights_checksum(load_model(PolicyConfig(model="tiny-sft"))[0])
    final = json.load(open(out / "summary.json"))["checkpoint"]
    assert weights_checksum(load_model(PolicyConfig(model=final))[0]) == start  # nothing learnt from errors
