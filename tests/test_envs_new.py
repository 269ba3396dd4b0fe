"""`python -m envs new NAME --dir D` writes an environment skeleton that passes check_env, whose own
tests pass, and that GRPO trains by module:Class; bad names and existing files are one line."""

import json
import subprocess
import sys

import pytest

import envs
from envs.__main__ import main


def test_new_env_checks_tests_and_trains(tmp_path, monkeypatch, capsys):
    assert main(["new", "demo_task", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "demo_task.py").exists() and (tmp_path / "test_demo_task.py").exists()
    assert "env=demo_task:DemoTaskEnv" in out and f"PYTHONPATH={tmp_path}" in out
    monkeypatch.syspath_prepend(str(tmp_path))
    env = envs.make("demo_task:DemoTaskEnv")
    envs.check_env(env)  # and no warning: it declares its correctness part
    assert env.unwrapped.system_prompt == envs.FORMAT_INSTRUCTION
    # its own tests, as a user runs them
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_demo_task.py")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "3 passed" in p.stdout, p.stdout + p.stderr
    # 2 GRPO steps on it with the tiny model
    from algos import grpo

    run = tmp_path / "run"
    s = grpo.main(["env=demo_task:DemoTaskEnv", "steps=2", "prompts_per_step=2", "group_size=2", "max_new_tokens=16",
                   "heldout_size=4", f"out={run}"])
    assert s["steps"] == 2 and "heldout_accuracy_after" in s
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in rows if "reward/correct" in r] == [1, 2]  # its parts are logged


def test_new_env_refusals_are_one_line(tmp_path, capsys):
    assert main(["new", "demo_two", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    for argv, says in ((["new", "demo_two", "--dir", str(tmp_path)], "already exists: nothing was written"),
                       (["new", "random", "--dir", str(tmp_path)], "already importable"),
                       (["new", "my-task", "--dir", str(tmp_path)], "must be a Python module name"),
                       (["new", "class", "--dir", str(tmp_path)], "must be a Python module name")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and says in err, err
    assert not (tmp_path / "random.py").exists()


def test_the_command_line_entry(tmp_path):
    p = subprocess.run([sys.executable, "-m", "envs", "new", "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "--dir" in p.stdout and "NAME" in p.stdout
    p = subprocess.run([sys.executable, "-m", "envs", "new", "cli_task"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "env=cli_task:CliTaskEnv" in p.stdout and "PYTHONPATH" not in p.stdout, p.stderr
    assert (tmp_path / "cli_task.py").exists()
