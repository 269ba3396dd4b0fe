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
   negated statement ("the answer is not 13", "the answer isn't 13") is never the answer (when
   it is the only statement, the verdict is ``wrong``: it names no value). "The answer is 5, 6"
   is the list "5, 6", not 5;
3. otherwise the whole text, from which the sympy path takes the last expression.

Several boxes: the last box is the answer (a correction: "\\boxed{5} first, but correcting the
mistake, the answer is \\boxed{6}" answers 6, as math-verify and lm-eval read it), unless the
few words between the last two join them as a hedge or a list ("\\boxed{5} or \\boxed{6}",
"\\boxed{5}, \\boxed{6}", "(or maybe ...)"), which is ``wrong``. Against a reference that lists
several values ("1, 2", "\\pm 2", a set) the boxes are read together, as a set.

One value is asked, one must be given (`screen`, each rule skipped when the reference has the
same form itself): a relation or a negation (``\\neq 6``, ``\\leq 6``, "not equal to 6", "at
most 6", ``x \\neq \\boxed{6}``) is not the value; a hedge ("5 or 6", "either", ``5 | 6``,
``5 \\mid 6``, ``\\lor``, another value offered next to the box) and a list ("5 and 6", rows of a
cases, array or aligned environment) are ``wrong``, whatever their last item. ``\\pm a`` is the
two values a and -a: it answers a reference that lists both (``a, -a``, ``\\pm a``, "a or -a")
and is ``wrong`` against one of them.

Before comparison, the answer and the reference are normalised: a degree sign (``45°``) is
dropped, a repeating decimal (``0.\\overline{6}``) becomes the fraction it is, digit groups
separated by a space, thin space or no-break space (``12 500``) are one number, a scale word is
part of its number (``6 \\text{ million}`` is 6000000, so it is not 6), and an e-notation number
(``2e3``) is the number it writes, unless the reference uses ``e`` as a symbol (Euler's number:
then ``2e`` stays two times e).

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

import functools
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
    span = _last_braced_span(text, macros)
    return None if span is None else span[2]


def _last_braced_span(text: str, macros: Sequence[str] = ("\\boxed", "\\fbox")) -> tuple[int, int, str] | None:
    """``(start, end, content)`` of the last ``\\boxed{...}`` with balanced braces: ``text[start:end]``
    is the whole box, macro included. Linear in the text, however many unbalanced boxes it has."""
    best = -1
    for m in macros:
        best = max(best, text.rfind(m + "{"), text.rfind(m + " {"))
    if best < 0:
        return None
    start = text.index("{", best) + 1
    depth, i = 1, start
    while i < len(text) and depth:  # the usual case: the last box is balanced
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        i += 1
    if depth == 0:
        return best, i, text[start : i - 1]
    # unbalanced: match every brace once, then take the last box whose brace is closed
    macro = re.compile("|".join(re.escape(m) + " ?\\{" for m in macros))
    starts = [m.start() for m in macro.finditer(text, 0, best)]
    if not starts:
        return None
    closing, stack = {}, []
    for m in _BRACE.finditer(text, starts[0]):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            closing[stack.pop()] = m.start()
    for b in reversed(starts):
        open_at = text.index("{", b)
        if open_at in closing:
            return b, closing[open_at] + 1, text[open_at + 1 : closing[open_at]]
    return None


_BRACE = re.compile(r"[{}]")
_ANSWER_IS = re.compile(r"answer\s+(?:(?P<neg>isn['’]t)\b|is\b)\s*:?", re.IGNORECASE)
_NEGATED = re.compile(r"\s*(?:not|never)\b", re.IGNORECASE)
# "the answer is 5, 6": a comma, then another value, is a list, not the end of the clause
_LIST_GOES_ON = re.compile(r",\s*(?:(?:and|or)\s+)?(?:\$|\\\(|\\\[)?\s*[-+−]?\d")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n|;")
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
    negated = None  # the last negated statement ("the answer is not 6", "the answer isn't 6")
    for m in reversed(list(_ANSWER_IS.finditer(text))):  # the last statement that is not negated
        after = text[m.end() :]
        if m.group("neg") or _NEGATED.match(after):
            if negated is None:
                negated = ("not " if m.group("neg") else "") + _clause(after.lstrip()).strip()
            continue
        after = after.lstrip()
        cand = _clause(after)
        if _LIST_GOES_ON.match(after, len(cand)):  # "5, 6" or "5, 6, or 7": the whole list is the answer
            cand += _SENTENCE_END.split(after[len(cand):], 1)[0]
        cand = cand.strip()
        if cand:
            found.append((m.start(), cand, "answer_is", cand))
        break
    if found:
        _, cand, method, region = max(found, key=lambda f: f[0])
        return cand, (method_prefix + "+" + method).lstrip("+"), region
    if negated:  # only a negated statement: it names what the answer is not, which is no value
        return negated, (method_prefix + "+negated").lstrip("+"), negated
    stripped = text.strip()
    if not stripped:
        return None, "empty", ""
    return stripped, method_prefix or "whole", stripped


# ---------------------------------------------------------------------------- fast path

_NUM_RE = re.compile(
    r"""(?:(?P<sign>[-+−]?)\s*(?:\\\$|\$)?\s*|(?:\\\$|\$)\s*(?P<csign>[-+−])\s*)   # -$10 or $-10
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
    return -value if (m.group("sign") or m.group("csign")) in ("-", "−") else value


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


_SCALES = {"hundred": 10 ** 2, "thousand": 10 ** 3, "million": 10 ** 6, "billion": 10 ** 9, "trillion": 10 ** 12}
_SCALE_WORD = re.compile(
    r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d{1,30})(\.\d{1,30})?((?:\s*(?:\\\$|\$))?)(?:\s|\\[,;: !]|~){0,20}"
    r"(?:\\(?:text|mbox|textrm|mathrm|textnormal)\s*\{[\s~]*(?P<inner>hundred|thousand|million|billion|trillion)s?\b\s*(?P<close>\})?"
    r"|(?P<bare>hundred|thousand|million|billion|trillion)s?\b)", re.IGNORECASE)
_E_NOTATION = re.compile(r"(?<![\w.\\])(\d{1,30})(\.\d{1,30})?[eE]([-+]?\d{1,6})(?![\w.])")
_NOT_E = re.compile(r"\\text\s*\{[^{}]*\}|\\[A-Za-z]+|(?<![\w.])\d+(?:\.\d+)?[eE][-+]?\d+(?![\w.])")


def _decimal_str(value: Fraction) -> str:
    """A Fraction whose denominator divides a power of ten, written as a plain decimal."""
    sign, value = ("-" if value < 0 else ""), abs(value)
    whole, rest = divmod(value.numerator, value.denominator)
    digits = ""
    while rest and len(digits) < 60:
        rest *= 10
        d, rest = divmod(rest, value.denominator)
        digits += str(d)
    return sign + str(whole) + ("." + digits if digits else "")


def _scale_words(ans: str) -> str:
    """``6 \\text{ million}`` is 6000000, ``2.5 thousand`` is 2500: a number and its scale word are one number."""
    if not _SCALE_WORD.search(ans):
        return ans

    def sub(m: re.Match) -> str:
        word = (m.group("inner") or m.group("bare")).lower()
        value = Fraction(m.group(1).replace(",", "") + (m.group(2) or "")) * _SCALES[word]
        tail = "" if m.group("bare") or m.group("close") else "\\text{"  # "\\text{ million dollars}": keep the rest
        return _decimal_str(value) + m.group(3) + tail

    return _SCALE_WORD.sub(sub, ans)


def symbolic_e(gold: str) -> bool:
    """True when the reference uses the letter ``e`` as a symbol (Euler's number, a variable), not
    only inside commands, text or an e-notation number."""
    return "e" in _NOT_E.sub("", gold) or "E" in _NOT_E.sub("", gold)


def e_notation(ans: str) -> str:
    """``2e3`` as the number it writes (2000; ``1.5e-3`` is 0.0015, a larger exponent ``a \\cdot 10^{n}``).
    Used only where the reference has no symbolic ``e``; next to one, ``2e`` stays two times Euler's number."""
    if "e" not in ans and "E" not in ans:
        return ans

    def sub(m: re.Match) -> str:
        mant, exp = m.group(1) + (m.group(2) or ""), int(m.group(3))
        if abs(exp) <= 40:
            return _decimal_str(Fraction(mant) * Fraction(10) ** exp)
        return f"{mant} \\cdot 10^{{{exp}}}"

    return _E_NOTATION.sub(sub, ans)


def normalize(ans: str) -> str:
    """A bare answer with the notations math-verify misses made plain: a degree sign dropped
    (``45°``), a repeating decimal as its fraction (``0.\\overline{6}`` is ``\\frac{2}{3}``),
    digit groups split by a space, thin space, no-break space or ``\\,`` joined (``12 500``), and
    a scale word made part of its number (``6 \\text{ million}`` is 6000000)."""
    if len(ans) > _MAX_REGION:
        return ans
    ans = ans.replace("°", "").replace("\\degree", "")
    if "overline" in ans:
        ans = _REPEATING.sub(_repeating_to_frac, ans)
    ans = _SPACED_GROUPS.sub(lambda m: m.group(1) + _GROUP_SEP.sub("", m.group(2)), ans)
    return _scale_words(ans)


def _fast_compare(cand: str, gold: str, precision: int | None, g: Fraction | None = None,
                  p: Fraction | None = None) -> Status | None:
    """Compare plain numbers exactly (``g``, ``p``: the values of ``gold`` and ``cand`` when already read)."""
    if len(cand) > _MAX_FAST_LEN:  # a very long integer: compare digit strings, no int() of it
        m, g = _LONG_INT.fullmatch(cand), fast_number(gold)
        if m is None or g is None:
            return None
        p_str = ("-" if m.group(1) == "-" and m.group(2) != "0" else "") + m.group(2)
        return Status.CORRECT if g.denominator == 1 and p_str == str(g.numerator) else Status.WRONG
    p, g = (fast_number(cand) if p is None else p), (fast_number(gold) if g is None else g)
    if p is None or g is None:
        return None
    if p == g:
        return Status.CORRECT
    if precision is not None and abs(p - g) <= Fraction(1, 10 ** precision) * max(abs(p), abs(g)):
        return Status.CORRECT  # the explicit, relative tolerance
    return Status.WRONG


# ---------------------------------------------------------------------------- verifier

_MAX_REGION = 4000  # the sympy path reads at most this many characters of a free-form text
_MAX_BOXED = 20

# ---------------------------------------------------------------------------- relations, hedges, lists
# Each rule below applies only when the reference does not have the same form itself (a reference
# "x \neq 6" may be answered "x \ne 6"; a reference "2, -2" may be answered "2 or -2").

_SPACING = re.compile(r"\\[,;:! ]|\\q?quad(?![A-Za-z])|~|\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_REL_CMD = r"\\(?:neq|ne|not|nleq|ngeq|leq|le|geq|ge|leqq|geqq|leqslant|geqslant|lt|gt|nless|ngtr|ll|gg)(?![A-Za-z])"
_REL_WORDS = (r"\b(?:not|never|isn['’]t|at\s+(?:most|least)|(?:less|greater|more|fewer|smaller|larger|bigger|higher|lower)"
              r"\s+than|no\s+(?:more|less|fewer)\s+than|up\s+to|exceeds?)\b")
_RELATION = re.compile(rf"[≠≤≥⩽⩾<>≮≯]|!=|{_REL_CMD}|{_REL_WORDS}", re.IGNORECASE)
# two values offered, one to be paid: "5 or 6", "either", "5 \lor 6", "5 | 6", "5 \mid 6", "5 \& 6"
_HEDGE = re.compile(r"\b(?:or|either)\b|\\lor(?![A-Za-z])|\\vee(?![A-Za-z])|∨|\\&|\\mid(?![A-Za-z])"
                    r"|[\d}]\s*(?:\||\\vert(?![A-Za-z]))\s*[-+−]?[\d\\{]", re.IGNORECASE)
_TEXT_WRAP = re.compile(r"\\(?:text|mbox|textrm|mathrm|textnormal|textbf)\s*\{([^{}]*)\}")
_AND_LIST = re.compile(r"[\d}]\s*(?:\band\b|\\&|&)\s*[-+−]?\$?\s*[\d\\]", re.IGNORECASE)  # "5 and 6"
# a reference that lists several values: "2, -2", "\pm 2", "2 or -2", "\{1, 2\}", rows
_SEVERAL = re.compile(r"\\pm(?![A-Za-z])|\\mp(?![A-Za-z])|[±∓]|\b(?:or|and)\b|^[\s$]*(?:\\left)?\\?\{.*,|\\\\(?![A-Za-z])",
                      re.IGNORECASE | re.DOTALL)
_OR_AND = re.compile(r"\s*\\text\s*\{\s*(?:or|and)\s*\}\s*|\s+(?:or|and)\s+", re.IGNORECASE)
_ROW_BREAK = re.compile(r"\\\\(?![A-Za-z])(?:\[[^\]]{0,20}\])?|\\newline(?![A-Za-z])|\\cr(?![A-Za-z])")
_ENV_MARK = re.compile(r"\\(?:begin|end)\s*\{[^{}]*\}(?:\{[^{}]*\})?|\\substack\s*")
_CONTINUED_ROW = re.compile(r"[{\s&]*(?:=|\\approx|≈)")  # "&= 6": the row goes on with the value above
# between two boxes: a correction ("\boxed{5}, wait, that is wrong: \boxed{6}") answers with the last box;
# a hedge or a list ("\boxed{5} or \boxed{6}", "\boxed{5}, \boxed{6}") answers with several values
_CORRECTION = re.compile(
    r"\b(?:wait|actually|mistakes?|mistaken|wrong|incorrect|correct(?:ion|ions|ing|ed)?|rather|instead|oops|sorry|"
    r"errors?|erroneous|re-?check\w*|revis\w*|fix\w*|recomput\w*|recalculat\w*|reconsider\w*|redo\w*|no|nope|hmm|"
    r"let\s+me|miscalculat\w*|typo)\b", re.IGNORECASE)
_HEDGE_WORDS = re.compile(r"\b(?:or|either|maybe|perhaps|possibly|probably|alternatively|also|might|could|otherwise)\b"
                          r"|\\lor(?![A-Za-z])|\\vee(?![A-Za-z])|∨|\||\\mid(?![A-Za-z])", re.IGNORECASE)
_LIST_JOIN = re.compile(r"\band\b|\bplus\b|[,;&]|\\&", re.IGNORECASE)
_OR_TOKEN = r"(?:(?:or|either)\b|\\lor(?![A-Za-z])|\\vee(?![A-Za-z])|∨|\||\\mid(?![A-Za-z]))"
_HEDGE_BEFORE = re.compile(rf"[\d}}]\s*\$?\s*(?:\\text\s*\{{\s*)?{_OR_TOKEN}\s*\}}?\s*(?:\$|\\\(|\\\[)?\s*$", re.IGNORECASE)
_HEDGE_AFTER = re.compile(rf"[\s$.,)\]}}]*\(?\s*(?:\\text\s*\{{\s*)?{_OR_TOKEN}[\s}}]*(?:(?:maybe|possibly|perhaps)\s+)?"
                          r"(?:\$|\\\(|\\boxed\s*\{)?\s*[-+−]?\d", re.IGNORECASE)
_LAST_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_BEFORE_VALUE = re.compile(rf"(?:[≠≤≥⩽⩾<>≮≯]|{_REL_CMD}\s*=?|\b(?:not|isn['’]t)(?:\s+equal)?(?:\s+to)?|\bat\s+(?:most|least)"
                           rf"|\b(?:less|greater|more|fewer|smaller|larger|bigger)\s+than|{_OR_TOKEN})"
                           r"\s*[-+−]?\s*\$?\s*(?:\\\(|\\\[)?\s*$", re.IGNORECASE)
_LIST_BEFORE = re.compile(r"\d\s*\$?\s*(?:,\s|;|\band\b|&|\\&)\s*[-+−]?\s*\$?\s*$", re.IGNORECASE)  # "5, 6", "5 and 6"


def lists_several(gold: str) -> bool:
    """True when the reference lists several values ("2, -2", "\\pm 2", "1 or 2", a set, rows)."""
    if _SEVERAL.search(gold):
        return True
    depth = 0
    for i, c in enumerate(gold):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c == ";":
            return True
        elif depth == 0 and c == "," and not (i and gold[i - 1].isdigit() and re.match(r",\d{3}(?!\d)", gold[i:])):
            return True
    return False


def value_rows(ans: str) -> int:
    """How many values ``ans`` gives in rows (a cases, array or aligned environment, ``\\\\``-separated
    lines): a row that goes on from the one above (``&= 6``) is not a new value."""
    if not _ROW_BREAK.search(ans):
        return 1
    rows = [r for r in _ROW_BREAK.split(_ENV_MARK.sub(" ", ans)) if r.strip(" \t\n{}&")]
    return sum(1 for i, r in enumerate(rows) if i == 0 or not _CONTINUED_ROW.match(r))


def screen(cand: str, gold: str, set_relation: bool = False) -> str | None:
    """Why the bare answer ``cand`` cannot be the single value ``gold`` asks for, or None: a relation
    (``\\neq 6``, ``\\leq 6``, "not equal to 6", "at most 6"), a hedge ("5 or 6", "5 | 6", ``5 \\lor 6``)
    or several values in rows (a cases environment), where the reference is none of these itself."""
    flat = _TEXT_WRAP.sub(r" \1 ", _SPACING.sub(" ", cand))
    if _RELATION.search(flat) and not _RELATION.search(gold) and not (set_relation and re.search(r"[\[\](]", gold)):
        return "a relation or a negation, not a value"
    several = lists_several(gold)
    if not several and _HEDGE.search(flat) and not _HEDGE.search(gold):
        return "hedged: the answer names alternatives"
    if not several and _AND_LIST.search(flat) and not _AND_LIST.search(gold):
        return "several values, where one is asked"
    if value_rows(cand) > 1 and value_rows(gold) == 1 and not several and (fast_number(gold) is not None or "," not in gold):
        return "several values in rows, where one is asked"
    return None


def _between_boxes(between: str) -> str:
    """What the text between two boxes makes of them: ``"last"`` (a correction, prose, or nothing but
    space: the last box is the answer) or ``"several"`` (a hedge or a list: a few words that join them)."""
    between = re.sub(r"\bor\s*,?\s*(?=(?:rather|actually|wait|no)\b)", " ", _SPACING.sub(" ", between), flags=re.I)
    if _CORRECTION.search(between):
        return "last"
    if len(re.findall(r"[A-Za-z]{2,}", between.replace("\\text", ""))) <= 6:
        return "several" if _HEDGE_WORDS.search(between) or _LIST_JOIN.search(between) else "last"
    # prose between them: a hedge only where it touches a box ("\boxed{5}, or maybe ... \boxed{6}")
    return "several" if _HEDGE_WORDS.search(between[:40]) or _HEDGE_WORDS.search(between[-40:]) else "last"


@functools.lru_cache(maxsize=4096)
def _reference(gold: str) -> tuple[str, bool, bool, Fraction | None]:
    """The reference as compared (normalised; e-notation read unless it uses a symbolic e; "2 or -2" as
    the list "2, -2"), whether it uses a symbolic e, whether it lists several values, and its value
    when it is a plain number. References repeat (G samples per task): cached."""
    gold = normalize(gold)
    keep_e = symbolic_e(gold)
    if not keep_e:
        gold = e_notation(gold)
    several = lists_several(gold)
    if several:
        gold = _OR_AND.sub(", ", gold)
    return gold, keep_e, several, fast_number(gold)


_NEAR_HEDGE = ("or", "OR", "Or", "|", "\\lor", "\\vee", "∨", "\\mid", "either")


def _read_boxes(region: str, relation_ok: bool) -> tuple[str | None, str]:
    """``(reason, region)`` for a boxed answer against a reference with one value: a reason when another
    value is offered next to the last box or the boxes are joined as a hedge or a list; otherwise the
    region narrowed to the last box (one box, or a correction: the last box answers, as math-verify reads it)."""
    span = _last_braced_span(region)
    if span is None:
        return None, region
    start, end, _ = span
    near = region[max(0, start - 60):start] + region[end:end + 80]
    if any(h in near for h in _NEAR_HEDGE) and (_HEDGE_BEFORE.search(region, max(0, start - 60), start)
                                                 or _HEDGE_AFTER.match(region, end, end + 80)):
        return "hedged: another value is offered next to the box", region
    if relation_ok is False and _BEFORE_VALUE.search(region, max(0, start - 60), start):
        return "the box is the right side of a relation or a negation ('x \\neq \\boxed{6}', 'not \\boxed{6}')", region
    if region.count("\\boxed", 0, start) + region.count("\\fbox", 0, start):
        prev = _last_braced_span(region[:start])
        if prev is not None and prev[2].strip() != span[2].strip() and \
                _between_boxes(region[prev[1]:start]) == "several":  # (the same value twice offers no other)
            return "several boxed values joined as a hedge or a list, where one is asked", region
    return None, region[start:end]


def _boxes(region: str) -> list[tuple[int, int, str]]:
    """The last ``_MAX_BOXED`` boxes of ``region`` as ``(start, end, content)``, in order."""
    out, rest = [], region
    while len(out) < _MAX_BOXED:
        span = _last_braced_span(rest)
        if span is None:
            break
        out.append(span)
        rest = rest[: span[0]]
    return out[::-1]


def _sympy_payload(cand: str, method: str, region: str) -> tuple[str, bool]:
    """What the sympy path reads: ``(text, is_bare_answer)``."""
    if method.endswith("boxed"):
        n = region.count("\\boxed") + region.count("\\fbox")
        if n <= 1:
            return "\\boxed{" + cand + "}", False
        # several boxes against a reference that lists several values: read together, as a set
        return ", ".join("\\boxed{" + b + "}" for _, _, b in _boxes(region)), False
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
            r, keep_e, several, g_value = _reference(r)
            reason, p_value = None, None
            if method.endswith("negated"):
                reason = "the answer is only stated negated ('the answer is not ...'): no value"
            elif method == "whole":
                region = _scale_words(region[-_MAX_REGION:])
                region = region if keep_e else e_notation(region)
                if not several and not _RELATION.search(r) and not (self.set_relation and re.search(r"[\[\](]", r)):
                    nums = [m.start() for m in _LAST_NUMBER.finditer(region)]
                    before = region[max(0, nums[-1] - 60):nums[-1]] if nums else ""
                    if nums and _BEFORE_VALUE.search(before):
                        reason = "the last value is stated in a relation or a hedge ('not equal to 6', '5 or 6')"
                    elif _LIST_BEFORE.search(before) and sum(before.count(c) for c in "([{") <= \
                            sum(before.count(c) for c in ")]}"):  # (not the last coordinate of a tuple)
                        reason = "the last value ends a list of values, where one is asked"
            else:
                if method.endswith("boxed") and not several:
                    reason, region = _read_boxes(region, bool(_RELATION.search(r)))
                cand = normalize(cand)
                cand = cand if keep_e else e_notation(cand)
                p_value = fast_number(cand)
                if reason is None and p_value is None:  # a plain number is no relation, hedge or list
                    reason = screen(cand, r, self.set_relation)
                if several:
                    cand, p_value = _OR_AND.sub(", ", cand), None
            if reason is not None:
                out[i] = Verdict(Status.WRONG, 0.0, shown, {"method": method, "path": "fast", "reason": reason})
                continue
            # several boxed answers are read as a set by the sympy path: no fast path for those
            if self.fast_path and (not method.endswith("boxed") or region.count("\\boxed") + region.count("\\fbox") <= 1):
                status = _fast_compare(cand, r, self.precision, g_value, p_value)
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
