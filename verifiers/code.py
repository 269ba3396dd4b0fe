"""Code verification: extract the program from a completion and run its tests in the sandbox.

* Extraction: the last fenced code block (```python or bare ```), else the whole text. When
  the code does not define the entry point and the problem has a prompt (HumanEval: the
  signature and docstring), the completion is a function body: the prompt is prepended.
* References (one per completion) are problem dicts, in one of these forms:
  - HumanEval: ``{"prompt", "test", "entry_point"}`` (``check(entry_point)`` is appended);
  - MBPP / assert lists: ``{"test_list": [...], "test_setup_code"?: str}``;
  - call-based: ``{"entry_point", "inputs": [[args...]...], "outputs": [...]}``;
  - stdin/stdout: ``{"stdio": [{"input": str, "output": str}, ...]}``.
* Tests run in a judge process that never runs the program; the program's process only answers
  calls with plain values (or references that may only be called, read or passed back), so no
  patch of ``json``, ``os.write``, builtins, exits or signals in the program can rewrite a report,
  and an entry point that is a class, a ``functools.partial`` or a callable instance is guarded as
  a function is (see ``sandbox/runner.py``).
* Verdict: ``correct`` when every test passes; ``wrong`` when a test fails, the program
  raises or runs out of memory; ``timeout`` when it runs past the limit; ``no_answer`` for an
  empty program; ``error`` only when the sandbox itself failed. Score: 1/0, or with
  ``partial=True`` the fraction of tests passed.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Sequence

from verifiers.verdict import Status, Verdict

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


def extract_program(completion: str, prompt: str | None = None, entry_point: str | None = None) -> str:
    blocks = _FENCE.findall(completion)
    py = [b for lang, b in blocks if lang.lower() in ("python", "py", "python3", "")]
    code = (py or [b for _, b in blocks] or [completion])[-1]
    if prompt and entry_point and not re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.M):
        code = prompt + code  # a function body: complete the problem's own signature
    return code


def _trusted_prompt(prompt: str) -> str:
    """The problem's prompt as runnable code (its signature gets a body), run in the tests' own
    namespace so that helpers it defines (HumanEval's ``poly``, ``encode_cyclic``) are the
    problem's, not the candidate's."""
    code = prompt.rstrip() + "\n    pass\n"
    try:
        compile(code, "<prompt>", "exec")
    except SyntaxError:
        return ""
    return code


def job_for(completion: str, ref: dict[str, Any], timeout: float | None = None):
    """The sandbox job for a completion and a problem dict (see the module docstring)."""
    from sandbox import Job

    if not isinstance(ref, dict):
        raise ValueError(f"a code reference must be a problem dict, got {type(ref).__name__}")
    if "test" in ref and "entry_point" in ref:  # HumanEval
        prog = extract_program(completion, ref.get("prompt"), ref["entry_point"])
        return prog, Job(prog, (ref["test"] + f"\ncheck({ref['entry_point']})\n",), "assert", ref["entry_point"],
                         timeout=timeout, setup=_trusted_prompt(ref.get("prompt") or ""))
    if "test_list" in ref:  # MBPP
        prog = extract_program(completion)
        return prog, Job(prog, tuple(ref["test_list"]), "assert", timeout=timeout, setup=ref.get("test_setup_code") or "")
    if "inputs" in ref and "outputs" in ref:
        prog = extract_program(completion, ref.get("prompt"), ref.get("entry_point"))
        tests = tuple({"input": list(i), "output": o} for i, o in zip(ref["inputs"], ref["outputs"]))
        return prog, Job(prog, tests, "call", entry_point=ref["entry_point"], timeout=timeout)
    if "stdio" in ref:
        prog = extract_program(completion)
        return prog, Job(prog, tuple(ref["stdio"]), "stdio", timeout=timeout)
    raise ValueError(f"unrecognised code problem with fields {sorted(ref)}: need prompt+test+entry_point (HumanEval), "
                     f"test_list (MBPP), entry_point+inputs+outputs (call-based) or stdio")


_SANDBOXES: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def shared_sandbox(backend: str = "docker", image: str | None = None, workers: int | None = None,
                   timeout: float = 10.0, daemon_wait: float = 60.0) -> Any:
    """One warm pool per (backend, image, workers, timeout, daemon_wait), created on first use and
    closed (containers removed) at interpreter exit."""
    from sandbox import Sandbox

    key = (backend, image, workers, timeout, daemon_wait)
    with _LOCK:
        if key not in _SANDBOXES or _SANDBOXES[key]._closed:
            _SANDBOXES[key] = Sandbox(backend, image=image, workers=workers, timeout=timeout, daemon_wait=daemon_wait)
        return _SANDBOXES[key]


class CodeVerifier:
    def __init__(self, backend: str = "docker", image: str | None = None, workers: int | None = None,
                 timeout: float = 10.0, partial: bool = False, sandbox: Any = None, daemon_wait: float = 60.0):
        self.backend, self.image, self.workers, self.timeout, self.partial = backend, image, workers, timeout, partial
        self.daemon_wait = daemon_wait
        self._sandbox = sandbox

    @property
    def sandbox(self) -> Any:
        if self._sandbox is None:
            self._sandbox = shared_sandbox(self.backend, self.image, self.workers, self.timeout, self.daemon_wait)
        return self._sandbox

    def verify(self, completion: str, reference: dict[str, Any]) -> Verdict:
        return self.verify_batch([completion], [reference])[0]

    def verify_batch(self, completions: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        """One sandbox batch for every completion that gets as far as a job (`_prepare`)."""
        out: list[Verdict | None] = [None] * len(completions)
        jobs, idx, progs = [], [], []
        for i, (c, r) in enumerate(zip(completions, references)):
            got = self._prepare(c, r)
            if isinstance(got, Verdict):
                out[i] = got
                continue
            progs.append(got[0])
            jobs.append(got[1])
            idx.append(i)
        if jobs:
            for i, prog, res in zip(idx, progs, self.sandbox.run_many(jobs)):
                out[i] = self._verdict(res, prog)
        return out  # type: ignore[return-value]

    def _prepare(self, completion: Any, reference: dict[str, Any]) -> Verdict | tuple[str, Any]:
        """The verdict already known without running anything, or (program, sandbox job)."""
        if not isinstance(completion, str):
            return Verdict(Status.ERROR, 0.0, None, {"error": f"completion must be a string, got {type(completion).__name__}"})
        if not completion.strip():
            return Verdict(Status.NO_ANSWER, 0.0, None, {"reason": "empty completion"})
        try:
            return job_for(completion, reference, self.timeout)
        except ValueError as e:
            return Verdict(Status.ERROR, 0.0, None, {"error": str(e)})

    def _verdict(self, res: Any, prog: str) -> Verdict:
        details = {"result": res.status, "tests": [t.status for t in res.tests], "seconds": round(res.seconds, 4)}
        errs = [t.error for t in res.tests if t.error]
        if errs:
            details["first_error"] = errs[0]
        if res.details.get("error"):
            details["error"] = res.details["error"]
        if res.details.get("sandbox_down"):
            details["sandbox_down"] = True
        if res.stderr:
            details["stderr"] = res.stderr[-500:]
        frac = res.fraction
        score = frac if self.partial else float(res.passed)
        short = prog if len(prog) <= 2000 else prog[:2000] + "..."
        if res.passed:
            return Verdict(Status.CORRECT, 1.0, short, details)
        if res.status == "timeout":
            return Verdict(Status.TIMEOUT, score, short, details)
        if res.status == "error" and str(res.details.get("error", "")).startswith(
                ("SandboxError", "SandboxDown", "OSError", "TimeoutError", "ValueError")):
            return Verdict(Status.ERROR, 0.0, short, details)
        return Verdict(Status.WRONG, score, short, details)


def reference_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The problem dict of a JSON line (the completion's own fields removed)."""
    ref = {k: v for k, v in row.items() if k not in ("completion", "status", "score", "extracted", "details")}
    if "test_list" in ref and isinstance(ref["test_list"], str):
        ref["test_list"] = [ref["test_list"]]
    return ref


def cli_verifier(args: Any) -> CodeVerifier:
    return CodeVerifier(backend=args.backend, timeout=args.timeout, partial=args.partial, daemon_wait=args.daemon_wait)


class SandboxDown(RuntimeError):
    """The sandbox stayed unreachable past its ``daemon_wait``: the verdicts it gave are errors, not
    scores, so a training run stops (after saving a checkpoint) instead of learning from them."""


def raise_if_sandbox_down(results: Sequence[Any]) -> None:
    """Raise `SandboxDown` if any result (a Verdict, or a RewardResult with verdicts) says the sandbox was down."""
    verdicts = [v for r in results for v in (r.verdicts.values() if hasattr(r, "verdicts") else (r,))]
    reason = sandbox_down(verdicts)
    if reason:
        raise SandboxDown(reason)


def sandbox_down(verdicts: Sequence[Verdict]) -> str | None:
    """The reason, when any verdict says the sandbox stayed unreachable past its ``daemon_wait``."""
    for v in verdicts:
        if v.details.get("sandbox_down"):
            return str(v.details.get("error", "the sandbox is down"))
    return None
