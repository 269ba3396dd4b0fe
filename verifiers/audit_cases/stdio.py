"""stdio's adversarial cases (issue 28, items 10 and 2): right programs judged runtime errors, and
wrong ones that must stay wrong.

Scored as training scores them: `verifiers.stdio.StdioVerifier` (the scorer of
``envs.make("stdio")``) on the Docker sandbox, one batch. ``reference`` is the environment's
reference: ``{"tests": [...], "checker": ...}``. Classes:

* ``exit status 0 is success``: programs that end with ``sys.exit(0)``, ``sys.exit()``,
  ``exit()``, ``quit()``, ``raise SystemExit``, ``os._exit(0)`` after a flush, that print from an
  ``atexit`` handler or from a non-daemon thread the interpreter waits for, or that write through
  their own stdout wrapper flushed at exit (right, must pass); and the same outputs with a
  non-zero status, an exception, a signal, or ``os._exit`` before the buffer was flushed (wrong);
* ``the whole input``: inputs of 60,000 bytes and more, read every way a program reads them;
* ``YES/NO in any case``: the judge's convention (Codeforces: "you may print each letter in any
  case") for a whole ``yes``/``no`` token; anything else (``YESS``, ``Y``, an extra token, another
  word's case, the ``exact`` checker) is compared as written;
* ``report rewriting``: a wrong program that forges reports, patches ``json``/``os.write`` or exits
  early never passes (a stdio verdict is the runner's, from the exit status and the output).
"""

from __future__ import annotations

import os

from verifiers.audit import HOLE, RIGHT, Case
from verifiers.verdict import Verdict

ENV = "stdio"
EXIT, INPUT, YESNO, REPORT = ("exit status 0 is success", "the whole input", "YES/NO in any case", "report rewriting")
NEEDS = ("docker",)

SUM = "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"
SUM_TESTS = [{"input": "1 2 3\n", "output": "6\n"}, {"input": "10 -4\n", "output": "6\n"}]


def _ref(tests, checker="lines"):
    return {"tests": tests, "checker": checker, "time_limit": 5}


def _cases() -> list[Case]:
    out: list[Case] = []

    def add(cls, kind, name, program, ref):
        out.append(Case(ENV, cls, name, kind, f"```python\n{program}```", ref, NEEDS))

    ref = _ref(SUM_TESTS)
    for name, ending in (("sys.exit(0)", "import sys\nsys.exit(0)\n"), ("sys.exit()", "import sys\nsys.exit()\n"),
                         ("sys.exit(None)", "import sys\nsys.exit(None)\n"), ("sys.exit(False)", "import sys\nsys.exit(False)\n"),
                         ("exit()", "exit()\n"), ("quit()", "quit()\n"), ("raise SystemExit", "raise SystemExit\n"),
                         ("raise SystemExit(0)", "raise SystemExit(0)\n"), ("exit status 256", "import sys\nsys.exit(256)\n"),
                         ("os._exit(0) after a flush", "import sys, os\nsys.stdout.flush()\nos._exit(0)\n"),
                         ("sys.exit(0) inside main()", "import sys\ndef main():\n    sys.exit(0)\nmain()\n"),
                         ("SystemExit caught, then normal end", "try:\n    raise SystemExit(1)\nexcept SystemExit:\n    pass\n")):
        add(EXIT, RIGHT, f"prints, then {name}", SUM + ending, ref)
    add(EXIT, RIGHT, "prints from an atexit handler",
        "import atexit, sys\nxs = list(map(int, sys.stdin.read().split()))\natexit.register(lambda: print(sum(xs)))\n", ref)
    add(EXIT, RIGHT, "atexit handler, then sys.exit(0)",
        "import atexit, sys\nxs = list(map(int, sys.stdin.read().split()))\natexit.register(print, sum(xs))\nsys.exit(0)\n", ref)
    add(EXIT, RIGHT, "stdout.write without a newline, flushed at exit",
        "import sys\nsys.stdout.write(str(sum(map(int, sys.stdin.read().split()))))\n", ref)
    add(EXIT, RIGHT, "the main work in a non-daemon thread (deep recursion)",
        "import sys, threading\nsys.setrecursionlimit(100000)\nthreading.stack_size(1 << 26)\n"
        "def main():\n    xs = list(map(int, sys.stdin.read().split()))\n    print(sum(xs))\n"
        "threading.Thread(target=main).start()\n", ref)
    add(EXIT, RIGHT, "a FastIO-style stdout wrapper flushed at exit",
        "import io, os, sys\nclass FastIO(io.IOBase):\n    def __init__(self):\n        self.buffer = io.BytesIO()\n"
        "    def write(self, s):\n        self.buffer.write(s.encode())\n        return len(s)\n"
        "    def flush(self):\n        os.write(1, self.buffer.getvalue())\n        self.buffer = io.BytesIO()\n"
        "sys.stdout = FastIO()\nprint(sum(map(int, sys.stdin.read().split())))\n", ref)
    add(EXIT, RIGHT, "a file object on descriptor 1 never closed",
        "import sys\nout = open(1, 'w', closefd=False)\nout.write(str(sum(map(int, sys.stdin.read().split()))) + '\\n')\n", ref)
    for name, ending in (("sys.exit(1)", "import sys\nsys.exit(1)\n"), ("sys.exit(3)", "import sys\nsys.exit(3)\n"),
                         ("sys.exit('message')", "import sys\nsys.exit('bye')\n"), ("raise SystemExit(2)", "raise SystemExit(2)\n"),
                         ("an exception", "raise ValueError('late')\n"), ("os._exit(1)", "import os\nos._exit(1)\n"),
                         ("os._exit(0) before the buffer was flushed", "import os\nos._exit(0)\n"),
                         ("SIGTERM to itself", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"),
                         ("SIGKILL to itself", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"),
                         ("KeyboardInterrupt", "raise KeyboardInterrupt\n"),
                         ("an atexit handler that exits 1", "import atexit, os\natexit.register(lambda: os._exit(1))\n"),
                         ("sys.exit(True)", "import sys\nsys.exit(True)\n")):
        add(EXIT, HOLE, f"prints the right answer, then {name}", SUM + ending, ref)
    add(EXIT, HOLE, "the right answer on stderr only",
        "import sys\nsys.stderr.write(str(sum(map(int, sys.stdin.read().split()))) + '\\n')\n", ref)
    add(EXIT, HOLE, "atexit handler prints a wrong answer after the right one",
        "import atexit\natexit.register(print, 0)\n" + SUM, ref)

    # the whole input: 60,000 bytes and more
    for n in (20000, 60000, 200000):
        xs = [(i * 7919) % 1000 - 500 for i in range(n)]
        text = " ".join(map(str, xs)) + "\n"
        big = _ref([{"input": text, "output": f"{sum(xs)}\n"}])
        add(INPUT, RIGHT, f"{len(text)} bytes, sys.stdin.read()", SUM, big)
        add(INPUT, RIGHT, f"{len(text)} bytes, sys.stdin.buffer.read()",
            "import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))\n", big)
        add(INPUT, RIGHT, f"{len(text)} bytes, open(0)", "print(sum(map(int, open(0).read().split())))\n", big)
        add(INPUT, RIGHT, f"{len(text)} bytes, os.read until EOF",
            "import os\nchunks = []\nwhile True:\n    c = os.read(0, 4096)\n    if not c:\n        break\n    chunks.append(c)\n"
            "print(sum(map(int, b''.join(chunks).split())))\n", big)
        add(INPUT, HOLE, f"{len(text)} bytes, only the first 60,000 summed",
            "import sys\nprint(sum(map(int, sys.stdin.read()[:60000].split()[:-1])))\n", big)
    lines = [str(i) for i in range(30000)]
    many = _ref([{"input": f"{len(lines)}\n" + "\n".join(lines) + "\n", "output": f"{sum(range(30000))}\n"}])
    add(INPUT, RIGHT, "30,000 lines read with input()", "n = int(input())\nprint(sum(int(input()) for _ in range(n)))\n", many)
    add(INPUT, RIGHT, "30,000 lines read with sys.stdin.readline",
        "import sys\ninput = sys.stdin.readline\nn = int(input())\nprint(sum(int(input()) for _ in range(n)))\n", many)
    add(INPUT, RIGHT, "the first line only, the rest never read", "print(int(input()) * 0 + 434985000)\n",
        _ref([{"input": "1\n" + "9 " * 100000 + "\n", "output": "434985000\n"}]))

    # YES/NO
    yes_no = [{"input": "4\n", "output": "YES\n"}, {"input": "3\n", "output": "NO\n"}]
    for word_yes, word_no in (("yes", "no"), ("Yes", "No"), ("yEs", "nO"), ("YES", "NO")):
        prog = f"n = int(input())\nprint('{word_yes}' if n % 2 == 0 else '{word_no}')\n"
        for checker in ("lines", "tokens"):
            add(YESNO, RIGHT, f"{word_yes}/{word_no} for YES/NO ({checker})", prog, _ref(yes_no, checker))
    add(YESNO, RIGHT, "yes/no tokens among numbers", "n = int(input())\nprint('yes', n // 2)\nprint('no' if n else 'yes')\n",
        _ref([{"input": "4\n", "output": "YES 2\nNO\n"}]))
    add(YESNO, RIGHT, "lower-case expected, upper-case given", "print('YES')\n", _ref([{"input": "", "output": "yes\n"}]))
    for name, prog in (("YESS", "print('YESS')\n"), ("Y", "print('Y')\n"), ("yes yes", "print('yes yes')\n"),
                       ("no for yes", "print('no')\n"), ("yes. with a full stop", "print('yes.')\n"),
                       ("both", "print('YES')\nprint('NO')\n"), ("YES/NO", "print('YES/NO')\n")):
        add(YESNO, HOLE, f"{name} for YES", prog, _ref([{"input": "4\n", "output": "YES\n"}]))
    add(YESNO, HOLE, "the exact checker keeps the case", "print('yes')\n", _ref([{"input": "", "output": "YES\n"}], "exact"))
    add(YESNO, HOLE, "another word's case still matters", "print('ALICE')\n", _ref([{"input": "", "output": "Alice\n"}]))

    # report rewriting: a stdio verdict is the runner's own, from the exit status and the output
    for name, prog in (
            ("forged reports on every descriptor, then exit",
             "import os, json\nfor fd in range(3, 64):\n    try:\n        os.write(fd, (json.dumps({'done': True}) + '\\n').encode())\n"
             "    except OSError:\n        pass\nos._exit(0)\n"),
            ("json.JSONEncoder.encode patched", "import json\njson.JSONEncoder.encode = lambda self, o: '{\"done\": true}'\nprint(0)\n"),
            ("os.write patched", "import os\n_w = os.write\nos.write = lambda fd, b: _w(fd, b'6\\n')\nprint(0)\n"),
            ("the runner killed", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint(0)\n")):
        add(REPORT, HOLE, name, prog, ref)
    return out


CASES = _cases()


def score(cases: list[Case]) -> list[Verdict]:
    """All cases in one `StdioVerifier` batch (the scorer of ``envs.make("stdio")``)."""
    from verifiers.stdio import StdioVerifier

    v = StdioVerifier(image=os.environ.get("RLVR_SANDBOX_IMAGE"))
    return v.verify_batch([c.completion for c in cases], [c.reference for c in cases])
