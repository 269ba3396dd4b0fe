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


_PLAIN = (int, float, complex, str, bytes, bool, type(None))
_CONTAINERS = (list, tuple, set, frozenset)


def _not_plain(v, depth=0):
    """None if ``v`` is made of plain built-in values only (exact types, no subclasses); else what is not."""
    t = type(v)
    if t in _PLAIN:
        return None
    if depth > 50:
        return "a value nested deeper than 50 levels"
    if t in _CONTAINERS:
        for x in v:
            bad = _not_plain(x, depth + 1)
            if bad:
                return bad
        return None
    if t is dict:
        for k, x in v.items():
            bad = _not_plain(k, depth + 1) or _not_plain(x, depth + 1)
            if bad:
                return bad
        return None
    return "a value of type %s.%s" % (getattr(t, "__module__", "?"), getattr(t, "__qualname__", t.__name__))


def _to_json(v):
    """Type-tagged JSON, so the runner compares value and type. Exact types only: an instance of a
    subclass (an int whose __str__ lies) or of any other class never equals an expected value."""
    t = type(v)
    if v is None or t in (bool, str):
        return [t.__name__, v]
    if t is int:
        return ["int", str(v)]
    if t is float:
        return ["float", repr(v)]
    if t in (list, tuple):
        return [t.__name__, [_to_json(x) for x in v]]
    if t is dict:
        return ["dict", sorted([[_to_json(k), _to_json(x)] for k, x in v.items()], key=repr)]
    if t in (set, frozenset):
        return [t.__name__, sorted([_to_json(x) for x in v], key=repr)]
    return ["!unsupported", _not_plain(v) or t.__name__]


# --------------------------------------------------------------- keeping the tests honest
#
# The tests run in the same interpreter as the candidate program, so the harness keeps them out
# of the program's reach:
# * values the program's functions return to the tests must be plain built-in values (numbers,
#   str, bytes, bool, None, and lists/tuples/dicts/sets of them, exact types): an object whose
#   __eq__ always says True, an int subclass with a lying __eq__, a __bool__ that is always
#   true, a __float__ that fools isclose, never reach a comparison;
# * the tests see the program only through its functions (HumanEval: the entry point alone, with
#   the prompt's own helpers executed from the trusted prompt), never through names that shadow
#   builtins, and they run in a namespace of their own;
# * builtins and the standard modules are restored after the program's top level and after every
#   call of one of its functions, so patched builtins (abs, isinstance, math.isclose, ...) do not
#   last into the tests; modules the program imported are dropped, so the tests import fresh ones;
# * the program (its top level and every call) runs in a thread of its own, so its frames do not
#   lead to the harness's or the tests' frames; an audit hook refuses tracing, profiling, the
#   other threads' frames, the garbage collector's object lists and ctypes, so nothing can step
#   over an assert, read the nonce or rewrite objects in memory; a program that leaves a thread
#   running fails.

_TEST_MODULES = ("math", "cmath", "re", "string", "collections", "itertools", "functools", "operator", "heapq",
                 "bisect", "fractions", "statistics", "copy", "random", "hashlib", "decimal", "threading")
_BLOCKED_EVENTS = ("sys.settrace", "sys.setprofile", "sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "cpython.PyInterpreterState_Clear")


class Refused(BaseException):
    """A value or an act the harness does not let through (BaseException: `except Exception` misses it)."""


def _audit(event, args):
    if event in _BLOCKED_EVENTS or event.startswith("ctypes."):
        raise Refused("%s is not allowed in the sandbox" % event)


class _Watch:
    """Snapshots of builtins and of the standard modules, restored by identity (no __eq__ is called)."""

    def __init__(self):
        self.mods = {name: m for name, m in sys.modules.items() if m is not None}
        self.snaps = [(m.__dict__, dict(m.__dict__), tuple(map(id, m.__dict__.values())))
                      for m in self.mods.values() if hasattr(m, "__dict__")]

    def restore(self, drop_new=False):
        for d, snap, ids in self.snaps:
            if len(d) != len(ids) or tuple(map(id, d.values())) != ids:
                d.clear()
                d.update(snap)
        for name, m in self.mods.items():
            if sys.modules.get(name) is not m:
                sys.modules[name] = m
        if drop_new:
            for name in [n for n in sys.modules if n not in self.mods]:
                del sys.modules[name]


def _threads():
    """Threads of this process, once a thread that was just joined has had time to exit."""
    for _ in range(50):
        try:
            n = len(os.listdir("/proc/self/task"))
        except OSError:
            return 1
        if n == 1:
            return 1
        time.sleep(0.002)
    return n


def _isolated(fn, args=(), kwargs=None):
    """``fn(*args, **kwargs)`` in a thread of its own: its frames do not lead back to the caller's."""
    import threading

    box = {}

    def run():
        try:
            box["value"] = fn(*args, **(kwargs or {}))
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box.pop("error")
    return box.get("value")


def _guard(fn, name, watch, refusals):
    def guarded(*args, **kwargs):
        try:
            value = _isolated(fn, args, kwargs)
        finally:
            watch.restore()
        bad = _not_plain(value)
        if bad is None and _threads() > 1:
            bad = "a thread that keeps running"
        if bad is not None:
            msg = "%s() returned %s: only values made of built-in types (numbers, str, bytes, bool, None, " \
                  "and lists/tuples/dicts/sets of them) are compared" % (name, bad)
            if bad.startswith("a thread"):
                msg = "%s() left %s" % (name, bad)
            refusals.append(msg)
            raise Refused(msg)
        return value
    guarded.__name__ = getattr(fn, "__name__", name)
    return guarded


def _tests_namespace(job, g, watch, refusals):
    """What the tests see: the trusted setup (HumanEval's prompt), then the program's functions, guarded."""
    import builtins
    import types

    ns = {"__name__": "__main__", "__builtins__": builtins}
    if job.get("setup"):
        exec(compile(job["setup"], "<setup>", "exec"), ns)
    entry = job.get("entry_point")
    if entry:
        if entry in g:
            ns[entry] = _guard(g[entry], entry, watch, refusals) if callable(g[entry]) else g[entry]
        return ns
    for k, v in g.items():
        if k.startswith("__") or k in ns or hasattr(builtins, k):
            continue  # a name that shadows a builtin stays the builtin in the tests
        ns[k] = _guard(v, k, watch, refusals) if isinstance(v, types.FunctionType) else v
    return ns


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
    watch = _Watch()
    refusals = []
    sys.addaudithook(_audit)
    try:
        _isolated(exec, (compile(program, "<program>", "exec"), g))
        watch.restore(drop_new=True)
        if _threads() > 1:
            raise Refused("the program left a thread running")
    except MemoryError:
        emit({"program": "oom"})
        return
    except BaseException as e:  # the program's own top level failed
        watch.restore()
        emit({"program": "error", "error": "%s: %s" % (type(e).__name__, str(e)[:300])})
        return
    try:
        ns = _tests_namespace(job, g, watch, refusals)
    except BaseException as e:
        emit({"program": "error", "error": "the tests' setup failed: %s: %s" % (type(e).__name__, str(e)[:300])})
        return
    for i, t in enumerate(tests):
        t0 = time.perf_counter()
        n_refused = len(refusals)
        try:
            if style == "assert":
                exec(compile(t, "<test %d>" % i, "exec"), ns)
                out = {"test": i, "status": "passed"}
            else:  # call
                fn = g[job["entry_point"]]
                value = _isolated(fn, t["input"])
                watch.restore()
                out = {"test": i, "status": "returned", "value": _to_json(value)}
        except AssertionError as e:
            out = {"test": i, "status": "failed", "error": ("AssertionError: " + str(e))[:300]}
        except MemoryError:
            out = {"test": i, "status": "oom"}
        except BaseException as e:
            out = {"test": i, "status": "error", "error": "%s: %s" % (type(e).__name__, str(e)[:300])}
        if len(refusals) > n_refused:  # even if the test swallowed the refusal
            out = {"test": i, "status": "failed", "error": refusals[n_refused][:300]}
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
    """rm -rf without shutil; an empty directory (the usual case) costs one rmdir. A directory the
    job made unreadable is opened up first (the job and the runner are the same user)."""
    try:
        os.rmdir(path)
        return
    except NotADirectoryError:
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    except OSError:
        pass
    try:
        os.chmod(path, 0o700)
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


# the places a job can write besides its work directory (the root is read-only): emptied after
# every job, so that nothing one job leaves (a cache of answers, a poisoned module) reaches the next
SCRUBBED = ("/tmp", "/dev/shm", "/dev/mqueue", "/var/tmp", "/run/lock")
_KEEP = {}  # place -> entries present before the first job (the runner's own files, bind mounts)


def _scrub_init():
    for place in SCRUBBED:
        try:
            _KEEP[place] = set(os.listdir(place))
        except OSError:
            pass


def _scrub():
    """Empty every writable place of what jobs left; return how many entries could not be removed."""
    left = 0
    for place, keep in _KEEP.items():
        try:
            names = os.listdir(place)
        except OSError:
            continue
        for name in names:
            path = place + "/" + name
            if path == WORK_ROOT:
                for sub in os.listdir(path) if os.path.isdir(path) else ():
                    _remove(path + "/" + sub)
                    left += os.path.lexists(path + "/" + sub)
                continue
            if name in keep:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                _remove(path)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            left += os.path.lexists(path)
    return left


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
    isolated = os.environ.get("RLVR_SWEEP_ALL") == "1"  # in a container or bwrap: every process and file is the job's
    leftover = _sweep(os.getpid()) if isolated else 0
    _remove(workdir)
    if isolated:
        leftover += _scrub()
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
    for name in _TEST_MODULES + ("types", "builtins"):  # imported once, shared by every forked job, and
        try:                                             # snapshotted so that a job cannot patch them
            __import__(name)
        except ImportError:
            pass
    if os.environ.get("RLVR_SWEEP_ALL") == "1":
        _scrub_init()
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
