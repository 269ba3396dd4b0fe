"""Adversarial cases for the reasoning-gym bridge (``env=rg:NAME``, `verifiers.rg`), issue 28 items 1, 5 and 6.

Each case is one generator's task entry (hand-written in the generator's own format: the stored
answer and the metadata our rule reads) and a completion, scored by `verifiers.rg.RGVerifier`,
strict as the environment scores by default. Classes:

* ``model text executed``: answers that are Python (``__import__``, ``exec``, a lambda, a dunder
  walk) for the generators whose own scorer runs ``eval``/``parse_expr``;
* ``lenient: truthiness``, ``lenient: numbers not given``, ``lenient: prefix or positional
  credit``, ``lenient: tolerance``, ``lenient: the task's own call``, ``lenient: e-notation or
  hex``, ``validity check crash`` (a superscript digit): item 5;
* ``think block``: an answer only inside a closed ``<think>`` (item 6);
* ``right answers``: the right answer in the forms the generator documents, and other valid
  solutions of puzzles with many (each class's holes must not be closed by refusing these).
"""

from __future__ import annotations

import collections
from typing import Any

from verifiers.audit import HOLE, RIGHT, Case
from verifiers.verdict import Verdict

ENV = "rg"
EXEC, TRUTH, NOT_GIVEN, PREFIX, TOL, CALL, LITERAL, CRASH, THINK, OK = (
    "model text executed", "lenient: truthiness", "lenient: numbers not given", "lenient: prefix or positional credit",
    "lenient: tolerance", "lenient: the task's own call", "lenient: e-notation or hex", "validity check crash",
    "think block", "right answers")

E: dict[str, dict[str, Any]] = {  # one task entry per generator, in its own format
    "countdown": {"answer": "57*13 - 93 - 23", "metadata": {"numbers": [13, 93, 23, 57], "target": 625}},
    "puzzle24": {"answer": "8*(8 + 2 - 7)", "metadata": {"numbers": [8, 2, 7, 8]}},
    "simple_integration": {"answer": "-8*x**9/5 + C", "metadata": {"integrand": "-72*x**8/5", "variable": "x"}},
    "intermediate_integration": {"answer": "(3*x**3 - 9*x**2 + 18*x - 18)*exp(x) + C",
                                 "metadata": {"integrand": "3*x**3*exp(x)", "variable": "x"}},
    "binary_matrix": {"answer": "1 0\n0 1", "metadata": {}},
    "spiral_matrix": {"answer": "1 2 4 3", "metadata": {}},
    "string_insertion": {"answer": "DEEBDDDCBADB", "metadata": {}},
    "n_queens": {"answer": "_ Q _ _\n_ _ _ Q\nQ _ _ _\n_ _ Q _",
                 "metadata": {"valid_answers": ["_ Q _ _\n_ _ _ Q\nQ _ _ _\n_ _ Q _"]}},
    "game_of_life_halting": {"answer": "False", "metadata": {}},
    "course_schedule": {"answer": "False", "metadata": {}},
    "syllogism": {"answer": "No", "metadata": {}},
    "figlet_font": {"answer": "GROTIAN", "metadata": {}},
    "spell_backward": {"answer": "taehrevo", "metadata": {}},
    "game_of_life": {"answer": "[[0,1,0],[0,1,0],[0,1,0]]", "metadata": {}},
    "sentence_reordering": {"answer": "the opposite side is here", "metadata": {}},
    "word_sorting": {"answer": "accessed, action, commenced",
                     "metadata": {"sorted_words": ["accessed", "action", "commenced"]}},
    "emoji_mystery": {"answer": "So much for that experiment.", "metadata": {}},
    "letter_jumble": {"answer": "against the annexation", "metadata": {}},
    "manipulate_matrix": {"answer": "6 4 2\n1 0 3", "metadata": {}},
    "gcd": {"answer": "11", "metadata": {}},
    "caesar_cipher": {"answer": "IS ONE OF MR", "metadata": {}},
    "tsumego": {"answer": "L12", "metadata": {}},
    "circuit_logic": {"answer": "1", "metadata": {}},
    "knights_knaves": {"answer": "Mason is a laggard, and Jacob is a pioneer.",
                       "metadata": {"knight_knave_terms": {"knight": "pioneer", "knave": "laggard"}}},
    "tower_of_hanoi": {"answer": "Move disk 1 from Peg 1 to Peg 2\nMove disk 2 from Peg 1 to Peg 3\n"
                                 "Move disk 1 from Peg 2 to Peg 3",
                       "metadata": {"num_disks": 2, "num_pegs": 3, "start_peg": 1, "target_peg": 3,
                                    "solution_length": 3}},
    "shortest_path": {"answer": "right down", "metadata": {"matrix": [["*", "O"], ["O", "#"]]}},
    "quantum_lock": {"answer": "A → B", "metadata": {"buttons": [{"name": "A"}, {"name": "B"}, {"name": "C"}]}},
    "number_sorting": {"answer": "['82.7', '71.9', '40.0', '-25.0']", "metadata": {"direction": "descending"}},
    "pool_matrix": {"answer": "3.11 3.78\n5.67 4.67", "metadata": {}},
    "decimal_arithmetic": {"answer": "-20.559389", "metadata": {}},
    "rectangle_count": {"answer": "3", "metadata": {}},
    "coin_flip": {"answer": "0.6127929688", "metadata": {"rational": {"numerator": 2510, "denominator": 4096}}},
    "calendar_arithmetic": {"answer": "9", "metadata": {"task": "count_days"}},
    "complex_arithmetic": {"answer": "-4.0 - 1.0i", "metadata": {}},
    "polynomial_equations": {"answer": "-1.542, 0.96", "metadata": {}},
    "power_function": {"answer": "1.1866931662875916e+16", "metadata": {}},
    "number_format": {"answer": "136192647.70400003",
                      "metadata": {"solution": 136192647.70400003,
                                   "formatted_candidates": ["136,192,649.293", "1.361926477040000e+08",
                                                            "136,192,658.282", "136192648.754000"]}},
    "time_intervals": {"answer": "01:10:55", "metadata": {}},
    "advanced_geometry": {"answer": "112.83°", "metadata": {"task_type": "angle_measure"}},
    "gsm_symbolic": {"answer": "6720", "metadata": {}},
    "chain_sum": {"answer": "-4", "metadata": {}},
    "products": {"answer": "2540563750", "metadata": {}},
    "decimal_chain_sum": {"answer": "284.3181", "metadata": {}},
    "bitwise_arithmetic": {"answer": "0x9c8f5ed4", "metadata": {}},
    "prime_factorization": {"answer": "2 × 3 × 3", "metadata": {}},
    "mini_sudoku": {"answer": "4 2 1 3\n1 3 2 4\n3 1 4 2\n2 4 3 1",
                    "metadata": {"puzzle": [[4, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 2], [0, 0, 3, 0]]}},
    "cryptarithm": {"answer": "A=1,B=2", "metadata": {"words_letters": ["A", "A"], "result_letters": "B",
                                                      "allow_leading_zero": False}},
    "fraction_simplification": {"answer": "5/8", "metadata": {"simplified_numerator": 5,
                                                              "simplified_denominator": 8}},
    "palindrome_generation": {"answer": "hxxh", "metadata": {"letters": ["h", "x", "h", "x"]}},
    "number_filtering": {"answer": "['-98.77', '-74.537']", "metadata": {}},
    "kakurasu": {"answer": "1 0\n0 1", "metadata": {"n_rows": 2, "n_cols": 2, "row_sums": [1, 2],
                                                    "col_sums": [1, 2]}},
}

_ATTACKS = [  # Python, not arithmetic: each would run under eval or sympy's parse_expr
    "__import__('os').system('true')",
    "exec('import reasoning_gym.dataset as m; m.ProceduralDataset.score_answer = lambda *a: 1.0')",
    "(lambda: 24)()",
    "().__class__.__base__.__subclasses__()",
    "getattr(__builtins__, 'eval')('24')",
    "[24][0]",
    "24 if True else 0",
    "__import__('sys').modules['verifiers.rg'].__dict__",
    "open('/etc/passwd').read()",
    "sympy.Integer(24)",
]


def _c(gen: str, cls: str, name: str, kind: str, answer: str, raw: bool = False) -> Case:
    completion = answer if raw else f"<think>\nworking\n</think>\n<answer>{answer}</answer>"
    return Case(ENV, cls, f"{gen}: {name}", kind, completion, (gen, E[gen]), ("reasoning_gym",))


CASES: list[Case] = [
    *[_c(g, EXEC, f"python as the answer #{i}", HOLE, a) for g in ("countdown", "puzzle24", "simple_integration",
      "intermediate_integration", "binary_matrix", "spiral_matrix", "string_insertion", "n_queens")
      for i, a in enumerate(_ATTACKS)],
    _c("countdown", EXEC, "right value via a builtin call", HOLE, "int(57*13 - 93 - 23)"),
    _c("puzzle24", EXEC, "keyword-free call of abs", HOLE, "abs(8*(8 + 2 - 7))"),
    _c("binary_matrix", EXEC, "a Python list of the right matrix (their eval path)", HOLE, "[[1, 0], [0, 1]]"),
    _c("spiral_matrix", EXEC, "a Python list of the right order (their eval path)", HOLE, "[1, 2, 4, 3]"),
    _c("string_insertion", EXEC, "a Python list of characters (their eval path)", HOLE,
       str(list("DEEBDDDCBADB"))),
    # truthiness and yes/no
    *[_c("game_of_life_halting", TRUTH, f"{a!r} for False", HOLE, a) for a in
      ("True", "maybe", "no", "False or True", "F", "0", "It does not halt", "True False", "yes")],
    _c("course_schedule", TRUTH, "both answers", HOLE, "True or False"),
    _c("syllogism", TRUTH, "Yes for No", HOLE, "Yes"),
    _c("syllogism", TRUTH, "hedge", HOLE, "No, or Yes"),
    # puzzle24 / countdown: numbers not given
    *[_c("puzzle24", NOT_GIVEN, f"{a!r}", HOLE, a) for a in
      ("8*3", "24", "8+8+8", "8*(8 + 2 - 7) + 0", "8*(8 + 2 - 7)*1", "8*(8 + 2 - 7)/1", "(8 + 2 - 7)**1*8",
       "8*(8 + 2 - 7) + 7 - 7", "8*(9 + 1 - 7)", "8.0*(8 + 2 - 7)", "6*4", "(8+2+7+8) - 1", "8*(8+2-7)-0*2")],
    *[_c("countdown", NOT_GIVEN, f"{a!r}", HOLE, a) for a in
      ("625", "57*13 - 93 - 23 + 0", "57*13 - 116", "25*25", "57*13 - 93 - 23 + 13 - 13", "57*13 - 93 - 23*1",
       "57*13 - 93")],
    # prefix / positional credit: gold plus extra words, rows, letters
    *[_c("figlet_font", PREFIX, f"{a!r}", HOLE, a) for a in ("GROTIANS", "GROTIANXYZ", "GROTIAN GROTIAN", "GROTIA",
                                                              "GROTIAN or GROTESK")],
    *[_c("spell_backward", PREFIX, f"{a!r}", HOLE, a) for a in ("taehrevox", "taehrevo taehrevo", "taehrev",
                                                                 "taehrevo?")],
    _c("game_of_life", PREFIX, "gold plus an extra row", HOLE, "[[0,1,0],[0,1,0],[0,1,0],[1,1,1]]"),
    _c("game_of_life", PREFIX, "gold plus an extra column", HOLE, "[[0,1,0,1],[0,1,0,1],[0,1,0,1]]"),
    _c("game_of_life", PREFIX, "one cell wrong", HOLE, "[[0,1,0],[0,1,0],[0,1,1]]"),
    _c("sentence_reordering", PREFIX, "gold plus a word", HOLE, "the opposite side is here now"),
    _c("sentence_reordering", PREFIX, "two words swapped", HOLE, "the side opposite is here"),
    _c("word_sorting", PREFIX, "gold plus a word", HOLE, "accessed, action, commenced, zebra"),
    _c("word_sorting", PREFIX, "one word out of place", HOLE, "action, accessed, commenced"),
    _c("emoji_mystery", PREFIX, "one letter changed", HOLE, "So much for that experimenT."),
    _c("letter_jumble", PREFIX, "gold plus a word", HOLE, "against the annexation now"),
    _c("manipulate_matrix", PREFIX, "gold plus a row", HOLE, "6 4 2\n1 0 3\n9 9 9"),
    _c("gcd", PREFIX, "gold plus words", HOLE, "11 or 12"),
    _c("gcd", PREFIX, "gold inside a number", HOLE, "111"),
    _c("caesar_cipher", PREFIX, "gold plus words", HOLE, "IS ONE OF MR SMITH"),
    _c("tsumego", PREFIX, "two moves", HOLE, "L12 M13"),
    _c("circuit_logic", PREFIX, "both values", HOLE, "1 0"),
    _c("knights_knaves", PREFIX, "one role wrong", HOLE, "Mason is a pioneer, and Jacob is a pioneer."),
    _c("knights_knaves", PREFIX, "both roles for one", HOLE,
       "Mason is a laggard, and Jacob is a pioneer. Jacob is a laggard."),
    _c("knights_knaves", PREFIX, "a hedge", HOLE, "Mason is a laggard, and Jacob is a pioneer or maybe not"),
    _c("tower_of_hanoi", PREFIX, "a longer solution", HOLE,
       "Move disk 1 from Peg 1 to Peg 3\nMove disk 1 from Peg 3 to Peg 2\nMove disk 2 from Peg 1 to Peg 3\n"
       "Move disk 1 from Peg 2 to Peg 3"),
    _c("tower_of_hanoi", PREFIX, "gold plus a comment line", HOLE, E["tower_of_hanoi"]["answer"] + "\nDone!"),
    _c("shortest_path", PREFIX, "a longer valid path", HOLE, "right down left right"),
    _c("shortest_path", PREFIX, "gold plus words", HOLE, "right down done"),
    _c("quantum_lock", PREFIX, "letters picked out of text", HOLE, "Apple → Banana"),
    _c("quantum_lock", PREFIX, "gold plus a press", HOLE, "A → B → C"),
    # tolerance: rounded or shifted numbers
    _c("number_sorting", TOL, "every number shifted by 0.5", HOLE, "['83.2', '72.4', '40.5', '-24.5']"),
    _c("number_sorting", TOL, "every number rounded", HOLE, "['83', '72', '40', '-25']"),
    _c("pool_matrix", TOL, "rounded to one decimal", HOLE, "3.1 3.8\n5.7 4.7"),
    _c("decimal_arithmetic", TOL, "last places wrong", HOLE, "-20.560"),
    _c("rectangle_count", TOL, "one off", HOLE, "4"),
    _c("coin_flip", TOL, "within 1e-4", HOLE, "0.6128"),
    _c("coin_flip", TOL, "a prefix of the digits", HOLE, "0.61"),
    _c("calendar_arithmetic", TOL, "one day off", HOLE, "10"),
    _c("complex_arithmetic", TOL, "imaginary part off", HOLE, "-4.0 - 1.1i"),
    _c("polynomial_equations", TOL, "roots rounded", HOLE, "-1.54, 0.96"),
    _c("polynomial_equations", TOL, "an extra root", HOLE, "-1.542, 0.96, 2.0"),
    _c("power_function", TOL, "a different value with the same 3 significant figures", HOLE, "1.1851e+16"),
    _c("number_format", TOL, "within 0.01", HOLE, "136192647.71"),
    _c("time_intervals", TOL, "one second off", HOLE, "01:10:56"),
    _c("advanced_geometry", TOL, "more decimals that round to gold", HOLE, "112.834"),
    _c("advanced_geometry", TOL, "fewer decimals", HOLE, "112.8°"),
    _c("gsm_symbolic", TOL, "the first number of a hedge", HOLE, "6720 or 6721"),
    _c("gsm_symbolic", TOL, "the first number of a sentence", HOLE, "6720 dollars in the first year, 8000 in all"),
    # the task's own call
    *[_c("simple_integration", CALL, f"{a!r}", HOLE, a) for a in
      ("integrate(-72*x**8/5, x)", "Integral(-72*x**8/5, x)", "Integral(-72*x**8/5, x).doit() + C",
       "integrate(-72*x**8/5, x) + C", "sympy.integrate(-72*x**8/5, x)", "diff(-8*x**9/5, x)",
       "expand(-8*x**9/5) + C")],
    *[_c("intermediate_integration", CALL, f"{a!r}", HOLE, a) for a in
      ("integrate(3*x**3*exp(x), x)", "Integral(3*x**3*exp(x), x) + C", "expand(integrate(3*x**3*exp(x), x))")],
    # e-notation and hex for the target
    _c("puzzle24", LITERAL, "hex 24", HOLE, "0x18"),
    _c("puzzle24", LITERAL, "e-notation 24", HOLE, "2.4e1"),
    _c("puzzle24", LITERAL, "underscore literal", HOLE, "2_4"),
    _c("countdown", LITERAL, "hex target", HOLE, "0x271"),
    _c("countdown", LITERAL, "e-notation target", HOLE, "6.25e2"),
    _c("gsm_symbolic", LITERAL, "e-notation", HOLE, "6.72e3"),
    _c("chain_sum", LITERAL, "e-notation", HOLE, "-4e0"),
    _c("chain_sum", LITERAL, "hex", HOLE, "-0x4"),
    _c("products", LITERAL, "e-notation", HOLE, "2.54056375e9"),
    _c("decimal_chain_sum", LITERAL, "e-notation", HOLE, "2.843181E2"),
    _c("decimal_arithmetic", LITERAL, "e-notation", HOLE, "-2.0559389e1"),
    _c("advanced_geometry", LITERAL, "e-notation", HOLE, "1.1283e2"),
    _c("bitwise_arithmetic", LITERAL, "decimal for a hex question", HOLE, str(0x9c8f5ed4)),
    _c("bitwise_arithmetic", LITERAL, "binary literal", HOLE, bin(0x9c8f5ed4)),
    _c("rectangle_count", LITERAL, "hex", HOLE, "0x3"),
    _c("gcd", LITERAL, "e-notation", HOLE, "1.1e1"),
    # a validity check fed a superscript digit: wrong (or error), never an exception
    _c("prime_factorization", CRASH, "superscript power", HOLE, "2 × 3²"),
    _c("prime_factorization", CRASH, "the number itself", HOLE, "18"),
    _c("prime_factorization", CRASH, "a composite factor", HOLE, "3 × 6"),
    _c("mini_sudoku", CRASH, "superscript digits", HOLE, "4 ² 1 3\n1 3 ² 4\n3 1 4 ²\n² 4 3 1"),
    _c("cryptarithm", CRASH, "superscript digit", HOLE, "A=¹,B=²"),
    _c("cryptarithm", CRASH, "a letter mapped twice", HOLE, "A=1,B=2,A=3"),
    _c("kakurasu", CRASH, "superscript one", HOLE, "¹ 0\n0 ¹"),
    _c("fraction_simplification", CRASH, "superscript fraction", HOLE, "⁵/₈"),
    _c("fraction_simplification", CRASH, "unreduced", HOLE, "10/16"),
    _c("palindrome_generation", CRASH, "extra letter", HOLE, "hxhxh"),
    # think block (item 6)
    _c("gcd", THINK, "answer only inside a closed think", HOLE, "<think>it is <answer>11</answer></think>", raw=True),
    _c("gcd", THINK, "right inside think, wrong after", HOLE,
       "<think><answer>11</answer></think>\n<answer>12</answer>", raw=True),
    _c("gcd", THINK, "cut off inside a second think", HOLE,
       "<think>a</think><answer>11</answer><think>but <answer>11</answer>", raw=True),
    _c("gcd", THINK, "answer only in think, text after", HOLE,
       "<think><answer>11</answer></think> The answer is given above.", raw=True),
    _c("puzzle24", THINK, "answer only inside think", HOLE, "<think><answer>8*(8 + 2 - 7)</answer></think>", raw=True),
    _c("gcd", THINK, "wrong in think, right after", RIGHT,
       "<think>maybe <answer>12</answer></think>\n<answer>11</answer>", raw=True),
    _c("gcd", THINK, "no think block", RIGHT, "<answer>11</answer>", raw=True),
    # right answers (forms the generator documents, other valid solutions)
    *[_c(g, OK, "the stored answer", RIGHT, e["answer"]) for g, e in E.items()],
    *[_c("puzzle24", OK, f"{a!r}", RIGHT, a) for a in ("(8 - 7 + 2) * 8", "8 * (2 + 8 - 7)", "(2 - 7 + 8) * 8",
                                                        "(8+2-7)*8")],
    *[_c("countdown", OK, f"{a!r}", RIGHT, a) for a in ("13*57 - 23 - 93", "13 * 57 - (93 + 23)")],
    *[_c("simple_integration", OK, f"{a!r}", RIGHT, a) for a in ("-1.6*x**9 + C", "C - 8*x**9/5", "-8/5*x**9 + C",
                                                                  "-8*x**9/5")],
    *[_c("intermediate_integration", OK, f"{a!r}", RIGHT, a) for a in
      ("3*exp(x)*(x**3 - 3*x**2 + 6*x - 6) + C", "E**x*(3*x**3 - 9*x**2 + 18*x - 18) + C")],
    _c("game_of_life_halting", OK, "lower case", RIGHT, "false"),
    _c("figlet_font", OK, "lower case, spaced", RIGHT, "g r o t i a n"),
    _c("spell_backward", OK, "upper case", RIGHT, "TAEHREVO"),
    _c("game_of_life", OK, "spaced JSON", RIGHT, "[[0, 1, 0], [0, 1, 0], [0, 1, 0]]"),
    _c("knights_knaves", OK, "other order", RIGHT, "Jacob is a pioneer and Mason is a laggard"),
    _c("knights_knaves", OK, "colons", RIGHT, "Mason: laggard; Jacob: pioneer"),
    _c("knights_knaves", OK, "pairs", RIGHT, "(Mason, laggard), (Jacob, pioneer)"),
    _c("knights_knaves", PREFIX, "a name twice", HOLE, "Mason is a laggard, Jacob is a pioneer, Mason is a laggard"),
    _c("knights_knaves", PREFIX, "one name missing", HOLE, "Jacob is a pioneer"),
    _c("knights_knaves", PREFIX, "words after the answer", HOLE, "Mason is a laggard, and Jacob is a pioneer. I think"),
    _c("knights_knaves", PREFIX, "a role negated", HOLE, "Mason is not a pioneer, and Jacob is a pioneer"),
    _c("tower_of_hanoi", OK, "trailing spaces", RIGHT, E["tower_of_hanoi"]["answer"].replace("\n", "  \n")),
    _c("shortest_path", OK, "another shortest path", RIGHT, "down right"),
    _c("quantum_lock", OK, "ascii arrows", RIGHT, "A -> B"),
    _c("number_sorting", OK, "double quotes, 40 for 40.0", RIGHT, '["82.7", "71.9", "40", "-25.0"]'),
    _c("pool_matrix", OK, "trailing zeros", RIGHT, "3.110 3.780\n5.670 4.670"),
    _c("coin_flip", OK, "exact fraction", RIGHT, "1255/2048"),
    _c("coin_flip", OK, "exact decimal", RIGHT, "0.61279296875"),
    _c("complex_arithmetic", OK, "-4 - i", RIGHT, "-4 - i"),
    _c("complex_arithmetic", OK, "no spaces", RIGHT, "-4.0-1.0i"),
    _c("polynomial_equations", OK, "other order, trailing zero", RIGHT, "0.96, -1.5420"),
    _c("power_function", OK, "3 significant figures", RIGHT, "1.19e+16"),
    _c("power_function", OK, "3 significant figures, no plus", RIGHT, "1.19e16"),
    _c("number_format", OK, "the candidate as printed", RIGHT, "136192647.704"),
    _c("number_format", OK, "the candidate in its e-notation", RIGHT, "1.361926477040000e+08"),
    _c("advanced_geometry", OK, "without the degree sign", RIGHT, "112.83"),
    _c("gsm_symbolic", OK, "thousands comma", RIGHT, "6,720"),
    _c("chain_sum", OK, "trailing decimal", RIGHT, "-4.0"),
    _c("products", OK, "thousands commas", RIGHT, "2,540,563,750"),
    _c("bitwise_arithmetic", OK, "upper-case hex", RIGHT, "0x9C8F5ED4"),
    _c("prime_factorization", OK, "other order", RIGHT, "3 × 2 × 3"),
    _c("cryptarithm", OK, "another valid mapping", RIGHT, "A=2,B=4"),
    _c("cryptarithm", OK, "other order, spaces", RIGHT, "B=2, A=1"),
    _c("fraction_simplification", OK, "latex", RIGHT, "$\\frac{5}{8}$"),
    _c("palindrome_generation", OK, "the other palindrome", RIGHT, "xhhx"),
    _c("mini_sudoku", OK, "spacing", RIGHT, "4  2 1 3\n1 3 2 4 \n3 1 4 2\n2 4 3 1"),
    _c("syllogism", OK, "lower case", RIGHT, "no"),
    _c("course_schedule", OK, "lower case", RIGHT, "false"),
    _c("gcd", OK, "a trailing decimal zero", RIGHT, "11.0"),
    _c("number_filtering", OK, "double quotes", RIGHT, '["-98.77", "-74.537"]'),
    _c("number_filtering", PREFIX, "gold plus an item", HOLE, "['-98.77', '-74.537', '-1']"),
    _c("power_function", OK, "4 significant figures", RIGHT, "1.187e+16"),
    _c("power_function", TOL, "4 significant figures, last one wrong", HOLE, "1.186e+16"),
    _c("simple_integration", OK, "lower-case constant", RIGHT, "-8*x**9/5 + c"),
    _c("simple_integration", CALL, "nested powers too large", HOLE, "((9**64)**64)**64*x"),
    _c("n_queens", OK, "spacing", RIGHT, "_  Q _ _\n_ _ _ Q\nQ _ _ _ \n_ _ Q _"),
]


def score(cases: list[Case]) -> list[Verdict]:
    """Each generator's cases in one batch through `verifiers.rg.RGVerifier` (strict, the default)."""
    from verifiers.rg import RGVerifier

    by_gen: dict[str, list[int]] = collections.defaultdict(list)
    for i, c in enumerate(cases):
        by_gen[c.reference[0]].append(i)
    out: list[Verdict | None] = [None] * len(cases)
    for gen, idx in by_gen.items():
        verdicts = RGVerifier(gen).verify_batch([cases[i].completion for i in idx],
                                                [cases[i].reference[1] for i in idx])
        for i, v in zip(idx, verdicts):
            out[i] = v
    return out  # type: ignore[return-value]
