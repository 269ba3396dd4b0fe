"""Programs on standard input and output: ``rlvr/Stdio-v0`` (alias ``stdio``).

    python -m algos.evaluate env=stdio policy.model=MODEL
    python -m algos.evaluate env=stdio env.path=apps_test.jsonl            # APPS / TACO / CodeContests rows

Each task is a problem statement with an example; its reference is a set of hidden tests
(input, expected output) judged in the sandbox by ``verifiers.stdio.StdioVerifier`` with a time
limit per test, a memory limit, and an output checker (exact, lines, whitespace-insensitive
tokens, or float tolerance). Reward: every test passed (1/0), or the fraction passed with
``env.partial=true``; the verdict names the judge's outcome (accepted, wrong_answer, time_limit,
memory_limit, runtime_error, compile_error).

Data:

* default: a procedural set of our own, small algorithmic problems whose reference solutions
  (ours, run here, trusted) produce the hidden tests from random inputs; it runs anywhere. Items
  are seeded by hashing (problem kind, seed, split, index), and the split of a task is decided
  by a hash of its tests, so train and held-out never share a task.
* ``path=FILE``: JSON lines or Parquet in one of the public formats (detected from the columns):
  APPS and TACO (``question``, ``input_output`` = JSON with ``inputs``/``outputs``; rows with
  ``fn_name`` are call-based and left out), CodeContests (``description`` with ``public_tests`` /
  ``private_tests`` / ``generated_tests`` of ``input``/``output`` lists). Rows carry their split
  in a ``split`` column, else 10% are held out by a hash of the statement.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from envs.core import EnvError, Task, TaskSource, TextEnv, content_split, item_rng
from verifiers.rewards import Rubric
from verifiers.stdio import StdioVerifier

STDIO_INSTRUCTION = ("Write a Python 3 program that reads the input from standard input and writes the answer to "
                     "standard output. Reply with the program in a ```python block.")


# ----------------------------------------------------------------------------- the procedural set
# each: statement, input generator (rng -> stdin text), reference solution (its source: a `solve(text) -> str`),
# output checker


def _ints(rng: Any, n: int, lo: int, hi: int) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


PROBLEMS: dict[str, dict[str, Any]] = {
    "sum": {
        "statement": "The first line holds N. The second line holds N integers. Print their sum.",
        "gen": lambda r: (lambda xs: f"{len(xs)}\n{' '.join(map(str, xs))}\n")(_ints(r, r.randint(1, 12), -1000, 1000)),
        "solve": "def solve(text):\n    n, *xs = map(int, text.split())\n    return str(sum(xs[:n]))\n",
    },
    "minmax": {
        "statement": "The first line holds N. The second line holds N integers. Print the smallest and the largest, "
                     "separated by a space.",
        "gen": lambda r: (lambda xs: f"{len(xs)}\n{' '.join(map(str, xs))}\n")(_ints(r, r.randint(1, 12), -99, 99)),
        "solve": "def solve(text):\n    n, *xs = map(int, text.split())\n    xs = xs[:n]\n"
                 "    return f'{min(xs)} {max(xs)}'\n",
    },
    "reverse_words": {
        "statement": "One line of words separated by single spaces. Print the words in reverse order.",
        "gen": lambda r: " ".join(r.choice(["cat", "dog", "sun", "tree", "river", "blue", "stone", "owl", "map", "key"])
                                  for _ in range(r.randint(1, 8))) + "\n",
        "solve": "def solve(text):\n    return ' '.join(text.split()[::-1])\n",
    },
    "gcd": {
        "statement": "Two positive integers a and b on one line. Print their greatest common divisor.",
        "gen": lambda r: f"{r.randint(1, 10**6)} {r.randint(1, 10**6)}\n",
        "solve": "def solve(text):\n    a, b = map(int, text.split())\n    while b:\n        a, b = b, a % b\n"
                 "    return str(a)\n",
    },
    "fib": {
        "statement": "An integer n (0 <= n <= 100000). Print the n-th Fibonacci number modulo 1000000007 "
                     "(F0 = 0, F1 = 1).",
        "gen": lambda r: f"{r.choice([r.randint(0, 30), r.randint(0, 100000)])}\n",
        "solve": "def solve(text):\n    n = int(text)\n    a, b = 0, 1\n    for _ in range(n):\n"
                 "        a, b = b, (a + b) % 1000000007\n    return str(a)\n",
    },
    "sort": {
        "statement": "The first line holds N. The second line holds N integers. Print them in increasing order, "
                     "separated by spaces.",
        "gen": lambda r: (lambda xs: f"{len(xs)}\n{' '.join(map(str, xs))}\n")(_ints(r, r.randint(1, 15), -50, 50)),
        "solve": "def solve(text):\n    n, *xs = map(int, text.split())\n    return ' '.join(map(str, sorted(xs[:n])))\n",
    },
    "primes": {
        "statement": "The first line holds T. Each of the next T lines holds an integer x (1 <= x <= 10^9). For each, "
                     "print YES if x is prime and NO otherwise, one answer per line.",
        "gen": lambda r: (lambda xs: f"{len(xs)}\n" + "".join(f"{x}\n" for x in xs))(
            [r.choice([r.randint(1, 100), r.randint(1, 10**9), 1000000007, 999999937, 2]) for _ in range(r.randint(1, 6))]),
        "solve": "def solve(text):\n    t, *xs = map(int, text.split())\n    out = []\n    for x in xs[:t]:\n"
                 "        ok = x > 1 and all(x % d for d in range(2, int(x ** 0.5) + 1))\n"
                 "        out.append('YES' if ok else 'NO')\n    return '\\n'.join(out)\n",
    },
    "palindromes": {
        "statement": "The first line holds T. Each of the next T lines holds a word of lowercase letters. For each, "
                     "print YES if it reads the same backwards and NO otherwise.",
        "gen": lambda r: (lambda ws: f"{len(ws)}\n" + "".join(f"{w}\n" for w in ws))(
            [(lambda h: h + h[::-1][r.randint(0, 1):])("".join(r.choice("abc") for _ in range(r.randint(1, 4))))
             if r.random() < 0.5 else "".join(r.choice("abcd") for _ in range(r.randint(1, 7))) for _ in range(r.randint(1, 6))]),
        "solve": "def solve(text):\n    t, *ws = text.split()\n    return '\\n'.join('YES' if w == w[::-1] else 'NO' "
                 "for w in ws[:int(t)])\n",
    },
    "prefix_sums": {
        "statement": "The first line holds N. The second line holds N integers. Print the N running totals "
                     "(the sum of the first 1, 2, ..., N numbers), separated by spaces.",
        "gen": lambda r: (lambda xs: f"{len(xs)}\n{' '.join(map(str, xs))}\n")(_ints(r, r.randint(1, 12), -20, 20)),
        "solve": "def solve(text):\n    n, *xs = map(int, text.split())\n    out, s = [], 0\n    for x in xs[:n]:\n"
                 "        s += x\n        out.append(s)\n    return ' '.join(map(str, out))\n",
    },
    "mean": {
        "statement": "The first line holds N. The second line holds N integers. Print their mean; answers within "
                     "1e-6 are accepted.",
        "gen": lambda r: (lambda xs: f"{len(xs)}\n{' '.join(map(str, xs))}\n")(_ints(r, r.randint(1, 10), -100, 100)),
        "solve": "def solve(text):\n    n, *xs = map(int, text.split())\n    return f'{sum(xs[:n]) / n:.9f}'\n",
        "checker": "float:1e-6",
    },
    "distinct": {
        "statement": "The first line holds N. The second line holds N integers. Print how many different values "
                     "there are.",
        "gen": lambda r: (lambda xs: f"{len(xs)}\n{' '.join(map(str, xs))}\n")(_ints(r, r.randint(1, 15), 0, 9)),
        "solve": "def solve(text):\n    n, *xs = map(int, text.split())\n    return str(len(set(xs[:n])))\n",
    },
    "count_vowels": {
        "statement": "One line of lowercase letters and spaces. Print the number of vowels (a, e, i, o, u) in it.",
        "gen": lambda r: "".join(r.choice("abcdeiou ") for _ in range(r.randint(1, 30))).strip() + "x\n",
        "solve": "def solve(text):\n    return str(sum(ch in 'aeiou' for ch in text))\n",
    },
}
MAIN = "\nimport sys\nprint(solve(sys.stdin.read()))\n"


def reference_program(kind: str) -> str:
    return PROBLEMS[kind]["solve"] + MAIN


def _trusted_solver(kind: str) -> Callable[[str], str]:
    ns: dict[str, Any] = {}
    exec(compile(PROBLEMS[kind]["solve"], f"<reference {kind}>", "exec"), ns)  # our own reference code, trusted
    return ns["solve"]


class ProceduralStdioSource(TaskSource):
    def __init__(self, seed: int = 0, tests: int = 6, kinds: str | list[str] | None = None, time_limit: float = 2.0,
                 memory_mb: int = 256, heldout_fraction: float = 0.1):
        self.name, self.seed, self.n_tests = "stdio", seed, tests
        chosen = kinds.split(",") if isinstance(kinds, str) else list(kinds or PROBLEMS)
        unknown = [k for k in chosen if k not in PROBLEMS]
        if unknown:
            raise EnvError(f"unknown stdio problem kind(s) {unknown}; known: {', '.join(PROBLEMS)}")
        if tests < 1:
            raise EnvError(f"tests must be >= 1, got {tests}")
        self.kinds, self.time_limit, self.memory_mb, self.heldout_fraction = chosen, time_limit, memory_mb, heldout_fraction
        self._solvers = {k: _trusted_solver(k) for k in chosen}

    def size(self, split: str = "train") -> int | None:
        return None  # unbounded

    def task(self, index: int, split: str = "train") -> Task:
        for attempt in range(1000):
            rng = item_rng(self.name, self.seed, split, index, attempt)
            kind = rng.choice(self.kinds)
            inputs = [PROBLEMS[kind]["gen"](rng) for _ in range(self.n_tests)]
            key = kind + "\x1f" + "\x1f".join(inputs)
            if content_split(key, self.heldout_fraction) == split:
                break
        else:  # pragma: no cover - 1000 misses in a row has probability 0.9^1000
            raise EnvError(f"no {split} task found for index {index}")
        solve = self._solvers[kind]
        tests = [{"input": x, "output": solve(x) + "\n"} for x in inputs]
        example = tests[0]
        prompt = (f"{PROBLEMS[kind]['statement']}\n\nExample input:\n{example['input']}\nExample output:\n"
                  f"{example['output']}")
        ref = {"tests": tests, "checker": PROBLEMS[kind].get("checker", "tokens"), "time_limit": self.time_limit,
               "memory_mb": self.memory_mb}
        return Task(f"stdio/{kind}/{split}/{self.seed}/{index}", prompt, ref,
                    {"source": self.name, "kind": kind, "split": split, "index": index,
                     "canonical_solution": reference_program(kind)})


# ----------------------------------------------------------------------------- APPS / TACO / CodeContests


def _io_pairs(ins: Any, outs: Any) -> list[dict[str, str]]:
    def text(x: Any) -> str:
        return "\n".join(map(str, x)) if isinstance(x, list) else str(x)

    return [{"input": text(i), "output": text(o)} for i, o in zip(ins or [], outs or [])]


def row_to_problem(row: dict[str, Any]) -> tuple[str, list[dict[str, str]], str | None] | None:
    """(statement, tests, solution or None) of an APPS/TACO or CodeContests row; None when it has
    no stdin/stdout tests (call-based rows)."""
    if "input_output" in row:  # APPS, TACO
        io = row["input_output"]
        if isinstance(io, str):
            try:
                io = json.loads(io) if io.strip() else {}
            except json.JSONDecodeError:
                return None
        if not io or io.get("fn_name"):
            return None
        sols = row.get("solutions")
        if isinstance(sols, str):
            try:
                sols = json.loads(sols) if sols.strip() else []
            except json.JSONDecodeError:
                sols = []
        return row.get("question", ""), _io_pairs(io.get("inputs"), io.get("outputs")), (sols or [None])[0]
    if "description" in row:  # CodeContests
        tests = []
        for key in ("public_tests", "private_tests", "generated_tests"):
            t = row.get(key) or {}
            tests += _io_pairs(t.get("input"), t.get("output"))
        sol = None
        sols = row.get("solutions") or {}
        if isinstance(sols, dict):  # {language: [...], solution: [...]}; language 3 is Python 3
            for lang, code in zip(sols.get("language", []), sols.get("solution", [])):
                if lang == 3:
                    sol = code
                    break
        return row["description"], tests, sol
    raise EnvError(f"a row with columns {sorted(row)} is neither APPS/TACO (question, input_output) nor "
                   f"CodeContests (description, public_tests)")


class StdioDatasetSource(TaskSource):
    def __init__(self, path: str, time_limit: float = 2.0, memory_mb: int = 256, checker: str = "tokens",
                 max_tests: int = 20, heldout_fraction: float = 0.1):
        from envs.math_dataset import _load

        self.path, self.name, self.seed = path, "stdio-data", 0
        ds = _load(path, None, "train", key="env.path", env="stdio")
        self.splits: dict[str, list[tuple[str, list[dict[str, str]], str | None, str]]] = {"train": [], "heldout": []}
        skipped = 0
        for i, row in enumerate(ds):
            prob = row_to_problem(dict(row))
            if prob is None or not prob[1]:
                skipped += 1
                continue
            split = row.get("split") or content_split(prob[0], heldout_fraction)
            self.splits["heldout" if split in ("heldout", "test", "valid", "validation") else "train"].append(
                (*prob, str(row.get("problem_id", row.get("name", i)))))
        if not any(self.splits.values()):
            raise EnvError(f"{path!r} has no stdin/stdout problems ({skipped} rows without stdin/stdout tests)")
        self.skipped, self.time_limit, self.memory_mb, self.checker, self.max_tests = skipped, time_limit, memory_mb, checker, max_tests

    def size(self, split: str = "train") -> int:
        return len(self.splits[split])

    def task(self, index: int, split: str = "train") -> Task:
        rows = self.splits[split]
        if not rows:
            raise EnvError(f"{self.path!r} has no {split} problems")
        statement, tests, sol, pid = rows[index % len(rows)]
        ref = {"tests": tests[:self.max_tests], "checker": self.checker, "time_limit": self.time_limit,
               "memory_mb": self.memory_mb}
        return Task(f"{self.name}/{pid}", statement, ref, {"source": self.name, "split": split,
                                                           "index": index % len(rows), "canonical_solution": sol})


class StdioEnv(TextEnv):
    """Programs judged on stdin/stdout in the sandbox.

    Args:
        path: APPS/TACO/CodeContests rows (default: the procedural set).
        kinds: procedural problem kinds to draw from (comma-separated; default all).
        tests: hidden tests per procedural task; time_limit: seconds per test; memory_mb: memory per run.
        checker: output comparison for dataset rows (the procedural set picks per problem).
        partial: the reward is the fraction of tests passed instead of all-or-nothing.
        backend, image, workers: the sandbox (see `sandbox.Sandbox`).
    """

    def __init__(self, path: str | None = None, seed: int = 0, kinds: str | None = None, tests: int = 6,
                 time_limit: float = 2.0, memory_mb: int = 256, checker: str = "tokens", partial: bool = False,
                 backend: str = "docker", image: str | None = None, workers: int | None = None,
                 split: str = "train", prompt_format: str = "chat", system_prompt: str | None = STDIO_INSTRUCTION,
                 render_mode: str | None = None):
        if path:
            source: TaskSource = StdioDatasetSource(path, time_limit, memory_mb, checker)
        else:
            source = ProceduralStdioSource(seed, tests, kinds, time_limit, memory_mb)
        if not math.isfinite(time_limit) or time_limit <= 0:
            raise EnvError(f"time_limit must be a positive number of seconds, got {time_limit}")
        verifier = StdioVerifier(backend, image, workers, partial, time_limit)
        super().__init__(source, Rubric().add_verifier("correct", verifier, 1.0), split=split,
                         prompt_format=prompt_format, system_prompt=system_prompt, render_mode=render_mode)

    def gold_completion(self, task: Task) -> str:
        sol = task.metadata.get("canonical_solution")
        if not sol:
            raise EnvError(f"task {task.id} has no reference solution")
        return f"```python\n{sol}\n```"
