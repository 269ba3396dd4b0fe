"""A pool of worker processes whose jobs have a hard wall-clock limit.

Python cannot interrupt a thread stuck inside sympy (math-verify's own signal-based
timeout misses some inputs: its issue #65 runs for minutes). So each check runs in a
worker process; a job that overruns its limit is answered ``timeout``, the worker is
killed (SIGKILL) and a fresh one is started in the background. A worker that dies is
answered ``error``.

Workers are plain ``python -m verifiers._worker`` subprocesses talking over two pipes
(pickled frames via `multiprocessing.connection.Connection`): no fork of the caller
(safe next to torch's threads) and no re-import of the caller's ``__main__``. A job's
clock starts only once its worker has imported the job's module and said it is ready.
"""

from __future__ import annotations

import atexit
import collections
import importlib
import os
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

Outcome = tuple[str, Any]  # ("ok", value) | ("error", message) | ("timeout", seconds)


def _resolve(ref: str) -> Callable[..., Any]:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


class _Worker:
    def __init__(self, fn_ref: str):
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "verifiers._worker", fn_ref, str(p2c_r), str(c2p_w)],
            pass_fds=(p2c_r, c2p_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        os.close(p2c_r)
        os.close(c2p_w)
        self.tx = Connection(p2c_w, readable=False)
        self.rx = Connection(c2p_r, writable=False)
        self.ready = False

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.tx.close()
        self.rx.close()


class HardTimeoutPool:
    """Run ``fn(*args)`` for many argument tuples in worker processes, each under a hard limit.

    ``fn_ref`` is ``"module:function"``, imported once per worker.
    """

    def __init__(self, fn_ref: str, workers: int | None = None, timeout: float = 5.0):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.fn_ref = fn_ref
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = float(timeout)
        self._pool: list[_Worker] = []
        self._lock = threading.Lock()
        self.n_killed = 0
        atexit.register(self.close)

    def start(self) -> None:
        """Start the workers now (otherwise the first `map` does)."""
        with self._lock:
            while len(self._pool) < self.workers:
                self._pool.append(_Worker(self.fn_ref))

    def map(self, jobs: list[tuple], timeout: float | None = None) -> list[Outcome]:
        """Run every job; results come back in order. Never raises for a job's failure."""
        limit = self.timeout if timeout is None else float(timeout)
        results: list[Outcome | None] = [None] * len(jobs)
        if not jobs:
            return []
        self.start()
        with self._lock:
            pending = collections.deque(enumerate(jobs))
            busy: dict[_Worker, tuple[int, float]] = {}
            while pending or busy:
                for w in self._pool:
                    if pending and w.ready and w not in busy:
                        idx, args = pending.popleft()
                        try:
                            w.tx.send((idx, args))
                        except OSError:
                            pending.appendleft((idx, args))
                            self._replace(w)
                            continue
                        busy[w] = (idx, time.monotonic() + limit)
                now = time.monotonic()
                deadlines = [d for _, d in busy.values()]
                wait_for = max(0.0, min(deadlines) - now) if deadlines else None
                by_conn = {w.rx: w for w in self._pool if w in busy or not w.ready}
                for conn in wait(list(by_conn), timeout=wait_for):
                    w = by_conn[conn]
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        code = w.proc.poll()
                        if w in busy:
                            idx, _ = busy.pop(w)
                            results[idx] = ("error", f"verifier worker died (exit code {code})")
                        elif not w.ready and code not in (None, 0):
                            raise RuntimeError(f"verifier worker for {self.fn_ref} failed to start (exit code {code}); "
                                               f"run `{sys.executable} -m verifiers._worker {self.fn_ref}` to see why")
                        self._replace(w)
                        continue
                    if msg == "ready":
                        w.ready = True
                        continue
                    job_id, out = msg
                    results[job_id] = out
                    busy.pop(w, None)
                now = time.monotonic()
                for w, (idx, deadline) in list(busy.items()):
                    if now >= deadline:
                        results[idx] = ("timeout", limit)
                        del busy[w]
                        self.n_killed += 1
                        self._replace(w)
        return results  # type: ignore[return-value]

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._pool[self._pool.index(w)] = _Worker(self.fn_ref)

    def close(self) -> None:
        for w in self._pool:
            try:
                w.tx.send(None)
            except OSError:
                pass
        for w in self._pool:
            try:
                w.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        self._pool = []
