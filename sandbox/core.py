"""Host side of the sandbox: job and result types, the warm worker pool, and its backends.

A worker is one long-lived runner (`sandbox/runner.py`) behind a byte stream: a Docker
container's attached stdin/stdout (backend ``docker``), a bubblewrap process (``bwrap``) or a
plain subprocess (``unsafe-process``). Jobs go to idle workers; a worker is replaced after
``max_jobs_per_worker`` jobs, and at once after a timeout, an out-of-memory kill, a leftover
process or any protocol error.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Sequence

RUNNER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")
PUBLIC_IMAGE = "python:3.12-slim"
BUILT_IMAGE = "rlvr-sandbox:latest"  # what `python -m sandbox image build` makes
DEFAULT_IMAGE = os.environ.get("RLVR_SANDBOX_IMAGE", PUBLIC_IMAGE)
Style = Literal["assert", "call", "stdio"]


class SandboxError(RuntimeError):
    """The sandbox could not run a job (no daemon, no image, a runner that died)."""


class SandboxUnavailable(SandboxError):
    """The chosen backend cannot start here; the message says how to fix it or what to choose."""


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


# ----------------------------------------------------------------------------- transports


def _runner_source() -> str:
    with open(RUNNER_PATH) as f:
        return f.read()


class _Framed:
    """Length-prefixed JSON over a byte stream."""

    def send(self, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self._write(struct.pack(">I", len(data)) + data)

    def recv(self, timeout: float) -> dict:
        head = self._read(4, timeout)
        (n,) = struct.unpack(">I", head)
        return json.loads(self._read(n, timeout))


def _under_tmp(path: str) -> bool:
    return path == "/tmp" or path.startswith("/tmp/")


class ProcessWorker(_Framed):
    """The runner as a local subprocess, optionally under bubblewrap."""

    def __init__(self, backend: str, memory_mb: int):
        # the real interpreter, not a virtual environment's link to it: the runner needs only the stdlib
        py = os.path.realpath(sys.executable)
        # no --die-with-parent: its signal fires when the *thread* that started bwrap exits (the pool starts
        # replacements from worker threads); the runner exits on its own when our end of its stdin closes
        if backend == "bwrap":
            if not shutil.which("bwrap"):
                raise SandboxUnavailable("backend=bwrap needs bubblewrap: apt-get install bubblewrap (or use backend=docker)")
            # bwrap mounts a fresh tmpfs on /tmp: an interpreter that lives there (a copied virtual
            # environment, a checkout under /tmp) is bound back in, read-only
            keep = sorted({p for p in (os.path.dirname(os.path.dirname(py)), os.path.realpath(sys.base_prefix))
                           if _under_tmp(p)})
            binds = [a for p in keep for a in ("--ro-bind", p, p)]
            cmd = ["bwrap", "--unshare-all", "--new-session", "--cap-drop", "ALL",
                   "--ro-bind", "/", "/", "--tmpfs", "/tmp", *binds, "--proc", "/proc", "--dev", "/dev",
                   "--ro-bind", RUNNER_PATH, "/tmp/rlvr_runner.py", "--setenv", "RLVR_SWEEP_ALL", "1",
                   "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "MALLOC_ARENA_MAX", "1", py, "-u", "-I",
                   "/tmp/rlvr_runner.py"]
            if os.geteuid() == 0:  # run the jobs as nobody inside the namespace
                cmd[1:1] = ["--uid", "65534", "--gid", "65534"]
        else:
            cmd = [py, "-u", "-I", RUNNER_PATH]
        env = {"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "1", "RLVR_WORK_ROOT": "/tmp/work" if backend == "bwrap" else
               os.path.join(os.environ.get("TMPDIR", "/tmp"), f"rlvr-work-{os.getpid()}")}
        self._stderr = tempfile.TemporaryFile()  # read back when the runner fails to start
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=env, start_new_session=True)
        self._buf = b""

    @property
    def stderr(self) -> bytes:
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-2000:]
        except (OSError, ValueError):
            return b""

    def _write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _read(self, n: int, timeout: float) -> bytes:
        import select

        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("the runner did not answer in time")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                err = self.stderr.decode(errors="replace").strip().splitlines()
                raise SandboxError(f"the runner exited (code {self.proc.wait(timeout=5)})" +
                                   (f": {err[-1][:300]}" if err else ""))
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                f.close()
            except OSError:
                pass


class DockerWorker(_Framed):
    """The runner as PID 1 of a hardened, long-lived container, spoken to over the attach stream."""

    def __init__(self, client: Any, image: str, memory_mb: int, cpus: float, pids: int, tmpfs_mb: int,
                 labels: dict[str, str] | None = None):
        import docker

        self.container = client.containers.create(
            image, command=["python3", "-u", "-I", "-c", _runner_source()], stdin_open=True, tty=False,
            detach=True, network_mode="none", read_only=True, user="65534:65534",
            tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={tmpfs_mb}m,mode=1777"},
            cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=pids,
            mem_limit=f"{memory_mb}m", memswap_limit=f"{memory_mb}m", nano_cpus=int(cpus * 1e9),
            ulimits=[docker.types.Ulimit(name="nofile", soft=256, hard=256),
                     docker.types.Ulimit(name="fsize", soft=32 << 20, hard=32 << 20)],
            environment={"RLVR_SWEEP_ALL": "1", "PYTHONDONTWRITEBYTECODE": "1", "RLVR_WORK_ROOT": "/tmp/work",
                         "MALLOC_ARENA_MAX": "1"},  # one malloc arena: a job's thread reserves no 64 MB of its own
            labels=labels or {"rlvr-gym.sandbox": "1"}, working_dir="/tmp")
        try:
            sock = self.container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self._sockio = sock  # docker-py's wrapper (it also keeps the HTTP response alive): closed with us
            self.sock: socket.socket = getattr(sock, "_sock", sock)
            self.sock.setblocking(True)
            self.container.start()
        except BaseException:
            try:
                self.container.remove(force=True)
            except Exception:  # noqa: BLE001 - the daemon may be gone; the pool removes it later by label
                pass
            raise
        self._raw = b""  # multiplexed frames not yet parsed
        self._buf = b""  # stdout bytes
        self.stderr = b""

    def _write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._buf) < n:
            # parse docker's stream frames: [stream, 0, 0, 0, size (4 bytes, big-endian)] + payload
            while len(self._raw) >= 8:
                size = struct.unpack(">I", self._raw[4:8])[0]
                if len(self._raw) < 8 + size:
                    break
                kind, payload, self._raw = self._raw[0], self._raw[8:8 + size], self._raw[8 + size:]
                if kind == 1:
                    self._buf += payload
                else:
                    self.stderr = (self.stderr + payload)[-4096:]
            if len(self._buf) >= n:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the runner did not answer in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                raise TimeoutError("the runner did not answer in time") from None
            if not chunk:
                raise SandboxError(f"the container's runner exited: {self.stderr.decode(errors='replace')[-300:]}")
            self._raw += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        for obj in (getattr(self._sockio, "_response", None), self._sockio, self.sock):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # noqa: BLE001 - best effort: already closed
                pass
        try:
            self.container.remove(force=True)
        except Exception:  # noqa: BLE001 - best effort: the container may already be gone
            pass


# ----------------------------------------------------------------------------- the pool


# ----------------------------------------------------------------------------- lifecycle

LABEL = "rlvr-gym.sandbox"  # every container we start carries it; `python -m sandbox prune` removes them all
_POOLS: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()
_HOOKS = {"installed": False}


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" if unknown): a pid plus this names one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_label() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process named by an owner label still runs; None when it is on another host."""
    host, _, rest = owner.partition(":")
    pid_s, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_s.isdigit():
        return None
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not started or _start_time(pid) in ("", started)


def _close_all_pools() -> None:
    for pool in list(_POOLS):
        pool.close()


def _on_sigterm(signum: int, frame: Any) -> None:
    """Remove our containers, then let SIGTERM do what it did before (default: end the process)."""
    _close_all_pools()
    prev = _HOOKS.get("prev_sigterm")
    if callable(prev):
        prev(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_exit_hooks() -> None:
    """Pools close at interpreter exit (atexit; Ctrl-C ends in a normal exit) and on SIGTERM."""
    if _HOOKS["installed"]:
        return
    _HOOKS["installed"] = True
    atexit.register(_close_all_pools)
    if threading.current_thread() is threading.main_thread():
        prev = signal.getsignal(signal.SIGTERM)
        if prev in (signal.SIG_DFL, None) or callable(prev):
            _HOOKS["prev_sigterm"] = prev
            signal.signal(signal.SIGTERM, _on_sigterm)


def list_ours(client: Any, label: str = LABEL) -> list[dict]:
    """Our containers as the daemon lists them (id and labels; no per-container inspect, which races
    with containers being removed meanwhile)."""
    return client.api.containers(all=True, filters={"label": label})


def prune(client: Any = None, orphans_only: bool = False) -> int:
    """Remove our containers (all of them, or those whose owner process is gone); return how many."""
    import docker

    client = client or docker.from_env(timeout=30)
    n = 0
    for ctr in list_ours(client):
        if orphans_only and owner_alive((ctr.get("Labels") or {}).get(LABEL + ".owner", "")) is not False:
            continue
        try:
            client.api.remove_container(ctr["Id"], force=True)
            n += 1
        except Exception:  # noqa: BLE001 - gone already, or being removed by its owner
            pass
    return n


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
            raise SandboxUnavailable("backend=docker needs the docker SDK: pip install 'rlvr-gym[code]'") from e
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        try:
            client = docker.from_env(timeout=30)
            client.ping()
        except Exception as e:  # noqa: BLE001 - any failure here means: no reachable daemon
            raise SandboxUnavailable(
                f"no Docker daemon reachable at {host} ({type(e).__name__}). Start one (`sudo systemctl start docker`, "
                f"or `sudo dockerd &`), point DOCKER_HOST at one, or choose another backend: backend=bwrap "
                f"(namespaces, no network) or backend=unsafe-process (no isolation)") from None
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
                f"{PUBLIC_IMAGE} is missing), or name one with RLVR_SANDBOX_IMAGE / image=") from None

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


def _shown(tagged: Any) -> str:
    """A call-style value as the model wrote it (``4``, ``'aa'``), from its tagged form."""
    from sandbox.runner import _from_json

    try:
        text = repr(_from_json(tagged))
    except (ValueError, TypeError, RecursionError):
        text = str(tagged[1]) if isinstance(tagged, list) and tagged[:1] == ["!unsupported"] else str(tagged)
    return text if len(text) <= 200 else text[:200] + "..."


_YES_NO = re.compile(r"(?<!\S)(?:yes|no)(?!\S)", re.IGNORECASE)


def _yes_no(text: str) -> str:
    """YES/NO tokens in one case: the judges' convention (Codeforces: "you may print each letter in any case")."""
    return _YES_NO.sub(lambda m: m.group(0).upper(), text)


def output_matches(got: str, want: str, checker: str = "lines") -> bool:
    """Does a program's output match the expected output, by ``checker`` (see ``Job``)?

    Every checker but ``exact`` reads a whole-token ``yes`` or ``no`` in any case ("Yes", "yEs",
    "NO"), as Codeforces-style judges do; every other token is compared as written."""
    if checker == "lines":
        return _lines(_yes_no(got)) == _lines(_yes_no(want))
    if checker == "exact":
        return got.replace("\r\n", "\n").rstrip("\n") == want.replace("\r\n", "\n").rstrip("\n")
    if checker == "tokens":
        return _yes_no(got).split() == _yes_no(want).split()
    if checker.startswith("float"):
        tol = float(checker.split(":", 1)[1]) if ":" in checker else 1e-6
        a, b = _yes_no(got).split(), _yes_no(want).split()
        if len(a) != len(b):
            return False
        for x, y in zip(a, b):
            if x == y:
                continue
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                return False
            if not (abs(fx - fy) <= tol or abs(fx - fy) <= tol * abs(fy)):
                return False
        return True
    raise ValueError(f"checker must be lines, exact, tokens or float[:TOL], got {checker!r}")


def _lines(s: str) -> list[str]:
    lines = [line.rstrip() for line in s.replace("\r\n", "\n").split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    return lines
