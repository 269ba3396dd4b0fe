"""Batch verification from the command line.

    python -m verifiers math  [FILE|-] [--workers N] [--timeout S] [--precision P]
    python -m verifiers format [FILE|-] [--mode soft|strict]
    python -m verifiers code  [FILE|-] [--backend docker|bwrap|unsafe-process] [--timeout S] [--daemon-wait S]
    python -m verifiers audit [--area AREA] [-v]   # the project's adversarial cases (verifiers.audit)

Reads JSON lines (``{"completion": ..., "answer": ...}``, other fields kept) and writes
one JSON line per input line, in order, to standard output, adding ``status``,
``score``, ``extracted`` and ``details``. A line that is not valid JSON, or lacks a
field, gets ``"status": "error"`` with the line number in ``details.error``; the other
lines are still verified. A summary of the statuses goes to standard error. ``code`` exits with 3
when the sandbox stayed unreachable past ``--daemon-wait`` (those lines have status ``error``).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from typing import Any, Iterator, TextIO

CHUNK = 512  # lines verified together (in parallel), then written

# What each subcommand reads and writes: shown by ``--help`` (the README's table says the same).
OUTPUT_FIELDS = """output: each input line comes back, in order, with its fields kept and these added:
  status     correct | wrong | no_answer | timeout | error (error: the line or the checker is broken, never a score)
  score      1.0 or 0.0 (code --partial: the share of tests passed)
  extracted  what was read from the completion ({what}), or null
  details    the checker's notes; details.error names the line number when a line is malformed
             (a line that is not a JSON object comes back as {{"line": N, "status": "error", ...}})
a summary of the statuses goes to standard error"""
INPUT_FIELDS = {
    "math": """input: JSON lines, one object each:
  completion  the model's text (string); its final answer is read after the last </think>: the last
              \\boxed{...}, "#### N" or "the answer is ..." (inside <answer>...</answer> when present)
  answer      the reference answer (string or number), compared up to mathematical equivalence""",
    "format": """input: JSON lines, one object each:
  completion  the model's text (string): <think>...</think> then <answer>...</answer>""",
    "code": """input: JSON lines, one object each: completion (the model's text; its last fenced code block, else
the whole text, is the program) and the problem's tests in one of these forms:
  prompt, test, entry_point          HumanEval: check(entry_point) runs the test (a body-only completion
                                     gets the prompt's signature)
  test_list [, test_setup_code]      MBPP: a list of assert statements
  entry_point, inputs, outputs       call-based: entry_point(*inputs[i]) must equal outputs[i]
  stdio                              [{"input": str, "output": str}, ...]: stdin to stdout""",
}
EXTRACTED = {"math": "the final answer", "format": "the answer tag's text", "code": "the program"}
EXIT_CODES = {"math": "exit status: 0 (malformed lines are reported per line, not by the exit status)",
              "format": "exit status: 0 (malformed lines are reported per line, not by the exit status)",
              "code": "exit status: 0; 2 when the sandbox cannot start; 3 when it stayed unreachable past "
                      "--daemon-wait (those lines have status error)"}


def epilog(kind: str) -> str:
    """The --help text after the options: input fields, output fields and exit status of ``kind``."""
    return "\n\n".join([INPUT_FIELDS[kind], OUTPUT_FIELDS.format(what=EXTRACTED[kind]), EXIT_CODES[kind]])


def _read(stream: TextIO) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, None, f"line {lineno}: invalid JSON ({e.msg} at column {e.colno})"
            continue
        if not isinstance(obj, dict):
            yield lineno, None, f"line {lineno}: expected a JSON object, got {type(obj).__name__}"
            continue
        yield lineno, obj, None


def _verify_chunk(kind: str, verifier: Any, chunk: list, required: tuple[str, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any] | None] = [None] * len(chunk)
    todo = []
    for i, (lineno, obj, err) in enumerate(chunk):
        if err is None:
            missing = [k for k in required if k not in obj]
            bad_type = [k for k in required if k in obj and not isinstance(obj[k], (str, int, float))]
            if missing:
                err = f"line {lineno}: missing field(s) {missing}; each line needs {list(required)}"
            elif bad_type:
                err = f"line {lineno}: field(s) {bad_type} must be strings"
        if err is not None:
            base = obj if isinstance(obj, dict) else {"line": lineno}
            out[i] = {**base, "status": "error", "score": 0.0, "extracted": None, "details": {"error": err}}
            print(f"warning: {err}", file=sys.stderr)
        else:
            todo.append(i)
    if todo:
        completions = [str(chunk[i][1]["completion"]) for i in todo]
        if kind == "math":
            verdicts = verifier.verify_batch(completions, [str(chunk[i][1]["answer"]) for i in todo])
        elif kind == "code":
            from verifiers.code import reference_from_row

            verdicts = verifier.verify_batch(completions, [reference_from_row(chunk[i][1]) for i in todo])
        else:
            verdicts = verifier.verify_batch(completions)
        for i, v in zip(todo, verdicts):
            out[i] = {**chunk[i][1], **v.to_dict()}
    return out  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["audit"]:
        from verifiers.audit import main as audit_main

        return audit_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m verifiers", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True, metavar="{math,format,code,audit}")
    raw = argparse.RawDescriptionHelpFormatter
    pm = sub.add_parser("math", help="final-answer equivalence; lines need 'completion' and 'answer'",
                        epilog=epilog("math"), formatter_class=raw)
    pm.add_argument("file", nargs="?", default="-", help="JSON lines file, or - for standard input (default)")
    pm.add_argument("--workers", type=int, default=None, help="worker processes for sympy checks (default: CPU count)")
    pm.add_argument("--timeout", type=float, default=5.0, help="hard limit in seconds per check (default 5)")
    pm.add_argument("--precision", type=int, default=None, help="a tolerance: numbers may differ by a relative 10^-P "
                    "of the larger magnitude (default: none, numbers are compared exactly)")
    pf = sub.add_parser("format", help="<think>...</think><answer>...</answer> structure; lines need 'completion'",
                        epilog=epilog("format"), formatter_class=raw)
    pf.add_argument("file", nargs="?", default="-", help="JSON lines file, or - for standard input (default)")
    pf.add_argument("--mode", choices=("soft", "strict"), default="soft",
                    help="strict: nothing outside the two tags; soft (default): text around them is allowed")
    pc = sub.add_parser("code", help="run programs against tests in the sandbox; lines need 'completion' and the "
                                     "problem's fields (prompt, test, entry_point for HumanEval)",
                        epilog=epilog("code"), formatter_class=raw)
    pc.add_argument("file", nargs="?", default="-", help="JSON lines file, or - for standard input (default)")
    pc.add_argument("--backend", default="docker", choices=("docker", "bwrap", "unsafe-process"),
                    help="sandbox backend (default docker; image from $RLVR_SANDBOX_IMAGE)")
    pc.add_argument("--timeout", type=float, default=10.0, help="wall-clock limit per program in seconds")
    pc.add_argument("--partial", action="store_true", help="score the fraction of tests passed")
    pc.add_argument("--daemon-wait", type=float, default=60.0, help="seconds to wait for an unreachable Docker daemon "
                    "before the lines left get status error (default 60)")
    sub.add_parser("audit", help="the project's adversarial cases against every verifier (python -m verifiers audit "
                                 "--help)")  # listed for --help; run by verifiers.audit.main above
    args = parser.parse_args(argv)

    if args.kind == "math":
        from verifiers.math import MathVerifier

        try:
            verifier: Any = MathVerifier(timeout=args.timeout, workers=args.workers, precision=args.precision)
        except ValueError as e:
            parser.error(str(e))
        required: tuple[str, ...] = ("completion", "answer")
    elif args.kind == "format":
        from verifiers.format import FormatVerifier

        verifier, required = FormatVerifier(args.mode), ("completion",)
    else:
        from sandbox import SandboxUnavailable
        from verifiers.code import cli_verifier

        verifier, required = cli_verifier(args), ("completion",)
        try:
            verifier.sandbox  # start the pool now: a missing daemon is one clear error, not one per line
        except SandboxUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    except OSError as e:
        from envs.core import where

        parser.error(f"cannot read {where(args.file)}: {e.strerror}")
    counts: collections.Counter[str] = collections.Counter()
    chunk: list = []
    down_rows: list = []  # [count, reason] once the sandbox stayed down past --daemon-wait

    def flush() -> None:
        for row in _verify_chunk(args.kind, verifier, chunk, required):
            counts[row["status"]] += 1
            if (row.get("details") or {}).get("sandbox_down"):
                down_rows[:] = [(down_rows[0] if down_rows else 0) + 1, row["details"].get("error")]
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        chunk.clear()

    with stream:
        for item in _read(stream):
            chunk.append(item)
            if len(chunk) >= CHUNK:
                flush()
        if chunk:
            flush()
    print("verified " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), file=sys.stderr)
    if down_rows:
        print(f"error: {down_rows[0]} lines got status error because the sandbox was down ({down_rows[1]}); rerun them "
              f"once the Docker daemon is back", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
