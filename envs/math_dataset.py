"""Dataset-backed math: GSM8K format and MATH format, loaded with Hugging Face `datasets`.

* GSM8K format: ``question`` / ``answer``, the answer's worked solution ending in
  ``#### N`` (calculator annotations ``<<16-3-4=9>>`` are removed from the solution).
* MATH format: ``problem`` / ``solution``, the reference being the solution's last
  ``\\boxed{...}``.

``path`` is a hub name (``openai/gsm8k``, with ``name="main"``) or any local folder or
file (JSON lines, JSON, Parquet, CSV). The dataset's own splits are used: ``train`` for
training and ``test`` (or ``validation``) as the held-out split, so the two never share
a row.
"""

from __future__ import annotations

import os
import re
from typing import Any

from envs.core import (FORMAT_INSTRUCTION, SPLITS, EnvError, Task, TaskSource, TextEnv, check_json_lines, looks_local,
                        not_found_locally, path_hint, quiet_hub, where)
from envs.math_procedural import math_rubric
from verifiers.math import _last_braced

_CALC = re.compile(r"<<[^>]*>>")
FORMATS = ("gsm8k", "math")


def parse_gsm8k(answer: str) -> tuple[str, str]:
    """(worked solution without calculator annotations, final answer) of a GSM8K answer."""
    if "####" not in answer:
        raise EnvError(f"GSM8K answer has no '#### N' line: {answer[-80:]!r}")
    steps, final = answer.rsplit("####", 1)
    return _CALC.sub("", steps).strip(), final.strip().replace(",", "")


def parse_math(solution: str) -> tuple[str, str]:
    boxed = _last_braced(solution)
    if boxed is None:
        raise EnvError(f"MATH solution has no \\boxed{{}} answer: {solution[-80:]!r}")
    return solution.strip(), boxed.strip()


def _load(path: str, name: str | None, split: str, key: str | None = None, env: str = "gsm8k"):
    """The ``split`` of a local file or folder or a hub dataset. ``key``: the option of environment ``env``
    that named ``path`` (``env.path``), which the messages then name; None where the caller puts its own
    key before the message (``data=...: ...``)."""
    import datasets  # imported here: the procedural envs do not need it

    datasets.disable_progress_bars()
    path = os.path.expanduser(path)
    if os.path.isfile(path):
        ext = path.rsplit(".", 1)[-1]
        builder = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}.get(ext)
        if builder is None:
            raise EnvError(f"cannot read {where(path)}: use a .jsonl, .json, .parquet or .csv file, or a folder")
        if builder == "json":
            check_json_lines(path)  # the file and line of a bad line, not pyarrow's traceback
        return datasets.load_dataset(builder, data_files={split: path}, split=split)
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for f in sorted(files):
                if f.endswith((".jsonl", ".json", ".jsonl.gz")) and not f.startswith("."):
                    check_json_lines(os.path.join(root, f))
    elif looks_local(path):  # a path, not a hub name: say so at once (no hub retries)
        raise not_found_locally(path, key)
    try:
        with quiet_hub():
            d = datasets.load_dataset(path, name) if name else datasets.load_dataset(path)
    except FileNotFoundError as e:
        raise EnvError(f"dataset {path!r} not found: no hub dataset of that name and no local file or folder "
                       f"{where(path)} ({e})") from e
    except (ConnectionError, OSError) as e:  # no hub here (requests' ConnectionError is an OSError too)
        example = "../shared/data/gsm8k" if env == "gsm8k" else None
        give = f"with {path_hint(env, example)}" if key == "env.path" else "(a file or folder)"
        raise EnvError(f"cannot load {path!r} from the Hugging Face hub ({type(e).__name__}): give a local copy "
                       f"{give}") from None
    if split not in d:
        fix = "; set env.train_split / env.heldout_split" if key == "env.path" else ""
        raise EnvError(f"dataset {path!r} has splits {list(d)}, not {split!r}{fix}")
    return d[split]


class DatasetMath(TaskSource):
    def __init__(self, path: str, format: str = "gsm8k", name: str | None = None, train_split: str = "train",
                 heldout_split: str = "test", question_key: str | None = None, answer_key: str | None = None):
        if format not in FORMATS:
            raise EnvError(f"format must be one of {FORMATS}, got {format!r}")
        self.path, self.format, self.seed = path, format, 0
        self.name = f"{format}:{os.path.basename(path.rstrip('/')) or path}"
        self.qkey = question_key or ("question" if format == "gsm8k" else "problem")
        self.akey = answer_key or ("answer" if format == "gsm8k" else "solution")
        self._splits = {"train": train_split, "heldout": heldout_split}
        self._data: dict[str, Any] = {}
        self._spec = (path, name)

    def _rows(self, split: str):
        if split not in SPLITS:
            raise EnvError(f"split must be one of {SPLITS}, got {split!r}")
        if split not in self._data:
            rows = _load(self._spec[0], self._spec[1], self._splits[split], key="env.path")
            missing = {self.qkey, self.akey} - set(rows.column_names)
            if missing:
                raise EnvError(f"{self.path!r} ({self._splits[split]}) lacks column(s) {sorted(missing)}; it has "
                               f"{rows.column_names}. Set env.question_key / env.answer_key")
            self._data[split] = rows
        return self._data[split]

    def size(self, split: str = "train") -> int:
        return len(self._rows(split))

    def task(self, index: int, split: str = "train") -> Task:
        rows = self._rows(split)
        if not 0 <= index < len(rows):
            index %= len(rows)
        row = rows[index]
        parse = parse_gsm8k if self.format == "gsm8k" else parse_math
        solution, answer = parse(row[self.akey])
        extra = {k: v for k, v in row.items() if k not in (self.qkey, self.akey)}
        return Task(id=f"{self.name}/{self._splits[split]}/{index}", prompt=row[self.qkey], reference=answer,
                    metadata={"source": self.name, "split": split, "index": index, "solution": solution, **extra})


class DatasetMathEnv(TextEnv):
    """``rlvr/GSM8K-v0``: math word problems from a dataset in GSM8K or MATH format.

    Args:
        path: hub name or local folder/file (default ``openai/gsm8k``).
        format: ``"gsm8k"`` or ``"math"``; name: the hub dataset's config (``"main"`` for GSM8K).
        train_split, heldout_split: the dataset's split names.
        question_key, answer_key: column names, when they differ from the format's.
        correct_weight, format_weight, format_mode, timeout, split, prompt_format, system_prompt:
            as in `MathEnv`.
    """

    def __init__(self, path: str = "openai/gsm8k", format: str = "gsm8k", name: str | None = None,
                 train_split: str = "train", heldout_split: str = "test", question_key: str | None = None,
                 answer_key: str | None = None, correct_weight: float = 1.0, format_weight: float = 0.1,
                 format_mode: str = "soft", timeout: float = 5.0, split: str = "train", prompt_format: str = "chat",
                 system_prompt: str | None = FORMAT_INSTRUCTION,
                 render_mode: str | None = None):
        if name is None and path == "openai/gsm8k":
            name = "main"
        super().__init__(DatasetMath(path, format, name, train_split, heldout_split, question_key, answer_key),
                         math_rubric(correct_weight, format_weight, format_mode, timeout),
                         split=split, prompt_format=prompt_format, system_prompt=system_prompt, render_mode=render_mode)
