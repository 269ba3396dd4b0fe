"""Programs judged on standard input and output, the way competitive programming judges them.

A reference is ``{"tests": [{"input": str, "output": str}, ...], "checker": "lines" | "exact" |
"tokens" | "float:TOL", "time_limit": seconds per test, "memory_mb": MB}``. The program (the last
```python block of the completion) runs once per test in the sandbox with that stdin; the
verdict says which of the judge's outcomes it met first:

* ``accepted``: every test passed;
* ``compile_error``: the program does not parse (checked before anything runs);
* ``wrong_answer``, ``time_limit``, ``memory_limit`` (killed, or a ``MemoryError`` under the
  limit: the sandbox's ``oom``), ``runtime_error`` (a non-zero exit or an exception): the first failing test's. Without
  ``partial`` the judge stops there (the rest are ``skipped``), as judges do.

The program runs as ``python3 program.py`` would, with its whole input: exit status 0 is success
(``sys.exit(0)``, ``exit()``, ``raise SystemExit``, ``os._exit(0)`` after a flush; output printed by
``atexit`` handlers or non-daemon threads counts), any other status a ``runtime_error``. Output
checkers follow the Codeforces convention for YES/NO: a whole-token ``yes`` or ``no`` matches in any
case ("Yes", "nO") under ``lines``, ``tokens`` and ``float``; ``exact`` and every other token
compare as written. The verdict is the runner's, from the exit status and the output: nothing the
program writes elsewhere counts.

``details`` has every test's outcome and the count passed. The score is 1 for accepted, else 0,
or the fraction of tests passed with ``partial=True``. A sandbox that could not run the program
(daemon down) is an ``error`` verdict, never a wrong answer.
"""

from __future__ import annotations

from typing import Any

from verifiers.code import CodeVerifier, extract_program
from verifiers.verdict import Status, Verdict

OUTCOMES = ("accepted", "wrong_answer", "time_limit", "memory_limit", "runtime_error", "compile_error")


def _outcome(t: Any) -> str:
    if t.status in ("passed", "skipped"):
        return "accepted" if t.status == "passed" else "skipped"
    if t.status == "timeout":
        return "time_limit"
    if t.status == "oom":  # the runner reports a MemoryError under the limit as oom too
        return "memory_limit"
    if t.status == "failed":
        return "wrong_answer"
    return "runtime_error"


class StdioVerifier(CodeVerifier):
    """The code verifier's sandbox handling (a shared warm pool), with a judge's verdicts."""

    def __init__(self, backend: str = "docker", image: str | None = None, workers: int | None = None,
                 partial: bool = False, time_limit: float = 2.0, daemon_wait: float = 60.0, sandbox: Any = None):
        super().__init__(backend, image, workers, time_limit, partial, sandbox, daemon_wait)
        self.time_limit = time_limit

    def _prepare(self, completion: Any, ref: dict[str, Any]) -> Verdict | tuple[str, Any]:
        from sandbox import Job
        from sandbox.core import output_matches

        tests = ref.get("tests") if isinstance(ref, dict) else None
        if not tests:
            return Verdict(Status.ERROR, 0.0, None, {"error": "the reference has no tests"})
        checker = ref.get("checker", "lines")
        try:
            output_matches("", "", checker)
        except ValueError as e:
            return Verdict(Status.ERROR, 0.0, None, {"error": str(e)})
        if not isinstance(completion, str) or not completion.strip():
            return Verdict(Status.NO_ANSWER, 0.0, None, {"reason": "empty completion"})
        prog = extract_program(completion)
        try:
            compile(prog, "<program>", "exec")  # parsing only: nothing of the program runs here
        except (SyntaxError, ValueError) as e:
            return Verdict(Status.WRONG, 0.0, prog[:2000], {"verdict": "compile_error", "error": f"{type(e).__name__}: {e}",
                                                            "tests": [], "passed": 0, "total": len(tests)})
        return prog, Job(prog, tuple({"input": t["input"], "output": t["output"]} for t in tests), style="stdio",
                         timeout=float(ref.get("time_limit", self.time_limit)), checker=checker,
                         memory_mb=ref.get("memory_mb"), stop_early=not self.partial)

    def _verdict(self, res: Any, prog: str) -> Verdict:
        short = prog if len(prog) <= 2000 else prog[:2000] + "..."
        if res.details.get("error") or res.details.get("sandbox_down"):
            return Verdict(Status.ERROR, 0.0, short, {"error": res.details.get("error", "the sandbox failed"),
                                                      "sandbox_down": bool(res.details.get("sandbox_down"))})
        outcomes = [_outcome(t) for t in res.tests]
        passed = outcomes.count("accepted")
        first = next((o for o in outcomes if o not in ("accepted", "skipped")), "accepted")
        details = {"verdict": first, "tests": outcomes, "passed": passed, "total": len(outcomes),
                   "seconds": round(res.seconds, 4)}
        errs = [t.error for t in res.tests if t.error]
        if errs:
            details["first_error"] = errs[0][-500:]
        score = passed / len(outcomes) if self.partial and outcomes else float(first == "accepted")
        if first == "accepted":
            return Verdict(Status.CORRECT, 1.0, short, details)
        if first == "time_limit":
            return Verdict(Status.TIMEOUT, score, short, details)
        return Verdict(Status.WRONG, score, short, details)
