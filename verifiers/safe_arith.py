"""Arithmetic on model text without ``eval``: a whitelist parse, exact evaluation, and sympy built from the tree.

Model text never reaches ``eval``, ``exec``, ``sympify`` or sympy's ``parse_expr`` (which evaluates
Python, ``evaluate=False`` or not). Instead, `parse` reads the text with ``ast.parse`` (which only
builds a tree; nothing runs) and refuses any node outside a small whitelist:

* numbers written plainly: ``12`` or ``3.5`` (no ``1e3``, ``0x18``, ``1_000``, ``2j``, no unicode digits);
* the names the caller allows (a task's variable, ``C``), and calls of the functions it allows
  (``sin``, ``exp``...), positional arguments only;
* ``+ - * / **``, unary ``+``/``-`` and parentheses. Nothing else: no attribute, subscript,
  comparison, lambda, string, ``integrate(...)``, ``Integral(...)``, ``expand(...)``.

`evaluate` computes a tree exactly (`fractions.Fraction`), with bounded exponents; `literals`
lists the numbers written; `to_sympy` builds a sympy expression node by node from the tree (so
sympy never parses text). Every refusal or arithmetic failure is a `SafeArithError`.
No dependency beyond the standard library (sympy only inside `to_sympy`).
"""

from __future__ import annotations

import ast
import re
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping

MAX_LEN = 2000  # characters of expression text read at all
MAX_NODES = 400
MAX_EXPONENT = 64  # |integer exponent| allowed by `evaluate` and `to_sympy`
MAX_DIGITS = 400  # digits of any intermediate exact value

_ALLOWED_CHARS = re.compile(r"[0-9A-Za-z_.+\-*/() \t\n,]*")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|[0-9._]+")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class SafeArithError(ValueError):
    """The text is not an expression of the allowed form, or it cannot be computed (x/0, 2**10**9)."""


def parse(text: str, names: Iterable[str] = (), functions: Iterable[str] = ()) -> ast.expr:
    """The tree of ``text`` when it is an allowed expression; raises `SafeArithError` otherwise."""
    if not isinstance(text, str):
        raise SafeArithError(f"not text: {type(text).__name__}")
    names, functions = frozenset(names), frozenset(functions)
    if len(text) > MAX_LEN:
        raise SafeArithError(f"expression longer than {MAX_LEN} characters")
    if not _ALLOWED_CHARS.fullmatch(text):
        bad = next(c for c in text if not _ALLOWED_CHARS.fullmatch(c))
        raise SafeArithError(f"character {bad!r} is not allowed in an expression")
    for tok in _TOKEN.findall(text):
        if tok[0].isdigit() or tok[0] in "._":
            if not _PLAIN_NUMBER.fullmatch(tok):
                raise SafeArithError(f"{tok!r} is not a plainly written number")
        elif tok not in names and tok not in functions:
            raise SafeArithError(f"name {tok!r} is not allowed here")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise SafeArithError(f"not an expression: {type(e).__name__}") from None
    count = 0
    for node in ast.walk(tree):
        count += 1
        if count > MAX_NODES:
            raise SafeArithError(f"expression has more than {MAX_NODES} parts")
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
                raise SafeArithError(f"operator {type(node.op).__name__} is not allowed")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.UAdd, ast.USub)):
                raise SafeArithError(f"operator {type(node.op).__name__} is not allowed")
        elif isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                raise SafeArithError(f"constant {node.value!r} is not a number")
        elif isinstance(node, ast.Name):
            if node.id not in names and node.id not in functions:
                raise SafeArithError(f"name {node.id!r} is not allowed here")
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in functions) or node.keywords or not node.args:
                raise SafeArithError("only calls of the allowed functions, with positional arguments")
        elif not isinstance(node, (ast.operator, ast.unaryop, ast.Load)):
            raise SafeArithError(f"{type(node).__name__} is not allowed in an expression")
    for node in ast.walk(tree):  # a function name only as the callee, never as a value
        if isinstance(node, ast.Name) and node.id in functions and node.id not in names:
            if not any(isinstance(p, ast.Call) and p.func is node for p in ast.walk(tree)):
                raise SafeArithError(f"function {node.id!r} used as a value")
    return tree


def _literal(node: ast.Constant) -> Fraction:
    v = node.value
    return Fraction(v) if isinstance(v, int) else Fraction(repr(v))


def literals(tree: ast.expr) -> list[Fraction]:
    """The numbers written in the expression, in order (``-3`` is the literal 3 under a minus)."""
    return [_literal(n) for n in ast.walk(tree) if isinstance(n, ast.Constant)]


def _check_size(x: Fraction) -> Fraction:
    if max(abs(x.numerator), x.denominator).bit_length() > MAX_DIGITS * 3.33:
        raise SafeArithError("value too large")
    return x


def evaluate(tree: ast.expr, values: Mapping[str, Fraction] | None = None) -> Fraction:
    """The exact value of a tree from `parse` (no function calls); raises `SafeArithError`."""
    values = values or {}

    def ev(n: ast.expr) -> Fraction:
        if isinstance(n, ast.Constant):
            return _literal(n)
        if isinstance(n, ast.Name):
            if n.id not in values:
                raise SafeArithError(f"no value for {n.id!r}")
            return Fraction(values[n.id])
        if isinstance(n, ast.UnaryOp):
            v = ev(n.operand)
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Add):
                return _check_size(a + b)
            if isinstance(n.op, ast.Sub):
                return _check_size(a - b)
            if isinstance(n.op, ast.Mult):
                return _check_size(a * b)
            if isinstance(n.op, ast.Div):
                if b == 0:
                    raise SafeArithError("division by zero")
                return _check_size(a / b)
            if b.denominator != 1 or abs(b) > MAX_EXPONENT:
                raise SafeArithError(f"exponent {b} is not an integer of at most {MAX_EXPONENT}")
            if a == 0 and b < 0:
                raise SafeArithError("division by zero")
            if a != 0 and max(abs(a.numerator), a.denominator).bit_length() * abs(int(b)) > MAX_DIGITS * 3.33:
                raise SafeArithError("value too large")
            return _check_size(a ** int(b))
        raise SafeArithError(f"{type(n).__name__} cannot be computed exactly")

    return ev(tree)


def value(text: str, names: Mapping[str, Fraction] | None = None) -> Fraction:
    """`parse` then `evaluate`."""
    return evaluate(parse(text, names=tuple(names or ())), names)


def to_sympy(tree: ast.expr, symbols: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
    """A sympy expression built node by node from a tree of `parse` (sympy never reads text)."""
    import sympy

    def sy(n: ast.expr) -> Any:
        if isinstance(n, ast.Constant):
            return sympy.Rational(_literal(n).numerator, _literal(n).denominator) if isinstance(n.value, float) \
                else sympy.Integer(n.value)
        if isinstance(n, ast.Name):
            if n.id not in symbols:
                raise SafeArithError(f"no symbol for {n.id!r}")
            return symbols[n.id]
        if isinstance(n, ast.UnaryOp):
            v = sy(n.operand)
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.Call):
            return functions[n.func.id](*[sy(a) for a in n.args])  # type: ignore[union-attr]
        if isinstance(n, ast.BinOp):
            a, b = sy(n.left), sy(n.right)
            if isinstance(n.op, ast.Add):
                return a + b
            if isinstance(n.op, ast.Sub):
                return a - b
            if isinstance(n.op, ast.Mult):
                return a * b
            if isinstance(n.op, ast.Div):
                return a / b
            if b.is_number and (not b.is_Rational or abs(b) > MAX_EXPONENT):
                raise SafeArithError(f"exponent {b} is not a rational of at most {MAX_EXPONENT}")
            if a.is_Rational and b.is_Rational and a != 0:  # ((9**64)**64)**64...: bound the digits computed
                if max(abs(a.p), a.q).bit_length() * abs(b) > MAX_DIGITS * 3.33:
                    raise SafeArithError("value too large")
            return a**b
        raise SafeArithError(f"{type(n).__name__} is not allowed")

    return sy(tree)
