"""``python -m verifiers audit``: the project's own adversarial cases, run against every verifier.

Each case is a completion that a verifier must score a given way: a *hole* is a wrong answer
(a reward hack) that must not be scored correct nor earn any reward; a *false rejection* is a
right answer that must be scored correct. The cases live in ``verifiers/audit_cases/<area>.py``,
one module per area, each exposing

    CASES: list[Case]
    def score(cases: list[Case]) -> list[Verdict]     # the area's real scoring path, batched

The audit prints, per environment, how many cases ran, the holes still open (a wrong answer
scored correct or paid a positive reward), the false rejections (a right answer not scored
correct) and the crashes (an exception out of the scorer), and exits 1 when any is found.
``tests/test_audit.py`` runs the same cases in the test suite.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import importlib.util
import pkgutil
import sys
import time
from typing import Any, Sequence

from verifiers.verdict import Status, Verdict

HOLE, RIGHT = "hole", "right"  # a case's kind: a wrong answer that must not pay / a right one that must


@dataclasses.dataclass(frozen=True)
class Case:
    """One adversarial case.

    ``env``: the environment (row of the report); ``cls``: the class of hole it belongs to (the
    issue's wording, e.g. "relations and hedges"); ``name``: this instance; ``kind``: ``HOLE``
    (must score not correct and reward 0) or ``RIGHT`` (must score correct); ``completion``: the
    model's text; ``reference``: whatever the area's ``score`` needs (gold answer, task, tests);
    ``needs``: what must be present to run it (``"docker"``, ``"reasoning_gym"``), else skipped
    and reported as such.
    """

    env: str
    cls: str
    name: str
    kind: str
    completion: Any
    reference: Any = None
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in (HOLE, RIGHT):
            raise ValueError(f"Case {self.name!r}: kind must be {HOLE!r} or {RIGHT!r}, got {self.kind!r}")


def areas() -> list[str]:
    import verifiers.audit_cases as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def load(area: str) -> Any:
    return importlib.import_module(f"verifiers.audit_cases.{area}")


def outcome(case: Case, verdict: Verdict | BaseException) -> str:
    """``ok``, ``hole`` (a wrong answer paid), ``false_rejection`` or ``crash``."""
    if isinstance(verdict, BaseException):
        return "crash"
    if case.kind == HOLE:
        return "hole" if (verdict.status is Status.CORRECT or verdict.score > 0) else "ok"
    return "ok" if verdict.status is Status.CORRECT else "false_rejection"


def _available(need: str) -> bool:
    if need == "docker":
        try:
            import docker

            docker.from_env(timeout=5).ping()
            return True
        except Exception:  # noqa: BLE001 - any failure means: no daemon to run on; reported as skipped
            return False
    return importlib.util.find_spec(need) is not None


def run_area(area: str, cases: Sequence[Case] | None = None) -> list[tuple[Case, Verdict | BaseException | None]]:
    """Score ``area``'s cases (all by default); a case whose ``needs`` are missing gets ``None``."""
    mod = load(area)
    cases = list(mod.CASES if cases is None else cases)
    have = {n: _available(n) for n in {n for c in cases for n in c.needs}}
    runnable = [c for c in cases if all(have[n] for n in c.needs)]
    results: dict[int, Verdict | BaseException | None] = {id(c): None for c in cases}
    if runnable:
        try:
            verdicts = mod.score(runnable)
        except Exception as e:  # noqa: BLE001 - a scorer that raises on a batch: score one by one to name the case
            verdicts = []
            for c in runnable:
                try:
                    verdicts.append(mod.score([c])[0])
                except Exception as e1:  # noqa: BLE001 - reported as a crash of this case
                    verdicts.append(e1)
            del e
        for c, v in zip(runnable, verdicts):
            results[id(c)] = v
    return [(c, results[id(c)]) for c in cases]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m verifiers audit",
                                description="Run the project's adversarial cases against every verifier.")
    p.add_argument("--area", action="append", choices=areas(), help="only these areas (repeatable; default all)")
    p.add_argument("-v", "--verbose", action="store_true", help="list every case that failed, with its verdict")
    args = p.parse_args(argv)
    rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures = []
    t0 = time.perf_counter()
    for area in args.area or areas():
        for case, v in run_area(area):
            row = rows[case.env]
            row["cases"] += 1
            row["holes_tested" if case.kind == HOLE else "rights_tested"] += 1
            if v is None:
                row["skipped"] += 1
                continue
            o = outcome(case, v)
            row[o] += 1
            if o != "ok":
                failures.append((case, o, v))
    print(f"{'env':<14} {'cases':>5} {'holes':>11} {'false rej.':>11} {'crashes':>7} {'skipped':>7}")
    for env in sorted(rows):
        r = rows[env]
        print(f"{env:<14} {r['cases']:>5} {r['hole']:>4} of {r['holes_tested']:>4} {r['false_rejection']:>4} of "
              f"{r['rights_tested']:>4} {r['crash']:>7} {r['skipped']:>7}")
    tot = sum(rows.values(), collections.Counter())
    print(f"{'all':<14} {tot['cases']:>5} {tot['hole']:>4} of {tot['holes_tested']:>4} {tot['false_rejection']:>4} of "
          f"{tot['rights_tested']:>4} {tot['crash']:>7} {tot['skipped']:>7}   ({time.perf_counter() - t0:.1f} s)")
    for case, o, v in failures if args.verbose or len(failures) <= 30 else failures[:30]:
        got = repr(v) if isinstance(v, BaseException) else f"{v.status} score={v.score:g} extracted={v.extracted!r}"
        print(f"  {o}: [{case.env}/{case.cls}] {case.name}: {got}")
    if tot["skipped"]:
        print(f"note: {tot['skipped']} cases skipped (missing: docker daemon or an optional package); "
              f"a skipped case is not a passed one", file=sys.stderr)
    return 1 if failures else 0
