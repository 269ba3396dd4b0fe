"""Transports to one runner (`sandbox/runner.py`): the length-prefixed JSON framing, and the two ways a
runner is started: `ProcessWorker` (a local subprocess, optionally under bubblewrap: backends ``bwrap``
and ``unsafe-process``) and `DockerWorker` (PID 1 of a hardened, long-lived container: backend
``docker``). Which jobs go to which worker, and when a worker is replaced, is the pool's business
(`sandbox.core.Sandbox`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any


from sandbox.jobs import BACKEND_KEYS, SandboxError, SandboxUnavailable

RUNNER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")


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
                raise SandboxUnavailable(f"the bwrap backend needs bubblewrap: apt-get install bubblewrap (or choose "
                                         f"another backend with {BACKEND_KEYS})")
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
