import json
import math
import os

import pytest

import envs
from algos import evaluate
from algos.metrics import ks_for, majority_correct, mean_se, pass_at_k
from tests.fake_openai import FakeOpenAI


def test_pass_at_k_by_hand():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert pass_at_k(5, 2, 4) == pytest.approx(1.0)  # n - c < k
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 4) == 1.0 and pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    assert ks_for(8) == [1, 2, 4, 8] and ks_for(6) == [1, 2, 4, 6] and ks_for(1) == [1]


def test_maj_at_k_and_standard_errors():
    assert majority_correct(["a", "b", "a", None], [True, False, True, False], 4) == 1.0
    assert majority_correct(["b", "b", "a"], [False, False, True], 3) == 0.0
    assert majority_correct(["b", "a"], [False, True], 2) == 0.0  # tie: the first seen wins
    assert majority_correct([None, None], [False, False], 2) == 0.0
    m, se = mean_se([1, 0, 1, 0])
    assert m == 0.5 and se == pytest.approx(math.sqrt(1 / 3) / 2)
    assert mean_se([1.0]) == (1.0, 0.0)


IMAGE = os.environ.get("RLVR_SANDBOX_IMAGE", "rlvr-sandbox:latest")


@pytest.fixture()
def gold_server(gsm8k_path):
    answers = {}
    for name, kw in (("math", {}), ("gsm8k", {"path": gsm8k_path}), ("humaneval", {"image": IMAGE, "workers": 2})):
        env = envs.make(name, **kw).unwrapped
        for t in env.tasks(12, "heldout"):
            answers[t.prompt] = env.gold_completion(t)
    srv = FakeOpenAI(answers, default="no idea")
    yield srv
    srv.close()


def _eval(tmp_path, server, *extra):
    return evaluate.main(["policy.engine=openai", f"policy.base_url={server.url}", "policy.model=gold", "tasks=12",
                          f"out={tmp_path}", *extra])


def test_gold_answers_score_100_on_every_env_and_junk_0(tmp_path, gold_server, gsm8k_path):
    s = _eval(tmp_path / "gold", gold_server, "env=[math,gsm8k,humaneval]", f"env.gsm8k.path={gsm8k_path}",
              f"env.humaneval.image={IMAGE}", "n=2", "temperature=1.0")
    for name in ("math", "gsm8k", "humaneval"):
        assert s[name]["n_tasks"] == 12 and s[name]["pass@1"] == 1.0 and s[name]["pass@2"] == 1.0
        assert s[name]["mean_reward"] == pytest.approx(1.0) and s[name]["count/error"] == 0
    assert (tmp_path / "gold" / "report.md").exists() and (tmp_path / "gold" / "pass_at_k.png").exists()
    junk = FakeOpenAI({}, default="lorem ipsum")
    try:
        s = _eval(tmp_path / "junk", junk, "env=[math,gsm8k,humaneval]", f"env.gsm8k.path={gsm8k_path}",
                  f"env.humaneval.image={IMAGE}")
    finally:
        junk.close()
    for name in ("math", "gsm8k", "humaneval"):
        assert s[name]["pass@1"] == 0.0 and s[name]["mean_reward"] == 0.0
    assert s["math"]["count/no_answer"] == 12


def test_resume_skips_done_tasks(tmp_path, gold_server):
    out = tmp_path / "r"
    _eval(out, gold_server, "env=math", "tasks=5")
    first = gold_server.requests
    s = _eval(out, gold_server, "env=math", "tasks=12")
    assert gold_server.requests - first == 7  # only the 7 new tasks were generated
    assert s["math"]["n_tasks"] == 12
    rows = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert len(rows) == 12 and len({r["task_id"] for r in rows}) == 12


def test_reverify_rescores_stored_samples_without_generating(tmp_path, gold_server):
    out = tmp_path / "r"
    _eval(out, gold_server, "env=math", "tasks=6")
    path = out / "samples.jsonl"
    rows = [json.loads(line) for line in open(path)]
    assert all(r["status"] == "correct" and r["reward"] == 1.0 for r in rows)
    # tamper with what is stored: statuses, rewards, and two completions made wrong
    for i, r in enumerate(rows):
        r["status"], r["reward"], r["parts"] = "error", 0.0, {"correct": 0.0, "format": 0.0}
        if i < 2:
            r["completion"] = "<think>hm</think><answer>-1</answer>"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    requests = gold_server.requests
    # rescored with another reward weight: format counts 0.5 and correctness 1.0, mean of the weighted parts
    s = evaluate.main(["env=math", "env.format_weight=0.5", f"out={out}", "--reverify"])
    assert gold_server.requests == requests  # no generation request
    after = [json.loads(x) for x in open(path)]
    assert [r["status"] for r in after] == ["wrong", "wrong", "correct", "correct", "correct", "correct"]
    assert [r["reward"] for r in after] == pytest.approx([0.5 / 1.5] * 2 + [1.0] * 4)
    assert s["math"]["pass@1"] == pytest.approx(4 / 6)


def test_summary_on_hand_built_rows():
    def row(task, sample, correct, extracted, source="a", difficulty=1, reward=None):
        return {"task_id": task, "sample": sample, "status": "correct" if correct else "wrong", "extracted": extracted,
                "details": {"method": "boxed"}, "reward": float(correct) if reward is None else reward,
                "parts": {"correct": float(correct)}, "source": source, "difficulty": difficulty, "tokens": 10}
    rows = ([row("t1", i, c, x) for i, (c, x) in enumerate([(True, "5"), (False, "6"), (True, "5"), (False, "7")])] +
            [row("t2", i, c, x, "b", 2) for i, (c, x) in enumerate([(False, "1"), (False, "1"), (False, "2"), (True, "3")])] +
            [row("t3", i, False, "9", "b", 2) for i in range(4)])
    s = evaluate.summarize(rows, 4)
    assert s["n_tasks"] == 3
    # pass@k per task: t1 has 2 of 4 correct, t2 1 of 4, t3 0 of 4
    assert s["pass@1"] == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    assert s["pass@2"] == pytest.approx((5 / 6 + 1 / 2 + 0) / 3)  # 1 - C(2,2)/C(4,2) = 5/6; 1 - C(3,2)/C(4,2) = 1/2
    assert s["pass@4"] == pytest.approx((1 + 1 + 0) / 3)
    # maj@4: t1's majority answer "5" is correct; t2's is "1" (wrong); t3 wrong
    assert s["maj@4"] == pytest.approx(1 / 3)
    assert s["count/correct"] == 3 and s["count/wrong"] == 9
    assert s["by_source"]["a"]["pass@1"] == pytest.approx(0.5) and s["by_source"]["a"]["n_tasks"] == 1
    assert s["by_source"]["b"]["pass@1"] == pytest.approx(0.125) and s["by_source"]["b"]["n_tasks"] == 2
    assert s["by_difficulty"]["2"]["pass@1"] == pytest.approx(0.125)
    assert s["mean_reward"] == pytest.approx(3 / 12)


def test_compare_writes_deltas(tmp_path, gold_server):
    _eval(tmp_path / "a", gold_server, "env=math", "tasks=6")
    junk = FakeOpenAI({}, default="<answer>0</answer>")
    try:
        _eval(tmp_path / "b", junk, "env=math", "tasks=6")
    finally:
        junk.close()
    d = evaluate.main([f"compare={tmp_path / 'a'},{tmp_path / 'b'}", f"out={tmp_path / 'c'}"])
    assert d["math"]["pass@1"] == pytest.approx(-1.0)
    assert (tmp_path / "c" / "compare.png").exists()


def test_local_model_greedy_matches_heldout_eval(tmp_path):
    from algos.heldout import heldout_eval
    from policies import PolicyConfig, load

    s = evaluate.main(["env=math", "tasks=40", "n=4", f"out={tmp_path}"])
    engine, _, _ = load(PolicyConfig())
    ev = heldout_eval(engine, envs.make("math"), 40, 96)
    assert s["math"]["pass@1"] == pytest.approx(ev["accuracy"])
    assert s["math"]["by_difficulty"]["3"]["n_tasks"] == 40
