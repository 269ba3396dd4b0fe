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


def test_resume_skips_done_tasks_and_reverify_reproduces(tmp_path, gold_server):
    out = tmp_path / "r"
    _eval(out, gold_server, "env=math", "tasks=5")
    first = gold_server.requests
    s = _eval(out, gold_server, "env=math", "tasks=12")
    assert gold_server.requests - first == 7  # only the 7 new tasks were generated
    assert s["math"]["n_tasks"] == 12
    rows = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert len(rows) == 12 and len({r["task_id"] for r in rows}) == 12
    before = [(r["task_id"], r["status"], r["reward"]) for r in rows]
    s2 = evaluate.main(["env=math", f"out={out}", "--reverify"])
    after = [(r["task_id"], r["status"], r["reward"]) for r in (json.loads(x) for x in open(out / "samples.jsonl"))]
    assert sorted(before) == sorted(after) and s2["math"]["pass@1"] == s["math"]["pass@1"]


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
    from algos.evaluation import heldout_eval
    from policies import PolicyConfig, load

    s = evaluate.main(["env=math", "tasks=40", "n=4", f"out={tmp_path}"])
    engine, _, _ = load(PolicyConfig())
    ev = heldout_eval(engine, envs.make("math"), 40, 96)
    assert s["math"]["pass@1"] == pytest.approx(ev["accuracy"])
    assert s["math"]["by_difficulty"]["3"]["n_tasks"] == 40
