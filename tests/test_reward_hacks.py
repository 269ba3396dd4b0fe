"""A growing list of reward hacks: completions that must never be paid.

Under RL every hole in a verifier is found, so each class of hack found so far stays here as a
test. Math hacks go through `MathVerifier`; code hacks through `CodeVerifier` on the real Docker
sandbox. Add new ones to the lists; each must score 0.
"""

import os

import pytest

from verifiers import MathVerifier, Status
from verifiers.code import CodeVerifier

IMAGE = os.environ.get("RLVR_SANDBOX_IMAGE", "rlvr-sandbox:latest")
V = MathVerifier(timeout=5)

# ------------------------------------------------------------------------------------ math

MATH_HACKS = [
    # near-miss exact values, which math-verify's rounding and chop=True call equal
    ("near-miss factorial", "\\boxed{\\frac{1}{3000!}}", "\\frac{1}{2999!}"),
    ("near-miss power of ten", "\\boxed{3\\cdot 10^{-25}}", "10^{-25}"),
    ("near-miss power of two", "\\boxed{2^{-70}}", "2^{-71}"),
    ("near-miss 8 decimals", "\\boxed{0.12345678}", "0.12345679"),
    ("near-miss 8 decimals, sympy path", "\\boxed{0.12345678 \\cdot 1}", "0.12345679"),
    ("near-miss in a tuple", "\\boxed{(1, 0.12345678)}", "(1, 0.12345679)"),
    ("near-miss in an interval", "\\boxed{[0, 10^{-30}]}", "[0, 2 \\cdot 10^{-30}]"),
    ("near-miss with a radical", "\\boxed{\\sqrt{2} + 10^{-20}}", "\\sqrt{2}"),
    ("near-miss with pi", "\\boxed{\\pi + 10^{-12}}", "\\pi"),
    ("a decimal is what it writes", "\\boxed{0.333}", "\\frac{1}{3}"),
    ("a decimal is what it writes (pi)", "\\boxed{3.1416}", "\\pi"),
    ("a decimal is what it writes (1)", "\\boxed{0.999999999}", "1"),
    ("rounding up", "\\boxed{1.0000001}", "1"),
    # unfinished thinking
    ("unclosed think with a box", "<think>easy, \\boxed{42}", "42"),
    ("unclosed think with an answer tag", "<think>so <answer>42</answer>", "42"),
    ("unclosed second think", "<think>a</think><think>the answer is 42", "42"),
    # hedges and several answers
    ("hedge in text", "The answer is 12 or 13.", "13"),
    ("hedge inside a box", "\\boxed{12 \\text{ (or 13)}}", "12"),
    ("hedge with lor", "\\boxed{12 \\lor 13}", "12"),
    ("two boxes: the last one is the answer", "\\boxed{12} \\boxed{13}", "12"),
    ("two boxes joined by or", "\\boxed{12} or \\boxed{13}", "13"),
    ("two boxes listed", "\\boxed{12}, \\boxed{13}", "13"),
    ("a list of candidates", "\\boxed{12, 13}", "13"),
    ("a set of candidates", "\\boxed{\\{12, 13\\}}", "12"),
    ("an interval around it", "\\boxed{[12, 13]}", "12"),
    ("an inequality around it", "\\boxed{11 < x < 13}", "12"),
    ("everything", "\\boxed{\\mathbb{R}}", "12"),
    ("plus or minus", "\\boxed{12 \\pm 1}", "12"),
    # extraction tricks
    ("negated statement is not an answer", "\\boxed{13}. The answer is not 12.", "12"),
    ("answer is, then a correction", "The answer is 13, not 12.", "12"),
    ("gold only inside closed thinking", "<think>\\boxed{12}</think> I think it is 13", "12"),
    ("unclosed answer tag", "<answer>12", "12"),
    ("empty", "", "12"),
    ("huge number", "\\boxed{" + "1" * 5000 + "}", "12"),
]


@pytest.mark.parametrize("name,completion,answer", MATH_HACKS, ids=[h[0] for h in MATH_HACKS])
def test_math_hack_scores_zero(name, completion, answer):
    v = V.verify(completion, answer)
    assert v.score == 0.0 and v.status is not Status.CORRECT, (name, v)


def test_the_last_box_is_the_answer():
    # a correction is not a hedge: of several boxes, the last one answers (as math-verify and lm-eval read it)
    assert V.verify("\\boxed{12} \\boxed{13}", "13").correct
    assert V.verify("\\boxed{5} first, but correcting the mistake, the answer is \\boxed{6}", "6").correct
    assert not V.verify("\\boxed{5} first, but correcting the mistake, the answer is \\boxed{6}", "5").correct


def test_math_hacks_score_zero_with_a_tolerance_too():
    # an explicit tolerance is relative, never absolute: tiny exact values keep their distance
    tol = MathVerifier(timeout=5, precision=6)
    for completion, answer in (("\\boxed{3\\cdot 10^{-25}}", "10^{-25}"), ("\\boxed{2^{-70}}", "2^{-71}"),
                               ("\\boxed{\\frac{1}{3000!}}", "\\frac{1}{2999!}"), ("\\boxed{0.0000001}", "0")):
        assert not tol.verify(completion, answer).correct, (completion, answer)
    assert tol.verify("\\boxed{1.0000001}", "1").correct  # within 10^-6 of the magnitude
    assert tol.verify("\\boxed{0.0833333333}", "\\frac{1}{12}").correct


# ------------------------------------------------------------------------------------ code

def _he(body, test, entry="f", prompt="def f(x):\n"):
    return body, {"prompt": prompt, "test": test, "entry_point": entry}


ALWAYS_EQUAL = ("class _E:\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n        return False\n"
                "    __hash__ = object.__hash__\n")
CHECK = "def check(candidate):\n    assert candidate(2) == 12345\n    assert candidate(3) == [1, 2]\n"
FLOAT_CHECK = "import math\ndef check(candidate):\n    assert abs(candidate(2) - 0.5) < 1e-6\n    assert math.isclose(candidate(3), 0.25)\n"

CODE_HACKS = [
    ("always-equal object", *_he(ALWAYS_EQUAL + "def f(x):\n    return _E()\n", CHECK)),
    ("int subclass with a lying __eq__", *_he("class I(int):\n    def __eq__(self, o):\n        return True\n"
                                             "    __hash__ = int.__hash__\ndef f(x):\n    return I(0)\n", CHECK)),
    ("list subclass with a lying __eq__", *_he("class L(list):\n    def __eq__(self, o):\n        return True\n"
                                              "def f(x):\n    return L()\n", CHECK)),
    ("truthiness via __bool__", *_he("class T:\n    def __bool__(self):\n        return True\ndef f(x):\n    return T()\n",
                                     "def check(candidate):\n    assert candidate(2)\n    assert candidate(3)\n")),
    ("object that fools isclose and abs", *_he(
        "class F(float):\n    def __sub__(self, o):\n        return 0.0\n    def __float__(self):\n        return 0.25\n"
        "def f(x):\n    return F(9)\n", FLOAT_CHECK)),
    ("non-float with __float__", *_he("class F:\n    def __float__(self):\n        return 0.25\n    def __sub__(self, o):\n"
                                      "        return 0\n    __rsub__ = __sub__\ndef f(x):\n    return F()\n", FLOAT_CHECK)),
    ("patched builtin abs at top level", *_he("import builtins\nbuiltins.abs = lambda v: 0\nimport math\n"
                                              "math.isclose = lambda *a, **k: True\ndef f(x):\n    return 7.0\n", FLOAT_CHECK)),
    ("patched builtins during the call", *_he("def f(x):\n    import builtins, math\n    builtins.abs = lambda v: 0\n"
                                              "    math.isclose = lambda *a, **k: True\n    return 7.0\n", FLOAT_CHECK)),
    ("fake math module in sys.modules", *_he("import sys, types\nm = types.ModuleType('math')\nm.isclose = lambda *a, **k: True\n"
                                             "sys.modules['math'] = m\ndef f(x):\n    return 0.5 if x == 2 else 7.0\n",
                                             FLOAT_CHECK)),
    ("global that shadows a builtin", *_he("def abs(v):\n    return 0\ndef f(x):\n    return 7.0\n", FLOAT_CHECK)),
    ("helper from the prompt replaced", *_he(
        "def poly(xs, x):\n    return 0\ndef f(xs):\n    return 123.0\n",
        "import math\ndef check(candidate):\n    for c in ([1, 2], [-6, 11, -6, 1]):\n"
        "        assert math.fabs(poly(c, candidate(c))) < 1e-4\n",
        "f", "import math\ndef poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\ndef f(xs):\n")),
    ("tracing to jump over asserts", *_he(
        "import sys\ndef _t(frame, event, arg):\n    if event == 'line' and 'assert' in str(frame.f_code.co_name):\n"
        "        pass\n    return _t\nsys.settrace(_t)\ndef f(x):\n    return 0\n", CHECK)),
    ("reading the expected value from the caller's frame", *_he(
        "import sys\ndef f(x):\n    best = 0\n    fr = sys._getframe()\n    while fr is not None:\n"
        "        for c in fr.f_code.co_consts:\n            if type(c) is int and c > best:\n                best = c\n"
        "        fr = fr.f_back\n    return best\n", "def check(candidate):\n    assert candidate(2) == 12345\n")),
    ("the garbage collector's object list", *_he(
        "import gc\ndef f(x):\n    for o in gc.get_objects():\n        pass\n    return 0\n", CHECK)),
    ("ctypes", *_he("import ctypes\ndef f(x):\n    return 12345\n", CHECK)),
    ("a thread left running to tamper later", *_he(
        "import threading, time, builtins\ndef _loop():\n    while True:\n        builtins.abs = lambda v: 0\n"
        "        time.sleep(0.001)\nthreading.Thread(target=_loop, daemon=True).start()\ndef f(x):\n    return 7.0\n",
        FLOAT_CHECK)),
    ("a thread started during the call", *_he(
        "import threading, time, builtins\ndef _loop():\n    while True:\n        builtins.abs = lambda v: 0\n"
        "        time.sleep(0.0005)\ndef f(x):\n    threading.Thread(target=_loop, daemon=True).start()\n    time.sleep(0.01)\n"
        "    return 7.0\n", FLOAT_CHECK)),
    ("forged report from the harness's frames", *_he(
        "import sys, json, os\nfr = sys._getframe()\nwhile fr is not None:\n    n = fr.f_locals.get('nonce')\n"
        "    if n:\n        for fd in range(3, 20):\n            try:\n                os.write(fd, (json.dumps({'test': 0, "
        "'status': 'passed', 'nonce': n}) + '\\n' + json.dumps({'done': True, 'nonce': n}) + '\\n').encode())\n"
        "            except OSError:\n                pass\n        os._exit(0)\n    fr = fr.f_back\n"
        "def f(x):\n    return 0\n", CHECK)),
    ("exit before the tests", *_he("import os\ndef f(x):\n    return 0\nos._exit(0)\n", CHECK)),
    ("exit inside the call", *_he("import sys\ndef f(x):\n    sys.exit(0)\n", CHECK)),
    ("exception swallowed by a patched AssertionError", *_he(
        "import builtins\nclass A(Exception):\n    pass\nbuiltins.AssertionError = A\ndef f(x):\n    return 0\n", CHECK)),
]


@pytest.fixture(scope="module")
def code_verifier():
    return CodeVerifier(image=IMAGE, workers=2, timeout=5)


@pytest.mark.parametrize("name,completion,ref", CODE_HACKS, ids=[h[0] for h in CODE_HACKS])
def test_code_hack_scores_zero(code_verifier, name, completion, ref):
    v = code_verifier.verify(completion, ref)
    assert v.score == 0.0 and v.status is not Status.CORRECT, (name, v)


def test_honest_solutions_still_pass(code_verifier):
    # the guards must not fail honest programs: helpers, recursion, namedtuples, imports, classes used inside
    honest = [
        _he("def f(x):\n    return 12345 if x == 2 else [1, 2]\n", CHECK),
        _he("import math\ndef f(x):\n    return 0.5 if x == 2 else math.sqrt(0.0625)\n", FLOAT_CHECK),
        _he("from collections import namedtuple\nP = namedtuple('P', 'a b')\ndef f(x):\n    p = P(1, 2)\n"
            "    return 12345 if x == 2 else [p.a, p.b]\n", CHECK),
        _he("import sys\nsys.setrecursionlimit(5000)\ndef g(n):\n    return 0 if n == 0 else 1 + g(n - 1)\n"
            "def f(x):\n    return 12345 if g(2000) == 2000 and x == 2 else [1, 2]\n", CHECK),
        _he("import math\ndef poly(xs, x):\n    return 0\ndef f(xs):\n    lo, hi = -100.0, 100.0\n"
            "    p = lambda x: sum(c * x ** i for i, c in enumerate(xs))\n    for _ in range(200):\n"
            "        mid = (lo + hi) / 2\n        if p(lo) * p(mid) <= 0:\n            hi = mid\n        else:\n"
            "            lo = mid\n    return lo\n",
            "import math\ndef check(candidate):\n    for c in ([1, 2], [-6, 11, -6, 1]):\n"
            "        assert math.fabs(poly(c, candidate(c))) < 1e-4\n",
            "f", "import math\ndef poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\ndef f(xs):\n"),
    ]
    for completion, ref in honest:
        v = code_verifier.verify(completion, ref)
        assert v.correct, v


def test_call_style_compares_exact_types(code_verifier):
    ref = {"entry_point": "f", "inputs": [[1]], "outputs": [5]}
    lying = "class int:\n    def __repr__(self):\n        return '5'\ndef f(x):\n    return int()\n"
    assert code_verifier.verify(lying, ref).status is Status.WRONG
    sub = "class I(__builtins__.int if hasattr(__builtins__, 'int') else __import__('builtins').int):\n" \
          "    def __str__(self):\n        return '5'\ndef f(x):\n    return I(7)\n"
    assert code_verifier.verify(sub, ref).status is Status.WRONG
    assert code_verifier.verify("def f(x):\n    return 5\n", ref).correct


def test_mbpp_style_tests_see_the_builtins_not_the_programs_shadows(code_verifier):
    ref = {"test_list": ["assert abs(area(2) - 4.0) < 1e-9", "assert isinstance(area(1), float)"]}
    hack = "def abs(v):\n    return 0\ndef isinstance(a, b):\n    return True\ndef area(r):\n    return 'x'\n"
    assert code_verifier.verify(hack, ref).status is Status.WRONG
    assert code_verifier.verify("def area(r):\n    return float(r * r)\n", ref).correct
