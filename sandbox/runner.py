"""The in-sandbox runner: standard library only, Python 3.8+.

Reads jobs from stdin and writes results to stdout, each a 4-byte big-endian length and a
JSON object. Each job runs in a forked child: a new session (process group), resource
limits (CPU seconds, address space, file size, open files), a fresh working directory, its
own stdout/stderr pipes with a cap on what is kept, and a wall-clock limit enforced by
killing the whole process group. After the job, every process the job left behind is swept
(killed) and counted. Test verdicts travel on a separate pipe, tagged with a per-job nonce
the program is never given, and only reports the harness makes after the tests ran count:
a program that exits early (``sys.exit(0)``, ``os._exit(0)``) or kills its harness reports
nothing, and so fails.
"""

import gc
import json
import os
import resource
import select
import signal
import struct
import sys
import time

WORK_ROOT = os.environ.get("RLVR_WORK_ROOT", "/tmp/work")
IN, OUT = sys.stdin.buffer, sys.stdout.buffer


def read_msg():
    head = IN.read(4)
    if len(head) < 4:
        return None
    n = struct.unpack(">I", head)[0]
    return json.loads(IN.read(n).decode())


def write_msg(obj):
    data = json.dumps(obj).encode()
    OUT.write(struct.pack(">I", len(data)) + data)
    OUT.flush()


# ------------------------------------------------------------------------------ in the child


def _limits(job):
    cpu = int(job.get("cpu_seconds") or max(1, int(job["timeout"]) + 1))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = int(job.get("memory_mb", 256)) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    fsize = int(job.get("file_size_mb", 16)) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    nofile = int(job.get("open_files", 64))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _to_json(v):
    """Type-tagged JSON, so the runner compares value and type."""
    if v is None or isinstance(v, (bool, str)):
        return [type(v).__name__, v]
    if isinstance(v, int):
        return ["int", str(v)]
    if isinstance(v, float):
        return ["float", repr(v)]
    if isinstance(v, (list, tuple)):
        return [type(v).__name__, [_to_json(x) for x in v]]
    if isinstance(v, dict):
        return ["dict", sorted([[_to_json(k), _to_json(x)] for k, x in v.items()], key=repr)]
    if isinstance(v, (set, frozenset)):
        return [type(v).__name__, sorted([_to_json(x) for x in v], key=repr)]
    return [type(v).__name__, repr(v)]


def _harness(job, report):
    """Runs in the child: execute the program, then the tests; report through `report` only."""
    style = job["style"]
    nonce = job.pop("nonce")
    program, tests = job["program"], job.get("tests") or []
    send = report  # the program's globals never see `report` or the nonce

    def emit(obj):
        obj["nonce"] = nonce
        send(obj)

    g = {"__name__": "__main__", "__builtins__": __builtins__}
    if style == "stdio":  # the program itself is the test subject: run it as main
        exec(compile(program, "<program>", "exec"), g)
        emit({"done": True})
        return
    try:
        exec(compile(program, "<program>", "exec"), g)
    except MemoryError:
        emit({"program": "oom"})
        return
    except BaseException as e:  # the program's own top level failed
        emit({"program": "error", "error": "%s: %s" % (type(e).__name__, str(e)[:300])})
        return
    for i, t in enumerate(tests):
        t0 = time.perf_counter()
        try:
            if style == "assert":
                exec(compile(t, "<test %d>" % i, "exec"), g)
                out = {"test": i, "status": "passed"}
            else:  # call
                fn = g[job["entry_point"]]
                out = {"test": i, "status": "returned", "value": _to_json(fn(*t["input"]))}
        except AssertionError as e:
            out = {"test": i, "status": "failed", "error": ("AssertionError: " + str(e))[:300]}
        except MemoryError:
            out = {"test": i, "status": "oom"}
        except BaseException as e:
            out = {"test": i, "status": "error", "error": "%s: %s" % (type(e).__name__, str(e)[:300])}
        out["seconds"] = time.perf_counter() - t0
        emit(out)
    emit({"done": True})


def _child(job, w_out, w_err, w_rep, r_in):
    job.pop("_nonce", None)
    gc.disable()  # a collection would touch (and so copy) every inherited page; jobs are short-lived
    try:
        os.setsid()
        os.dup2(r_in, 0)
        os.dup2(w_out, 1)
        os.dup2(w_err, 2)
        for fd in (w_out, w_err, r_in):
            os.close(fd)
        _limits(job)
        os.chdir(job["workdir"])

        def report(obj, _fd=w_rep):
            os.write(_fd, (json.dumps(obj) + "\n").encode())

        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        _harness(job, report)
        sys.stdout.flush()
        os._exit(0)
    except MemoryError:
        os._exit(137)
    except BaseException:
        try:
            import traceback  # only on this path: the runner stays small, so fork and exit stay fast

            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:
            pass
        os._exit(1)


# ------------------------------------------------------------------------------ in the runner

_JOBS = [0]


def _new_workdir():
    """A fresh, private working directory (no tempfile import: it would double the runner's size)."""
    os.makedirs(WORK_ROOT, mode=0o700, exist_ok=True)
    while True:
        _JOBS[0] += 1
        path = "%s/job-%d-%d" % (WORK_ROOT, os.getpid(), _JOBS[0])
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _remove(path):
    """rm -rf without shutil; an empty directory (the usual case) costs one rmdir."""
    try:
        os.rmdir(path)
        return
    except OSError:
        pass
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                _remove(e.path)
            else:
                os.unlink(e.path)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _sweep(me):
    """Kill every process but the runner; return how many there were."""
    killed = 0
    for _ in range(3):
        found = 0
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != me:
                try:
                    with open("/proc/%s/stat" % name) as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    if ppid == 0:  # the container's init, or bwrap's: not ours
                        continue
                    os.kill(int(name), signal.SIGKILL)
                    found += 1
                except (OSError, ValueError, IndexError):
                    pass
        killed += found
        while True:  # reap
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not found:
            break
    return killed


def run_job(job):
    t_start = time.perf_counter()
    cap = int(job.get("max_output", 1 << 20))
    timeout = float(job["timeout"])
    workdir = _new_workdir()
    job["workdir"] = workdir
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    r_rep, w_rep = os.pipe()
    r_in, w_in = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (r_out, r_err, r_rep, w_in):
            os.close(fd)
        _child(job, w_out, w_err, w_rep, r_in)
    for fd in (w_out, w_err, w_rep, r_in):
        os.close(fd)
    stdin_data = (job.get("stdin") or "").encode()
    try:
        os.write(w_in, stdin_data[:60000])  # larger inputs would need a writer loop; tests are small
    except OSError:
        pass
    os.close(w_in)
    bufs = {r_out: bytearray(), r_err: bytearray(), r_rep: bytearray()}
    truncated = {r_out: False, r_err: False}
    open_fds = set(bufs)
    deadline = time.monotonic() + timeout
    timed_out = output_limit = False
    status = None
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(list(open_fds), [], [], left)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            if fd == r_rep:
                bufs[fd] += chunk
                if len(bufs[fd]) > 16 * cap:
                    output_limit = True
            else:
                room = cap - len(bufs[fd])
                if room > 0:
                    bufs[fd] += chunk[:room]
                if len(chunk) > room:  # over the cap: stop the job rather than drain it forever
                    truncated[fd] = True
                    output_limit = True
        if output_limit:
            break
    try:
        os.killpg(pid, signal.SIGKILL)  # the job's whole process group
    except OSError:
        pass
    if timed_out or output_limit:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    _, wstatus = os.waitpid(pid, 0)
    for fd in bufs:
        os.close(fd)
    # inside a container or bwrap (own PID namespace) every other process is the job's; elsewhere
    # (the unsafe process backend) only the job's own process group is ours to kill
    leftover = _sweep(os.getpid()) if os.environ.get("RLVR_SWEEP_ALL") == "1" else 0
    _remove(workdir)
    code = os.waitstatus_to_exitcode(wstatus) if hasattr(os, "waitstatus_to_exitcode") else wstatus
    reports = []
    for line in bytes(bufs[r_rep]).decode(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("nonce") == job["_nonce"]:
            obj.pop("nonce")
            reports.append(obj)
    return {
        "exit_code": code, "timed_out": timed_out, "output_limit": output_limit, "leftover_processes": leftover,
        "stdout": bytes(bufs[r_out]).decode(errors="replace"), "stderr": bytes(bufs[r_err]).decode(errors="replace"),
        "stdout_truncated": truncated[r_out], "stderr_truncated": truncated[r_err], "reports": reports,
        "seconds": time.perf_counter() - t_start,
    }


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    gc.freeze()  # keep the runner's own objects out of collections, in it and in its forked children
    me = os.getpid()
    write_msg({"ready": True, "pid": me, "uid": os.getuid(), "python": sys.version.split()[0]})
    while True:
        job = read_msg()
        if job is None:
            return
        if job.get("ping"):
            write_msg({"pong": True})
            continue
        job["_nonce"] = job["nonce"]
        try:
            res = run_job(job)
        except Exception as e:  # the runner itself failed: say so, never a pass
            res = {"runner_error": "%s: %s" % (type(e).__name__, e)}
        res["id"] = job.get("id")
        write_msg(res)


if __name__ == "__main__":
    main()
