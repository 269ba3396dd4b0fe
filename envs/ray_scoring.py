"""Rewards off the trainer: an environment's ``score_batch`` spread over Ray actors.

    python -m algos.grpo env=humaneval reward_workers=ray                        # a local Ray instance
    python -m algos.grpo env=humaneval reward_workers=ray ray_address=auto       # the cluster this node joined
    pip install 'rlvr-gym[ray]'

Each actor builds the same environment (name and options) and scores chunks of the batch with
it: math in its own verifier processes, code in its own local Docker pool (one per actor, on the
actor's node). Verdicts are the local path's, computed by the same code.

* The batch is cut into chunks (``chunk_size``), handed to the actors as they free up.
* A chunk whose scorer raises gets ``error`` verdicts naming the exception (not re-run: it would raise
  again), never a crash of the trainer.
* Every chunk has a deadline (``timeout``); an actor that dies or misses it is replaced and its
  chunk handed out again, at most ``retries`` times; after that the items get ``error`` verdicts
  that say why (never a silent 0), with every reward part of the environment (``format`` too) so they
  are logged like any other result; a trainer keeps their groups out of the loss (GRPO: see
  ``algos.grpo._groups``). A chunk's result is taken once: nothing is lost or counted twice.
* ``score_batch`` is thread-safe: concurrent calls take turns (an off-policy prefetch scores while
  the trainer does).
* Every ``ray.get``/``ray.wait`` has a timeout, so a lost cluster is an error, not a hang.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Sequence

from envs.core import EnvError


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("reward_workers=ray needs Ray: pip install 'rlvr-gym[ray]' (or pip install ray)") from e
    return ray


class RayScorer:
    def __init__(self, env: str, env_kwargs: dict[str, Any] | None = None, actors: int = 2, address: str | None = None,
                 chunk_size: int = 16, timeout: float = 600.0, retries: int = 2, num_cpus: int | None = None,
                 start_timeout: float = 300.0):
        ray = self.ray = _import_ray()
        if not ray.is_initialized():
            init: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True, "log_to_driver": False}
            if address:
                init["address"] = address
            elif num_cpus:
                init["num_cpus"] = num_cpus
            ray.init(**init)
        self.env, self.env_kwargs = env, dict(env_kwargs or {})
        self.n_actors, self.chunk_size, self.timeout, self.retries = actors, chunk_size, timeout, retries
        self.replaced = 0  # actors replaced after dying or missing a deadline
        self.resubmitted = 0  # chunks handed out again
        # SPREAD: actors go to different nodes first, so ray_actors = the number of nodes gives one Docker pool per node
        self._worker_cls = ray.remote(num_cpus=0.5, max_restarts=0, scheduling_strategy="SPREAD")(_ScoreWorker)
        self.actors = [self._spawn() for _ in range(actors)]
        # built (env made) or an error now; each answers with its rubric's part names (`_errors` gives every one)
        # (starting an actor imports the environment: its own limit, not a chunk's scoring deadline)
        try:
            self.parts: list[str] = ray.get([a.ready.remote() for a in self.actors], timeout=max(timeout, start_timeout))[0]
        except ray.exceptions.GetTimeoutError:
            raise EnvError(f"the {actors} Ray scoring actors of env={env} did not start in "
                               f"{max(timeout, start_timeout):.0f}s (are there free CPUs in the cluster?)") from None
        self._lock = threading.Lock()  # one batch at a time: the actors, free list and counters are shared

    def _spawn(self) -> Any:
        return self._worker_cls.remote(self.env, self.env_kwargs)

    def score_batch(self, completions: Sequence[str], tasks: Sequence[Any]) -> list[Any]:
        """The environment's score_batch, over the actors; the same results in the same order. Thread-safe:
        concurrent calls (an off-policy prefetch and the trainer) take turns."""
        with self._lock:
            return self._score_batch(completions, tasks)

    def _score_batch(self, completions: Sequence[str], tasks: Sequence[Any]) -> list[Any]:
        ray = self.ray
        n = len(completions)
        if n != len(tasks):
            raise EnvError(f"got {n} completions for {len(tasks)} tasks")
        chunks = [(lo, min(n, lo + self.chunk_size)) for lo in range(0, n, self.chunk_size)]
        results: list[Any] = [None] * len(chunks)
        tries = [0] * len(chunks)
        todo = list(range(len(chunks)))
        free = list(range(len(self.actors)))
        running: dict[Any, tuple[int, int, float]] = {}  # ref -> (chunk, actor, deadline)
        while todo or running:
            while todo and free:
                c, a = todo.pop(0), free.pop(0)
                lo, hi = chunks[c]
                ref = self.actors[a].score.remote(list(completions[lo:hi]), list(tasks[lo:hi]))
                running[ref] = (c, a, time.monotonic() + self.timeout)
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            now = time.monotonic()
            for ref in list(running):
                c, a, deadline = running[ref]
                if ref not in done and now < deadline:
                    continue
                del running[ref]
                try:
                    if ref not in done:
                        raise TimeoutError(f"no answer in {self.timeout:.0f}s")
                    results[c] = ray.get(ref, timeout=self.timeout)
                    free.append(a)
                except ray.exceptions.RayTaskError as e:  # the scorer itself raised: running it again would too
                    free.append(a)
                    cause = getattr(e, "cause", None) or e
                    results[c] = self._errors(chunks[c], f"the environment's scorer raised {type(cause).__name__}: "
                                                         f"{str(cause).strip().splitlines()[-1][:300] if str(cause).strip() else ''}")
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, TimeoutError,
                        ray.exceptions.GetTimeoutError) as e:
                    self._replace(a)
                    free.append(a)
                    tries[c] += 1
                    if tries[c] > self.retries:
                        results[c] = self._errors(chunks[c], f"reward worker failed {tries[c]} times: {type(e).__name__}: {e}")
                    else:
                        self.resubmitted += 1
                        todo.insert(0, c)
        return [r for chunk in results for r in chunk]

    def _replace(self, a: int) -> None:
        try:
            self.ray.kill(self.actors[a], no_restart=True)
        except Exception:  # noqa: BLE001 - it may be dead already; a new one replaces it either way
            pass
        self.actors[a] = self._spawn()
        self.replaced += 1

    def _errors(self, chunk: tuple[int, int], why: str) -> list[Any]:
        from verifiers.rewards import RewardResult
        from verifiers.verdict import Status, Verdict

        v = Verdict(Status.ERROR, 0.0, None, {"error": why})
        parts = self.parts or ["correct"]  # every part the environment's own results carry (format too)
        return [RewardResult(0.0, {p: 0.0 for p in parts}, {parts[0]: v}) for _ in range(chunk[1] - chunk[0])]

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - closing: an actor already gone is fine
                pass
        self.actors = []


class _ScoreWorker:
    """One Ray actor: the environment, built once, scoring chunks with its own verifier and sandbox pools."""

    def __init__(self, env: str, env_kwargs: dict[str, Any]):
        import envs

        self.env = envs.make(env, **env_kwargs).unwrapped

    def ready(self) -> list[str]:
        """Built; the names of the environment's reward parts."""
        rubric = getattr(self.env, "rubric", None)
        return [p.name for p in rubric.parts] if rubric is not None else []

    def pid(self) -> int:
        import os

        return os.getpid()

    def score(self, completions: list[str], tasks: list[Any]) -> list[Any]:
        return self.env.score_batch(completions, tasks)
