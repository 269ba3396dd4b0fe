"""Scoring reasoning-gym's tasks (``env=rg:NAME``), honestly.

reasoning-gym's scorers run on model output; several call ``eval`` or sympy's ``parse_expr`` on
it, and many pay partial credit (version 0.1.25: substring matches paid by length ratio, about
0.65 on average to random knights-and-knaves guesses, sudoku grids paid per matching cell and a
wrong countdown expression paid 0.05). So:

* every ``score_answer`` call runs in a worker process under a hard time limit
  (`verifiers.pool.HardTimeoutPool`), never in the trainer's process; a timeout is a
  ``timeout`` verdict, a crash an ``error`` verdict;
* ``strict`` (the default): correct only when reasoning-gym pays full credit (1.0), reward
  1 or 0; for sudoku and mini_sudoku, a grid that differs from the stored solution is still
  correct when it is a valid solution of the puzzle (every row, column and box a permutation,
  every given kept): the check their scorer does not make. ``strict=False`` passes
  reasoning-gym's score through (status correct only at 1.0).

The answer is the content of the last closed ``<answer>`` block; none (or an unclosed
``<think>``) is ``no_answer``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Sequence

from verifiers.verdict import Status, Verdict

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_POOLS: dict[tuple, Any] = {}
SUDOKUS = ("sudoku", "mini_sudoku")


def extract_answer(completion: str) -> str | None:
    if completion.rfind("<think>") > completion.rfind("</think>"):
        return None  # still thinking: cut off
    found = _ANSWER.findall(completion)
    return found[-1].strip() if found else None


def valid_sudoku(answer: str, puzzle: list[list[int]]) -> bool:
    """Is ``answer`` (rows of digits) a complete, valid solution of ``puzzle`` (0: blank)?"""
    n = len(puzzle)
    rows = [[int(c) for c in line if c.isdigit()] for line in answer.strip().splitlines() if line.strip()]
    box = int(math.isqrt(n))
    if len(rows) != n or any(len(r) != n for r in rows) or box * box != n:
        return False
    want = set(range(1, n + 1))
    if any(set(r) != want for r in rows) or any({rows[i][j] for i in range(n)} != want for j in range(n)):
        return False
    for bi in range(0, n, box):
        for bj in range(0, n, box):
            if {rows[i][j] for i in range(bi, bi + box) for j in range(bj, bj + box)} != want:
                return False
    return all(puzzle[i][j] in (0, rows[i][j]) for i in range(n) for j in range(n))


class RGVerifier:
    """Verdicts for one reasoning-gym generator (``name`` and its options)."""

    def __init__(self, name: str, options: dict[str, Any] | None = None, strict: bool = True, timeout: float = 5.0,
                 workers: int | None = None):
        self.name, self.options, self.strict, self.timeout = name, dict(options or {}), strict, timeout
        self.workers = workers

    @property
    def pool(self) -> Any:
        from verifiers.pool import HardTimeoutPool

        key = (self.workers, self.timeout)
        if key not in _POOLS:
            _POOLS[key] = HardTimeoutPool("verifiers.rg:score_in_worker", self.workers, self.timeout)
        return _POOLS[key]

    def verify(self, completion: str, reference: dict[str, Any]) -> Verdict:
        return self.verify_batch([completion], [reference])[0]

    def verify_batch(self, completions: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(completions)
        jobs, idx, answers = [], [], []
        opts = json.dumps(self.options, sort_keys=True)
        for i, (c, ref) in enumerate(zip(completions, references)):
            ans = extract_answer(c) if isinstance(c, str) else None
            if not ans:
                out[i] = Verdict(Status.NO_ANSWER, 0.0, None, {"reason": "no closed <answer> block"})
                continue
            jobs.append((self.name, opts, ans, ref))
            idx.append(i)
            answers.append(ans)
        for i, ans, (kind, value) in zip(idx, answers, self.pool.map(jobs)):
            ref = references[i]
            if kind == "timeout":
                out[i] = Verdict(Status.TIMEOUT, 0.0, ans, {"error": f"reasoning-gym's scorer ran over {value:.0f}s"})
            elif kind == "error":
                out[i] = Verdict(Status.ERROR, 0.0, ans, {"error": f"reasoning-gym's scorer failed: {value}"})
            else:
                out[i] = self._verdict(float(value), ans, ref)
        return out  # type: ignore[return-value]

    def _verdict(self, rg_score: float, ans: str, ref: dict[str, Any]) -> Verdict:
        details = {"rg_score": rg_score, "strict": self.strict}
        full = rg_score >= 1.0
        if not full and self.name in SUDOKUS and self.strict:
            full = valid_sudoku(ans, ref["metadata"]["puzzle"])
            details["valid_grid"] = full
        if full:
            return Verdict(Status.CORRECT, 1.0, ans, details)
        return Verdict(Status.WRONG, 0.0 if self.strict else max(0.0, min(1.0, rg_score)), ans, details)


_DATASETS: dict[tuple[str, str], Any] = {}


def score_in_worker(name: str, options_json: str, answer: str, entry: dict[str, Any]) -> float:
    """In a verifier worker process: reasoning-gym's own score of ``answer`` for ``entry``."""
    import reasoning_gym

    key = (name, options_json)
    if key not in _DATASETS:
        _DATASETS[key] = reasoning_gym.create_dataset(name, seed=0, size=1, **json.loads(options_json))
    return float(_DATASETS[key].score_answer(answer, entry))
