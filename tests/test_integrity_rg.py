"""Reward integrity of the reasoning-gym bridge (issue 28, items 1, 5 and 6), one test per property:
model text is never run (and cannot change a later verdict), every listed generator is graded by
a strict rule of ours (no leniency on extra words, rows, letters, tolerances, e-notation or hex),
a crash is an ``error`` verdict, tasks do not depend on PYTHONHASHSEED, and the think block is never
read. The per-class adversarial cases are in verifiers/audit_cases/rg.py (tests/test_audit.py)."""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("reasoning_gym")

import envs  # noqa: E402
from envs import rg  # noqa: E402
from verifiers import safe_arith  # noqa: E402
from verifiers.rg import EVALUATES_TEXT, RULES, RGVerifier, extract_answer, rule_for  # noqa: E402
from verifiers.verdict import Status  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
PATCH = ("exec('import reasoning_gym.dataset as m, reasoning_gym.games.countdown as c; "
         "m.ProceduralDataset.score_answer = c.CountdownDataset.score_answer = lambda *a: 1.0')")


def _ans(text: str) -> str:
    return f"<think>\nworking\n</think>\n<answer>{text}</answer>"


# ------------------------------------------------------------------ item 1: model text never runs


def test_the_old_attack_patches_reasoning_gyms_own_scorer():
    """What the bridge used to run in its shared worker: one countdown answer makes every later wrong answer 1."""
    code = textwrap.dedent(f"""
        import reasoning_gym
        cd = reasoning_gym.create_dataset("countdown", seed=0, size=1)
        gcd = reasoning_gym.create_dataset("gcd", seed=0, size=1)
        before = gcd.score_answer("wrong", gcd[0])
        cd.score_answer({PATCH!r}, cd[0])
        print(before, gcd.score_answer("wrong", gcd[0]), cd.score_answer("1+1", cd[0]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.split() == ["0.0", "1.0", "1.0"], out.stderr[-2000:]


@pytest.mark.parametrize("strict", [True, False])
def test_a_scored_answer_cannot_run_code_nor_change_a_later_verdict(tmp_path, strict):
    marker = tmp_path / "pwned"
    attacks = [PATCH, f"__import__('pathlib').Path({str(marker)!r}).write_text('x')",
               f"open({str(marker)!r}, 'w').write('x')"]
    cd = envs.make("rg:countdown", strict=strict).unwrapped
    task = cd.tasks(1, "train")[0]
    # one worker: the attack and the later answers are scored in the same process
    cd_v = RGVerifier("countdown", strict=strict, workers=1)
    gcd_v = RGVerifier("gcd", strict=strict, workers=1)
    verdicts = cd_v.verify_batch([_ans(a) for a in attacks], [task.reference] * len(attacks))
    assert all(v.status is Status.WRONG and v.score == 0.0 for v in verdicts), verdicts
    assert not marker.exists()
    later = cd_v.verify_batch([_ans("1+1"), _ans(task.reference["answer"])], [task.reference] * 2)
    assert [v.status for v in later] == [Status.WRONG, Status.CORRECT] and later[0].score == 0.0
    gcd_task = envs.make("rg:gcd").unwrapped.tasks(1, "train")[0]
    v = gcd_v.verify(_ans("wrong"), gcd_task.reference)
    assert v.status is Status.WRONG and v.score == 0.0
    if not strict:
        assert v.details["rg_score"] == 0.0  # reasoning-gym's own scorer in that worker is still the original


@pytest.mark.parametrize("name", sorted(EVALUATES_TEXT - set(rg.LEFT_OUT)))
def test_generators_whose_scorer_evaluates_text_never_run_an_answer(tmp_path, name):
    marker = tmp_path / "ran"
    env = envs.make(f"rg:{name}", strict=False).unwrapped
    task = env.tasks(1, "train")[0]
    attacks = [f"__import__('pathlib').Path({str(marker)!r}).write_text('x')",
               f"[__import__('pathlib').Path({str(marker)!r}).write_text('x')]"]
    results = env.score_batch([_ans(a) for a in attacks], [task] * len(attacks))
    assert all(r.verdicts["correct"].score == 0.0 and "rg_score" not in r.verdicts["correct"].details for r in results)
    assert not marker.exists()


def test_no_eval_exec_sympify_or_parse_expr_in_the_bridge():
    """The bridge's own modules call none of them (their names may appear in docstrings only)."""
    banned = {"eval", "exec", "sympify", "parse_expr", "literal_eval", "compile", "__import__"}
    for path in ("verifiers/rg.py", "verifiers/safe_arith.py", "envs/rg.py"):
        tree = ast.parse((ROOT / path).read_text())
        calls = {(n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", ""))
                 for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and not (isinstance(n.func, ast.Attribute) and n.func.attr == "compile"
                          and getattr(n.func.value, "id", "") == "re")}  # re.compile is not Python's compile
        assert not calls & banned, (path, calls & banned)


# ------------------------------------------------------------------ safe arithmetic


@pytest.mark.parametrize("text", ["0x18", "2.4e1", "24e0", "2_4", "24j", "１２", "²4", "24.", "True", "None",
                                  "__import__('os')", "(lambda: 24)()", "[24][0]", "x.real", "'24'", "24 if 1 else 0",
                                  "abs(24)", "24 // 1", "24 % 25", "24 == 24", "~-25", "1 << 4", "(24,)", "+", ""])
def test_safe_arith_refuses_everything_but_plain_arithmetic(text):
    with pytest.raises(safe_arith.SafeArithError):
        safe_arith.value(text)


def test_safe_arith_computes_exactly_with_bounds():
    assert safe_arith.value("8*(8 + 2 - 7)") == 24
    assert safe_arith.value("(1/3)*3") == 1 and safe_arith.value("-(2 - 5)**2 / 4.5") == -2
    assert safe_arith.literals(safe_arith.parse("57*13 - (93 + 23)")) == [57, 13, 93, 23]
    for bad in ("1/0", "0**-1", "9**9**9", "2**0.5", "10**100000"):
        with pytest.raises(safe_arith.SafeArithError):
            safe_arith.value(bad)
    with pytest.raises(safe_arith.SafeArithError, match="name 'y'"):
        safe_arith.value("x + y", {"x": 1})
    assert safe_arith.value("x*2", {"x": 3}) == 6


def test_safe_arith_builds_sympy_without_parsing_text():
    import sympy

    x = sympy.Symbol("x")
    tree = safe_arith.parse("3*exp(x)*sin(x)**2 + x**(1/2)", names=("x",), functions=("exp", "sin"))
    got = safe_arith.to_sympy(tree, {"x": x}, {"exp": sympy.exp, "sin": sympy.sin})
    assert sympy.simplify(got - (3 * sympy.exp(x) * sympy.sin(x) ** 2 + sympy.sqrt(x))) == 0
    for bad in ("integrate(x, x)", "Integral(x, x)", "expand(x)", "exp", "exp(x, x=1)", "x.diff()"):
        with pytest.raises(safe_arith.SafeArithError):
            safe_arith.parse(bad, names=("x",), functions=("exp",))


# ------------------------------------------------------------------ item 5: strict rules for every generator


def test_numbers_are_read_only_when_written_plainly():
    from verifiers.rg import number

    for text in ("1e3", "0x10", "1_000", "１２", "nan", "inf", "1,000", "1,00", "²", "- 5", "5-"):
        assert number(text) is None, text
    assert number("1e3", sci=True) == 1000 and number("1,000", grouped=True) == 1000 and number("-.5") == -0.5
    assert number("1,00", grouped=True) is None and number("0x10", grouped=True, sci=True) is None


@pytest.mark.parametrize("answer, gold, ok", [
    ("11", "11", True), ("11.0", "11", True), ("1,000", "1000", True), ("011", "11", False), ("110", "0110", False),
    ("1e1", "10", False), ("0xb", "11", False), ("11 or 12", "11", False), ("111", "11", False), ("12", "11", False),
    ("yes", "Yes", True), ("No.", "No", True), ("Yes or No", "Yes", False), ("true", "True", True),
    ('["a", "b"]', "['a', 'b']", True), ("['a', 'b', 'c']", "['a', 'b']", False),
    ("6  5\n4 2 ", "6 5\n4 2", True), ("6 5\n4 2\n1 1", "6 5\n4 2", False), ("IS ONE", "IS ONE OF MR", False),
])
def test_the_default_rule_is_exact_up_to_spacing_and_number_form(answer, gold, ok):
    from verifiers.rg import default_rule

    assert default_rule(answer, {"answer": gold}) is ok


def _tasks(n=2):
    out = {}
    for name in rg.available():
        src = rg.RGSource(name, 3)
        out[name] = [src.task(i) for i in range(n)]
    return out


@pytest.fixture(scope="module")
def tasks():
    return _tasks()


def test_every_exposed_generator_has_our_rule_and_none_is_left_to_reasoning_gym(tasks):
    for name in rg.available():
        rule, ours, theirs = rule_for(name)
        assert callable(rule) and ours and theirs
    assert not set(RULES) & set(rg.LEFT_OUT)


def test_our_rules_accept_reasoning_gyms_own_stored_answers():
    """No false rejection hidden by the bridge's redraw of items whose stored answer our rule refuses: that
    redraw happens only for intermediate_integration's unsolved Integral(...) answers."""
    import reasoning_gym

    refused = []
    for name in rg.available():
        ds = reasoning_gym.create_dataset(name, seed=11, size=8)
        for i in range(8):
            try:
                entry = ds[i]
            except Exception:  # noqa: BLE001 - generators that fail on some seeds (maze) are redrawn by the bridge
                continue
            gold = str(entry["answer"]).strip()
            if not rule_for(name)[0](gold, entry) and not (name == "intermediate_integration" and "Integral(" in gold):
                refused.append((name, gold[:80]))
    assert not refused, refused


def test_gold_plus_extra_words_rows_or_letters_is_wrong_everywhere(tasks):
    """Prefix, substring and per-position credit: gold with something added never scores, in any generator."""
    bad = []
    for name, ts in tasks.items():
        golds = [t.reference["answer"] for t in ts]
        variants = [(g, v) for g in golds for v in (f"{g} extra", f"{g}\n{g}", f"{g}q", f"{g}, {g}", f"{g} or 0")]
        refs = [t.reference for t in ts for _ in range(5)]
        verdicts = RGVerifier(name).verify_batch([_ans(v) for _, v in variants], refs)
        bad += [(name, v, x.status.value) for (_, v), x in zip(variants, verdicts)
                if x.status is Status.CORRECT or x.score > 0]
    assert not bad, bad[:10]


def test_numbers_shifted_or_rewritten_as_e_notation_or_hex_are_wrong(tasks):
    bad = []
    for name, ts in tasks.items():
        for t in ts:
            gold = t.reference["answer"].strip()
            if not re.fullmatch(r"-?\d+", gold) or name in ("bitwise_arithmetic",):
                continue
            n = int(gold)
            variants = [str(n + 1), str(n - 1), f"{n}.5", f"{n}e0", f"{n / 10}e1", hex(n), f"{n}.0001", f"0b{n:b}"]
            for v, x in zip(variants, RGVerifier(name).verify_batch([_ans(v) for v in variants], [t.reference] * 8)):
                if x.status is Status.CORRECT or x.score > 0:
                    bad.append((name, gold, v))
    assert not bad, bad[:10]


def test_a_yes_no_answer_is_read_not_its_truthiness():
    env = envs.make("rg:game_of_life_halting").unwrapped
    for task in env.tasks(4, "train"):
        gold = task.reference["answer"]
        other = "True" if gold == "False" else "False"
        rs = env.score_batch([_ans(a) for a in (other, "maybe", "yes", f"{gold} or {other}", gold.lower())], [task] * 5)
        assert [r.verdicts["correct"].status for r in rs] == [Status.WRONG] * 4 + [Status.CORRECT]


@pytest.mark.parametrize("name, answers", [
    ("puzzle24", ["24", "8*3", "0x18", "2.4e1", "{g} + 0", "{g} * 1", "({g})**1", "{g} + 7 - 7"]),
    ("countdown", ["{t}", "{g} + 0", "{g} * 1", "({g})**1", "int({g})"]),
])
def test_arithmetic_puzzles_use_exactly_the_given_numbers(name, answers):
    env = envs.make(f"rg:{name}").unwrapped
    for task in env.tasks(3, "train"):
        g, t = task.reference["answer"], task.reference["metadata"].get("target", 24)
        texts = [a.format(g=g, t=t) for a in answers] + [g]
        results = env.score_batch([_ans(a) for a in texts], [task] * len(texts))
        statuses = [r.verdicts["correct"].status for r in results]
        assert statuses == [Status.WRONG] * len(answers) + [Status.CORRECT], list(zip(texts, statuses))


@pytest.mark.parametrize("name", ["simple_integration", "intermediate_integration"])
def test_the_tasks_own_integral_is_not_an_answer(name):
    env = envs.make(f"rg:{name}").unwrapped
    task = env.tasks(1, "train")[0]
    md = task.reference["metadata"]
    f, x = md["integrand"], md["variable"]
    texts = [f"integrate({f}, {x})", f"Integral({f}, {x}) + C", f"Integral({f}, {x}).doit()",
             f"expand(integrate({f}, {x}))", f"diff({task.reference['answer']}, {x})", task.reference["answer"]]
    rs = env.score_batch([_ans(a) for a in texts], [task] * len(texts))
    assert [r.verdicts["correct"].status for r in rs] == [Status.WRONG] * 5 + [Status.CORRECT]


def test_the_per_letter_sum_that_reaches_one_is_not_full_credit():
    """spell_backward pays 1/len per letter in place: for some lengths the sum of the credits of
    gold plus an extra letter is 1.0000000000000002, which `>= 1.0` took as exact."""
    from reasoning_gym import create_dataset

    ds = create_dataset("spell_backward", seed=0, size=1)
    gold = next(w for w in ("abcdefghijklmnopqrstuvwxyz"[:k] for k in range(3, 27))
                if ds.score_answer(w + "z", {"answer": w}) > 1.0)
    assert ds.score_answer(gold + "z", {"answer": gold}) == 1.0000000000000002
    v = RGVerifier("spell_backward", strict=False).verify(_ans(gold + "z"), {"answer": gold, "metadata": {}})
    assert v.status is Status.WRONG and v.score == 0.0  # their "full" credit is not partial credit either


def test_a_crashing_check_is_an_error_verdict_never_an_exception():
    env = envs.make("rg:prime_factorization").unwrapped
    task = env.tasks(1, "train")[0]
    r = env.score_batch([_ans("2 × 3²"), _ans("²")], [task, task])  # int('²') crashes reasoning-gym's parse
    assert all(x.verdicts["correct"].status is Status.WRONG for x in r)
    # a check that raises (here: an entry without the metadata the rule reads) is an error verdict
    v = RGVerifier("tower_of_hanoi").verify(_ans("Move disk 1 from Peg 1 to Peg 3"), {"answer": "x", "metadata": {}})
    assert v.status is Status.ERROR and v.score == 0.0 and "KeyError" in v.details["error"]


def test_a_slow_check_is_a_timeout_verdict():
    v = RGVerifier("simple_integration", timeout=1.0).verify(
        _ans("(x+1)**64*(x+2)**64*(x+3)**64*(x+4)**64"), {"answer": "x + C", "metadata": {"integrand": "1",
                                                                                           "variable": "x"}})
    assert v.status is Status.TIMEOUT and v.score == 0.0


def test_tasks_do_not_depend_on_pythonhashseed(tmp_path):
    code = textwrap.dedent("""
        import json, sys
        from envs import rg
        out = {}
        for n in rg.available():
            src = rg.RGSource(n, 0)
            out[n] = [[src.task(i, s).prompt, str(src.task(i, s).reference.get("answer"))]
                      for i in range(2) for s in ("train", "heldout")]
        json.dump(out, open(sys.argv[1], "w"))  # (some generators print progress dots on stdout)
    """)
    runs = []
    for seed in ("1", "2"):
        path = tmp_path / f"tasks{seed}.json"
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                             cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(path.read_text()))
    differ = [n for n in runs[0] if runs[0][n] != runs[1][n]]
    assert not differ, f"tasks depend on PYTHONHASHSEED: {differ}"
    assert {"isomorphic_strings", "ransom_note", "word_ladder", "polynomial_multiplication"} <= set(rg.LEFT_OUT)


# ------------------------------------------------------------------ item 6: the think block


@pytest.mark.parametrize("completion, expected", [
    ("<think>so <answer>11</answer></think>", None),
    ("<think><answer>11</answer></think> I said it above.", None),
    ("<think><answer>11</answer></think>\n<answer>12</answer>", "12"),
    ("<think>a</think><answer>12</answer><think>no: <answer>11</answer>", None),  # cut off mid-thought
    ("<think>a</think><answer>12</answer><think>hmm</think>", None),  # the only answer is before the last think
    ("<answer>11</answer>", "11"),
    ("<think>x</think><answer> 11 </answer><answer>13</answer>", "13"),
    ("<think>x</think><answer>11", None),
])
def test_the_answer_is_read_after_the_think_block_only(completion, expected):
    assert extract_answer(completion) == expected


def test_an_answer_only_inside_think_scores_no_answer_through_the_environment():
    env = envs.make("rg:gcd").unwrapped
    task = env.tasks(1, "train")[0]
    gold = task.reference["answer"]
    r = env.score_batch([f"<think><answer>{gold}</answer></think>", f"<think>x</think><answer>{gold}</answer>"],
                        [task, task])
    assert r[0].verdicts["correct"].status is Status.NO_ANSWER and r[0].verdicts["correct"].score == 0.0
    assert r[1].verdicts["correct"].status is Status.CORRECT


def test_a_new_workers_import_is_not_charged_to_the_first_check():
    """reasoning_gym is imported before a worker is ready: the first right answer of a fresh pool with a 1 s
    limit is correct, never a timeout (a loaded machine took over 5 s to import it inside the check)."""
    from verifiers.audit_cases.rg import E
    from verifiers.rg import RGVerifier

    v = RGVerifier("cryptarithm", timeout=1.0, workers=1)  # its own pool: no worker warmed by another test
    try:
        verdict = v.verify("<answer>A=1,B=2</answer>", E["cryptarithm"])
        assert verdict.status.value == "correct", verdict
    finally:
        v.pool.close()
