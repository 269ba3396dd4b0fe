"""Rewards in Ray actors (`reward_workers=ray`) on a local Ray instance, against the real Docker
daemon: the same verdicts as the local pool, a worker killed mid-batch (re-run, nothing lost or
counted twice), a hung worker (deadline, then error verdicts that say why), and GRPO through it."""

import os
import signal
import threading
import time

import pytest

import ray  # in the dev extra: pip install -e ".[dev]"

import envs
from envs.ray_scoring import RayScorer


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def humaneval_batch():
    base = envs.make("humaneval").unwrapped
    tasks = base.tasks(164, "heldout")
    completions = [base.gold_completion(t) for t in tasks] + [f"```python\n{t.prompt}    pass\n```" for t in tasks]
    local = base.score_batch(completions, tasks + tasks)
    return completions, tasks + tasks, local


def key(results):
    return [(r.reward, r.verdicts["correct"].status, r.verdicts["correct"].score) for r in results]


def test_actors_give_the_local_verdicts_on_humaneval_solutions_and_stubs(humaneval_batch):
    completions, tasks, local = humaneval_batch
    assert sum(r.reward == 1.0 for r in local[:164]) == 164 and sum(r.reward > 0 for r in local[164:]) == 0
    for actors in (1, 2):
        scorer = RayScorer("humaneval", {}, actors=actors)
        try:
            assert key(scorer.score_batch(completions, tasks)) == key(local)
        finally:
            scorer.close()


def test_a_worker_killed_mid_batch_is_replaced_and_nothing_is_lost_or_counted_twice(humaneval_batch):
    completions, tasks, local = humaneval_batch
    scorer = RayScorer("humaneval", {}, actors=2, chunk_size=8)
    pid = ray.get(scorer.actors[0].pid.remote(), timeout=60)

    def kill():
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill).start()
    try:
        out = scorer.score_batch(completions, tasks)
    finally:
        scorer.close()
    assert scorer.replaced >= 1 and scorer.resubmitted >= 1
    assert len(out) == len(local) and key(out) == key(local)


def test_a_hung_worker_misses_its_deadline_and_its_items_say_why():
    env = "tests.hanging_env:HangingMathEnv"
    base = envs.make(env).unwrapped
    tasks = base.tasks(8, "heldout")
    completions = [base.gold_completion(t) for t in tasks]
    completions[5] = "HANG"
    scorer = RayScorer(env, {}, actors=2, chunk_size=4, timeout=3.0, retries=1)
    t0 = time.time()
    try:
        out = scorer.score_batch(completions, tasks)
    finally:
        scorer.close()
    assert time.time() - t0 < 30
    assert [r.reward for r in out[:4]] == [r.reward for r in base.score_batch(completions[:4], tasks[:4])]
    for r in out[4:]:  # the chunk with the hang: error verdicts naming the deadline, never a silent 0
        v = r.verdicts["correct"]
        assert v.status.value == "error" and "no answer in 3s" in v.details["error"]
    assert scorer.replaced == 2


def test_grpo_with_ray_reward_workers(tmp_path):
    from algos import grpo

    summary = grpo.main(["env=math", "steps=2", "prompts_per_step=4", "group_size=4", "max_new_tokens=48",
                         "heldout_size=8", "reward_workers=ray", "ray_actors=2", f"out={tmp_path / 'r'}"])
    local = grpo.main(["env=math", "steps=2", "prompts_per_step=4", "group_size=4", "max_new_tokens=48",
                       "heldout_size=8", f"out={tmp_path / 'l'}"])
    assert summary["heldout_accuracy_after"] == local["heldout_accuracy_after"]  # same rewards, same run


def test_a_reward_model_scores_in_the_actors_as_in_this_process(tmp_path):
    """env=rm in Ray actors (issue 25 #2: scoring where the policy's process has no room): each actor loads the
    reward model itself; proxy and true parts equal the in-process scores."""
    from algos import reward_model
    from tests.test_reward_models import _pairs

    reward_model.main([f"data={_pairs(tmp_path / 'pairs.jsonl', n=40)}", f"out={tmp_path / 'rm'}", "lr=1e-3", "steps=4"])
    kwargs = {"model": str(tmp_path / "rm"), "tasks_from": "math"}
    base = envs.make("rm", **kwargs).unwrapped
    tasks = base.tasks(6, "train")
    completions = [base.gold_completion(t) for t in tasks] + ["<answer>0</answer>", "I do not know"] * 3
    tasks = tasks + tasks
    local = base.score_batch(completions, tasks)
    scorer = RayScorer("rm", kwargs, actors=2, chunk_size=4)
    try:
        remote = scorer.score_batch(completions, tasks)
    finally:
        scorer.close()
    assert [r.parts["rm"] for r in remote] == pytest.approx([r.parts["rm"] for r in local], abs=1e-6)
    assert [r.parts["correct"] for r in remote] == [r.parts["correct"] for r in local] == [1.0] * 6 + [0.0] * 6
    assert len({round(r.parts["rm"], 6) for r in local}) > 1  # the model scores, not a constant
