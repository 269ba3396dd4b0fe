"""Issue 27: a new user's first hour. Bad values, files and interrupts give one line, not a
traceback; run folders never mix two models or two configs; the last samples are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from algos import config as cfglib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["steps=1", "prompts_per_step=2", "group_size=2", "heldout_size=2", "max_new_tokens=8", "save_every=0"]


def cli(*args: str, cwd: str = ROOT, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


def one_line_error(p: subprocess.CompletedProcess, code: int = 2) -> str:
    """The process failed with ``code`` and said why in exactly one line on stderr, no traceback."""
    assert p.returncode == code, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = [line for line in p.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, p.stderr[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------- 5. ranges of numeric keys


@pytest.mark.parametrize("module,arg,want", [
    ("grpo", "prompts_per_step=0", "prompts_per_step=0 is out of range: it must be >= 1"),
    ("grpo", "max_new_tokens=-5", "max_new_tokens=-5 is out of range: it must be >= 1"),
    ("grpo", "lr=-1", "lr=-1.0 is out of range: it must be > 0"),
    ("grpo", "temperature=0", "temperature=0.0 is out of range: it must be > 0"),
    ("grpo", "group_size=1", "group_size=1 is out of range: it must be >= 2 (advantages are relative to the group"),
    ("grpo", "policy.gpu_memory_utilization=1.5", "policy.gpu_memory_utilization=1.5 is out of range: it must be in (0, 1]"),
    ("ppo", "gamma=1.5", "gamma=1.5 is out of range: it must be in [0, 1]"),
    ("ppo", "temperature=0", "temperature=0.0 is out of range"),
    ("sft", "batch_size=0", "batch_size=0 is out of range: it must be >= 1"),
    ("dpo", "beta=0", "beta=0.0 is out of range: it must be > 0"),
    ("rejection_sampling", "seed=-3", "seed=-3 is out of range: it must be >= 0"),  # undeclared: >= 0
    ("iterative_dpo", "samples_per_task=1", "samples_per_task=1 is out of range: it must be >= 2"),
    ("evaluate", "tasks=0", "tasks=0 is out of range: it must be >= 1"),
])
def test_every_numeric_key_is_range_checked(module, arg, want):
    mod = __import__(f"algos.{module}", fromlist=["x"])
    cls = next(v for k, v in vars(mod).items() if k.endswith("Config") and isinstance(v, type) and v.__module__ == mod.__name__
               and k not in ("BuildConfig",))
    with pytest.raises(cfglib.ConfigError) as e:
        cfglib.parse(cls, [arg])
    assert want in str(e.value)


def test_a_bad_value_is_one_line_at_the_command_line():
    line = one_line_error(cli("algos.grpo", "group_size=1"))
    assert line.startswith("error: group_size=1 is out of range")
    assert "(>= 2)" in cli("algos.grpo", "--help").stdout.split("\n  group_size")[1].splitlines()[0]


def test_evaluate_says_pass_at_k_is_pass_at_1_when_greedy(tmp_path):
    p = cli("algos.evaluate", "tasks=2", "n=2", "max_new_tokens=4", f"out={tmp_path / 'ev'}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "n=2 at temperature=0 repeats one greedy completion per task, so pass@2 equals pass@1; set temperature=" in p.stderr
    p = cli("algos.evaluate", "tasks=2", "n=2", "temperature=1.0", "max_new_tokens=4", f"out={tmp_path / 'ev2'}")
    assert p.returncode == 0 and "greedy" not in p.stderr
