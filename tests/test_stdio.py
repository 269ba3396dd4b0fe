"""rlvr/Stdio-v0: programs judged on stdin/stdout in the real Docker sandbox, every judge outcome,
checkers, partial credit, our procedural set's seeding and splits, and the APPS/TACO and
CodeContests loaders."""

import json

import pytest

import envs
from envs.checker import check_env
from envs.stdio import PROBLEMS, ProceduralStdioSource, StdioEnv


def verdict(env, completion, task):
    return env.unwrapped.score_batch([completion], [task])[0].verdicts["correct"]


def test_check_env_passes():
    check_env(envs.make("stdio"))


@pytest.mark.parametrize("kind", sorted(PROBLEMS))
def test_every_reference_solution_passes_its_hidden_tests(kind):
    env = StdioEnv(kinds=kind)
    tasks = env.unwrapped.tasks(2, "train") + env.unwrapped.tasks(1, "heldout")
    res = env.unwrapped.score_batch([env.unwrapped.gold_completion(t) for t in tasks], tasks)
    assert [r.reward for r in res] == [1.0, 1.0, 1.0], [r.verdicts["correct"].details for r in res]
    assert all(len(t.reference["tests"]) == 6 for t in tasks)


@pytest.mark.parametrize("program,outcome,status", [
    ("while True:\n    pass", "time_limit", "timeout"),
    ("x = ' ' * (10 ** 10)", "memory_limit", "wrong"),
    ("print(42)", "wrong_answer", "wrong"),
    ("import sys\nsys.exit(3)", "runtime_error", "wrong"),
    ("1 / 0", "runtime_error", "wrong"),
    ("def f(:\n    pass", "compile_error", "wrong"),
    ("pass", "wrong_answer", "wrong"),  # a stub: no output
])
def test_judge_outcomes(program, outcome, status):
    env = StdioEnv(kinds="sum", time_limit=1.0)
    task = env.unwrapped.tasks(1, "train")[0]
    v = verdict(env, f"```python\n{program}\n```", task)
    assert v.details["verdict"] == outcome and v.status.value == status and v.score == 0.0, v.details
    if outcome != "compile_error":  # the judge stopped at the first failure
        assert v.details["tests"][0] == outcome and set(v.details["tests"][1:]) == {"skipped"}


def test_partial_credit_is_the_fraction_of_tests_passed():
    env = StdioEnv(kinds="sum", partial=True, tests=8)
    task = env.unwrapped.tasks(1, "train")[0]
    half = "n, *xs = map(int, open(0).read().split())\nprint(sum(xs) if n % 2 else 0)"
    v = verdict(env, f"```python\n{half}\n```", task)
    want = sum(int(t["input"].split()[0]) % 2 == 1 or int(t["output"]) == 0 for t in task.reference["tests"]) / 8
    assert v.score == pytest.approx(want) and 0 < v.score < 1
    assert v.details["passed"] == round(want * 8) and "skipped" not in v.details["tests"]


@pytest.mark.parametrize("checker,got,want,ok", [
    ("tokens", "1  2\n3\n", "1 2 3", True), ("lines", "1  2\n3\n", "1 2 3", False),
    ("exact", "a b\n", "a b", True), ("exact", "a  b", "a b", False),
    ("float:1e-6", "0.3333333", "0.333333333", True), ("float:1e-6", "0.334", "0.333333333", False),
    ("float:1e-6", "abc 1.0", "abc 1", True),
])
def test_output_checkers(checker, got, want, ok):
    from sandbox.core import output_matches

    assert output_matches(got, want, checker) is ok


def test_items_are_seeded_by_hashing_and_splits_never_share_a_task():
    def keys(seed, split, n=300):
        src = ProceduralStdioSource(seed=seed)
        return {json.dumps(src.task(i, split).reference["tests"]) for i in range(n)}

    s0, s1, held = keys(0, "train"), keys(1, "train"), keys(0, "heldout")
    assert len(s0) > 250  # distinct items
    assert not (s0 & held) and not (keys(1, "heldout") & s0)
    assert len(s0 & s1) <= 3  # neighbouring seeds are unrelated streams (only tiny inputs can coincide)
    a, b = ProceduralStdioSource(seed=0), ProceduralStdioSource(seed=1)
    assert a.task(1, "train").reference != b.task(0, "train").reference  # not Random(seed + index)


def test_apps_taco_and_codecontests_rows(tmp_path):
    sol = "n, *xs = map(int, open(0).read().split())\nprint(sum(xs[:n]))"
    rows = [
        {"problem_id": 1, "question": "Sum N numbers.", "input_output": json.dumps(
            {"inputs": ["2\n1 2\n", "3\n1 1 1\n"], "outputs": ["3\n", "3\n"]}), "solutions": json.dumps([sol]),
         "split": "test"},
        {"problem_id": 2, "question": "Call-based.", "input_output": json.dumps(
            {"fn_name": "f", "inputs": [[1]], "outputs": [2]}), "solutions": "[]"},
    ]
    (tmp_path / "apps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = StdioEnv(path=str(tmp_path / "apps.jsonl"))
    src = env.unwrapped.source
    assert src.size("heldout") == 1 and src.size("train") == 0 and src.skipped == 1
    t = src.task(0, "heldout")
    assert verdict(env, env.unwrapped.gold_completion(t), t).status.value == "correct"
    assert verdict(env, "```python\nprint(0)\n```", t).details["verdict"] == "wrong_answer"
    cc = {"name": "cc-1", "description": "Sum N numbers.", "public_tests": {"input": ["2\n5 6\n"], "output": ["11\n"]},
          "private_tests": {"input": ["1\n7\n"], "output": ["7\n"]}, "generated_tests": {"input": [], "output": []},
          "solutions": {"language": [2, 3], "solution": ["int main(){}", sol]}, "split": "train"}
    (tmp_path / "cc.jsonl").write_text(json.dumps(cc) + "\n")
    env = StdioEnv(path=str(tmp_path / "cc.jsonl"))
    t = env.unwrapped.source.task(0, "train")
    assert len(t.reference["tests"]) == 2
    assert verdict(env, env.unwrapped.gold_completion(t), t).status.value == "correct"


def test_bad_options_are_clear_errors():
    with pytest.raises(envs.EnvError, match="unknown stdio problem kind"):
        StdioEnv(kinds="sum,nope")
    with pytest.raises(envs.EnvError, match="time_limit"):
        StdioEnv(time_limit=0)
