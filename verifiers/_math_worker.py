"""Runs inside a verifier worker process (see `pool.py`): sympy-backed parsing and comparison.

Imported once by the forkserver, so every worker starts with math-verify loaded.
math-verify's own timeouts are switched off here: the pool's hard limit replaces them,
and a timeout must come back as ``timeout``, not as a silent ``False``.

Comparison is exact unless a tolerance is asked for. math-verify parses, and its structural
comparison (sets, intervals, tuples, matrices, relations, symbols) is kept, but two of its
numeric steps are replaced, because they pay for wrong answers:

* numbers are rounded to ``float_rounding`` decimals, and a difference of non-atomic numbers
  is evaluated with ``chop=True``: ``1/3000!`` equals ``1/2999!``, ``2^{-70}`` equals
  ``2^{-71}``, two 8-decimal numbers that differ in the last digit are equal. Here every
  decimal is first turned into the exact rational it writes (``0.333`` is 333/1000, never 1/3),
  and numbers are equal only when their difference is exactly zero; with ``precision=P`` they
  may differ by a *relative* 10^-P of the larger magnitude, never by an absolute amount;
* Python's 4,300-digit limit on int/str conversion made very large exact values (towers such
  as ``2^{2^{14}}``) fail to parse or compare, which came back ``wrong``: the limit is lifted
  here, so they compare exactly or run into the hard time limit (``timeout``).

A percentage with a decimal (``7.5\\%``) also equals its bare number (``7.5``), as math-verify
already does for integers.

Model text is never evaluated as Python here. math-verify's LaTeX path is an ANTLR grammar
(latex2sympy2), not ``eval``, but three of its steps end in sympy's string parser
(``parse_expr``, which runs ``eval`` on the text, ``evaluate=False`` or not):

* its plain-expression extraction (``ExprExtractionConfig``: "the final answer is 3/4") calls
  ``parse_expr`` on the matched text: replaced by `verifiers.safe_arith` (an ``ast`` whitelist of
  numbers and ``+ - * / **``, built into sympy node by node);
* ``sympy.Number(text)`` on a matched number (math-verify's number regex, latex2sympy2's NUMBER
  and E_NOTATION tokens, its comma-number rule) goes through ``sympify``: those strings are
  digits by construction, and are checked to be plain numbers before they reach it;
* anything else that would hand sympy a string (``sympify(str)`` from inside sympy or a future
  version of either package) meets `_inert_parse_expr`, which refuses any text with a bracket,
  a call, an attribute or a dunder name before sympy's parser sees it.

``tests/test_integrity_math.py`` records every string sympy's parser is asked to evaluate while
adversarial answers are scored.
"""

from __future__ import annotations

import functools
import logging
import re
import sys

import sympy
import sympy.parsing.sympy_parser as _sympy_parser
from latex2sympy2_extended import latex2sympy2 as _l2s
from math_verify import ExprExtractionConfig, LatexExtractionConfig, grader, parse, verify
from math_verify import parser as _mv_parser
from sympy import Float, Rational, nan, zoo
from sympy.matrices import MatrixBase

from verifiers import safe_arith

if hasattr(sys, "set_int_max_str_digits"):  # exact values with tens of thousands of digits are still values
    sys.set_int_max_str_digits(0)

# we enforce the limit ourselves; math-verify warns about that on every call
logging.getLogger("math_verify").setLevel(logging.ERROR)

_CONFIG = (LatexExtractionConfig(), ExprExtractionConfig())  # math-verify's defaults

# ------------------------------------------------------------------ no model text reaches eval

_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INERT = re.compile(r"[A-Za-z0-9_\s+\-*/^.,]*")  # no brackets (no calls), no quotes, no operators of Python's own
_ATTRIBUTE = re.compile(r"\.\s*[A-Za-z_]|__")
_sympy_parse_expr = _sympy_parser.parse_expr


def _inert_parse_expr(s, *args, **kwargs):
    """sympy's ``parse_expr`` (which ``eval``s its text) for text that cannot call, index or reach an
    attribute of anything: a number, a name, ``x + 2*y``. Any other text is refused (a ``ValueError``,
    which math-verify and latex2sympy2 treat as "could not parse")."""
    if not isinstance(s, str) or not _INERT.fullmatch(s) or _ATTRIBUTE.search(s):
        raise ValueError(f"refused to hand sympy's parser the text {str(s)[:60]!r}: not a plain expression")
    return _sympy_parse_expr(s, *args, **kwargs)


def _plain_number(text):
    """``sympy.Number(text)`` (which ``sympify``s a string) for a plainly written number only."""
    if isinstance(text, str) and not _PLAIN_NUMBER.fullmatch(text.strip()):
        raise ValueError(f"{text[:60]!r} is not a plainly written number")
    return sympy.Number(text)


_LEADING_POINT = re.compile(r"(^|[^\d.])(?=\.\d)")
_TRAILING_POINT = re.compile(r"(\d)\.(?!\d)")


@functools.lru_cache(maxsize=20)
def _arith_expr(expr: str):
    """Replaces math-verify's ``parse_expr_cached`` (plain expressions such as ``3/4`` or ``2^{10}``
    outside LaTeX): a whitelist parse of numbers and arithmetic, built into sympy from the tree."""
    expr = _TRAILING_POINT.sub(r"\1", _LEADING_POINT.sub(r"\g<1>0.", expr))  # "3." is 3, ".5" is 0.5, as Python reads them
    return safe_arith.to_sympy(safe_arith.parse(expr), {}, {})


def _latex_number(self, text):
    """Replaces latex2sympy2's ``parse_number`` (a NUMBER or E_NOTATION token)."""
    text = text.replace(",", "")
    if text.isdigit():
        text = text.lstrip("0") or "0"
    return _plain_number(text)


_sympy_parser.parse_expr = _inert_parse_expr  # what sympify(str) imports at each call
_l2s.parse_expr = _inert_parse_expr
_mv_parser.parse_expr = _inert_parse_expr
_mv_parser.parse_expr_cached = _arith_expr  # looked up by name in math_verify.parser.extract_expr
_mv_parser.Number = _plain_number  # math_verify.parser calls Number(number_str) and nothing else by this name
_l2s.Number = _plain_number  # latex2sympy2's convert_number
_l2s._Latex2Sympy.parse_number = _latex_number


def _parse_once(text: str):
    return parse(text, extraction_config=_CONFIG, parsing_timeout=None, raise_on_error=False)


def _parse_latex(text: str):
    return parse(text, extraction_config=_CONFIG[:1], parsing_timeout=None, raise_on_error=False)


_NUMBER_LIKE = re.compile(r"[-+]?[\d.,]+")
_DELIMITED = ("$", "\\(", "\\[", "\\boxed")


def read_answer(ans: str):
    """Parse a bare answer (a reference, or what followed "the answer is"), not a whole text.

    Bare LaTeX such as ``\\{2, 1\\}`` or ``x^2`` is read as math (inside ``$...$``); only
    number-like strings (``1,22``) are read as plain text first. "3 or 5" becomes the set
    "3, 5", so a hedged answer never matches one of its options.
    """
    ans = ans.strip()
    if any(d in ans for d in _DELIMITED):
        return _parse_once(ans)
    ans = re.sub(r"\s+or\s+", ", ", ans)
    first, second = (ans, f"${ans}$") if _NUMBER_LIKE.fullmatch(ans) else (f"${ans}$", ans)
    return _parse_once(first) or _parse_once(second)


def read_candidate(ans: str):
    """Parse a model's bare answer as `read_answer` does, except that text LaTeX cannot read is not
    then scanned for a number somewhere inside it (math-verify's fallback, which reads
    ``(lambda: 42)()`` as 42): it stays text, which equals only the same text."""
    ans = ans.strip()
    if _NUMBER_LIKE.fullmatch(ans):
        return _parse_once(ans)
    if not any(d in ans for d in _DELIMITED):
        ans = "$" + re.sub(r"\s+or\s+", ", ", ans) + "$"
    return _parse_latex(ans)


_DANGLING = re.compile(r"(?:[=+\-*/^_,(\[{]|\\[A-Za-z]+)\s*\$*\s*$")


def _looks_broken(text: str) -> bool:
    """A reference that nothing mathematical could be read from, and that is not a well-formed
    text either: unbalanced braces, no letter or digit at all, or an operator/command left dangling."""
    t = text.strip()
    depth = 0
    for c in t.replace("\\{", "").replace("\\}", ""):
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return True
    return depth != 0 or not any(c.isalnum() or c in "∞∅π" for c in t) or bool(_DANGLING.search(t))


@functools.lru_cache(maxsize=4096)
def _parse_gold(text: str):  # references repeat (G samples per task): cache them
    return read_answer(text)


# ------------------------------------------------------------------ exact numeric comparison


def exact_decimals(expr):
    """``expr`` with every Float replaced by the exact rational its decimal digits write."""
    if isinstance(expr, str):
        return expr
    try:
        if isinstance(expr, MatrixBase):
            return expr.applyfunc(exact_decimals)
        floats = expr.atoms(Float)
        if floats:
            return expr.xreplace({f: Rational(str(f)) for f in floats if f.is_finite})
    except (AttributeError, TypeError, ValueError):  # not a sympy tree, or a Float that writes no number
        pass
    return expr


def _numbers_equal(a, b, precision: int | None) -> bool:
    """Exactly equal numbers (no free symbols), or within a relative 10^-precision."""
    if a.free_symbols or b.free_symbols:
        return False  # symbolic: math-verify's simplify(a - b) == 0 decides
    d = a - b
    if d.is_Rational and d == 0:
        return True
    if precision is None:  # unequal rationals, or no plain rational difference: only an exact proof
        return False       # (math-verify's simplify(a - b) == 0, tried next) may still say equal
    tol = Rational(1, 10 ** precision)
    if a.is_Rational and b.is_Rational:
        return abs(d) <= tol * max(abs(a), abs(b))
    return bool(abs(d.evalf(40)) <= tol * max(abs(a.evalf(40)), abs(b.evalf(40))))


def exact_numeric_eq(a, b, float_rounding, numeric_precision) -> bool:
    """Replaces ``math_verify.grader.sympy_numeric_eq``; ``float_rounding`` is our precision (None: exact)."""
    if isinstance(a, MatrixBase) or isinstance(b, MatrixBase):
        a, b = grader.safe_sympy_doit(a), grader.safe_sympy_doit(b)
        if isinstance(a, MatrixBase) and isinstance(b, MatrixBase) and a.shape == b.shape:
            return all(exact_numeric_eq(x, y, float_rounding, numeric_precision) for x, y in zip(a, b))
        return False
    try:
        pa, pb = grader.get_pct_val(a), grader.get_pct_val(b)
        if (pa is None) != (pb is None) and _numbers_equal(
                grader.safe_sympy_doit(a if pa is None else pa), grader.safe_sympy_doit(b if pb is None else pb),
                float_rounding):
            return True  # "7.5%" against "7.5": the numbers as written
        return _numbers_equal(grader.safe_sympy_doit(a), grader.safe_sympy_doit(b), float_rounding)
    except (TypeError, ValueError, AttributeError, ArithmeticError):
        pass
    return False


grader.sympy_numeric_eq = exact_numeric_eq  # looked up by name inside math-verify's comparison


def check(pred: str, gold: str, precision: int | None, strict: bool, set_relation: bool,
          pred_is_answer: bool = False) -> tuple[str, str | None, str]:
    """Return (status, extracted, note). ``pred`` is a bare answer when ``pred_is_answer``,
    otherwise a text from which math-verify extracts the answer. ``precision`` None: exact."""
    g = _parse_gold(gold)
    if not g or (all(isinstance(x, str) for x in g) and _looks_broken(gold)):
        return "error", None, f"reference {gold[:80]!r} could not be parsed as math: fix the task's answer"
    if any(getattr(x, "has", None) and x.has(nan, zoo) for x in g):
        return "error", None, f"reference {gold[:80]!r} is undefined (a division by zero or nan): fix the task's answer"
    # a bare or boxed answer is LaTeX: math-verify's fallback scan for a number in text LaTeX cannot read
    # would pay "\\boxed{(junk: 42)()}" as 42; a whole text is still read as math-verify reads it
    if pred_is_answer:
        p = read_candidate(pred)
    elif pred.startswith(("\\boxed{", "\\fbox{")):
        p = _parse_latex(pred)
    else:
        p = _parse_once(pred)
    if p and all(isinstance(x, str) for x in p) and not all(isinstance(x, str) for x in g):
        return "wrong", str(p[-1]), "the answer is not a mathematical expression"
    if not p:
        return "no_answer", None, "no parsable answer"
    extracted = str(p[-1]) if isinstance(p[-1], str) else str(p[0])
    ok = verify([exact_decimals(x) for x in g], [exact_decimals(x) for x in p], float_rounding=precision,
                strict=strict, allow_set_relation_comp=set_relation, timeout_seconds=None, raise_on_error=False)
    return ("correct" if ok else "wrong"), extracted, "sympy"


def _warm_up() -> None:
    """Pay sympy's and the LaTeX parser's first-call costs (lazy imports, caches) at worker start,
    before the worker says it is ready, so that no job's clock includes them."""
    for pred, gold in (("\\boxed{\\frac{1}{2}}", "0.5"), ("$x^2+1$", "x^2 + 1"), ("\\boxed{(1,2)}", "(1, 2)"),
                       ("$[0,1)$", "[0, 1)"), ("$\\sqrt{2}$", "\\sqrt{2}"), ("$x = 3$", "3"), ("$10\\%$", "0.1"),
                       ("$\\{1,2\\}$", "\\{1, 2\\}"), ("$x \\leq 2$", "x <= 2"), ("$\\text{E}$", "E"),
                       ("$\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$", "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}"),
                       ("$\\sin^2 x + \\cos^2 x$", "1"), ("$(1, \\infty)$", "(1, \\infty)"), ("$2 \\pi r$", "2\\pi r")):
        check(pred, gold, None, True, False)
    _parse_gold.cache_clear()


_warm_up()
