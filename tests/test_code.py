import json
import os
import subprocess
import sys

import pytest

import envs
from envs.code import HumanEvalSource
from verifiers import Status
from verifiers.code import CodeVerifier, extract_program

IMAGE = os.environ.get("RLVR_SANDBOX_IMAGE", "rlvr-sandbox:latest")


@pytest.fixture(scope="module")
def he():
    return envs.make("humaneval", image=IMAGE, workers=2, timeout=10)


def test_extract_program():
    assert extract_program("text\n```python\na = 1\n```\nmore\n```python\nb = 2\n```\n") == "b = 2\n"
    assert extract_program("```\nc = 3\n```") == "c = 3\n"
    assert extract_program("d = 4") == "d = 4"
    body = "    return x + 1\n"
    assert extract_program(body, "def inc(x):\n", "inc") == "def inc(x):\n" + body
    full = "def inc(x):\n    return x + 1\n"
    assert extract_program(full, "def inc(x):\n", "inc") == full


def test_all_164_canonical_solutions_pass_and_pass_bodies_fail(he):
    base = he.unwrapped
    tasks = base.tasks(164, "heldout")
    assert len({t.id for t in tasks}) == 164
    res = base.score_batch([base.gold_completion(t) for t in tasks], tasks)
    assert [t.id for t, r in zip(tasks, res) if r.reward != 1.0] == []
    stub = base.score_batch(["    pass\n"] * len(tasks), tasks)
    assert [t.id for t, r in zip(tasks, stub) if r.reward != 0.0] == []
    assert all(r.verdicts["correct"].status is Status.WRONG for r in stub)


def test_check_env_humaneval(he):
    envs.check_env(he)
    with pytest.raises(envs.EnvError, match="no training split"):
        he.unwrapped.source.task(0, "train")


def test_mbpp_loader_partial_scores_and_multi_turn(tmp_path):
    rows = [{"task_id": i, "text": f"Write a function add{i}(a, b) that adds.", "code": f"def add{i}(a, b):\n    return a + b\n",
             "test_list": [f"assert add{i}(1, 2) == 3", f"assert add{i}(0, 0) == 0", f"assert add{i}(-1, 1) == 0"],
             "test_setup_code": ""} for i in range(30)]
    f = tmp_path / "mbpp.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    env = envs.make("rlvr/HumanEval-v0", dataset="mbpp", path=str(f), image=IMAGE, workers=2, partial=True, max_turns=2)
    envs.check_env(env)
    obs, info = env.reset(seed=0)
    t = info["task"]
    n = t.id.split("/")[1]
    wrong = f"```python\ndef add{n}(a, b):\n    return a * b\n```"  # passes 1 of 3 (0*0 == 0)
    obs, r, term, trunc, info = env.step(wrong)
    assert not term and r == pytest.approx(1 / 3) and info["turn"] == 1
    assert obs[-1]["role"] == "user" and "tests failed" in obs[-1]["content"] and obs[-2]["content"] == wrong
    obs, r, term, trunc, info = env.step(env.unwrapped.gold_completion(t))
    assert term and r == 1.0


def test_code_verifier_statuses():
    v = CodeVerifier(image=IMAGE, workers=1, timeout=2)
    ref = {"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(2) == 4\n", "entry_point": "f"}
    assert v.verify("    return x * 2\n", ref).status is Status.CORRECT
    assert v.verify("    return x\n", ref).status is Status.WRONG
    assert v.verify("    while True: pass\n", ref).status is Status.TIMEOUT
    assert v.verify("", ref).status is Status.NO_ANSWER
    assert v.verify("    return (\n", ref).status is Status.WRONG  # a syntax error is the program's fault
    assert v.verify("x", {"nonsense": 1}).status is Status.ERROR
    call = {"entry_point": "f", "inputs": [[1], [2]], "outputs": [2, 4]}
    assert v.verify("def f(x):\n    return 2 * x\n", call).correct
    io = {"stdio": [{"input": "3\n", "output": "6\n"}]}
    assert v.verify("print(2 * int(input()))", io).correct


def test_code_cli(tmp_path):
    rows = [{"completion": "    return x * 2\n", "prompt": "def f(x):\n", "test": "def check(c):\n    assert c(3) == 6\n",
             "entry_point": "f"},
            {"completion": "    return 0\n", "prompt": "def f(x):\n", "test": "def check(c):\n    assert c(3) == 6\n",
             "entry_point": "f"},
            {"completion": "x"}]
    env = {**os.environ, "RLVR_SANDBOX_IMAGE": IMAGE}
    p = subprocess.run([sys.executable, "-m", "verifiers", "code", "--timeout", "5"], input="\n".join(json.dumps(r) for r in rows),
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert [json.loads(x)["status"] for x in p.stdout.splitlines()] == ["correct", "wrong", "error"]


def test_humaneval_file_format_errors(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"task_id": "a"}) + "\n")
    with pytest.raises(envs.EnvError, match="not in HumanEval format"):
        HumanEvalSource(str(f))
