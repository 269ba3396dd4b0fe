"""Who decides a code verdict (issue 28, items 2 and 10): the judge process runs the tests on values it
built itself, the candidate process only answers; stdio programs exit as python3 would.

Unit tests of the runner's pieces (no sandbox), then properties on the real Docker sandbox, then the
same judge under the bwrap and unsafe-process backends. Every class's cases are in
``verifiers/audit_cases/code.py`` and ``stdio.py`` (run by tests/test_audit.py)."""

import math
import os

import pytest

from sandbox import Job, Sandbox
from sandbox import runner
from sandbox.core import output_matches

IMAGE = os.environ.get("RLVR_SANDBOX_IMAGE", "rlvr-sandbox:latest")
CHECK = ("assert f(2) == 12345", "assert f(3) == [1, 2]")
WRONG = "def f(x):\n    return 0\n"
GOOD = "def f(x):\n    return 12345 if x == 2 else [1, 2]\n"
JSON_HACK = ("import json\n_enc = json.JSONEncoder.encode\ndef _e(self, o):\n"
             "    return _enc(self, o).replace('\"failed\"', '\"passed\"').replace('\"error\"', '\"passed\"')\n"
             "json.JSONEncoder.encode = _e\n")
AE = "class _E:\n    def __eq__(self, o):\n        return True\n    __hash__ = object.__hash__\n"


# ------------------------------------------------------------------------------ pieces


@pytest.mark.parametrize("value", [0, -7, 10 ** 5000, -(2 ** 200), 2.5, -0.0, float("inf"), 1 + 2j, "é\x00", b"\x00\xff",
                                   True, None, [1, (2, "a")], {1: {"k": [None]}}, {3, 1}, frozenset([2.5]), ((),)],
                         ids=lambda v: type(v).__name__)
def test_plain_values_round_trip_with_their_types(value):
    back = runner._from_json(runner._to_json(value))
    assert type(back) is type(value) and back == value


def test_nan_and_exact_types():
    assert math.isnan(runner._from_json(runner._to_json(float("nan"))))
    assert runner._to_json(1) != runner._to_json(True) != runner._to_json(1.0)
    for bad in (object(), [1, object()], type("I", (int,), {})(3), {"k": type("L", (list,), {})()}):
        assert runner._to_json(bad)[0] == "!unsupported"


@pytest.mark.parametrize("bad", [["int", 5], ["str", 1], ["list", "x"], ["dict", [[1]]], ["ref", 0, "t"], "x", ["float"],
                                 ["nope", None], ["set", [["list", []]]], ["bool", 1]])
def test_malformed_answers_are_rejected(bad):
    with pytest.raises((ValueError, TypeError)):
        runner._from_json(bad)


class _FakeLink:
    def __init__(self):
        self.calls = []

    def call(self, ref, args, kwargs):
        self.calls.append(("call", args, kwargs))
        return 5

    def attr(self, ref, name):
        self.calls.append(("attr", name))
        return "v"


@pytest.mark.parametrize("op", [lambda r: r == 1, lambda r: 1 == r, lambda r: r != 1, lambda r: bool(r), lambda r: not r,
                                lambda r: hash(r), lambda r: len(r), lambda r: list(r), lambda r: 1 in r, lambda r: r[0],
                                lambda r: str(r), lambda r: repr(r), lambda r: f"{r}", lambda r: r + 1, lambda r: 1 - r,
                                lambda r: abs(r), lambda r: float(r), lambda r: int(r), lambda r: r < 1,
                                lambda r: r.__eq__(1), lambda r: r.__len__(), lambda r: __import__("copy").deepcopy(r), lambda r: {r: 1},
                                lambda r: sorted([r, r]), lambda r: [r] == [1]])
def test_a_remote_reference_refuses_everything_but_calls_and_attributes(op):
    link = _FakeLink()
    r = runner._Remote(link, 0, "__main__._E")
    n = len(runner._REFUSALS)
    with pytest.raises(runner.Refused):
        op(r)
    assert len(runner._REFUSALS) == n + 1  # recorded: a test that swallows the refusal still fails
    assert r(2, k=1) == 5 and r.method == "v" and link.calls == [("call", (2,), {"k": 1}), ("attr", "method")]


def test_the_tests_see_only_global_names_not_expected_values():
    names = runner._global_names([compile("def check(c):\n    assert c('secret') == 'answer'\nassert math.isclose(f(2), 4.5)\n",
                                          "<t>", "exec")])
    assert {"math", "isclose", "f"} <= names and not names & {"secret", "answer", "4.5"}


@pytest.mark.parametrize("got,want,checker,ok", [
    ("yes\n", "YES\n", "lines", True), ("No\n", "NO", "tokens", True), ("yEs 3\nnO\n", "YES 3\nNO\n", "lines", True),
    ("YES\n", "yes\n", "float:1e-6", True), ("yes\n", "YES\n", "exact", False), ("YESS\n", "YES\n", "lines", False),
    ("Y\n", "YES\n", "tokens", False), ("yes.\n", "YES\n", "lines", False), ("ALICE\n", "Alice\n", "lines", False),
    ("noyes\n", "NOYES\n", "tokens", False), ("yes yes\n", "YES\n", "tokens", False), ("NO\n", "YES\n", "lines", False),
])
def test_yes_no_in_any_case_is_the_judges_convention(got, want, checker, ok):
    assert output_matches(got, want, checker) is ok


@pytest.mark.parametrize("code,status", [(None, 0), (0, 0), (False, 0), (True, 1), (3, 3), (256, 0), (-1, 255), ("bye", 1)])
def test_system_exit_codes_as_the_interpreter_gives_them(code, status):
    assert runner._exit_status(code) == status


# ------------------------------------------------------------------------------ on the Docker sandbox


@pytest.fixture(scope="module")
def sb():
    s = Sandbox("docker", image=IMAGE, workers=2, timeout=5, memory_mb=256)
    yield s
    s.close()


def test_rewriting_the_json_encoder_class_never_passes(sb):
    for prog in (JSON_HACK + WRONG, "def f(x):\n" + "".join("    " + l + "\n" for l in JSON_HACK.splitlines()) + "    return 0\n"):
        assert sb.run(Job(prog, CHECK)).status == "failed"
        r = sb.run(Job(prog, ({"input": [2], "output": 12345},), style="call", entry_point="f"))
        assert r.tests[0].status == "failed", r
    assert sb.run(Job(JSON_HACK + GOOD, CHECK)).passed  # the patch alone does not fail a right answer


@pytest.mark.parametrize("entry", [
    AE + "class f:\n    def __new__(cls, x):\n        return _E()\n",
    AE + "import functools\nf = functools.partial(lambda x, y: _E(), y=1)\n",
    AE + "class _C:\n    def __call__(self, x):\n        return _E()\nf = _C()\n",
    AE + "import functools\n@functools.lru_cache(None)\ndef f(x):\n    return _E()\n",
    AE + "RESULT = _E()\nf = lambda x: RESULT\n",
])
def test_what_is_called_is_guarded_whatever_it_is(sb, entry):
    r = sb.run(Job(entry, CHECK))
    assert r.status == "failed" and "built-in types" in (r.tests[0].error or ""), r
    r = sb.run(Job(entry, CHECK[:1], entry_point="f", setup="def f(x):\n    pass\n"))
    assert r.status == "failed", r


def test_classes_the_tests_construct_and_setup_objects_still_work(sb):
    prog = ("class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
            "def longest(ps):\n    return max(p.b - p.a for p in ps)\n"
            "def depth(n):\n    return 0 if n is None else 1 + max(depth(n.left), depth(n.right))\n")
    setup = ("class Node:\n    def __init__(self, left=None, right=None):\n        self.left, self.right = left, right\n"
             "root = Node(Node(Node()), Node())\nroot.left.parent = root\n")  # a cycle through parent
    r = sb.run(Job(prog, ("assert longest([Pair(1, 5), Pair(2, 3)]) == 4", "p = Pair(1, 2)\nassert p.b == 2",
                          "assert depth(root) == 3"), setup=setup))
    assert r.passed, r


def test_the_judge_cannot_be_reached_from_the_program(sb):
    prog = ("import os\ntry:\n    os.listdir('/proc/%d/fd' % os.getppid())\n    judge_fds = True\nexcept PermissionError:\n"
            "    judge_fds = False\ntry:\n    open('/proc/self/mem', 'rb')\n    own_mem = True\nexcept BaseException:\n"
            "    own_mem = False\n")
    r = sb.run(Job(prog, ("assert judge_fds is False", "assert own_mem is False")))
    assert r.passed, r
    assert sb._all and all(w.info.get("dumpable") is False for w in sb._all)


def test_what_the_tests_may_send_and_what_they_are_told(sb):
    prog = "def total(xs):\n    return sum(xs)\ndef obj(x):\n    return object()\n"
    r = sb.run(Job(prog, ("assert total(range(1, 5)) == 10", "assert total(v for v in [1]) == 1")))
    assert [t.status for t in r.tests] == ["passed", "error"], r  # a generator is not sent: the test says so
    assert "builtins.generator" in r.tests[1].error and "can be sent" in r.tests[1].error, r.tests[1].error
    r = sb.run(Job(prog, ({"input": [1], "output": 1},), style="call", entry_point="obj"))
    assert r.tests[0].status == "failed" and "builtins.object" in r.tests[0].error, r


def test_exceptions_keep_their_type_and_exits_inside_a_call_fail(sb):
    prog = "def f(x):\n    if x < 0:\n        raise KeyError('neg')\n    return x\n"
    assert sb.run(Job(prog, ("try:\n    f(-1)\n    assert False\nexcept KeyError:\n    pass",))).passed
    for ending in ("import sys\n    sys.exit(0)", "import os\n    os._exit(0)", "raise SystemExit"):
        r = sb.run(Job(f"def f(x):\n    {ending}\n", CHECK))
        assert r.status != "passed" and all(t.status == "error" for t in r.tests), r


def test_stdio_streams_the_whole_input_and_counts_atexit_output(sb):
    xs = list(range(100000))
    text = " ".join(map(str, xs)) + "\n"
    assert len(text) > 500000
    r = sb.run(Job("import sys, atexit\nxs = sys.stdin.buffer.read().split()\natexit.register(print, sum(map(int, xs)))\n"
                   "sys.exit(0)\n", ({"input": text, "output": str(sum(xs))},), style="stdio"))
    assert r.passed, r
    r = sb.run(Job("print(input())\n", ({"input": "first\n" + "x" * 300000, "output": "first"},), style="stdio"))
    assert r.passed, r  # a program that stops reading early: the runner is not hurt by the closed pipe
    assert sb.run(Job("x = 1", ("assert x == 1",))).passed


# ------------------------------------------------------------------------------ the other backends


@pytest.mark.parametrize("backend", ["bwrap", "unsafe-process"])
def test_the_same_judge_under_bwrap_and_unsafe_process(backend):
    with Sandbox(backend, workers=1, timeout=5) as s:
        assert s.run(Job(JSON_HACK + WRONG, CHECK)).status == "failed"
        assert s.run(Job(AE + "import functools\nf = functools.partial(lambda x, y: _E(), y=1)\n", CHECK)).status == "failed"
        assert s.run(Job(GOOD, CHECK)).passed
        r = s.run(Job("import sys\nprint(sum(map(int, sys.stdin.read().split())))\nsys.exit(0)\n",
                      ({"input": "1 2\n" * 40000, "output": "120000"},), style="stdio"))
        assert r.passed, r
