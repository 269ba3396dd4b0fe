"""Math's adversarial cases (issue 28, items 1 and 7): answers that only Python could make right,
relations and hedges, scale words, e-notation, ``\\pm``, and corrections (the last box answers).

Scored as training scores them: by the environment ``envs.make("math")`` builds, through
``score_batch`` (the math verifier's fast path and its sympy worker pool); the verdict is the
correctness part's. ``reference`` is the gold answer.
"""

from __future__ import annotations

import functools

from verifiers.audit import HOLE, RIGHT, Case
from verifiers.verdict import Verdict

ENV = "math"


def _cases() -> list[Case]:
    out: list[Case] = []

    def add(cls: str, kind: str, completion: str, gold: str, name: str | None = None) -> None:
        out.append(Case(ENV, cls, name or f"{completion[:70]!r} vs {gold!r}", kind, completion, gold))

    # ---- 1. model text executed: only Python would make these right ----------------------------
    cls = "model text executed as Python"
    for text, gold in (("int('42')", "42"), ("len('x' * 42)", "42"), ("(lambda: 42)()", "42"), ("eval('6*7')", "42"),
                       ("__import__('math').factorial(3)", "6"), ("sum([40, 2])", "42"), ("0x2a", "42"),
                       ("0b101010", "42"), ("4_2", "42"), ("abs(-42)", "42"), ("max(1, 42)", "42"),
                       ("(42).real", "42"), ("[42][0]", "42"), ("True + 41", "42"), ("ord('*')", "42"),
                       ("__import__('builtins').globals()", "42"), ("(1).__class__(42)", "42")):
        add(cls, HOLE, f"The final answer is {text}", gold)
        add(cls, HOLE, f"\\boxed{{{text}}}", gold)
        add(cls, HOLE, f"<answer>{text}</answer>", gold)
    for text, gold in (("The final answer is 6*7", "42"), ("The final answer is 3/4", "0.75"),
                       ("The final answer is 2^10", "1024"), ("\\boxed{6 \\cdot 7}", "42")):
        add(cls, RIGHT, text, gold)  # plain arithmetic is still read, without Python

    # ---- 7. relations ------------------------------------------------------------------------
    cls = "relations and hedges: relations"
    for rel in ("\\neq", "\\ne", "\\not=", "≠", "\\leq", "\\le", "\\geq", "\\ge", "\\leqslant", "\\geqslant", "<",
                ">", "\\lt", "\\gt", "≤", "≥", "!="):
        add(cls, HOLE, f"\\boxed{{{rel} 6}}", "6")
        add(cls, HOLE, f"\\boxed{{x {rel} 6}}", "6")
        add(cls, HOLE, f"<answer>x {rel} 6</answer>", "6")
    for words in ("not equal to 6", "not 6", "at most 6", "at least 6", "less than 7", "greater than 5",
                  "no more than 6", "never 6"):
        add(cls, HOLE, f"The answer is {words}.", "6")
        add(cls, HOLE, f"\\boxed{{\\text{{{words}}}}}", "6")
    for text in ("The answer isn't 6.", "So x is not equal to 6.", "Answer: not 6", "Final answer: x ≠ 6",
                 "We conclude $x \\neq 6$.", "The value is at most 6."):
        add(cls, HOLE, text, "6")
    for text in ("x \\neq \\boxed{6}", "The answer is not \\boxed{6}", "$x \\leq \\boxed{6}$", "<answer>not \\boxed{6}</answer>",
                 "it is at least \\boxed{6}", "$x \\ge \\boxed{6}$", "x ≠ $\\boxed{6}$"):
        add(cls, HOLE, text, "6")
    add(cls, RIGHT, "we need $x \\geq 3$, so the minimum is \\boxed{3}", "3")
    add(cls, RIGHT, "So $x = \\boxed{-6}$", "-6")
    add(cls, RIGHT, "\\boxed{x \\ne 6}", "x \\neq 6")
    add(cls, RIGHT, "\\boxed{x \\leq 6}", "x \\le 6")
    add(cls, RIGHT, "\\boxed{12}. Note that the answer is not 13.", "12")
    add(cls, RIGHT, "The answer is 12, not 13.", "12")

    # ---- 7. hedges and lists ---------------------------------------------------------------------
    cls = "relations and hedges: hedges and lists"
    for gold in ("5", "6"):
        for text in ("\\boxed{5 \\text{ or } 6}", "\\boxed{5 or 6}", "The answer is either 5 or 6.",
                     "\\boxed{\\text{either } 5 \\text{ or } 6}", "\\boxed{5 | 6}", "\\boxed{5 \\mid 6}",
                     "\\boxed{5 \\,|\\, 6}", "\\boxed{5 \\lor 6}", "\\boxed{5 \\vee 6}", "\\boxed{5 \\vert 6}",
                     "<answer>5 or 6</answer>", "The answer is 5 | 6.", "\\boxed{5 \\text{ (or } 6)}",
                     "\\boxed{\\begin{cases} 5 \\\\ 6 \\end{cases}}", "\\boxed{\\begin{cases} x = 5 \\\\ x = 6 \\end{cases}}",
                     "\\boxed{\\begin{array}{c} 5 \\\\ 6 \\end{array}}", "\\boxed{5 \\\\ 6}",
                     "\\boxed{\\begin{aligned} x &= 5 \\\\ x &= 6 \\end{aligned}}", "\\boxed{5, 6}", "\\boxed{5; 6}",
                     "The answer is 5, 6", "The answer is $5$, $6$.", "The answer is 5 and 6.", "<answer>5, 6</answer>",
                     "<answer>5 6</answer>", "\\boxed{5 \\text{ and } 6}", "\\boxed{5 \\& 6}", "\\boxed{\\{5, 6\\}}",
                     "\\boxed{5} or \\boxed{6}", "\\boxed{5}, \\boxed{6}", "\\boxed{5} and \\boxed{6}",
                     "\\boxed{5} (or maybe \\boxed{6})", "\\boxed{5}, but it could also be \\boxed{6}",
                     "5 or \\boxed{6}", "\\boxed{5} (or 6)", "\\boxed{6}, or possibly 5", "It is 5 or 6.",
                     "\\boxed{6 \\text{ or } 5}", "The answer is 6 or 5"):
            add(cls, HOLE, text, gold)
    for text in ("It is 5, 6.", "Values: 5 and 6", "So the solutions are 5 and 6."):
        add(cls, HOLE, text, "6")
    add(cls, RIGHT, "So the point is $(7, 6)$.", "(7, 6)")
    add(cls, RIGHT, "\\boxed{6}. Or is it? Yes, \\boxed{6}.", "6", "the same box twice")
    add(cls, RIGHT, "\\boxed{1} and \\boxed{2}", "1, 2")
    add(cls, RIGHT, "The answer is 5, 6", "5, 6")
    add(cls, RIGHT, "\\boxed{5 \\text{ or } 6}", "5 \\text{ or } 6")

    # ---- 7. scale words --------------------------------------------------------------------------
    cls = "relations and hedges: scale words"
    for text, gold in (("\\boxed{6 \\text{ million}}", "6000000"), ("\\boxed{2 \\text{ million}}", "2000000"),
                       ("The answer is 2 million.", "2000000"), ("\\boxed{2\\text{ thousand}}", "2000"),
                       ("\\boxed{2\\text{ billion}}", "2000000000"), ("\\boxed{2.5 \\text{ million}}", "2500000"),
                       ("\\boxed{6\\,\\text{million}}", "6000000"), ("\\boxed{6 \\mathrm{~million}}", "6000000"),
                       ("\\boxed{\\$6 \\text{ million}}", "6000000"), ("\\boxed{3.2 \\text{ billion}}", "3200000000"),
                       ("\\boxed{6000000}", "6 \\text{ million}"), ("<answer>4 thousand</answer>", "4000")):
        add(cls, RIGHT, text, gold)
    for text, gold in (("\\boxed{6 \\text{ million}}", "6"), ("\\boxed{2 \\text{ million}}", "2"),
                       ("\\boxed{2 \\text{ thousand}}", "2"), ("\\boxed{6 \\text{ millions}}", "6"),
                       ("The answer is 6 million.", "6"), ("\\boxed{2.5 \\text{ billion}}", "2.5"),
                       ("\\boxed{6 \\text{ million}}", "600000"), ("<answer>4 thousand</answer>", "4")):
        add(cls, HOLE, text, gold)

    # ---- 7. e-notation -----------------------------------------------------------------------------
    cls = "relations and hedges: e-notation"
    for text, gold in (("\\boxed{2e3}", "2000"), ("\\boxed{2E3}", "2000"), ("\\boxed{1.5e2}", "150"),
                       ("\\boxed{2e+3}", "2000"), ("\\boxed{1e-2}", "0.01"), ("The answer is 2e3.", "2000"),
                       ("\\boxed{2e}", "2e"), ("\\boxed{e^2}", "e^2"), ("\\boxed{3e}", "3e"), ("\\boxed{e}", "e")):
        add(cls, RIGHT, text, gold)
    for text, gold in (("\\boxed{2e3}", "6"), ("\\boxed{2e3}", "2e"), ("\\boxed{2e3}", "23"), ("\\boxed{1.5e2}", "15"),
                       ("\\boxed{2e3}", "2e^3"), ("\\boxed{2e}", "2000")):
        add(cls, HOLE, text, gold)

    # ---- 7. plus-minus: \pm a is the two values a and -a ------------------------------------------
    cls = "relations and hedges: plus-minus"
    for text, gold in (("\\boxed{x = \\pm 2}", "2, -2"), ("\\boxed{\\pm 2}", "2, -2"), ("\\boxed{\\pm 2}", "\\pm 2"),
                       ("\\boxed{x = \\pm 2}", "\\pm 2"), ("\\boxed{2, -2}", "\\pm 2"), ("\\boxed{-2, 2}", "x = \\pm 2"),
                       ("\\boxed{\\pm 2}", "2 \\text{ or } -2"), ("\\boxed{x = 2 \\text{ or } x = -2}", "\\pm 2"),
                       ("\\boxed{2} or \\boxed{-2}", "\\pm 2"), ("\\boxed{\\mp 2}", "-2, 2"),
                       ("\\boxed{x=\\pm\\sqrt{2}}", "\\sqrt{2}, -\\sqrt{2}")):
        add(cls, RIGHT, text, gold)
    for text, gold in (("\\boxed{\\pm 2}", "2"), ("\\boxed{\\pm 2}", "-2"), ("\\boxed{x=\\pm 2}", "2"),
                       ("\\boxed{\\pm 3}", "2, -2"), ("\\boxed{2 \\pm 1}", "3"), ("\\boxed{2}", "\\pm 2")):
        add(cls, HOLE, text, gold)

    # ---- 7. a correction is not a hedge: the last box answers ---------------------------------------
    cls = "relations and hedges: corrections"
    for text in ("\\boxed{5} first, but correcting the mistake, the answer is \\boxed{6}", "\\boxed{12} \\boxed{6}",
                 "\\boxed{5}\\boxed{6}", "Wait, \\boxed{5} is wrong. Actually \\boxed{6}.",
                 "\\boxed{5}. Wait, I made an error. Recomputing: \\boxed{6}",
                 "Initially I got $\\boxed{5}$, but recomputing gives $\\boxed{6}$.",
                 "<answer>\\boxed{5}, no wait \\boxed{6}</answer>", "\\boxed{5}\n\nActually the answer is \\boxed{6}",
                 "\\fbox{5} ... oops, \\boxed{6}", "\\boxed{5} is incorrect; the answer is 6."):
        add(cls, RIGHT, text, "6")
        add(cls, HOLE, text, "5")
    return out


CASES = _cases()


@functools.lru_cache(maxsize=1)
def _env():
    import envs

    return envs.make("math").unwrapped


def score(cases: list[Case]) -> list[Verdict]:
    from envs.core import Task

    tasks = [Task(f"audit/{i}", "", c.reference, {}) for i, c in enumerate(cases)]
    return [r.verdicts["correct"] for r in _env().score_batch([c.completion for c in cases], tasks)]
