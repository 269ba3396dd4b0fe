"""Issue 28 for math, tools and format: model text never evaluated as Python; relations, hedges,
lists, scale words, e-notation, plus-minus and corrections; the pieces those rules are made of.
(The tool-forging and cut-off-format classes are tested in test_tools.py and
test_format_and_rewards.py; every class also runs in ``python -m verifiers audit``.)"""

import json
import os
import subprocess
import sys

import pytest

from verifiers import MathVerifier, Status
from verifiers.math import e_notation, extract_answer, lists_several, normalize, screen, symbolic_e, value_rows

V = MathVerifier(timeout=5)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ------------------------------------------------------------------ 1. no model text reaches eval

INJECTIONS = [
    "The final answer is __import__('pathlib').Path({sentinel!r}).touch()",
    "\\boxed{__import__('pathlib').Path({sentinel!r}).touch()}",
    "<answer>__import__('pathlib').Path({sentinel!r}).touch()</answer>",
    "The answer is exec(\"open({sentinel!r}, 'w')\")",
    "Final answer: 1 + (lambda: open({sentinel!r}, 'w'))()",
    "$\\operatorname{open}({sentinel!r}, w)$",
    "The final answer is (1).__class__.__mro__[-1].__subclasses__()",
    "\\boxed{1,000 + __import__('os').system('touch {sentinel}')}",
]

PROBE = r"""
import json, sys
import verifiers._math_worker as w
evaluated = []
real = w._sympy_parse_expr
def recording(s, *a, **k):
    evaluated.append(s)
    return real(s, *a, **k)
w._sympy_parse_expr = recording
cases = json.loads(sys.stdin.read())
verdicts = [w.check(p, g, None, True, False, is_answer) for p, g, is_answer in cases]
# scoring state: after all of that, the worker still tells right from wrong
control = [w.check("\\boxed{41}", "42", None, True, False), w.check("\\boxed{42}", "42", None, True, False)]
print(json.dumps({"evaluated": evaluated, "verdicts": verdicts, "control": control}))
"""


def test_model_text_never_reaches_sympys_eval(tmp_path):
    """In a fresh process (the worker's patches stay there): score injection attempts through the worker's
    own `check`, recording every string sympy's parser is asked to evaluate. Only plain numbers may appear,
    nothing the answers ask for happens, and the worker still scores right and wrong answers after them."""
    sentinel = str(tmp_path / "pwned")
    cases = []
    for text in INJECTIONS:
        t = text.replace("{sentinel!r}", repr(sentinel)).replace("{sentinel}", sentinel)
        cases += [(t, "42", False), (t.split("is ", 1)[-1], "42", True), ("The final answer is 6*7", "42", False),
                  ("The final answer is 2^10", "1024", False), ("\\boxed{1.5e3}", "1500", False)]
    p = subprocess.run([sys.executable, "-c", PROBE], input=json.dumps(cases), capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert not os.path.exists(sentinel)
    import re

    bad = [s for s in out["evaluated"] if not re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", s.strip())]
    assert not bad, bad
    for (text, gold, _), (status, _, _) in zip(cases, out["verdicts"]):
        if "__" in text or "open" in text or "exec" in text:
            assert status != "correct", (text, status)
    assert [v[0] for v in out["control"]] == ["wrong", "correct"]
    assert any(v[0] == "correct" for v in out["verdicts"])  # 6*7, 2^10 and 1.5e3 are still read, without eval


def test_the_worker_guards_refuse_code():
    p = subprocess.run([sys.executable, "-c", r"""
import verifiers._math_worker as w
refused = []
for f, arg in ((w._inert_parse_expr, "__import__('os')"), (w._inert_parse_expr, "x.__class__"),
               (w._inert_parse_expr, "f(1)"), (w._inert_parse_expr, "[1][0]"), (w._plain_number, "1+1"),
               (w._plain_number, "__import__('os')"), (w._arith_expr, "abs(-42)"), (w._arith_expr, "x"),
               (w._arith_expr, "0x2a"), (w._arith_expr, "4_2")):
    try:
        f(arg)
    except ValueError:
        refused.append(arg)
print(len(refused), str(w._inert_parse_expr("x + 2*y")), str(w._plain_number("1.5")), str(w._arith_expr("2**10 + .5")))
"""], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["10", "x", "+", "2*y", "1.50000000000000", "2049/2"], p.stdout


# ------------------------------------------------------------------ 7. relations and hedges


@pytest.mark.parametrize("completion", [
    "\\boxed{\\neq 6}", "\\boxed{\\ne 6}", "\\boxed{x \\ne 6}", "\\boxed{\\leq 6}", "\\boxed{\\geq 6}", "\\boxed{≤ 6}",
    "\\boxed{x \\not= 6}", "<answer>x != 6</answer>", "The answer is not equal to 6.", "The answer isn't 6.",
    "So x is not equal to 6.", "Answer: not 6", "Final answer: x ≠ 6", "The answer is at least 6.",
    "\\boxed{\\text{not } 6}", "x \\neq \\boxed{6}", "The answer is not \\boxed{6}", "$x \\leq \\boxed{6}$",
])
def test_a_relation_is_not_the_value(completion):
    v = V.verify(completion, "6")
    assert v.status is not Status.CORRECT and v.score == 0.0, v


@pytest.mark.parametrize("completion", [
    "\\boxed{5 \\text{ or } 6}", "The answer is either 5 or 6.", "\\boxed{5 | 6}", "\\boxed{5 \\mid 6}",
    "\\boxed{\\begin{cases} 5 \\\\ 6 \\end{cases}}", "\\boxed{\\begin{cases} x = 5 \\\\ x = 6 \\end{cases}}",
    "\\boxed{5 \\\\ 6}", "\\boxed{5, 6}", "The answer is 5, 6", "The answer is 5 and 6.", "\\boxed{5 \\& 6}",
    "\\boxed{5} or \\boxed{6}", "\\boxed{5}, \\boxed{6}", "5 or \\boxed{6}", "\\boxed{6} (or 5)", "It is 5 or 6.",
])
@pytest.mark.parametrize("gold", ["5", "6"])
def test_hedges_and_lists_are_wrong_whatever_the_item(completion, gold):
    v = V.verify(completion, gold)
    assert v.status is not Status.CORRECT and v.score == 0.0, v


@pytest.mark.parametrize("completion,gold,correct", [
    ("\\boxed{6 \\text{ million}}", "6000000", True), ("\\boxed{6 \\text{ million}}", "6", False),
    ("\\boxed{2 \\text{ million}}", "2000000", True), ("The answer is 2 million.", "2000000", True),
    ("\\boxed{2\\text{ thousand}}", "2000", True), ("\\boxed{2\\text{ billion}}", "2000000000", True),
    ("\\boxed{2.5 \\text{ million}}", "2500000", True), ("\\boxed{2 \\text{ thousand}}", "2", False),
    ("\\boxed{6000000}", "6 \\text{ million}", True),
    # e-notation is a number where the reference has no symbolic e; next to one, e is Euler's number
    ("\\boxed{2e3}", "2000", True), ("\\boxed{1.5e-3}", "0.0015", True), ("\\boxed{2e3}", "6", False),
    ("\\boxed{2e3}", "2e", False), ("\\boxed{2e}", "2e", True), ("\\boxed{e^2}", "e^2", True),
    ("\\boxed{2e3}", "6e", True),
    # \pm a is the two values a and -a: it answers a reference that lists both, never one of them
    ("\\boxed{x = \\pm 2}", "2, -2", True), ("\\boxed{\\pm 2}", "\\pm 2", True), ("\\boxed{2, -2}", "\\pm 2", True),
    ("\\boxed{\\pm 2}", "2 \\text{ or } -2", True), ("\\boxed{x = 2 \\text{ or } x = -2}", "\\pm 2", True),
    ("\\boxed{\\pm 2}", "2", False), ("\\boxed{x = \\pm 2}", "-2", False), ("\\boxed{2}", "\\pm 2", False),
    # a correction is not a hedge: the last box answers
    ("\\boxed{5} first, but correcting the mistake, the answer is \\boxed{6}", "6", True),
    ("\\boxed{5} first, but correcting the mistake, the answer is \\boxed{6}", "5", False),
    ("\\boxed{12} \\boxed{13}", "13", True), ("\\boxed{12} \\boxed{13}", "12", False),
    ("Wait, \\boxed{5} is wrong. Actually \\boxed{6}.", "6", True),
    # several boxes against a reference that lists several values: read together
    ("\\boxed{1} and \\boxed{2} and \\boxed{3}", "\\{1,2,3\\}", True), ("\\boxed{2} or \\boxed{-2}", "\\pm 2", True),
])
def test_scale_words_e_notation_plus_minus_and_corrections(completion, gold, correct):
    v = V.verify(completion, gold)
    assert v.correct is correct, v


def test_the_rules_pieces():
    assert normalize("6 \\text{ million}").strip() == "6000000" and normalize("2.5 thousand").strip() == "2500"
    assert normalize("6 \\text{ million dollars}").replace(" ", "") == "6000000\\text{dollars}"
    assert e_notation("2e3") == "2000" and e_notation("1.5e-3") == "0.0015" and e_notation("2e") == "2e"
    assert e_notation("2e300") == "2 \\cdot 10^{300}" and e_notation("x2e3") == "x2e3"
    assert symbolic_e("6e") and symbolic_e("e^{2}") and not symbolic_e("2000") and not symbolic_e("\\sqrt{3}")
    assert not symbolic_e("\\text{yes}") and not symbolic_e("2e3")
    assert lists_several("2, -2") and lists_several("\\pm 2") and lists_several("1 or 2") and lists_several("{1,2}")
    assert not lists_several("1,000") and not lists_several("(1, 2)") and not lists_several("[0, 1)")
    assert value_rows("\\begin{cases} 5 \\\\ 6 \\end{cases}") == 2 and value_rows("5") == 1
    assert value_rows("\\begin{aligned} x &= 2+4 \\\\ &= 6 \\end{aligned}") == 1
    assert value_rows("\\\\left( 3, \\\\frac{\\\\pi}{2} \\\\right)") == 1  # doubled backslashes are not rows
    assert screen("\\neq 6", "6") and screen("x \\ne 6", "x \\neq 6") is None and screen("5 or 6", "6")
    assert screen("5 or 6", "5 \\text{ or } 6") is None and screen("x \\le 6", "x \\leq 6") is None
    assert extract_answer("The answer is not 6.")[:2] == ("not 6", "negated")
    assert extract_answer("The answer is 5, 6, or 7.")[0] == "5, 6, or 7"
    assert extract_answer("The answer is 12, not 13.")[0] == "12"


def test_many_unbalanced_boxes_are_read_in_linear_time():
    import time

    from verifiers.math import _last_braced

    t0 = time.perf_counter()
    assert _last_braced("\\boxed{" * 100_000 + "6") is None
    assert _last_braced("\\boxed{5} " + "\\boxed{" * 100_000) == "5"
    assert time.perf_counter() - t0 < 2.0  # was quadratic: minutes, in the trainer's own process
    assert V.verify("\\boxed{" * 3000 + "6", "6").status is Status.NO_ANSWER
