"""Signal where there is none: which of a step's groups reach GRPO's loss.

A group whose G completions all get the same reward has advantage 0 and teaches nothing; with a
real model most groups are all right or all wrong. Two tools, both per environment of a mixture:

* **dynamic sampling** (DAPO, Yu et al. 2025; ``dynamic_sampling=true``): groups whose rewards are
  all equal are dropped and more tasks are drawn to refill the batch. Each environment refills its
  own share: the step keeps at most as many groups of an environment as that environment had tasks in
  the step's draw (`take`), so an easy environment's empty groups are replaced by its own tasks, not
  by another environment's.
* **the online difficulty filter** (``difficulty_filter=true``; as the online filtering of Kimi k1.5
  and PRIME, Cui et al. 2025): the share of correct completions of each task's group (the
  correctness verdict, not the reward) is measured on the fly; a group solved always (1) or never
  (0) is dropped from the update, and its task is skipped when the data stream brings it again, until
  ``filter_recheck`` steps have passed: then it is sampled and measured again (`DifficultyFilter`).
  Only sources that repeat tasks (datasets, epochs) bring a task again; a procedural source never
  does, and there the filter only drops the groups.

Each kept group's cost is logged (``rollout/samples_per_kept_group``: completions sampled in the
step, refills included, over the groups kept). Left out: accuracy bands other than (0, 1) (PRIME
keeps 0.2-0.8), and filtering before any sampling by a predicted difficulty.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, Sequence

from algos.mixture import env_label


def key_of(task: Any) -> str:
    """A task's identity across epochs: its environment (in a mixture) and its id."""
    return f"{env_label(task) or ''}|{task.id}"


def solve_rate(results: Sequence[Any]) -> float:
    """The share of a group's completions judged correct (their correctness verdict)."""
    return sum(r.status is not None and r.status.value == "correct" for r in results) / max(len(results), 1)


class DifficultyFilter:
    """Tasks last measured as solved always or never, with the step they were measured at: `skip` is true
    for ``recheck`` steps after that, then the task is measured again. The table is the same on every
    rank (`observe` takes every rank's records) and goes into the checkpoint (`state`)."""

    def __init__(self, recheck: int, state: dict[str, Any] | None = None):
        self.recheck = recheck
        self.marked: dict[str, tuple[float, int]] = {k: (float(r), int(s)) for k, (r, s) in (state or {}).items()}

    def skip(self, task: Any, step: int) -> bool:
        m = self.marked.get(key_of(task))
        return m is not None and step - m[1] < self.recheck

    def observe(self, records: Iterable[tuple[str, float]], step: int) -> None:
        """Record (task key, solve rate) measured at ``step``: 0 or 1 marks the task, anything between clears it."""
        for k, rate in records:
            if rate <= 0.0 or rate >= 1.0:
                self.marked[k] = (rate, step)
            else:
                self.marked.pop(k, None)
        self.marked = {k: v for k, v in self.marked.items() if step - v[1] < self.recheck}  # due for a re-check: forgotten

    def state(self) -> dict[str, Any]:
        return {k: [r, s] for k, (r, s) in self.marked.items()}

    @staticmethod
    def informative(rate: float) -> bool:
        return 0.0 < rate < 1.0


def quotas(tasks: Sequence[Any]) -> collections.Counter:
    """Groups each environment may keep in a step: as many as it had tasks in the step's draw."""
    return collections.Counter(env_label(t) for t in tasks)


def take(kept: list[tuple[Any, Any]], new: Iterable[tuple[Any, Any]], quota: collections.Counter) -> list[tuple[Any, Any]]:
    """``kept`` plus the (group, task) pairs of ``new`` whose environment is still short of its quota, in order."""
    have = collections.Counter(env_label(t) for _, t in kept)
    out = list(kept)
    for g, t in new:
        e = env_label(t)
        if have[e] < quota[e]:
            out.append((g, t))
            have[e] += 1
    return out


def short(kept: Sequence[tuple[Any, Any]], quota: collections.Counter) -> bool:
    have = collections.Counter(env_label(t) for _, t in kept)
    return any(have[e] < q for e, q in quota.items())
