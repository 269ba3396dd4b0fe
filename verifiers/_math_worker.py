"""Runs inside a verifier worker process (see `pool.py`): sympy-backed parsing and comparison.

Imported once by the forkserver, so every worker starts with math-verify loaded.
math-verify's own timeouts are switched off here: the pool's hard limit replaces them,
and a timeout must come back as ``timeout``, not as a silent ``False``.
"""

from __future__ import annotations

import functools
import logging
import re

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

# we enforce the limit ourselves; math-verify warns about that on every call
logging.getLogger("math_verify").setLevel(logging.ERROR)

_CONFIG = (LatexExtractionConfig(), ExprExtractionConfig())  # math-verify's defaults


def _parse_once(text: str):
    return parse(text, extraction_config=_CONFIG, parsing_timeout=None, raise_on_error=False)


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


@functools.lru_cache(maxsize=4096)
def _parse_gold(text: str):  # references repeat (G samples per task): cache them
    return read_answer(text)


def check(pred: str, gold: str, precision: int, strict: bool, set_relation: bool,
          pred_is_answer: bool = False) -> tuple[str, str | None, str]:
    """Return (status, extracted, note). ``pred`` is a bare answer when ``pred_is_answer``,
    otherwise a text from which math-verify extracts the answer."""
    g = _parse_gold(gold)
    if not g:
        return "error", None, f"reference {gold[:80]!r} could not be parsed"
    p = read_answer(pred) if pred_is_answer else _parse_once(pred)
    if not p:
        return "no_answer", None, "no parsable answer"
    extracted = str(p[-1]) if isinstance(p[-1], str) else str(p[0])
    ok = verify(g, p, float_rounding=precision, strict=strict, allow_set_relation_comp=set_relation,
                timeout_seconds=None, raise_on_error=False)
    return ("correct" if ok else "wrong"), extracted, "sympy"


def _warm_up() -> None:
    """Pay sympy's and the LaTeX parser's first-call costs (lazy imports, caches) at worker start,
    before the worker says it is ready, so that no job's clock includes them."""
    for pred, gold in (("\\boxed{\\frac{1}{2}}", "0.5"), ("$x^2+1$", "x^2 + 1"), ("\\boxed{(1,2)}", "(1, 2)"),
                       ("$[0,1)$", "[0, 1)"), ("$\\sqrt{2}$", "\\sqrt{2}"), ("$x = 3$", "3"), ("$10\\%$", "0.1"),
                       ("$\\{1,2\\}$", "\\{1, 2\\}"), ("$x \\leq 2$", "x <= 2"), ("$\\text{E}$", "E"),
                       ("$\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$", "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}"),
                       ("$\\sin^2 x + \\cos^2 x$", "1"), ("$(1, \\infty)$", "(1, \\infty)"), ("$2 \\pi r$", "2\\pi r")):
        check(pred, gold, 6, True, False)
    _parse_gold.cache_clear()


_warm_up()
