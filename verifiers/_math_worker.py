"""Runs inside a verifier worker process (see `pool.py`): sympy-backed parsing and comparison.

Imported once by the forkserver, so every worker starts with math-verify loaded.
math-verify's own timeouts are switched off here: the pool's hard limit replaces them,
and a timeout must come back as ``timeout``, not as a silent ``False``.
"""

from __future__ import annotations

import functools
import logging

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

# we enforce the limit ourselves; math-verify warns about that on every call
logging.getLogger("math_verify").setLevel(logging.ERROR)

_CONFIG = (LatexExtractionConfig(), ExprExtractionConfig())  # math-verify's defaults


@functools.lru_cache(maxsize=4096)
def _parse(text: str):
    return parse(text, extraction_config=_CONFIG, parsing_timeout=None, raise_on_error=False)


def check(pred: str, gold: str, precision: int, strict: bool, set_relation: bool) -> tuple[str, str | None, str]:
    """Return (status, extracted, note) for ``pred`` against ``gold``."""
    g = _parse(gold)
    if not g:
        return "error", None, f"reference {gold[:80]!r} could not be parsed"
    p = parse(pred, extraction_config=_CONFIG, parsing_timeout=None, raise_on_error=False)
    if not p:
        return "no_answer", None, "no parsable answer"
    extracted = str(p[-1]) if isinstance(p[-1], str) else str(p[0])
    ok = verify(g, p, float_rounding=precision, strict=strict, allow_set_relation_comp=set_relation,
                timeout_seconds=None, raise_on_error=False)
    return ("correct" if ok else "wrong"), extracted, "sympy"
