"""How a stdio program's output is compared with the expected output (the checkers of `sandbox.jobs.Job`),
and how a call-style value is shown in a failure message.
"""

from __future__ import annotations

import re
from typing import Any

def _shown(tagged: Any) -> str:
    """A call-style value as the model wrote it (``4``, ``'aa'``), from its tagged form."""
    from sandbox.runner import _from_json

    try:
        text = repr(_from_json(tagged))
    except (ValueError, TypeError, RecursionError):
        text = str(tagged[1]) if isinstance(tagged, list) and tagged[:1] == ["!unsupported"] else str(tagged)
    return text if len(text) <= 200 else text[:200] + "..."


_YES_NO = re.compile(r"(?<!\S)(?:yes|no)(?!\S)", re.IGNORECASE)


def _yes_no(text: str) -> str:
    """YES/NO tokens in one case: the judges' convention (Codeforces: "you may print each letter in any case")."""
    return _YES_NO.sub(lambda m: m.group(0).upper(), text)


def output_matches(got: str, want: str, checker: str = "lines") -> bool:
    """Does a program's output match the expected output, by ``checker`` (see ``Job``)?

    Every checker but ``exact`` reads a whole-token ``yes`` or ``no`` in any case ("Yes", "yEs",
    "NO"), as Codeforces-style judges do; every other token is compared as written."""
    if checker == "lines":
        return _lines(_yes_no(got)) == _lines(_yes_no(want))
    if checker == "exact":
        return got.replace("\r\n", "\n").rstrip("\n") == want.replace("\r\n", "\n").rstrip("\n")
    if checker == "tokens":
        return _yes_no(got).split() == _yes_no(want).split()
    if checker.startswith("float"):
        tol = float(checker.split(":", 1)[1]) if ":" in checker else 1e-6
        a, b = _yes_no(got).split(), _yes_no(want).split()
        if len(a) != len(b):
            return False
        for x, y in zip(a, b):
            if x == y:
                continue
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                return False
            if not (abs(fx - fy) <= tol or abs(fx - fy) <= tol * abs(fy)):
                return False
        return True
    raise ValueError(f"checker must be lines, exact, tokens or float[:TOL], got {checker!r}")


def _lines(s: str) -> list[str]:
    lines = [line.rstrip() for line in s.replace("\r\n", "\n").split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    return lines
