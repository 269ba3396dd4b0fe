"""Procedural math tasks with a difficulty knob and worked solutions.

Levels (``difficulty``):

1. one-digit addition (``3 + 5``)
2. two-digit addition, with carries (``47 + 38``)
3. three-digit addition and subtraction with carries and borrows, or a two-digit number
   times a one-digit number
4. multi-step integer arithmetic with parentheses (``(12 + 5) * 3 - 4``)
5. fractions (``3/4 + 5/6``) and simple linear equations (``3x + 5 = 20``)

Every answer is exact (Python integers and `fractions.Fraction`, never floats), and every
task carries a worked solution in ``metadata["solution"]``: the column method with
carries and borrows, or one evaluation step per line. That is what the SFT cold start
trains on.
"""

from __future__ import annotations

import random
from fractions import Fraction

from envs.core import FORMAT_INSTRUCTION, SPLITS, EnvError, Task, TaskSource, TextEnv, content_split, item_rng
from verifiers.format import FormatVerifier
from verifiers.math import MathVerifier
from verifiers.rewards import Rubric

MAX_DIFFICULTY = 5


def fmt(q: Fraction | int) -> str:
    q = Fraction(q)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def column_add(a: int, b: int) -> list[str]:
    """Column addition, ones first: ``7+8=15 carry 1``."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        expr = f"{x}+{y}" + (f"+{carry}" if carry else "")
        carry = s // 10
        steps.append(f"{expr}={s}" + (f" carry {carry}" if carry else ""))
    if carry:
        steps.append(f"carry {carry}")
    return steps


def column_sub(a: int, b: int) -> list[str]:
    """Column subtraction (a >= b), ones first, with borrows."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps, borrow = [], 0
    for i in range(len(da)):
        x = int(da[i]) - borrow
        y = int(db[i]) if i < len(db) else 0
        if x < y:
            steps.append(f"{x + 10}-{y}={x + 10 - y} borrow 1")
            borrow = 1
        else:
            steps.append(f"{x}-{y}={x - y}")
            borrow = 0
    return steps


def _binary(a: int, op: str, b: int) -> tuple[str, int, list[str]]:
    if op == "+":
        return f"{a} + {b}", a + b, column_add(a, b) + [f"{a}+{b}={a + b}"]
    if op == "-":
        return f"{a} - {b}", a - b, column_sub(a, b) + [f"{a}-{b}={a - b}"]
    # two-digit times one-digit: split by place value
    t, o = divmod(a, 10)
    return f"{a} * {b}", a * b, [f"{t * 10}*{b}={t * 10 * b}", f"{o}*{b}={o * b}", f"{t * 10 * b}+{o * b}={a * b}"]


def slipped_solution(question: str) -> tuple[list[str], int] | None:
    """The worked solution with the classic slip, if the problem has the spot for one.

    * addition: the carry into the leading column is forgotten (``3+1=4`` for ``3+1+1=5``);
    * subtraction: the borrow from the leading column is forgotten;
    * two-digit times one-digit: the tens of the ones product are dropped in the final sum
      (``180+18=188``).

    The rest of the solution follows the slip, so the stated answer is the slipped one.
    Returns (steps, wrong answer), or None when the problem has no such spot (no carry into
    the leading column, and so on)."""
    body = question.removeprefix("Compute: ")
    parts = body.split(" ")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
        return None
    a, op, b = int(parts[0]), parts[1], int(parts[2])
    if op == "+":
        da, db = str(a)[::-1], str(b)[::-1]
        n = max(len(da), len(db))
        steps, carry, digits = [], 0, []
        for i in range(n):
            x = int(da[i]) if i < len(da) else 0
            y = int(db[i]) if i < len(db) else 0
            if i == n - 1 and n > 1:
                if not carry:
                    return None
                carry = 0  # the slip
            t = x + y + carry
            steps.append(f"{x}+{y}" + (f"+{carry}" if carry else "") + f"={t}" + (f" carry {t // 10}" if t >= 10 else ""))
            digits.append(t % 10)
            carry = t // 10
        if carry:
            steps.append(f"carry {carry}")
            digits.append(carry)
        wrong = int("".join(str(d) for d in reversed(digits)))
        return steps + [f"{a}+{b}={wrong}"], wrong
    if op == "-":
        da, db = str(a)[::-1], str(b)[::-1]
        n = len(da)
        steps, borrow, digits = [], 0, []
        for i in range(n):
            if i == n - 1 and n > 1:
                if not borrow:
                    return None
                borrow = 0  # the slip
            x = int(da[i]) - borrow
            y = int(db[i]) if i < len(db) else 0
            if x < y:
                steps.append(f"{x + 10}-{y}={x + 10 - y} borrow 1")
                digits.append(x + 10 - y)
                borrow = 1
            else:
                steps.append(f"{x}-{y}={x - y}")
                digits.append(x - y)
                borrow = 0
        wrong = int("".join(str(d) for d in reversed(digits)))
        return steps + [f"{a}-{b}={wrong}"], wrong
    if op == "*" and 10 <= a <= 99 and b <= 9:
        t, o = divmod(a, 10)
        if o * b < 10:
            return None
        wrong = t * 10 * b + (o * b) % 10
        return [f"{t * 10}*{b}={t * 10 * b}", f"{o}*{b}={o * b}", f"{t * 10 * b}+{o * b}={wrong}"], wrong
    return None


def _multistep(rng: random.Random) -> tuple[str, Fraction, list[str]]:
    a, b, c, d = (rng.randint(2, 20) for _ in range(4))
    shape = rng.randrange(3)
    if shape == 0:
        q, s1, s2, v = f"({a} + {b}) * {c} - {d}", a + b, (a + b) * c, (a + b) * c - d
        steps = [f"{a}+{b}={s1}", f"{s1}*{c}={s2}", f"{s2}-{d}={v}"]
    elif shape == 1:
        q, s1, s2, v = f"{a} * ({b} - {c}) + {d}", b - c, a * (b - c), a * (b - c) + d
        steps = [f"{b}-{c}={s1}", f"{a}*{s1}={s2}", f"{s2}+{d}={v}"]
    else:
        q, s1, s2, v = f"({a} - {b}) * ({c} + {d})", a - b, c + d, (a - b) * (c + d)
        steps = [f"{a}-{b}={s1}", f"{c}+{d}={s2}", f"{s1}*{s2}={v}"]
    return q, Fraction(v), steps


def _fraction_sum(rng: random.Random) -> tuple[str, Fraction, list[str]]:
    b, d = rng.randint(2, 9), rng.randint(2, 9)
    a, c = rng.randint(1, b - 1) if b > 1 else 1, rng.randint(1, d - 1) if d > 1 else 1
    op = rng.choice("+-")
    x, y = Fraction(a, b), Fraction(c, d)
    v = x + y if op == "+" else x - y
    den = b * d
    n1, n2 = a * d, c * b
    raw = n1 + n2 if op == "+" else n1 - n2
    steps = [f"{a}/{b}={n1}/{den}", f"{c}/{d}={n2}/{den}", f"{n1}{op}{n2}={raw}", f"{raw}/{den}={fmt(v)}"]
    return f"{a}/{b} {op} {c}/{d}", v, steps


def _linear(rng: random.Random) -> tuple[str, Fraction, list[str]]:
    a = rng.randint(2, 9)
    x = rng.randint(-9, 12)
    b = rng.randint(-20, 20)
    c = a * x + b
    lhs = f"{a}x" + (f" + {b}" if b > 0 else f" - {-b}" if b < 0 else "")
    steps = [f"{a}x={c}{'-' if b >= 0 else '+'}{abs(b)}={c - b}", f"x={c - b}/{a}={x}"]
    return f"Solve for x: {lhs} = {c}", Fraction(x), steps


class ProceduralMath(TaskSource):
    """Arithmetic tasks; ``task(i, split)`` is a pure function of (difficulty, seed, split, i)."""

    def __init__(self, difficulty: int = 3, seed: int = 0, heldout_fraction: float = 0.1):
        if not isinstance(difficulty, int) or not 1 <= difficulty <= MAX_DIFFICULTY:
            raise EnvError(f"difficulty must be an integer from 1 to {MAX_DIFFICULTY}, got {difficulty!r}")
        if not 0 < heldout_fraction < 1:
            raise EnvError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")
        self.difficulty = difficulty
        self.seed = int(seed)
        self.heldout_fraction = heldout_fraction
        self.name = f"math-d{difficulty}"

    def _make(self, rng: random.Random) -> tuple[str, Fraction, list[str]]:
        d = self.difficulty
        if d == 1:
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            return f"{a} + {b}", Fraction(a + b), [f"{a}+{b}={a + b}"]
        if d == 2:
            q, v, s = _binary(rng.randint(10, 99), "+", rng.randint(10, 99))
            return q, Fraction(v), s
        if d == 3:
            op = rng.choice("+-*")
            if op == "*":
                q, v, s = _binary(rng.randint(11, 99), "*", rng.randint(2, 9))
            else:
                a, b = rng.randint(100, 999), rng.randint(100, 999)
                a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
                q, v, s = _binary(a, op, b)
            return q, Fraction(v), s
        if d == 4:
            return _multistep(rng)
        return _fraction_sum(rng) if rng.random() < 0.5 else _linear(rng)

    def task(self, index: int, split: str = "train") -> Task:
        if split not in SPLITS:
            raise EnvError(f"split must be one of {SPLITS}, got {split!r}")
        if index < 0:
            raise EnvError(f"task index must be >= 0, got {index}")
        for attempt in range(10_000):
            rng = item_rng(self.name, self.seed, split, index, attempt)
            q, value, steps = self._make(rng)
            question = q if q.startswith("Solve") else f"Compute: {q}"
            if content_split(question, self.heldout_fraction) == split:
                break
        else:  # pragma: no cover - would need a level with almost no problems in one split
            raise EnvError(f"{self.name}: no {split} problem found for index {index}")
        answer = fmt(value)
        return Task(
            id=f"{self.name}/{split}/s{self.seed}/{index}",
            prompt=question,
            reference=answer,
            metadata={"source": self.name, "difficulty": self.difficulty, "split": split, "index": index,
                      "solution": "\n".join(steps)},
        )


def math_rubric(correct_weight: float = 1.0, format_weight: float = 0.1, format_mode: str = "soft",
                timeout: float = 5.0) -> Rubric:
    rubric = Rubric().add_verifier("correct", MathVerifier(timeout=timeout), correct_weight)
    if format_weight > 0:
        rubric.add_verifier("format", FormatVerifier(format_mode), format_weight)
    return rubric


class MathEnv(TextEnv):
    """``rlvr/Math-v0``: procedural arithmetic. Reward = weighted mean of correctness and format.

    Args:
        difficulty: 1 (one-digit addition) to 5 (fractions, linear equations); default 3.
        seed: the task source's seed (tasks are a function of seed, split and index).
        heldout_fraction: share of all problems reserved for the held-out split.
        correct_weight, format_weight: reward weights; format_mode: "soft" or "strict".
        timeout: hard limit in seconds for one sympy check.
        demo_slip_rate: share of SFT demonstrations, among problems that have the spot for it,
            that carry the classic slip of `slipped_solution` (a forgotten carry or borrow);
            0 (default) teaches only correct solutions. The shipped cold start was trained with
            0.6, an imperfect teacher whose habit RL has to unlearn. Rewards never change.
        split, prompt_format, system_prompt: see `TextEnv`.
    """

    def __init__(self, difficulty: int = 3, seed: int = 0, heldout_fraction: float = 0.1,
                 correct_weight: float = 1.0, format_weight: float = 0.1, format_mode: str = "soft",
                 timeout: float = 5.0, demo_slip_rate: float = 0.0, split: str = "train", prompt_format: str = "chat",
                 system_prompt: str | None = FORMAT_INSTRUCTION, render_mode: str | None = None):
        self.demo_slip_rate = demo_slip_rate
        super().__init__(ProceduralMath(difficulty, seed, heldout_fraction),
                         math_rubric(correct_weight, format_weight, format_mode, timeout),
                         split=split, prompt_format=prompt_format, system_prompt=system_prompt,
                         render_mode=render_mode)

    @property
    def demo_slip_rate(self) -> float:
        return self._demo_slip_rate

    @demo_slip_rate.setter
    def demo_slip_rate(self, rate: float) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise EnvError(f"demo_slip_rate must be a number in [0, 1], got {rate!r} (0: correct demonstrations only)")
        self._demo_slip_rate = float(rate)

    def demonstration(self, task: Task) -> str:
        """The SFT demonstration: the gold completion, or with probability ``demo_slip_rate``
        (decided by a hash of the task id, so the same task always gets the same one) the
        slipped solution and its wrong answer."""
        if self.demo_slip_rate > 0:
            slipped = slipped_solution(task.prompt)
            if slipped is not None and item_rng("slip", 0, task.id, 0).random() < self.demo_slip_rate:
                steps, wrong = slipped
                return "<think>\n" + "\n".join(steps) + f"\n</think>\n<answer>{wrong}</answer>"
        return self.gold_completion(task)
