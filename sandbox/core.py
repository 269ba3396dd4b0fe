"""Host side of the sandbox: the warm worker pool (`Sandbox`).

A worker is one long-lived runner (`sandbox/runner.py`) behind a byte stream: a Docker
container's attached stdin/stdout (backend ``docker``), a bubblewrap process (``bwrap``) or a
plain subprocess (``unsafe-process``). Jobs go to idle workers; a worker is replaced after
``max_jobs_per_worker`` jobs, and at once after a timeout, an out-of-memory kill, a leftover
process or any protocol error.

The pieces: `sandbox.jobs` (Job, Result, errors), `sandbox.workers` (the runner's transports:
subprocess, bubblewrap, Docker container), `sandbox.containers` (labels, exit hooks, prune),
`sandbox.outputs` (stdio checkers); this module is the pool, and re-exports those names.
"""

from __future__ import annotations

import os
import queue
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from sandbox.containers import LABEL, _POOLS, _install_exit_hooks, list_ours, owner_alive, owner_label, prune  # noqa: F401
from sandbox.jobs import BACKEND_KEYS, IMAGE_KEYS, Job, Result, SandboxError, SandboxUnavailable, Style, TestResult  # noqa: F401
from sandbox.outputs import _lines, _shown, output_matches  # noqa: F401
from sandbox.workers import RUNNER_PATH, DockerWorker, ProcessWorker  # noqa: F401

PUBLIC_IMAGE = "python:3.12-slim"
BUILT_IMAGE = "rlvr-sandbox:latest"  # what `python -m sandbox image build` makes
DEFAULT_IMAGE = os.environ.get("RLVR_SANDBOX_IMAGE", PUBLIC_IMAGE)


class _Down(SandboxError):
    """The Docker daemon stayed unreachable past ``daemon_wait``: every job left gets an error verdict."""


# ----------------------------------------------------------------------------- the pool


class Sandbox:
    """A warm pool of sandboxed runners.

    Args:
        backend: ``docker`` (default), ``bwrap``, or ``unsafe-process`` (no isolation at all;
            only when asked for by name).
        image: Docker image with python3. Default: $RLVR_SANDBOX_IMAGE, else ``python:3.12-slim`` if
            present (or pullable), else ``rlvr-sandbox:latest`` (what ``python -m sandbox image build`` makes).
        workers: runners kept warm (default: CPU count).
        timeout: wall-clock seconds per program run (per test case for stdio).
        memory_mb: memory limit per container (memory + swap) and per job (address space).
        max_jobs_per_worker: replace a runner after this many jobs.
        max_output: bytes of stdout/stderr kept per job; more kills the job.
        daemon_wait: seconds to wait for an unreachable Docker daemon to come back before the jobs
            left get ``error`` verdicts (a message is printed while waiting).
        max_reruns: times a job is run again after its runner died under it (a killed container, a
            daemon restart) before it gets an ``error`` verdict.

    Lifecycle: every container is labelled (``rlvr-gym.sandbox`` with pool id, owner host, pid and
    start time) and removed by ``close()``, at interpreter exit and on SIGTERM; a new pool removes
    labelled containers whose owner process is gone (a ``kill -9``). Faults: a job whose runner dies
    is run again on a fresh one (its half-run never gives a verdict; a run that completed is never
    repeated); while the daemon is unreachable the pool waits up to ``daemon_wait``, then replaces
    its containers, or gives every job left status ``error`` with the reason.
    """

    def __init__(self, backend: str = "docker", image: str | None = None, workers: int | None = None,
                 timeout: float = 10.0, memory_mb: int = 512, cpus: float = 1.0, pids: int = 64, tmpfs_mb: int = 64,
                 max_jobs_per_worker: int = 500, max_output: int = 1 << 20, daemon_wait: float = 60.0,
                 max_reruns: int = 2):
        if backend not in ("docker", "bwrap", "unsafe-process"):
            raise ValueError(f"backend must be 'docker', 'bwrap' or 'unsafe-process', got {backend!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if daemon_wait < 0:
            raise ValueError(f"daemon_wait must be >= 0 seconds, got {daemon_wait!r}")
        self.backend = backend
        self.image = image or os.environ.get("RLVR_SANDBOX_IMAGE") or None
        self.n_workers = workers or os.cpu_count() or 1
        self.timeout, self.memory_mb, self.cpus, self.pids, self.tmpfs_mb = timeout, memory_mb, cpus, pids, tmpfs_mb
        self.max_jobs, self.max_output = max_jobs_per_worker, max_output
        self.daemon_wait, self.max_reruns = float(daemon_wait), int(max_reruns)
        self.replaced = 0
        self.reruns = 0
        self.pool_id = secrets.token_hex(6)
        self.labels = {LABEL: "1", LABEL + ".pool": self.pool_id, LABEL + ".owner": owner_label()}
        self._down: str | None = None
        self._recover_lock = threading.Lock()
        self._lock = threading.Lock()
        self._all: list = []
        self._closed = False
        self._client = self._docker_client() if backend == "docker" else None
        if self._client is not None:
            prune(self._client, orphans_only=True)  # containers of processes that were killed (kill -9, OOM)
        _POOLS.add(self)
        _install_exit_hooks()
        self._idle: queue.Queue = queue.Queue()
        with ThreadPoolExecutor(self.n_workers) as ex:
            started = list(ex.map(lambda _: self._try_start(), range(self.n_workers)))
        errors = [w for w in started if isinstance(w, BaseException)]
        if errors:
            self.close()
            raise errors[0]
        for w in started:
            self._idle.put([w, 0])

    # -------------------------------------------------------------- workers
    def _docker_client(self) -> Any:
        try:
            import docker
        except ImportError as e:
            raise SandboxUnavailable(f"the docker backend needs the docker SDK: pip install 'rlvr-gym[code]' (or choose "
                                     f"another backend with {BACKEND_KEYS})") from e
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        try:
            client = docker.from_env(timeout=30)
            client.ping()
        except Exception as e:  # noqa: BLE001 - any failure here means: no reachable daemon
            raise SandboxUnavailable(
                f"no Docker daemon reachable at {host} ({type(e).__name__}). Start one (`sudo systemctl start docker`, "
                f"or `sudo dockerd &`), point DOCKER_HOST at one, or choose another backend, bwrap (namespaces, no "
                f"network) or unsafe-process (no isolation), with {BACKEND_KEYS} (e.g. env.backend=bwrap)") from None
        self.image = self._resolve_image(client)
        return client

    def _resolve_image(self, client: Any) -> str:
        """The image asked for; or, by default, python:3.12-slim if here, else our built one, else a pull."""
        def present(name: str) -> bool:
            try:
                client.images.get(name)
                return True
            except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound and friends
                return False

        wanted = self.image or PUBLIC_IMAGE
        if present(wanted):
            return wanted
        if self.image is None and present(BUILT_IMAGE):
            return BUILT_IMAGE  # `python -m sandbox image build` made it: no setting needed
        try:
            client.images.pull(wanted)
            return wanted
        except Exception as e:  # noqa: BLE001
            raise SandboxUnavailable(
                f"Docker image {wanted!r} is not present and cannot be pulled ({type(e).__name__}). Build one without "
                f"a registry: `python -m sandbox image build` (makes {BUILT_IMAGE}, used by default when "
                f"{PUBLIC_IMAGE} is missing), or name one with RLVR_SANDBOX_IMAGE or {IMAGE_KEYS}") from None

    def _start_worker(self) -> Any:
        if self.backend == "docker":
            w = DockerWorker(self._client, self.image, self.memory_mb, self.cpus, self.pids, self.tmpfs_mb, self.labels)
        else:
            w = ProcessWorker(self.backend, self.memory_mb)
        try:
            hello = w.recv(timeout=60)
        except Exception as e:
            w.close()
            raise SandboxError(f"the {self.backend} runner did not start: {e}") from e
        if not hello.get("ready"):
            w.close()
            raise SandboxError(f"unexpected greeting from the runner: {hello}")
        w.info = hello
        with self._lock:
            if self._closed:
                threading.Thread(target=w.close, daemon=True).start()
                raise SandboxError("the sandbox pool is closed")
            self._all.append(w)
        return w

    def _try_start(self) -> Any:
        try:
            return self._start_worker()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller, which raises it
            return e

    def _daemon_up(self) -> bool:
        try:
            self._client.ping()
            return True
        except Exception:  # noqa: BLE001 - requests' ConnectionError, docker's APIError, a missing socket
            return False

    def _start_recovering(self) -> Any:
        """A fresh worker. While the Docker daemon is unreachable, or answers but cannot start a
        container (it is shutting down or starting up), retry for up to ``daemon_wait``."""
        deadline = None
        while True:
            if self._down:
                raise _Down(self._down)
            try:
                return self._start_worker()
            except SandboxUnavailable:
                raise
            except Exception as e:  # noqa: BLE001 - a start that failed: the daemon may be gone
                if self.backend != "docker":
                    raise SandboxError(f"the {self.backend} runner could not be started: {e}") from e
                last = f"{type(e).__name__}: {str(e)[:200]}"
            if not self._daemon_up():
                self._wait_for_daemon()
                continue
            deadline = deadline or time.monotonic() + self.daemon_wait
            if time.monotonic() > deadline:
                self._down = f"no sandbox container could be started for {self.daemon_wait:.0f} s ({last})"
                raise _Down(self._down)
            time.sleep(0.5)

    def _wait_for_daemon(self) -> None:
        """One thread waits (and prints); the others wait for it. Sets ``_down`` when the bound passes."""
        with self._recover_lock:
            if self._down or self._daemon_up():
                return
            host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            t0 = time.monotonic()
            print(f"sandbox: the Docker daemon at {host} is unreachable; waiting up to {self.daemon_wait:.0f} s for it "
                  f"(daemon_wait)", file=sys.stderr, flush=True)
            next_note = t0 + 10
            while time.monotonic() - t0 < self.daemon_wait:
                time.sleep(0.5)
                if self._daemon_up():
                    print(f"sandbox: the Docker daemon is back after {time.monotonic() - t0:.1f} s; replacing containers",
                          file=sys.stderr, flush=True)
                    self._remove_stale()
                    return
                if time.monotonic() >= next_note:
                    next_note += 10
                    print(f"sandbox: still waiting for the Docker daemon ({time.monotonic() - t0:.0f} s of "
                          f"{self.daemon_wait:.0f})", file=sys.stderr, flush=True)
            self._down = (f"the Docker daemon at {host} was unreachable for {self.daemon_wait:.0f} s (daemon_wait): "
                          f"the job was not run")
            print(f"sandbox: {self._down}; every job left gets status error", file=sys.stderr, flush=True)

    def _remove_stale(self) -> None:
        """Remove this pool's containers that are not live workers (their removal failed while the daemon was away)."""
        with self._lock:
            live = {getattr(w, "container", None) and w.container.id for w in self._all}
        try:
            for ctr in list_ours(self._client, f"{LABEL}.pool={self.pool_id}"):
                if ctr["Id"] not in live:
                    try:
                        self._client.api.remove_container(ctr["Id"], force=True)
                    except Exception:  # noqa: BLE001 - removed meanwhile
                        pass
        except Exception:  # noqa: BLE001 - the daemon went away again: the next failure waits again
            pass

    def _retire(self, w: Any) -> None:
        with self._lock:
            if w in self._all:
                self._all.remove(w)
        threading.Thread(target=w.close, daemon=True).start()
        self.replaced += 1

    # -------------------------------------------------------------- running
    def _exec(self, payload: dict, timeout: float) -> dict:
        """Run one job on an idle worker; a worker that dies under it is replaced and the job run again.

        The pool holds ``n_workers`` slots; a slot whose worker died holds None until the next job
        starts a fresh one, so a failed start never loses a slot."""
        attempts = 0
        while True:
            slot = self._idle.get()
            try:
                if slot[0] is None:
                    slot[0], slot[1] = self._start_recovering(), 0
                w = slot[0]
                attempts += 1
                mem = min(int(payload.get("memory_mb") or self.memory_mb), self.memory_mb)
                job = {**payload, "nonce": secrets.token_hex(16), "timeout": timeout, "memory_mb": mem,
                       "max_output": self.max_output}
                try:
                    w.send(job)
                    res = w.recv(timeout=timeout + 30)
                except (OSError, TimeoutError, SandboxError, ValueError) as e:
                    # the runner died or hung under the job: this run gives no verdict
                    self._retire(w)
                    slot[0] = None
                    if attempts > self.max_reruns:
                        return {"runner_error": f"{type(e).__name__}: {e} (the runner died under this job "
                                                f"{attempts} times)", "attempts": attempts}
                    self.reruns += 1
                    continue
                slot[1] += 1
                dirty = res.get("timed_out") or res.get("leftover_processes") or res.get("output_limit") or \
                    res.get("exit_code") in (-9, 137) or "runner_error" in res
                if dirty or slot[1] >= self.max_jobs:
                    self._retire(w)
                    slot[0] = None  # the next job on this slot starts a fresh worker
                res["attempts"] = attempts
                return res
            except _Down as e:
                return {"runner_error": f"SandboxDown: {e}", "sandbox_down": True, "attempts": attempts}
            except SandboxError as e:
                return {"runner_error": f"{type(e).__name__}: {e}", "attempts": attempts}
            finally:
                self._idle.put(slot)

    def run(self, job: Job) -> Result:
        t0 = time.perf_counter()
        timeout = job.timeout or self.timeout
        if job.style == "stdio":
            return self._run_stdio(job, timeout, t0)
        if job.style not in ("assert", "call"):
            raise ValueError(f"job style must be 'assert', 'call' or 'stdio', got {job.style!r}")
        if job.style == "call" and not job.entry_point:
            raise ValueError("a call-style job needs entry_point (the function to call)")
        tests = list(job.tests)
        payload = {"style": job.style, "program": job.program, "entry_point": job.entry_point, "setup": job.setup,
                   "tests": tests if job.style == "assert" else [{"input": list(t["input"])} for t in tests]}
        res = self._exec(payload, timeout)
        return self._verdict(job, res, t0)

    def _verdict(self, job: Job, res: dict, t0: float) -> Result:
        from sandbox.runner import _to_json

        n = len(job.tests)
        common = dict(seconds=time.perf_counter() - t0, stdout=res.get("stdout", ""), stderr=res.get("stderr", ""))
        details = {k: res.get(k) for k in ("exit_code", "leftover_processes", "output_limit", "stdout_truncated",
                                           "attempts")}
        details["job_seconds"] = res.get("seconds")  # the job alone, on the runner's clock
        if "runner_error" in res:
            return Result("error", tuple(TestResult("error", 0.0, res["runner_error"]) for _ in range(n)),
                          details={"error": res["runner_error"], "sandbox_down": bool(res.get("sandbox_down")),
                                   "attempts": res.get("attempts")}, **common)
        reports = res.get("reports", [])
        by_test = {r["test"]: r for r in reports if "test" in r}
        prog = next((r for r in reports if "program" in r), None)
        done = any(r.get("done") for r in reports)
        tests = []
        for i in range(n):
            r = by_test.get(i)
            if r is None:
                tests.append(TestResult("timeout" if res.get("timed_out") else "error", 0.0, "not run: the program "
                                        "exited or was killed before this test reported"))
            elif job.style == "call" and r["status"] == "returned":
                want = _to_json(job.tests[i]["output"])
                ok = r["value"] == want
                tests.append(TestResult("passed" if ok else "failed", r["seconds"],
                                        None if ok else f"returned {_shown(r['value'])}, expected {_shown(want)}"))
            else:
                tests.append(TestResult(r["status"], r.get("seconds", 0.0), r.get("error")))
        if res.get("timed_out"):
            status = "timeout"
        elif (prog and prog["program"] == "oom") or any(t.status == "oom" for t in tests) or \
                (res.get("exit_code") in (-9, 137) and not res.get("output_limit")):
            status = "oom"
        elif prog is not None:
            status = "error"
            details["error"] = prog.get("error")
        elif res.get("output_limit"):
            status = "failed"
            details["error"] = f"output over {self.max_output} bytes"
        elif done and all(t.status == "passed" for t in tests):
            status = "passed"
        elif any(t.status == "error" for t in tests) and not any(t.status == "failed" for t in tests) and not done:
            status = "failed"
            details["error"] = "the harness did not finish: the program exited or was killed before reporting"
        else:
            status = "failed"
        return Result(status, tuple(tests), details=details, **common)

    def _run_stdio(self, job: Job, timeout: float, t0: float) -> Result:
        """One run per test; the runner judges nothing: exit status 0 and the right output pass (see
        ``sandbox/runner.py``: the program exits as ``python3 program.py`` would)."""
        tests, outs, errs, details = [], [], [], {}
        worst = "passed"
        for case in job.tests:
            res = self._exec({"style": "stdio", "program": job.program, "stdin": case["input"],
                              "memory_mb": job.memory_mb}, timeout)
            code = res.get("exit_code")
            if "runner_error" in res:
                st, err = "error", res["runner_error"]
                details["error"] = res["runner_error"]
                details["sandbox_down"] = bool(res.get("sandbox_down"))
            elif res.get("timed_out"):
                st, err = "timeout", None
            elif res.get("output_limit"):
                st, err = "error", f"output over {self.max_output} bytes"
            elif code in (-9, 137):
                st, err = "oom", None
            elif code != 0:
                st, err = "error", f"exit status {code}: " + (res.get("stderr") or "")[-300:]
            elif output_matches(res.get("stdout", ""), case["output"], job.checker):
                st, err = "passed", None
            else:
                got, want = _lines(res.get("stdout", "")), _lines(case["output"])
                st, err = "failed", f"expected {len(want)} line(s), got {len(got)}; first difference at line " \
                                    f"{next((i + 1 for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)) + 1)}"
            tests.append(TestResult(st, res.get("seconds", 0.0), err))
            outs.append(res.get("stdout", ""))
            errs.append(res.get("stderr", ""))
            if st != "passed" and worst == "passed":
                worst = st
            if st != "passed" and job.stop_early:
                tests += [TestResult("skipped") for _ in range(len(job.tests) - len(tests))]
                break
        status = worst if worst in ("timeout", "oom") else ("passed" if all(t.status == "passed" for t in tests)
                                                             else "failed")
        return Result(status, tuple(tests), time.perf_counter() - t0, "".join(outs[:1]), "".join(errs[:1]), details)

    def run_many(self, jobs: Sequence[Job]) -> list[Result]:
        """Run jobs in parallel on the pool's workers, results in order."""
        with ThreadPoolExecutor(self.n_workers) as ex:
            return list(ex.map(self.run, jobs))

    def close(self) -> None:
        """Remove every runner of this pool (containers included); safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers, self._all = list(self._all), []
        threads = []
        for w in workers:  # in parallel: a container removal takes a fraction of a second
            try:
                t = threading.Thread(target=w.close, daemon=True)
                t.start()
                threads.append(t)
            except RuntimeError:  # no new threads this late in interpreter shutdown
                w.close()
        for t in threads:
            t.join(timeout=30)
        if self._client is not None and not self._down:
            self._remove_stale()  # any container whose removal failed earlier
        _POOLS.discard(self)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
