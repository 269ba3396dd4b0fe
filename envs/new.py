"""``python -m envs new NAME [--dir D]``: write a working environment skeleton to start from.

Two files in ``D`` (default: the current directory):

* ``NAME.py``: a procedural `TaskSource` (adding two numbers, seeded per item, split by a hash of the
  question), a reward function with TRL's signature (``correct``: the last ``<answer>`` equals the
  reference), a format verifier part, the system prompt that asks for that format, and the
  environment class ``<Name>Env`` that declares ``correct`` as its correctness part;
* ``test_NAME.py``: pytest tests that run `envs.check_env` on it and score a right, a wrong and an
  unformatted completion by hand.

The skeleton passes `envs.check_env` and trains as it is
(``python -m algos.grpo env=NAME:<Name>Env`` with ``D`` importable); replace the task source and
the reward with your own. It writes nothing over an existing file, and refuses a name that is
not a Python identifier or that Python already imports from elsewhere (``random``, ``math``,
``envs``...): the module would be shadowed. Registering the environment under a short name
(an entry point in your package's ``pyproject.toml``) is left to you: see the README.
"""

from __future__ import annotations

import importlib.util
import keyword
import os

from envs.core import EnvError

MODULE = '''"""{name}: an rlvr-gym environment (written by `python -m envs new {name}`).

Tasks: "What is A + B?" for two seeded numbers. Reward: the weighted mean of ``correct`` (1 when
the last <answer>...</answer> holds the sum, else 0; weight 1) and ``format`` (<think>...</think>
then <answer>...</answer>; weight 0.1). Replace ``{source}`` and ``correct`` with your own tasks and check.

    python -m pytest -q test_{name}.py
    python -m algos.grpo env={name}:{cls}
"""

import re

from envs import FORMAT_INSTRUCTION, Task, TaskSource, TextEnv, content_split, item_rng
from verifiers import FormatVerifier, Rubric


class {source}(TaskSource):
    """Tasks reproducible from (name, seed, split, index); train and held-out never share a question."""

    name = "{name}"

    def __init__(self, seed=0):
        self.seed = seed

    def task(self, index, split="train"):
        for attempt in range(1000):  # draw until the question belongs to the asked split (a hash of its text)
            rng = item_rng(self.name, self.seed, split, index, attempt)
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            question = f"What is {{a}} + {{b}}?"
            if content_split(question) == split:
                return Task(f"{{split}}/{{index}}", question, str(a + b), metadata={{"source": self.name}})
        raise RuntimeError(f"no {{split}} task found for index {{index}}")


def correct(prompts, completions, answer, **columns):
    """TRL's reward signature: 1.0 when the last <answer>...</answer> equals the reference."""
    got = [re.findall(r"<answer>(.*?)</answer>", c, re.S) for c in completions]
    return [float(bool(g) and g[-1].strip() == a) for g, a in zip(got, answer)]


class {cls}(TextEnv):
    correctness_part = "correct"  # the part that says right or wrong: held-out accuracy and pass@k read it

    def __init__(self, seed=0, **kw):
        rubric = Rubric().add_function("correct", correct, 1.0).add_verifier("format", FormatVerifier(), 0.1)
        kw.setdefault("system_prompt", FORMAT_INSTRUCTION)  # tell the model the <answer> format
        super().__init__({source}(seed=seed), rubric, **kw)
'''

TEST = '''"""Tests of {name}.py (written by `python -m envs new {name}`): run with python -m pytest -q test_{name}.py."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # {name}.py lies next to this file

import pytest

import envs
from {name} import {cls}


def test_check_env_passes():
    envs.check_env({cls}())  # seeded determinism, types, gold scores 1, junk and empty 0, disjoint splits


def test_scores_by_hand():
    env = {cls}()
    task = env.tasks(1)[0]
    right = f"<think>adding</think><answer>{{task.reference}}</answer>"
    wrong = f"<think>adding</think><answer>{{int(task.reference) + 1}}</answer>"
    scores = [r.reward for r in env.score_batch([right, wrong, task.reference], [task] * 3)]
    # the rubric's weighted mean, (1 x correct + 0.1 x format) / 1.1: both; format only; neither (no tags)
    assert scores == pytest.approx([1.0, 0.1 / 1.1, 0.0])


def test_trains_by_name():
    assert type(envs.make("{name}:{cls}").unwrapped).__name__ == "{cls}"
'''


def class_name(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_") if p) + "Env"


def write(name: str, directory: str = ".") -> tuple[str, str, str]:
    """Write ``NAME.py`` and ``test_NAME.py`` into ``directory``; return their paths and the env= value.
    Raises `EnvError` (one line: the name or the file, and the fix) instead of writing over anything."""
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("test_"):
        raise EnvError(f"NAME={name!r} must be a Python module name (letters, digits, _; not a keyword, not "
                       f"starting with test_), e.g. my_task")
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    d = os.path.abspath(directory)
    if spec is not None and spec.origin and os.path.dirname(os.path.abspath(spec.origin)) != d:
        raise EnvError(f"NAME={name!r} is already importable from {spec.origin}: a module of that name would be "
                       f"shadowed by it (or shadow it); choose another name")
    cls = class_name(name)
    module_path, test_path = os.path.join(d, f"{name}.py"), os.path.join(d, f"test_{name}.py")
    for p in (module_path, test_path):
        if os.path.exists(p):
            raise EnvError(f"{p} already exists: nothing was written; remove it or choose another NAME or --dir")
    os.makedirs(d, exist_ok=True)
    fields = {"name": name, "cls": cls, "source": class_name(name)[:-3] + "Source"}
    with open(module_path, "x", encoding="utf-8") as f:
        f.write(MODULE.format(**fields))
    with open(test_path, "x", encoding="utf-8") as f:
        f.write(TEST.format(**fields))
    return module_path, test_path, f"{name}:{cls}"
