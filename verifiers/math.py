"""Math answer verification: extract the final answer, decide equivalence, never guess.

Extraction:

0. a completion whose last ``<think>`` is never closed has given no final answer (it was cut
   off, or never finished thinking): ``no_answer``, whatever it contains;
1. only the text after the last ``</think>`` is read, so reasoning inside a closed think block
   is never read as the answer; an ``<answer>...</answer>`` block (the last one) narrows the
   search to its content; an ``<answer>`` with no closing tag means *no answer*;
2. of the last ``\\boxed{...}`` (or ``\\fbox{...}``), GSM8K's ``#### N`` and "the answer is ..."
   the one stated last in the text. "The answer is" runs to the end of its clause (a period,
   a semicolon, a line break, a comma or "but"/"not" outside brackets and ``$...$``), and a
   negated statement ("the answer is not 13", "the answer isn't 13") is never the answer;
3. otherwise the whole text, from which the sympy path takes the last expression.

Before comparison, the answer and the reference are normalised: a degree sign (``45°``) is
dropped, a repeating decimal (``0.\\overline{6}``) becomes the fraction it is, and digit
groups separated by a space, thin space or no-break space (``12 500``) are one number.

Comparison is exact by default. Integers, fractions, powers, factorials, radicals and pi
expressions are equal only if they are exactly equal; a decimal is the exact number it writes
(``0.333`` is not ``1/3``, ``3.1416`` is not ``\\pi``, ``0.5`` is ``1/2``). ``precision=P`` (the
CLI's ``--precision``) is an explicit tolerance: numbers may then differ by a *relative*
10^-P of the larger magnitude, never by an absolute amount. Two paths:

* a fast path, in process, for plain numbers: integers and decimals, thousands
  separators, ``$`` signs, ``a/b`` and ``\\frac{a}{b}``. Both sides are read as exact
  ``Fraction``s by one anchored regular expression on a string of bounded length, so it
  cannot hang;
* the sympy path (math-verify's parser and structural comparison, with its rounding replaced
  by exact arithmetic: see ``_math_worker.py``) for everything else: LaTeX, sets, intervals,
  tuples, matrices, equations ``x = 3``, inequalities, percentages. It runs in worker
  processes under a hard limit (`pool.HardTimeoutPool`); a comparison that cannot be decided
  within it is ``timeout`` (never ``correct``), a broken reference ``error``, never ``wrong``.

Deliberate differences from math-verify are listed in ``bench/verify_math.py``'s output
and in ``tests/test_math_verifier.py``.
"""

from __future__ import annotations

import os
import re
import threading
from fractions import Fraction
from typing import Iterable, Sequence

from verifiers.pool import HardTimeoutPool
from verifiers.verdict import Status, Verdict

DEFAULT_TIMEOUT = 5.0
_MAX_FAST_LEN = 64  # the fast path never looks at longer strings

# ---------------------------------------------------------------------------- extraction


def _last_braced(text: str, macros: Sequence[str] = ("\\boxed", "\\fbox")) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces, or None."""
    best = -1
    for m in macros:
        best = max(best, text.rfind(m + "{"), text.rfind(m + " {"))
    while best >= 0:
        start = text.index("{", best) + 1
        depth = 1
        i = start
        while i < len(text) and depth:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            i += 1
        if depth == 0:
            return text[start : i - 1]
        # unbalanced: try an earlier one
        nxt = -1
        for m in macros:
            nxt = max(nxt, text.rfind(m + "{", 0, best), text.rfind(m + " {", 0, best))
        best = nxt
    return None


_ANSWER_IS = re.compile(r"answer\s+is\b\s*:?", re.IGNORECASE)
_NEGATED = re.compile(r"\s*(?:not|never)\b", re.IGNORECASE)
_CLAUSE_WORDS = re.compile(r",?\s+(?:but|not|rather than|instead of|which|since|because|although)\b", re.IGNORECASE)


def strip_think(text: str, think_close: str = "</think>") -> str:
    """The text after the last closing think tag (all of it when there is none)."""
    k = text.rfind(think_close)
    return text if k < 0 else text[k + len(think_close) :]


def unfinished_think(text: str, think_open: str = "<think>", think_close: str = "</think>") -> bool:
    """True when the last opened think block is never closed (the completion was cut off mid-thought)."""
    k = text.rfind(think_open)
    return k >= 0 and text.find(think_close, k + len(think_open)) < 0


def _clause(tail: str) -> str:
    """The start of ``tail`` up to the end of its clause; brackets and ``$...$`` are never cut."""
    depth, in_math, i, n = 0, False, 0, len(tail)
    while i < n:
        c = tail[i]
        if c == "\\" and i + 1 < n:  # an escaped character (\{, \$, \,) is part of the math
            i += 2
            continue
        if c == "$":
            in_math = not in_math
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c == "\n":
            break
        elif not in_math and depth == 0:
            if c == ";":
                break
            if c == "." and (i + 1 == n or tail[i + 1].isspace()):
                break
            if c == "," and (i + 1 == n or tail[i + 1].isspace()):
                break
            if c.isspace() and _CLAUSE_WORDS.match(tail, i):
                break
        i += 1
    return tail[:i]


def extract_answer(text: str, answer_open: str = "<answer>", answer_close: str = "</answer>") -> tuple[str | None, str, str]:
    """Return ``(candidate, method, region)``.

    ``candidate`` is the answer string (None if none found), ``method`` how it was found,
    and ``region`` the text the sympy path should read (the candidate itself, or the
    region that holds several boxed answers, which math-verify reads as a set).
    """
    if unfinished_think(text):
        return None, "unclosed_think", ""
    text = strip_think(text)
    k = text.rfind(answer_open)
    if k >= 0:
        end = text.find(answer_close, k + len(answer_open))
        if end < 0:
            return None, "unclosed_answer_tag", ""
        text = text[k + len(answer_open) : end]
        if not text.strip():
            return None, "empty_answer_tag", ""
        method_prefix = "answer_tag"
    else:
        method_prefix = ""
    # boxed, "####" and "the answer is": the one stated last wins
    found: list[tuple[int, str, str, str]] = []  # (position, candidate, method, region)
    boxed = _last_braced(text)
    if boxed is not None:
        found.append((max(text.rfind("\\boxed"), text.rfind("\\fbox")), boxed, "boxed", text))
    k = text.rfind("####")
    if k >= 0:
        cand = text[k + 4 :].strip().split("\n", 1)[0].strip()
        if cand:
            found.append((k, cand, "####", cand))
    for m in reversed(list(_ANSWER_IS.finditer(text))):  # the last statement that is not negated
        after = text[m.end() :]
        if _NEGATED.match(after):  # ("answer isn't" never matches: no word boundary after "is")
            continue
        cand = _clause(after.lstrip()).strip()
        if cand:
            found.append((m.start(), cand, "answer_is", cand))
        break
    if found:
        _, cand, method, region = max(found, key=lambda f: f[0])
        return cand, (method_prefix + "+" + method).lstrip("+"), region
    stripped = text.strip()
    if not stripped:
        return None, "empty", ""
    return stripped, method_prefix or "whole", stripped


# ---------------------------------------------------------------------------- fast path

_NUM_RE = re.compile(
    r"""(?P<sign>[-+−]?)\s*
        (?:\\\$|\$)?\s*
        (?:
          (?P<frac>\\[dt]?frac\{(?P<fn>\d{1,20})\}\{(?P<fd>\d{1,20})\})
        | (?P<ratio>(?P<rn>\d{1,20})\s*/\s*(?P<rd>\d{1,20}))
        | (?P<dec>(?:[1-9]\d{0,2}(?:,\d{3})+|\d{1,30})(?:\.\d{1,30})?|\.\d{1,30})
        )
        \s*(?:\\\$|\$)?\s*\.?""",
    re.VERBOSE,
)
_WRAPPERS = re.compile(r"^\s*(?:\$\$|\$|\\\(|\\\[)\s*(.*?)\s*(?:\$\$|\$|\\\)|\\\])\s*\.?\s*$", re.DOTALL)


def fast_number(s: str) -> Fraction | None:
    """Read ``s`` as an exact rational if it is a plain number; otherwise None."""
    if len(s) > _MAX_FAST_LEN:
        return None
    s = s.strip()
    m = _WRAPPERS.match(s)
    if m:
        s = m.group(1)
    s = s.replace("{,}", ",").replace("\\!", "").replace("\\,", "")
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[7:-1]
    m = _NUM_RE.fullmatch(s.strip())
    if not m:
        return None
    if m.group("frac"):
        num, den = int(m.group("fn")), int(m.group("fd"))
    elif m.group("ratio"):
        num, den = int(m.group("rn")), int(m.group("rd"))
    else:
        num, den = Fraction(m.group("dec").replace(",", "")), 1
    if den == 0:
        return None
    value = Fraction(num) / den
    return -value if m.group("sign") in ("-", "−") else value


_LONG_INT = re.compile(r"\s*([-+]?)0*(\d+)\s*")
_SPACED_GROUPS = re.compile(r"(?<![\d.,])([1-9]\d{0,2})((?:(?:[ \u00a0\u2009\u202f]|\\[,;: ]|~)\d{3})+)(?![\d])")
_GROUP_SEP = re.compile(r"[ \u00a0\u2009\u202f~]|\\[,;: ]")
_REPEATING = re.compile(r"([-+−]?)(\d*)\.(\d*)\\overline\s*(?:\{(\d{1,20})\}|(\d))")


def _repeating_to_frac(m: re.Match) -> str:
    whole, fixed, rep = m.group(2) or "0", m.group(3), m.group(4) or m.group(5)
    value = int(whole) + Fraction(int(fixed or "0"), 10 ** len(fixed)) + \
        Fraction(int(rep), 10 ** len(fixed) * (10 ** len(rep) - 1))
    sign = "-" if m.group(1) in ("-", "−") and value else ""
    return f"{sign}\\frac{{{value.numerator}}}{{{value.denominator}}}"


def normalize(ans: str) -> str:
    """A bare answer with the notations math-verify misses made plain: a degree sign dropped
    (``45°``), a repeating decimal as its fraction (``0.\\overline{6}`` is ``\\frac{2}{3}``), and
    digit groups split by a space, thin space, no-break space or ``\\,`` joined (``12 500``)."""
    if len(ans) > _MAX_REGION:
        return ans
    ans = ans.replace("°", "").replace("\\degree", "")
    if "overline" in ans:
        ans = _REPEATING.sub(_repeating_to_frac, ans)
    return _SPACED_GROUPS.sub(lambda m: m.group(1) + _GROUP_SEP.sub("", m.group(2)), ans)


def _fast_compare(cand: str, gold: str, precision: int | None) -> Status | None:
    if len(cand) > _MAX_FAST_LEN:  # a very long integer: compare digit strings, no int() of it
        m, g = _LONG_INT.fullmatch(cand), fast_number(gold)
        if m is None or g is None:
            return None
        p_str = ("-" if m.group(1) == "-" and m.group(2) != "0" else "") + m.group(2)
        return Status.CORRECT if g.denominator == 1 and p_str == str(g.numerator) else Status.WRONG
    p, g = fast_number(cand), fast_number(gold)
    if p is None or g is None:
        return None
    if p == g:
        return Status.CORRECT
    if precision is not None and abs(p - g) <= Fraction(1, 10 ** precision) * max(abs(p), abs(g)):
        return Status.CORRECT  # the explicit, relative tolerance
    return Status.WRONG


# ---------------------------------------------------------------------------- verifier

_HEDGE = re.compile(r"\bor\b|\\lor\b|\\vee\b", re.IGNORECASE)
_MAX_REGION = 4000  # the sympy path reads at most this many characters of a free-form text
_MAX_BOXED = 20


def _sympy_payload(cand: str, method: str, region: str) -> tuple[str, bool]:
    """What the sympy path reads: ``(text, is_bare_answer)``."""
    if method.endswith("boxed"):
        n = region.count("\\boxed") + region.count("\\fbox")
        if n <= 1:
            return "\\boxed{" + cand + "}", False
        # several boxed answers: math-verify reads them together, as a set
        boxes, rest = [], region
        while len(boxes) < _MAX_BOXED:
            b = _last_braced(rest)
            if b is None:
                break
            boxes.append("\\boxed{" + b + "}")
            rest = rest[: max(rest.rfind("\\boxed"), rest.rfind("\\fbox"))]
        return ", ".join(reversed(boxes)), False
    if method == "whole":
        return region[-_MAX_REGION:], False
    return cand[-_MAX_REGION:], True


def _short(s: str | None, limit: int = 200) -> str | None:
    """Verdicts keep at most `limit` characters of what was extracted."""
    return s if s is None or len(s) <= limit else s[:limit] + f"...[{len(s) - limit} more]"


class MathVerifier:
    """Score completions against reference answers.

    Args:
        timeout: hard wall-clock limit in seconds for one sympy check.
        workers: worker processes for the sympy path (default: CPU count).
        precision: None (the default): numbers are compared exactly. An integer P: numbers may differ
            by a relative 10^-P of the larger magnitude (``precision=6``: 1.0000001 equals 1).
        strict: variables and functions must match by name (``f(x)`` is not ``f(y)``).
        allow_set_relation_comp: let ``x \\in [a, b]`` equal ``a <= x <= b``.
        fast_path: use the in-process exact path for plain numbers (on by default).
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, workers: int | None = None, precision: int | None = None,
                 strict: bool = True, allow_set_relation_comp: bool = False, fast_path: bool = True):
        if not (timeout and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.timeout = float(timeout)
        self.workers = workers
        if precision is not None and (isinstance(precision, bool) or not isinstance(precision, int) or precision < 0):
            raise ValueError(f"precision must be None (exact) or a whole number of digits >= 0, got {precision!r}")
        self.precision = precision
        self.strict = bool(strict)
        self.set_relation = bool(allow_set_relation_comp)
        self.fast_path = fast_path

    @property
    def pool(self) -> HardTimeoutPool:
        return _shared_pool(self.workers or os.cpu_count() or 1, self.timeout)

    def verify(self, completion: str, reference: str) -> Verdict:
        return self.verify_batch([completion], [reference])[0]

    def verify_batch(self, completions: Sequence[str], references: Sequence[str]) -> list[Verdict]:
        if len(completions) != len(references):
            raise ValueError(f"got {len(completions)} completions but {len(references)} references")
        out: list[Verdict | None] = [None] * len(completions)
        slow: list[tuple[int, str]] = []  # (index, extraction method)
        slow_args: list[tuple] = []
        for i, (c, r) in enumerate(zip(completions, references)):
            if not isinstance(c, str) or not isinstance(r, str):
                bad = "completion" if not isinstance(c, str) else "reference"
                val = c if bad == "completion" else r
                out[i] = Verdict(Status.ERROR, 0.0, None, {"error": f"{bad} must be a string, got {type(val).__name__}"})
                continue
            if not r.strip():
                out[i] = Verdict(Status.ERROR, 0.0, None, {"error": "empty reference answer: the task has no gold answer"})
                continue
            cand, method, region = extract_answer(c)
            if cand is None:
                out[i] = Verdict(Status.NO_ANSWER, 0.0, None, {"method": method})
                continue
            shown = _short(cand.strip())
            r = normalize(r)
            if method != "whole":
                cand = normalize(cand)
                if _HEDGE.search(cand) and not _HEDGE.search(r):  # "12 \\text{ (or 13)}": two answers, one paid
                    out[i] = Verdict(Status.WRONG, 0.0, shown, {"method": method, "path": "fast",
                                                                "reason": "hedged: the answer names alternatives"})
                    continue
            # several boxed answers are read as a set by the sympy path: no fast path for those
            if self.fast_path and (method != "boxed" or region.count("\\boxed") + region.count("\\fbox") <= 1):
                status = _fast_compare(cand, r, self.precision)
                if status is not None:
                    out[i] = Verdict(status, 1.0 if status is Status.CORRECT else 0.0, shown,
                                     {"method": method, "path": "fast"})
                    continue
            slow.append((i, method))
            payload, is_answer = _sympy_payload(cand, method, region)
            slow_args.append((payload, r, self.precision, self.strict, self.set_relation, is_answer))
        if slow:
            for (i, method), (kind, value) in zip(slow, self.pool.map(slow_args, timeout=self.timeout)):
                if kind == "ok":
                    status, extracted, note = value
                    st = Status(status)
                    details = {"method": method, "path": "sympy"}
                    if st is Status.ERROR:
                        details["error"] = note
                    out[i] = Verdict(st, 1.0 if st is Status.CORRECT else 0.0, _short(extracted), details)
                elif kind == "timeout":
                    out[i] = Verdict(Status.TIMEOUT, 0.0, None, {"method": method, "path": "sympy", "timeout_s": value})
                else:
                    out[i] = Verdict(Status.ERROR, 0.0, None, {"method": method, "path": "sympy", "error": value})
        return out  # type: ignore[return-value]

    __call__ = verify


_POOLS: dict[int, HardTimeoutPool] = {}
_POOLS_LOCK = threading.Lock()


def _shared_pool(workers: int, timeout: float) -> HardTimeoutPool:
    with _POOLS_LOCK:
        if workers not in _POOLS:  # one pool per worker count; the limit is passed per call
            _POOLS[workers] = HardTimeoutPool("verifiers._math_worker:check", workers=workers, timeout=timeout)
        return _POOLS[workers]


def verify_math(completion: str, reference: str, **options) -> Verdict:
    """One-off check: ``verify_math("... \\\\boxed{42}", "42").status == Status.CORRECT``."""
    return MathVerifier(**options).verify(completion, reference)


def verify_math_batch(completions: Iterable[str], references: Iterable[str], **options) -> list[Verdict]:
    return MathVerifier(**options).verify_batch(list(completions), list(references))
