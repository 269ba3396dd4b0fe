"""The sandbox's lifecycle and faults, against real Docker daemons.

Lifecycle tests use the daemon the other tests use (they only create and remove containers of
their own, found by their pool's label). Daemon faults use a second, disposable ``dockerd`` of
this module's own (own socket, data root, exec root and pid file), so the shared one is never
stopped."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import docker
import pytest

from sandbox import Job, Sandbox
from sandbox.core import LABEL, list_ours, prune

IMAGE = os.environ.get("RLVR_SANDBOX_IMAGE", "rlvr-sandbox:latest")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADD = Job("def add(a, b):\n    return a + b\n", ("assert add(2, 3) == 5",))


def slow_job(i: int, seconds: float = 0.1) -> Job:
    return Job(f"import time\ntime.sleep({seconds})\ndef f():\n    return {i}\n", (f"assert f() == {i}",))


def ours(client, pid: int | None = None, pool: str | None = None) -> list:
    """Our containers (their labels), all or those of one owner pid or one pool."""
    out = []
    for c in list_ours(client):
        labels = c.get("Labels") or {}
        owner = labels.get(LABEL + ".owner", "")
        if pid is not None and owner.split(":")[1:2] != [str(pid)]:
            continue
        if pool is not None and labels.get(LABEL + ".pool") != pool:
            continue
        out.append(labels)
    return out


def child(code: str, env: dict | None = None) -> subprocess.Popen:
    """A Python process that starts a pool, prints its pool id, and runs ``code``."""
    src = ("import sys, time\nfrom sandbox import Sandbox, Job\n"
           f"sb = Sandbox('docker', image={IMAGE!r}, workers=2, timeout=5)\n"
           "print(sb.pool_id, flush=True)\n" + code)
    return subprocess.Popen([sys.executable, "-c", src], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def client():
    return docker.from_env(timeout=30)


# ------------------------------------------------------------------------------ lifecycle


def test_containers_are_labelled_and_removed_by_close(client):
    sb = Sandbox("docker", image=IMAGE, workers=2, timeout=5)
    mine = ours(client, pool=sb.pool_id)
    assert len(mine) == 2
    labels = mine[0]
    assert labels[LABEL] == "1" and labels[LABEL + ".owner"].split(":")[1] == str(os.getpid())
    sb.close()
    sb.close()  # twice is fine
    assert ours(client, pool=sb.pool_id) == []


def test_containers_gone_after_normal_exit_without_close(client):
    p = child("sb.run(Job('x = 1', ('assert x == 1',)))\n")  # no close(), no context manager
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert ours(client, pool=out.split()[0]) == []


def test_containers_gone_after_sigterm(client):
    p = child("time.sleep(120)\n")
    pool = p.stdout.readline().strip()
    assert len(ours(client, pool=pool)) == 2
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGTERM  # it still ends as SIGTERM ends a process
    assert ours(client, pool=pool) == []


def test_kill_9_orphans_are_reaped_by_the_next_pool(client):
    p = child("time.sleep(120)\n")
    pool = p.stdout.readline().strip()
    p.kill()  # SIGKILL: no handler runs, the containers stay
    p.wait(timeout=30)
    assert len(ours(client, pool=pool)) == 2
    with Sandbox("docker", image=IMAGE, workers=1, timeout=5) as sb:
        assert ours(client, pool=pool) == []  # reaped: their owner process is gone
        assert sb.run(ADD).passed


def test_verifier_cli_leaves_no_container(client):
    row = {"completion": "    return x * 2\n", "prompt": "def f(x):\n", "test": "def check(c):\n    assert c(3) == 6\n",
           "entry_point": "f"}
    p = subprocess.Popen([sys.executable, "-m", "verifiers", "code", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "RLVR_SANDBOX_IMAGE": IMAGE})
    out, err = p.communicate(json.dumps(row) + "\n", timeout=120)
    assert p.returncode == 0, err
    assert json.loads(out)["status"] == "correct"
    assert ours(client, pid=p.pid) == []


def test_prune_command_removes_ours_and_says_how_many(client):
    p = child("time.sleep(120)\n")
    pool = p.stdout.readline().strip()
    p.kill()
    p.wait(timeout=30)
    out = subprocess.run([sys.executable, "-m", "sandbox", "prune", "--orphans"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    n = int(out.stdout.split()[1])
    assert n >= 2 and "sandbox container" in out.stdout
    assert ours(client, pool=pool) == []


def test_process_backends_leave_no_process():
    for backend in ("bwrap", "unsafe-process"):
        sb = Sandbox(backend, workers=2, timeout=5)
        pids = [w.proc.pid for w in sb._all]
        assert sb.run(ADD).passed
        sb.close()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


# ------------------------------------------------------------------------------ a container killed mid-batch


def test_container_killed_mid_batch_every_job_gets_one_verdict(client):
    with Sandbox("docker", image=IMAGE, workers=2, timeout=5) as sb:
        jobs = [slow_job(i, 0.05) for i in range(40)]
        results = []
        t = threading.Thread(target=lambda: results.extend(sb.run_many(jobs)))
        t.start()
        time.sleep(0.5)
        client.api.kill(list_ours(client, f"{LABEL}.pool={sb.pool_id}")[0]["Id"])
        t.join(timeout=120)
        assert len(results) == 40
        assert [r.status for r in results] == ["passed"] * 40, [r.details for r in results if not r.passed]
        assert sb.reruns >= 1 and sb.replaced >= 1
        assert sum(r.details["attempts"] for r in results) == 40 + sb.reruns


# ------------------------------------------------------------------------------ the daemon goes away


class Daemon:
    """A disposable dockerd with its own socket, data root, exec root and pid file."""

    def __init__(self, root: str):
        self.root = root
        self.sock = os.path.join(root, "docker.sock")
        self.host = "unix://" + self.sock
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(os.path.join(self.root, "dockerd.log"), "a")
        self.proc = subprocess.Popen(
            ["dockerd", "--host", self.host, "--data-root", os.path.join(self.root, "data"),
             "--exec-root", os.path.join(self.root, "exec"), "--pidfile", os.path.join(self.root, "docker.pid"),
             "--bridge", "none", "--iptables=false", "--ip-masq=false", "--shutdown-timeout", "1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(150):
            try:
                docker.DockerClient(base_url=self.host, timeout=10).ping()
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        raise RuntimeError("the test's second dockerd did not start: see " + self.log.name)

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (an orderly stop, which waits for attached streams), or SIGKILL: gone at once."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            self.proc.wait(timeout=60)
        self.proc = None

    def client(self):
        return docker.DockerClient(base_url=self.host, timeout=30)

    def cleanup(self) -> None:
        """Stop it, end anything still running from its roots (a containerd left by a SIGKILL), unmount
        what it mounted there, and delete the folder."""
        self.stop()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if self.root.encode() in f.read():
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.5)
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(self.root)]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon():
    if not shutil.which("dockerd"):
        pytest.fail("these tests need dockerd (apt-get install docker.io)")
    d = Daemon(tempfile.mkdtemp(prefix="rlvr-dockerd-"))  # short: a unix socket path has at most 107 bytes
    d.start()
    # the image, copied from the shared daemon (no registry here)
    save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "-H", d.host, "load"], stdin=save.stdout, capture_output=True, timeout=300)
    save.wait(timeout=300)
    assert load.returncode == 0, load.stderr
    yield d
    d.cleanup()


def _stop_during(d: Daemon, sb: Sandbox, jobs: list, after: float, back_after: float | None) -> list:
    results: list = []
    t = threading.Thread(target=lambda: results.extend(sb.run_many(jobs)))
    t.start()
    time.sleep(after)
    d.stop(kill=True)
    if back_after is not None:
        time.sleep(back_after)
        d.start()
    t.join(timeout=300)
    assert not t.is_alive()
    return results


def test_daemon_back_within_the_bound_loses_nothing(daemon, monkeypatch, capfd):
    if daemon.proc is None:
        daemon.start()
    monkeypatch.setenv("DOCKER_HOST", daemon.host)
    with Sandbox("docker", image=IMAGE, workers=2, timeout=5, daemon_wait=60) as sb:
        jobs = [slow_job(i, 0.2) for i in range(40)]  # about 4 s of work on 2 workers
        results = _stop_during(daemon, sb, jobs, after=1.0, back_after=2.0)
        assert [r.status for r in results] == ["passed"] * 40, [r.details for r in results if not r.passed]
        # every job has one verdict; the ones in flight when the daemon went were run again, none that finished
        assert sb.reruns >= 1
        assert sum(r.details["attempts"] for r in results) == 40 + sb.reruns
        assert sb.run(ADD).passed
        assert len(ours(daemon.client(), pool=sb.pool_id)) == 2  # the dead containers were removed
    assert "waiting up to 60 s" in capfd.readouterr().err
    assert ours(daemon.client()) == []


def test_daemon_gone_past_the_bound_gives_error_verdicts(daemon, monkeypatch):
    if daemon.proc is None:
        daemon.start()
    monkeypatch.setenv("DOCKER_HOST", daemon.host)
    sb = Sandbox("docker", image=IMAGE, workers=2, timeout=5, daemon_wait=2)
    jobs = [slow_job(i, 0.2) for i in range(40)]
    t0 = time.monotonic()
    results = _stop_during(daemon, sb, jobs, after=1.0, back_after=None)
    assert time.monotonic() - t0 < 60
    statuses = [r.status for r in results]
    assert statuses[0] == "passed" and statuses[-1] == "error"
    assert set(statuses) == {"passed", "error"}
    for r in results:
        if r.status == "error":
            assert r.details["sandbox_down"] and "unreachable" in r.details["error"] and "\n" not in r.details["error"]
    sb.close()
    daemon.start()
    prune(daemon.client())


def test_cli_writes_every_line_and_exits_non_zero_when_the_daemon_stays_away(daemon):
    if daemon.proc is None:
        daemon.start()
    rows = [{"completion": f"import time\ntime.sleep(0.2)\ndef f(x):\n    return {i}\n", "prompt": "def f(x):\n",
             "test": f"def check(c):\n    assert c(0) == {i}\n", "entry_point": "f"} for i in range(60)]
    p = subprocess.Popen([sys.executable, "-m", "verifiers", "code", "-", "--daemon-wait", "2"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, "DOCKER_HOST": daemon.host, "RLVR_SANDBOX_IMAGE": IMAGE})
    p.stdin.write("".join(json.dumps(r) + "\n" for r in rows))
    p.stdin.close()
    deadline = time.monotonic() + 60  # the pool is up (its containers exist; a loaded machine takes a while) ...
    while not list_ours(daemon.client()) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    time.sleep(1.5)  # ... and the first jobs have run
    daemon.stop(kill=True)
    out = p.stdout.read()
    err = p.stderr.read()
    p.wait(timeout=120)
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 60, err[-2000:]
    assert [x["test"] for x in lines] == [r["test"] for r in rows]  # one per line, in order
    statuses = [x["status"] for x in lines]
    assert "error" in statuses and set(statuses) <= {"correct", "error"}
    assert p.returncode == 3, err
    assert "sandbox was down" in err and "Traceback" not in err
    daemon.start()
    prune(daemon.client())
