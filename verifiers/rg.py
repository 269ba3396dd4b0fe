"""Scoring reasoning-gym's tasks (``env=rg:NAME``) with comparators of ours, honestly.

reasoning-gym's own scorers are not fit to be a training reward as they are (version 0.1.25):

* several run model text as Python: ``eval`` (binary_matrix, n_queens, spiral_matrix,
  string_insertion) or sympy's ``parse_expr`` (countdown, puzzle24, simple_integration,
  intermediate_integration, polynomial_multiplication). An answer could read the scorer's frames
  and patch the scoring function of the worker, so that every later wrong answer scored 1;
* many are lenient: the truthiness of any string (game_of_life_halting), a tolerance of 1 on every
  number (number_sorting), ``int(x, 0)`` accepting any base, ``Decimal``/``float`` accepting
  ``1e3``, prefix or per-position credit that reaches 1.0 for gold plus extra letters or rows
  (figlet_font, game_of_life, spell_backward's per-letter sum of 1.0000000000000002), the first
  number anywhere in the text (gsm_symbolic), the task's own ``integrate(...)`` call...

So every generator the bridge lists is graded by a rule of ours (`RULES`, one line each in
`RULE_TEXT`; the README's table is made from it): an exact comparison with the stored answer after
the normalisation the generator documents (whitespace, case), a plain-number comparison (digits,
an optional sign and decimal point: no exponent, no hex, no tolerance), or a validity check for
puzzles with many solutions (countdown and puzzle24: an expression of ``+ - * /`` and parentheses
over exactly the given numbers that equals the target, read by `verifiers.safe_arith`, never
``eval``; sudoku, kakurasu, cryptarithm, tower_of_hanoi, jugs, quantum_lock, shortest_path...).
Model text never reaches ``eval``, ``exec``, ``sympify`` or ``parse_expr``: the integration
generators build sympy expressions from a whitelisted syntax tree (`safe_arith.to_sympy`).

* ``strict`` (the default): reward 1 for an answer our rule accepts, else 0.
* ``strict=False`` (opt-in partial credit): reasoning-gym's own score where it is below 1 (its
  partial credit), 0 where it pays full credit to an answer our rule refuses (that is leniency,
  not partial credit); never for the generators in `EVALUATES_TEXT`, whose scorer is not run at all.

The comparators run in worker processes under a hard time limit (`verifiers.pool.HardTimeoutPool`):
a timeout is a ``timeout`` verdict, a comparator crash an ``error`` verdict (never an exception).

The answer is the content of the last closed ``<answer>`` block after the last ``</think>``
(`verifiers.math.strip_think`, the rule of every environment): an answer only inside the think
block, or a completion cut off inside ``<think>``, is ``no_answer``.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Callable, Sequence

from verifiers.math import strip_think, unfinished_think
from verifiers.verdict import Status, Verdict

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_POOLS: dict[tuple, Any] = {}
SUDOKUS = ("sudoku", "mini_sudoku")

# generators whose own score_answer evaluates model text as code: never run on model text
EVALUATES_TEXT = frozenset({"binary_matrix", "n_queens", "spiral_matrix", "string_insertion", "countdown", "puzzle24",
                            "simple_integration", "intermediate_integration", "polynomial_multiplication"})


def extract_answer(completion: str) -> str | None:
    """The last closed ``<answer>`` block after the think block, stripped; None when there is none."""
    if not isinstance(completion, str) or unfinished_think(completion):
        return None  # still thinking: cut off
    found = _ANSWER.findall(strip_think(completion))
    return found[-1].strip() if found else None


# ------------------------------------------------------------------------------------------ normalising

_PLAIN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SCI = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)[eE][+-]?\d{1,4}")
_INT = re.compile(r"[+-]?\d+")


def lines(s: str) -> str:
    """Trailing spaces of each line and blank lines dropped, the text stripped (rows keep their spacing)."""
    return "\n".join(ln.rstrip() for ln in s.strip().splitlines() if ln.strip())


def ws(s: str) -> str:
    """Every run of spaces or tabs one space, each line stripped, blank lines dropped."""
    return "\n".join(" ".join(ln.split()) for ln in s.strip().splitlines() if ln.strip())


def number(s: str, grouped: bool = False, sci: bool = False) -> Decimal | None:
    """``s`` as a plainly written decimal number (ASCII digits, sign, point), else None.

    ``grouped``: thousands commas allowed (``1,000``); ``sci``: e-notation allowed (only where the
    task asks for it). Never hex, ``_``, ``inf``, ``nan`` or unicode digits.
    """
    s = s.strip()
    if not s.isascii():
        return None
    if _PLAIN.fullmatch(s) or (sci and _SCI.fullmatch(s)):
        return Decimal(s)
    if grouped and _GROUPED.fullmatch(s):
        return Decimal(s.replace(",", ""))
    return None


def _int(s: str) -> int | None:
    s = s.strip()
    return int(s) if s.isascii() and _INT.fullmatch(s) else None


def _rows(s: str, cell: re.Pattern = re.compile(r"\d+")) -> list[list[str]] | None:
    rows = [ln.split() for ln in s.strip().splitlines() if ln.strip()]
    if not rows or any(not c.isascii() or not cell.fullmatch(c) for r in rows for c in r):
        return None
    return rows


def _json(s: str) -> Any:
    try:
        return json.loads(s)
    except (ValueError, RecursionError):
        return None


# ------------------------------------------------------------------------------------------ rules

Rule = Callable[[str, dict], bool]


def exact(a: str, e: dict) -> bool:
    return lines(a) == lines(e["answer"])


_YES_NO = ("yes", "no", "true", "false")
_CANONICAL = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?")
_LEADING_ZERO = re.compile(r"[+-]?0\d")


def _py_list(s: str) -> list | None:
    got = _json(s.strip().replace("'", '"')) if s.strip().startswith("[") else None
    return got if isinstance(got, list) else None


def default_rule(a: str, e: dict) -> bool:
    """reasoning-gym's default answer, compared exactly: spacing normalised; a plain number by value (no
    exponent, hex or tolerance); yes/no and True/False in any case; a list of strings as a list (either quotes)."""
    gold = str(e["answer"])
    if ws(a) == ws(gold):
        return True
    if gold.strip().lower() in _YES_NO:
        return a.strip().removesuffix(".").lower() == gold.strip().lower()
    if _CANONICAL.fullmatch(gold.strip()):  # a number, not a digit string such as "0110"
        v = number(a, grouped=True)
        return v is not None and not _LEADING_ZERO.match(a.strip()) and v == Decimal(gold.strip())
    gl = _py_list(gold)
    return gl is not None and _py_list(a) == gl


def exact_ws(a: str, e: dict) -> bool:
    return ws(a) == ws(e["answer"])


def exact_ci(a: str, e: dict) -> bool:
    return ws(a).lower() == ws(e["answer"]).lower()


def _no_spaces_ci(a: str, e: dict) -> bool:
    return a.replace(" ", "").strip().lower() == e["answer"].replace(" ", "").strip().lower()


def _same_number(grouped: bool = False) -> Rule:
    def rule(a: str, e: dict) -> bool:
        v, gold = number(a, grouped=grouped), number(e["answer"], grouped=True, sci=True)
        return v is not None and gold is not None and v == gold

    return rule


def _integer(a: str, e: dict) -> bool:
    v = _int(a)
    return v is not None and v == int(e["answer"].strip())


def _geometry(a: str, e: dict) -> bool:
    gold = e["answer"].strip()
    if e["metadata"]["task_type"] == "orthocenter":
        m = re.fullmatch(r"\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)", a.strip())
        g = re.fullmatch(r"\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)", gold)
        if not m or not g:
            return False
        got = [number(x) for x in m.groups()]
        return None not in got and got == [number(x) for x in g.groups()]
    v = number(a.strip().removesuffix("°").rstrip())
    return v is not None and v == number(gold.removesuffix("°"))


def _grid(a: str, e: dict) -> bool:
    rows = _rows(a)
    return rows is not None and [[int(c) for c in r] for r in rows] == [list(r) for r in e["metadata"]["output"]]


def _bitwise(a: str, e: dict) -> bool:  # the question asks for a hexadecimal value, -0x3 when negative
    m = re.fullmatch(r"(-?)0[xX]([0-9a-fA-F]+)", a.strip())
    return bool(m) and int(m.group(1) + m.group(2), 16) == int(e["answer"], 16)


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _calendar(a: str, e: dict) -> bool:
    task = e["metadata"]["task"]
    if task in ("count_business_days", "count_days", "recurring_event_day"):
        return _integer(a, e)
    if task == "is_leap_year":
        return exact_ci(a, e)
    return exact_ci(a, e) if e["answer"].strip() in _WEEKDAYS else exact_ws(a, e)


def _fraction(s: str) -> Fraction | None:
    s = s.strip()
    m = re.fullmatch(r"([+-]?\d+)\s*/\s*(\d+)", s)
    if m and s.isascii():
        return Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
    v = number(s)
    return None if v is None else Fraction(v)


def _coin_flip(a: str, e: dict) -> bool:
    v = _fraction(a)
    r = e["metadata"]["rational"]
    return v is not None and (v == Fraction(r["numerator"], r["denominator"]) or v == Fraction(Decimal(e["answer"])))


def _complex(s: str) -> tuple[Decimal, Decimal] | None:
    s = s.strip()
    if not s.isascii() or not s:
        return None
    pure = re.fullmatch(r"\(?\s*([+-]?)\s*([\d.]*)\s*i\s*\)?", s)
    if pure:
        im = number(pure.group(2)) if pure.group(2) else Decimal(1)
        return None if im is None else (Decimal(0), -im if pure.group(1) == "-" else im)
    m = re.fullmatch(r"\(?\s*([+-]?\s*[\d.]+)?\s*(?:([+-]?)\s*([\d.]*)\s*i)?\s*\)?", s)
    if not m or (m.group(1) is None and m.group(3) is None and "i" not in s):
        return None
    re_part = number(m.group(1).replace(" ", "")) if m.group(1) else Decimal(0)
    if "i" in s:
        if m.group(1) and not m.group(2):
            return None  # "3 2i": no sign between the parts
        im = number(m.group(3)) if m.group(3) else Decimal(1)
        im = -im if (im is not None and m.group(2) == "-") else im
    else:
        im = Decimal(0)
    return None if re_part is None or im is None else (re_part, im)


def _complex_rule(a: str, e: dict) -> bool:
    got = _complex(a)
    return got is not None and got == _complex(e["answer"])


def _countdown_like(target_of: Callable[[dict], int]) -> Rule:
    from verifiers import safe_arith

    def rule(a: str, e: dict) -> bool:
        try:
            tree = safe_arith.parse(a)
        except safe_arith.SafeArithError:
            return False
        import ast

        if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(tree)):
            return False  # + - * / only
        if any(isinstance(n, ast.Constant) and not isinstance(n.value, int) for n in ast.walk(tree)):
            return False  # the given numbers, as written
        if sorted(safe_arith.literals(tree)) != sorted(Fraction(n) for n in e["metadata"]["numbers"]):
            return False
        try:
            return safe_arith.evaluate(tree) == target_of(e)
        except safe_arith.SafeArithError:
            return False

    return rule


def _cryptarithm(a: str, e: dict) -> bool:
    from reasoning_gym.algorithmic.cryptarithm import verify_cryptarithm_solution

    mapping: dict[str, int] = {}
    for pair in a.strip().split(","):
        m = re.fullmatch(r"\s*([A-Z])\s*=\s*([0-9])\s*", pair)
        if not m or m.group(1) in mapping:
            return False
        mapping[m.group(1)] = int(m.group(2))
    md = e["metadata"]
    return verify_cryptarithm_solution(mapping, md["words_letters"], md["result_letters"],
                                       md.get("allow_leading_zero", False))[0]


def _fraction_simplification(a: str, e: dict) -> bool:
    s = a.strip().strip("$").strip()
    m = re.fullmatch(r"\\[dt]?frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}", s) or re.fullmatch(r"(\d+)\s*/\s*(\d+)", s)
    md = e["metadata"]
    return bool(m) and s.isascii() and (int(m.group(1)), int(m.group(2))) == (md["simplified_numerator"],
                                                                              md["simplified_denominator"])


def _game_of_life(a: str, e: dict) -> bool:
    got = _json(a)
    return isinstance(got, list) and got == json.loads(e["answer"]) and all(
        type(v) is int for r in got for v in (r if isinstance(r, list) else [r]))


def _true_false(a: str, e: dict) -> bool:
    said = a.strip().removesuffix(".").lower()
    return said in ("true", "false") and said == e["answer"].strip().lower()


def _group_anagrams(a: str, e: dict) -> bool:
    got = _json(a)
    if not isinstance(got, list) or not all(isinstance(g, list) and all(isinstance(w, str) for w in g) for g in got):
        return False
    return sorted(sorted(g) for g in got) == sorted(sorted(g) for g in e["metadata"]["solution"])


_FUNCTIONS = ("sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "sinh", "cosh", "tanh", "exp", "log",
              "sqrt", "Abs")


def _sympy_of(text: str, var: str, allow_c: bool) -> Any:
    import sympy

    from verifiers import safe_arith

    x = sympy.Symbol(var)
    consts = {c: sympy.Symbol("C") for c in ("C", "c", "K") if c != var} if allow_c else {}
    symbols = {**consts, "E": sympy.E, "pi": sympy.pi, var: x}
    funcs = {f: getattr(sympy, f) for f in _FUNCTIONS}
    funcs.update(ln=sympy.log, arcsin=sympy.asin, arccos=sympy.acos, arctan=sympy.atan)
    tree = safe_arith.parse(text, names=symbols, functions=funcs)
    return safe_arith.to_sympy(tree, symbols, funcs), x


def _integration(a: str, e: dict) -> bool:
    import sympy

    from verifiers import safe_arith

    md = e["metadata"]
    try:
        got, x = _sympy_of(a, md["variable"], allow_c=True)
    except safe_arith.SafeArithError:
        return False
    integrand, _ = _sympy_of(md["integrand"], md["variable"], allow_c=False)  # the generator's own text
    return sympy.simplify(sympy.diff(got, x) - integrand) == 0


def _jugs(a: str, e: dict) -> bool:
    from reasoning_gym.algorithmic.jugs import verify_solution

    moves = _json(a)
    n = len(e["metadata"]["puzzle"]["jug_capacities"])
    jug = f"[A-{chr(ord('A') + n - 1)}]"
    if not isinstance(moves, list) or not all(
            isinstance(m, str) and re.fullmatch(rf"(?:fill|empty) {jug}|pour {jug}->{jug}", m) for m in moves):
        return False
    return verify_solution(e["metadata"]["puzzle"], moves)[0]


def _kakurasu(a: str, e: dict) -> bool:
    md = e["metadata"]
    rows = _rows(a, re.compile(r"[01]"))
    if rows is None or len(rows) != md["n_rows"] or any(len(r) != md["n_cols"] for r in rows):
        return False
    grid = [[int(c) for c in r] for r in rows]
    row_sums = [sum(j + 1 for j, c in enumerate(r) if c) for r in grid]
    col_sums = [sum(i + 1 for i in range(md["n_rows"]) if grid[i][j]) for j in range(md["n_cols"])]
    return row_sums == md["row_sums"] and col_sums == md["col_sums"]


def _knights_knaves(a: str, e: dict) -> bool:
    """Each inhabitant named once with a role ("Mason is a laggard", "Mason: laggard", "(Mason, laggard)"), in any
    order, and no other word: a hedge, a third role or a second answer for one name is wrong."""
    md = e["metadata"]
    terms = md["knight_knave_terms"]
    roles = {str(terms["knight"]).lower(), str(terms["knave"]).lower()}
    gold = re.findall(r"\b([A-Za-z]+) is an? ([A-Za-z]+)\b", e["answer"])
    names = {str(n).lower() for n in md.get("names") or [n for n, _ in gold]}

    def pairs(s: str) -> dict[str, str] | None:
        out: dict[str, str] = {}
        current = None
        for tok in re.findall(r"[A-Za-z]+|\S", s.lower()):
            if tok in names and current is None and tok not in out:
                current = tok
            elif tok in roles and current is not None:
                out[current], current = tok, None
            elif tok not in ("is", "a", "an", "and") and tok not in ",.;:()-":
                return None  # a word that is neither a name, a role nor a joiner; or a name twice
        return out if current is None else None

    got = pairs(a)
    return got is not None and got == {n.lower(): r.lower() for n, r in gold} and set(got) == names


def _number_format(a: str, e: dict) -> bool:
    v = number(a, grouped=True, sci=True)
    if v is None:
        return False
    cands = [number(c, grouped=True, sci=True) for c in e["metadata"]["formatted_candidates"]]
    sol = Decimal(repr(e["metadata"]["solution"]))
    best = min((c for c in cands if c is not None), key=lambda c: abs(c - sol), default=None)
    return v == sol or (best is not None and v == best)


def _number_sorting(a: str, e: dict) -> bool:
    got, gold = _json(a.replace("'", '"')), _json(e["answer"].replace("'", '"'))
    if not isinstance(got, list) or not isinstance(gold, list) or len(got) != len(gold):
        return False
    vals = [number(x) if isinstance(x, str) else number(repr(x)) if type(x) in (int, float) else None for x in got]
    return None not in vals and vals == [number(x) for x in gold]


def _n_queens(a: str, e: dict) -> bool:
    return ws(a) in {ws(v) for v in e["metadata"]["valid_answers"]}


def _palindrome(a: str, e: dict) -> bool:
    s = a.strip().lower()
    return s == s[::-1] and sorted(s) == sorted(e["metadata"]["letters"])


def _palindrome_partitioning(a: str, e: dict) -> bool:
    got = _json(a)
    if not isinstance(got, list) or not all(isinstance(p, list) and all(isinstance(w, str) for w in p) for p in got):
        return False
    want = {tuple(p) for p in e["metadata"]["solution"]}
    return len(got) == len(want) and {tuple(p) for p in got} == want


def _polynomial_roots(a: str, e: dict) -> bool:
    none = ("", '""', "''")
    got = [number(x) for x in a.split(",")] if a.strip() not in none else []
    gold = [number(x) for x in e["answer"].split(",")] if e["answer"].strip() else []
    return None not in got and sorted(got) == sorted(gold)  # type: ignore[type-var]


def _pool_matrix(a: str, e: dict) -> bool:
    cell = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
    got, gold = _rows(a, cell), _rows(e["answer"], cell)
    return got is not None and gold is not None and [[Decimal(c) for c in r] for r in got] == \
        [[Decimal(c) for c in r] for r in gold]


def _round_sig(d: Decimal, sig: int) -> Decimal:
    if d == 0:
        return d
    return round(d, sig - 1 - d.adjusted())


def _power(a: str, e: dict) -> bool:  # asked: 3 significant figures, in e-notation
    v = number(a, sci=True)
    gold = Decimal(e["answer"])
    if v is None:
        return False
    sig = len(v.normalize().as_tuple().digits)  # 1.190e16 has 3
    return v == gold or v == _round_sig(gold, max(3, sig))


def _prime_factors(a: str, e: dict) -> bool:
    parts = [p.strip() for p in a.split("×")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        return False
    return sorted(map(int, parts)) == sorted(int(p) for p in e["answer"].split("×"))


_DATASETS: dict[tuple[str, str], Any] = {}


def _dataset(name: str, options_json: str = "{}") -> Any:
    import reasoning_gym

    key = (name, options_json)
    if key not in _DATASETS:
        _DATASETS[key] = reasoning_gym.create_dataset(name, seed=0, size=1, **json.loads(options_json))
    return _DATASETS[key]


def _quantum_lock(a: str, e: dict) -> bool:
    toks = [t for t in re.split(r"\s*(?:→|->|,)\s*|\s+", a.strip()) if t]
    names = {b["name"] for b in e["metadata"]["buttons"]}
    if not toks or any(t not in names for t in toks):
        return False
    gold = [t for t in re.split(r"\s*→\s*", e["answer"].strip()) if t]
    if toks == gold:
        return True
    return len(toks) == len(gold) and _dataset("quantum_lock").simulate_sequence(e["metadata"], toks) == \
        e["metadata"]["target_value"]


def _shortest_path(a: str, e: dict) -> bool:
    gold = e["answer"].strip().split()
    if gold == ["infeasible"]:
        return a.strip().lower() == "infeasible"
    moves = a.strip().split()
    if not moves or any(m not in ("up", "down", "left", "right") for m in moves) or len(moves) != len(gold):
        return False
    return _dataset("shortest_path")._is_valid_path(e["metadata"]["matrix"], moves)


def valid_sudoku(answer: str, puzzle: list[list[int]]) -> bool:
    """Is ``answer`` (rows of digits) a complete, valid solution of ``puzzle`` (0: blank)?"""
    n = len(puzzle)
    rows_ = _rows(answer, re.compile(r"[1-9]"))
    box = int(math.isqrt(n))
    if rows_ is None or len(rows_) != n or any(len(r) != n for r in rows_) or box * box != n:
        return False
    rows = [[int(c) for c in r] for r in rows_]
    want = set(range(1, n + 1))
    if any(set(r) != want for r in rows) or any({rows[i][j] for i in range(n)} != want for j in range(n)):
        return False
    for bi in range(0, n, box):
        for bj in range(0, n, box):
            if {rows[i][j] for i in range(bi, bi + box) for j in range(bj, bj + box)} != want:
                return False
    return all(puzzle[i][j] in (0, rows[i][j]) for i in range(n) for j in range(n))


def _sudoku(a: str, e: dict) -> bool:
    return ws(a) == ws(e["answer"]) or valid_sudoku(a, e["metadata"]["puzzle"])


def _hanoi(a: str, e: dict) -> bool:
    md = e["metadata"]
    pegs: dict[int, list[int]] = {p: [] for p in range(1, md["num_pegs"] + 1)}
    pegs[md["start_peg"]] = list(range(md["num_disks"], 0, -1))
    moves = [ln.strip() for ln in a.strip().splitlines() if ln.strip()]
    for mv in moves:
        m = re.fullmatch(r"Move disk (\d+) from Peg (\d+) to Peg (\d+)", mv)
        if not m or not mv.isascii():
            return False
        disk, src, dst = map(int, m.groups())
        if src not in pegs or dst not in pegs or src == dst or not pegs[src] or pegs[src][-1] != disk:
            return False
        if pegs[dst] and pegs[dst][-1] < disk:
            return False
        pegs[dst].append(pegs[src].pop())
    return pegs[md["target_peg"]] == list(range(md["num_disks"], 0, -1)) and len(moves) <= md["solution_length"]


def _word_sorting(a: str, e: dict) -> bool:
    return [w.strip() for w in re.split(r",\s*", a.strip())] == e["metadata"]["sorted_words"]


# (rule, ours in words, theirs in words): the README's table
_EXACT = (default_rule, "exact match (spacing normalised; a plain number by value; yes/no any case; a list "
          "of strings parsed)", "exact, or gold inside the answer paid len(gold)/len(answer)")
RULES: dict[str, tuple[Rule, str, str]] = {
    "ab": (exact_ws, "exact match (spacing normalised)", "exact"),
    "advanced_geometry": (_geometry, "plain decimal(s) equal to the stored value(s)",
                          "float() (accepts 1e1) rounded; 0.05 for any other text"),
    "arc_agi": (_grid, "grid of ASCII digits equal to the output", "parsed grid; 0.05 for any other grid"),
    "binary_matrix": (exact_ws, "exact match (spacing normalised)", "exact; 0.1 for a Python list, via eval"),
    "bitwise_arithmetic": (_bitwise, "a hexadecimal literal (as asked) of the right value",
                           "int(answer, 0): any base, decimal too"),
    "calendar_arithmetic": (_calendar, "weekday: exact, any case; counts: a plain integer; leap year: yes/no any case",
                            "counts paid exp(-5 relative error); 0.1 for any weekday"),
    "chain_sum": (_same_number(grouped=True), "a plain number (thousands commas allowed) of the right value",
                  "Decimal() (accepts 1e1), or gold inside the answer paid by length"),
    "circuit_logic": (exact, "exact match", "exact, or padded gold paid by length"),
    "coin_flip": (_coin_flip, "a plain decimal or a/b equal to the exact probability or its stored decimal",
                  "within 1e-4, else prefix-of-digits credit"),
    "color_cube_rotation": (exact_ci, "exact match, any case", "exact any case; 0.01 otherwise"),
    "complex_arithmetic": (_complex_rule, "a + bi with plain decimals equal to the stored parts",
                           "exp(-distance): partial credit for any near number"),
    "countdown": (_countdown_like(lambda e: e["metadata"]["target"]),
                  "safe AST: + - * / over exactly the given numbers, equal to the target",
                  "sympy parse_expr of the text (runs Python); 0.05 for wrong"),
    "cryptarithm": (_cryptarithm, "strict A=1,B=2 parse, then their validity check", "their validity check"),
    "decimal_arithmetic": (_same_number(), "a plain number of exactly the stored value",
                           "within 10^-precision; Decimal() accepts 1e1"),
    "decimal_chain_sum": (_same_number(), "a plain number of exactly the stored value", "Decimal() (accepts 1e1)"),
    "dice": (exact_ci, "exact match, any case", "exact, any case"),
    "emoji_mystery": (exact, "exact match", "exact; per-position credit for an answer of gold's length"),
    "family_relationships": (exact_ci, "exact match, any case", "exact, any case"),
    "figlet_font": (_no_spaces_ci, "exact match, any case, spaces ignored",
                    "0.1 per letter in place, capped at 1.0 (gold plus extra letters pays 1)"),
    "fraction_simplification": (_fraction_simplification, "a/b or \\frac{a}{b} of the lowest terms",
                                "0.1 for the right numerator or denominator"),
    "game_of_life": (_game_of_life, "JSON grid equal to the stored grid",
                     "per-cell credit (extra rows ignored: gold plus rows pays 1)"),
    "game_of_life_halting": (_true_false, "True/False (any case) equal to the stored one",
                             "bool(answer) == bool(gold): any non-empty text pays 1"),
    "group_anagrams": (_group_anagrams, "JSON groups equal up to order", "JSON groups equal up to order"),
    "gsm_symbolic": (_same_number(grouped=True), "a plain number of the right value",
                     "the first number anywhere in the text"),
    "intermediate_integration": (_integration, "safe AST to sympy (no calls but elementary functions): "
                                 "derivative equals the integrand", "sympy parse_expr of the text (runs Python; "
                                 "integrate(...) or Integral(...) pays 1)"),
    "jugs": (_jugs, "JSON moves of the documented form, then their simulation", "their simulation"),
    "kakurasu": (_kakurasu, "grid of 0/1 meeting every row and column sum", "the same check"),
    "knights_knaves": (_knights_knaves, "each inhabitant named once with the right role, no other word",
                       "0.3 + 0.7 x share right"),
    "letter_jumble": (exact_ci, "exact match, any case (spacing normalised)", "per-word partial credit"),
    "manipulate_matrix": (exact_ws, "exact match (spacing normalised)", "normalised, or padded gold paid by length"),
    "mini_sudoku": (_sudoku, "the stored grid, or any valid solution keeping the givens", "per-cell credit"),
    "n_queens": (_n_queens, "one of the valid boards (spacing normalised)", "the same; 0.5 for a list, via eval"),
    "needle_haystack": (_no_spaces_ci, "exact match, any case, spaces ignored", "the same"),
    "number_format": (_number_format, "exactly the solution's value, or the candidate it is written as",
                      "within 0.01"),
    "number_sorting": (_number_sorting, "a list of numbers (strings, as asked, or numbers) each equal to the "
                       "sorted value",
                       "every number within 1 of the right one"),
    "palindrome_generation": (_palindrome, "a palindrome of exactly the given letters", "the same check"),
    "palindrome_partitioning": (_palindrome_partitioning, "JSON partitions equal as a set, no duplicates",
                                "JSON partitions equal as a set"),
    "path_star": (exact_ws, "exact match (spacing normalised)", "the same"),
    "polynomial_equations": (_polynomial_roots, "comma-separated plain decimals equal to the roots",
                             "exp(distance) credit minus penalties"),
    "pool_matrix": (_pool_matrix, "grid of plain decimals equal to the stored values", "allclose(rtol=1e-2)"),
    "power_function": (_power, "e-notation or plain: the value correctly rounded to its own "
                       "significant figures (3 or more)",
                       "any value that rounds to the same 3 significant figures"),
    "prime_factorization": (_prime_factors, "ASCII integers joined by ×, the right multiset",
                            "the same multiset (int() crashes on ²); 0.5 for the right product"),
    "products": (_same_number(grouped=True), "a plain number (thousands commas allowed) of the right value",
                 "Decimal() (accepts 1e1), or gold inside the answer paid by length"),
    "puzzle24": (_countdown_like(lambda e: 24), "safe AST: + - * / over exactly the given numbers, equal to 24",
                 "sympy parse_expr (runs Python); any 4 numbers in range"),
    "quantum_lock": (_quantum_lock, "buttons only; the stored sequence or one as short reaching the target",
                     "A/B/C letters picked out of any text; 0.5 for a longer one"),
    "rearc": (_grid, "grid of ASCII digits equal to the output", "parsed grid; 0.05 for any other grid"),
    "rectangle_count": (_integer, "a plain integer of the right value", "partial credit for a near count"),
    "self_reference": (exact, "exact match", "exact"),
    "sentence_reordering": (exact_ws, "exact match (spacing normalised)", "per-word positional credit"),
    "shortest_path": (_shortest_path, "directions only, a valid path as short as the stored one",
                      "the same; 0.5 for a longer valid path"),
    "simple_integration": (_integration, "safe AST to sympy: derivative equals the integrand",
                           "sympy parse_expr of the text (runs Python)"),
    "spell_backward": (exact_ci, "exact match, any case", "per-letter prefix credit (sums to 1.0000000000000002)"),
    "spiral_matrix": (exact_ws, "exact match (spacing normalised)", "exact; 0.1 for a Python list, via eval"),
    "string_insertion": (exact, "exact match", "exact; 0.1 for a Python list, via eval"),
    "sudoku": (_sudoku, "the stored grid, or any valid solution keeping the givens", "per-cell credit"),
    "time_intervals": (exact_ws, "exact match in the asked format", "partial credit for a near duration"),
    "tower_of_hanoi": (_hanoi, "only 'Move disk X from Peg Y to Peg Z' lines, legal, solving, no longer than optimal",
                       "the same; optimal/length for a longer one"),
    "tsumego": (lambda a, e: a.strip().upper() == e["answer"].strip().upper(), "exact match, any case",
                "padded gold paid by length; 0.05 for any coordinate"),
    "word_sorting": (_word_sorting, "comma-separated words equal to the sorted list", "per-position credit"),
    "zebra_puzzles": (exact_ci, "exact match, any case", "exact, any case"),
}


def rule_for(name: str) -> tuple[Rule, str, str]:
    """Our rule for a generator: a special one from `RULES`, else reasoning-gym's default exact match."""
    return RULES.get(name, _EXACT)


# ------------------------------------------------------------------------------------------ verifier

def score_in_worker(name: str, options_json: str, answer: str, entry: dict[str, Any], strict: bool = True
                    ) -> tuple[bool, float | None]:
    """In a verifier worker process: (our rule accepts the answer, reasoning-gym's score or None).

    reasoning-gym's scorer runs only for ``strict=False`` and never for `EVALUATES_TEXT`.
    """
    ok = bool(rule_for(name)[0](answer, entry))
    theirs = None
    if not strict and name not in EVALUATES_TEXT:
        theirs = float(_dataset(name, options_json).score_answer(answer, entry))
    return ok, theirs


class RGVerifier:
    """Verdicts for one reasoning-gym generator (``name`` and its options)."""

    def __init__(self, name: str, options: dict[str, Any] | None = None, strict: bool = True, timeout: float = 5.0,
                 workers: int | None = None):
        self.name, self.options, self.strict, self.timeout = name, dict(options or {}), strict, timeout
        self.workers = workers

    @property
    def pool(self) -> Any:
        from verifiers.pool import HardTimeoutPool

        key = (self.workers, self.timeout)
        if key not in _POOLS:
            _POOLS[key] = HardTimeoutPool("verifiers._rg_worker:score_in_worker", self.workers, self.timeout)
        return _POOLS[key]

    def verify(self, completion: str, reference: dict[str, Any]) -> Verdict:
        return self.verify_batch([completion], [reference])[0]

    def verify_batch(self, completions: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(completions)
        jobs, idx, answers = [], [], []
        opts = json.dumps(self.options, sort_keys=True)
        for i, (c, ref) in enumerate(zip(completions, references)):
            ans = extract_answer(c) if isinstance(c, str) else None
            if not ans:
                out[i] = Verdict(Status.NO_ANSWER, 0.0, None,
                                 {"reason": "no closed <answer> block after the think block"})
                continue
            jobs.append((self.name, opts, ans, ref, self.strict))
            idx.append(i)
            answers.append(ans)
        for i, ans, (kind, value) in zip(idx, answers, self.pool.map(jobs)):
            if kind == "timeout":
                out[i] = Verdict(Status.TIMEOUT, 0.0, ans, {"error": f"the rg:{self.name} check ran over {value:.0f}s"})
            elif kind == "error":
                out[i] = Verdict(Status.ERROR, 0.0, ans, {"error": f"the rg:{self.name} check failed: {value}"})
            else:
                out[i] = self._verdict(*value, ans)
        return out  # type: ignore[return-value]

    def _verdict(self, ok: bool, rg_score: float | None, ans: str) -> Verdict:
        details: dict[str, Any] = {"strict": self.strict, "rule": rule_for(self.name)[1]}
        if rg_score is not None:
            details["rg_score"] = rg_score
        if ok:
            return Verdict(Status.CORRECT, 1.0, ans, details)
        partial = 0.0
        if not self.strict and rg_score is not None and 0.0 < rg_score < 1.0:
            partial = rg_score  # their partial credit; their full credit for an answer we refuse is leniency
        return Verdict(Status.WRONG, partial, ans, details)
