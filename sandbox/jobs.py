"""The sandbox's data: a job (a program and its tests), its results, and the errors a pool raises.

`Job` is what callers build; `Result` and `TestResult` are what `Sandbox.run` returns. Nothing here
runs anything: the pool is `sandbox.core.Sandbox`, the workers it drives `sandbox.workers`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Style = Literal["assert", "call", "stdio"]


class SandboxError(RuntimeError):
    """The sandbox could not run a job (no daemon, no image, a runner that died)."""


class SandboxUnavailable(SandboxError):
    """The chosen backend cannot start here; the message says how to fix it or what to choose."""


# where a user chooses the backend and the image, as each command spells it (a hint names these, not the
# constructor's arguments)
BACKEND_KEYS = "env.backend= in training and algos.evaluate, --backend in python -m verifiers code and python -m sandbox check"
IMAGE_KEYS = "env.image= in training and algos.evaluate, --image in python -m sandbox check"


@dataclasses.dataclass(frozen=True)
class Job:
    """A program and its tests.

    * ``assert``: ``tests`` are code strings run after the program in its namespace (HumanEval,
      MBPP); a test passes if it raises nothing.
    * ``call``: ``tests`` are ``{"input": [args...], "output": value}``; ``entry_point`` is called
      with the args and its return value must equal ``output`` in value and type.
    * ``stdio``: ``tests`` are ``{"input": str, "output": str}``; the program runs with that
      stdin and its output must match by ``checker``: ``lines`` (every line, line count included;
      trailing spaces ignored), ``exact`` (byte for byte but for the final newline), ``tokens``
      (whitespace-separated tokens), ``float:TOL`` (tokens; numbers equal within TOL absolute or
      relative). ``memory_mb`` lowers the pool's memory limit for this job.

    ``setup`` is trusted code run in the tests' own namespace before them (HumanEval's prompt, with
    its helper functions; MBPP's test_setup_code). The tests run in a judge process that never runs
    the program (see ``sandbox/runner.py``): with ``entry_point`` set, an ``assert`` job's tests see
    that one name of the program; without, every name of the program they use except those that
    shadow a builtin or the setup. What they get is a plain built-in value (exact types) or, for
    anything else (a function, a class, a partial, an instance), a reference they may call, read
    attributes of and pass back to the program, and nothing else: comparing it, its truth value,
    hashing, iterating or printing it fails the test. Modules the program imported are the judge's
    own copies, by name. Arguments the tests pass must be plain values, such references, or
    instances of classes the setup defines (sent by their attributes).

    A ``stdio`` run passes when the program exits with status 0 (``sys.exit(0)``, ``exit()``,
    ``os._exit(0)`` after a flush and ``atexit`` output included: it exits as ``python3 program.py``
    would) and its output matches; its whole input is streamed to it. Every checker but ``exact``
    reads a whole-token ``yes``/``no`` in any case, the Codeforces convention.
    """

    program: str
    tests: tuple = ()
    style: Style = "assert"
    entry_point: str | None = None
    timeout: float | None = None
    setup: str = ""
    checker: str = "lines"
    memory_mb: int | None = None
    stop_early: bool = False  # stdio: after the first failing test, the rest are "skipped" (a judge's all-or-nothing)


@dataclasses.dataclass(frozen=True)
class TestResult:
    status: str  # passed, failed, error, timeout, oom (stdio with stop_early: skipped)
    seconds: float = 0.0
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Result:
    status: str  # passed, failed, error, timeout, oom
    tests: tuple[TestResult, ...]
    seconds: float
    stdout: str = ""
    stderr: str = ""
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def fraction(self) -> float:
        return sum(t.status == "passed" for t in self.tests) / len(self.tests) if self.tests else float(self.passed)
