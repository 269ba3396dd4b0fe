"""The in-sandbox runner: standard library only, Python 3.8+.

Reads jobs from stdin and writes results to stdout, each a 4-byte big-endian length and a
JSON object. Each job runs in a forked child, the *job process*: a new session (process
group), resource limits (CPU seconds, address space, file size, open files), a fresh working
directory, its own stdout/stderr pipes with a cap on what is kept, its whole stdin streamed to
it, and a wall-clock limit enforced by killing the whole process group. After the job, every
process the job left behind is swept (killed) and counted.

Who decides a verdict, and why the program cannot rewrite it:

* ``stdio``: the job process runs the program as ``python3 program.py`` would: ``__main__``,
  its exit status (``sys.exit(code)``, ``raise SystemExit``, ``exit()``: None is 0, an int is
  itself, anything else is printed and 1; an uncaught exception 1), then what the interpreter
  does at exit: non-daemon threads joined, ``atexit`` handlers run, the standard streams
  flushed. The runner, which runs none of the program, reads the exit status and the output.
* ``assert`` and ``call``: the job process is the *judge*, and it never runs a line of the
  program. It first forks the *candidate* process, which runs the program and then only answers
  requests: call this object with these arguments, read this attribute of it. An answer that is
  a plain value (numbers, str, bytes, bool, None, and lists/tuples/dicts/sets of them, exact
  types) travels as type-tagged JSON and is rebuilt by the judge; anything else (a function, a
  class, an instance, a ``functools.partial``, an object whose ``__eq__`` is always True) comes
  back as a *remote reference* that the tests may call, read attributes of and pass back to the
  program, and that refuses everything else (comparison, truth value, hashing, iteration, str,
  arithmetic): the test fails, even if it swallowed the refusal. The tests run in the judge on
  values it built itself, so no ``__eq__``/``__bool__``, patched ``json``/``builtins``/``sys``/
  ``os``, exit, ``atexit`` or signal trick of the program reaches an assert or a report. The
  judge reports on a pipe the candidate does not hold, each report tagged with a per-job nonce;
  the runner and every process it forks are non-dumpable, so a process of the same user can
  neither ptrace them nor open their ``/proc/PID/mem`` or ``/proc/PID/fd``. The candidate is
  forked before the judge reads its tests or the nonce and drops the job, so neither is
  reachable from its objects or frames; an audit hook in it refuses ``ctypes``, the garbage
  collector's object lists and opening a process's memory file.
"""

import builtins
import gc
import json
import os
import resource
import select
import signal
import struct
import sys
import time
import types

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


def _describe(e):
    """``Type: message`` of an exception, never raising (a program's exception may have a hostile __str__)."""
    try:
        msg = str(e)
    except BaseException:
        msg = "?"
    return "%s: %s" % (type(e).__name__, msg[:300])


# ------------------------------------------------------------------------------ plain values
#
# What crosses between the candidate and the judge (and the judge and the host, for call-style
# tests): plain values of exact built-in types, type-tagged so that values compare by value and
# type (5 is not 5.0 nor True), rebuilt from JSON by whoever reads them.

_PLAIN = (int, float, complex, str, bytes, bool, type(None))
_CONTAINERS = (list, tuple, set, frozenset)
_NEED_PLAIN = ("only values made of built-in types (numbers, str, bytes, bool, None, and lists/tuples/dicts/sets of "
               "them) are compared")


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
    return "a value of type %s" % _type_name(v)


def _type_name(v):
    t = type(v)
    return ("%s.%s" % (getattr(t, "__module__", "?"), getattr(t, "__qualname__", "?")))[:120]


def _tag(v):
    """The tagged form of a plain value (checked by the caller)."""
    t = type(v)
    if v is None or t is bool or t is str:
        return [t.__name__, v]
    if t is int:
        return ["int", hex(v)]  # hex, not str: no limit on the digits of a huge int
    if t is float:
        return ["float", repr(v)]
    if t is complex:
        return ["complex", [repr(v.real), repr(v.imag)]]
    if t is bytes:
        return ["bytes", v.hex()]
    if t is list or t is tuple:
        return [t.__name__, [_tag(x) for x in v]]
    if t is dict:
        return ["dict", sorted([[_tag(k), _tag(x)] for k, x in v.items()], key=repr)]
    return [t.__name__, sorted([_tag(x) for x in v], key=repr)]  # set, frozenset


def _to_json(v):
    """Type-tagged JSON, so the host compares value and type. Exact types only: an instance of a
    subclass (an int whose __str__ lies) or of any other class never equals an expected value."""
    bad = _not_plain(v)
    return ["!unsupported", bad] if bad else _tag(v)


_SEQ = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def _from_json(t, depth=0):
    """The plain value a tagged JSON stands for; anything malformed raises ValueError (strict: the
    judge reads it from the candidate)."""
    if type(t) is not list or len(t) != 2 or type(t[0]) is not str or depth > 60:
        raise ValueError("not a tagged value")
    tag, x = t
    tx = type(x)
    if tag == "NoneType" and x is None:
        return None
    if (tag == "bool" and tx is bool) or (tag == "str" and tx is str):
        return x
    if tag == "int" and tx is str:
        return int(x, 16)
    if tag == "float" and tx is str:
        return float(x)
    if tag == "complex" and tx is list and len(x) == 2 and type(x[0]) is str and type(x[1]) is str:
        return complex(float(x[0]), float(x[1]))
    if tag == "bytes" and tx is str:
        return bytes.fromhex(x)
    if tag in _SEQ and tx is list:
        return _SEQ[tag]([_from_json(e, depth + 1) for e in x])
    if tag == "dict" and tx is list:
        out = {}
        for kv in x:
            if type(kv) is not list or len(kv) != 2:
                raise ValueError("not a tagged dict item")
            out[_from_json(kv[0], depth + 1)] = _from_json(kv[1], depth + 1)
        return out
    raise ValueError("not a tagged value: %r" % (tag[:40],))


# ------------------------------------------------------------------------------ the candidate


class Refused(BaseException):
    """A value or an act the sandbox does not let through (BaseException: `except Exception` misses it)."""


_BLOCKED_EVENTS = ("sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
                   "cpython.PyInterpreterState_Clear")


def _memory_file(path):
    """Does ``path`` name a process's memory (``/proc/PID/mem``, ``/proc/self/task/TID/mem``, or any
    relative path to a file called ``mem``: it may be relative to a descriptor of /proc)?"""
    if type(path) is bytes:
        path = os.fsdecode(path)
    if type(path) is not str:
        return False
    if path.rstrip("/").rsplit("/", 1)[-1] == "mem" and not path.startswith("/"):
        return True
    real = os.path.realpath(path)
    return real.startswith("/proc/") and real.rstrip("/").endswith("/mem")


def _audit(event, args):
    if event in _BLOCKED_EVENTS or event.startswith("ctypes."):
        raise Refused("%s is not allowed in the sandbox" % event)
    if event == "open" and args and _memory_file(args[0]):
        raise Refused("reading a process's memory is not allowed in the sandbox")


def _send(fd, obj):
    data = (json.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _candidate(program, setup, r, w):
    """The candidate process: run the program, then answer the judge's requests until it hangs up.

    Requests (one JSON line each): ``names`` (the program's globals the tests use), ``call`` (a
    reference with arguments), ``attr`` (an attribute of a reference). Answers: a tagged plain
    value, ``["ref", id, type]`` for anything else, ``["module", name]`` for a module, or
    ``{"raised": type, "error": text}``. Nothing here is trusted: the judge checks every answer."""
    sys.addaudithook(_audit)
    g = {"__name__": "__main__", "__builtins__": builtins}
    refs = []
    setup_ns = {}

    def answer(v):
        if _not_plain(v) is None:
            return _tag(v)
        if type(v) is types.ModuleType and type(getattr(v, "__name__", None)) is str:
            return ["module", v.__name__]
        refs.append(v)
        return ["ref", len(refs) - 1, _type_name(v)]

    def arg(t, memo):
        tag = t[0]
        if tag == "ref":
            return refs[t[1]]
        if tag == "same":
            return memo[t[1]]
        if tag == "obj":  # an instance of a class the trusted setup defines (MBPP's test_setup_code)
            if not setup_ns:
                setup_ns.update({"__name__": "__main__", "__builtins__": builtins})
                exec(compile(setup, "<setup>", "exec"), setup_ns)
            cls = setup_ns[t[1]]
            o = cls.__new__(cls)
            memo[t[2]] = o
            for k, x in t[3]:
                object.__setattr__(o, k, arg(x, memo))
            return o
        if tag in _SEQ:
            return _SEQ[tag](arg(x, memo) for x in t[1])
        if tag == "range":
            return range(*t[1])
        if tag == "dict":
            return {arg(k, memo): arg(x, memo) for k, x in t[1]}
        return _from_json(t)

    try:
        exec(compile(program, "<program>", "exec"), g)
        _send(w, {"ready": True})
    except MemoryError:
        _send(w, {"program": "oom"})
        os._exit(0)
    except BaseException as e:  # the program's own top level failed (sys.exit included)
        _send(w, {"program": "error", "error": _describe(e)})
        os._exit(0)
    requests = os.fdopen(r, "rb")
    for line in iter(requests.readline, b""):
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "names":
                out = {"names": {n: answer(g[n]) for n in req["names"] if n in g}}
            elif op == "call":
                memo = {}
                args = [arg(x, memo) for x in req["args"]]
                kwargs = {k: arg(x, memo) for k, x in req["kw"]}
                out = {"ok": answer(refs[req["ref"]](*args, **kwargs))}
            else:  # attr
                out = {"ok": answer(getattr(refs[req["ref"]], req["name"]))}
        except BaseException as e:  # the program's exception (exit included): the judge raises it in the test
            out = {"raised": type(e).__name__, "error": _describe(e)}
        _send(w, out)
    try:
        sys.stdout.flush()
    finally:
        os._exit(0)


# ------------------------------------------------------------------------------ the judge

_REFUSALS = []  # in the judge: every refusal, so that a test that swallowed one still fails


def _refuse(what):
    msg = "the tests %s a %s the program gave: %s" % (what[0], what[1], _NEED_PLAIN)
    _REFUSALS.append(msg)
    raise Refused(msg)


class _Remote:
    """Something of the program's that is not a plain value (a function, a class, an instance). The
    tests may call it, read its attributes and pass it back to the program; everything else is refused."""

    __slots__ = ("_rlvr_link", "_rlvr_ref", "_rlvr_type")

    def __init__(self, link, ref, type_name):
        object.__setattr__(self, "_rlvr_link", link)
        object.__setattr__(self, "_rlvr_ref", ref)
        object.__setattr__(self, "_rlvr_type", type_name)

    def __call__(self, *args, **kwargs):
        return self._rlvr_link.call(self, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            _refuse(("read %s of" % name, "value of type " + self._rlvr_type))
        return self._rlvr_link.attr(self, name)


def _refuser(op):
    def refused(self, *args, **kwargs):
        _refuse(("used (%s)" % op, "value of type " + object.__getattribute__(self, "_rlvr_type")))
    return refused


for _op in ("eq ne lt le gt ge hash bool len iter next reversed contains getitem setitem delitem missing int float "
            "complex index round trunc floor ceil abs neg pos invert str repr format bytes fspath enter exit "
            "setattr delattr dir reduce reduce_ex copy deepcopy sizeof length_hint await aiter anext "
            "add radd iadd sub rsub isub mul rmul imul matmul rmatmul imatmul truediv rtruediv itruediv floordiv "
            "rfloordiv ifloordiv mod rmod imod divmod rdivmod pow rpow ipow lshift rlshift ilshift rshift rrshift "
            "irshift and rand iand xor rxor ixor or ror ior").split():
    setattr(_Remote, "__%s__" % _op, _refuser(_op))


class ProgramError(Exception):
    """The program raised an exception that is not one of Python's own (its type and message in the text)."""


_NOT_SENT = ("antigravity", "this", "__main__", "__hello__", "__phello__")


class _Link:
    """The judge's end of the pipes to the candidate: every answer is checked and rebuilt here."""

    def __init__(self, r, w, pid, ns):
        self.answers = os.fdopen(r, "rb")
        self.w, self.pid, self.ns = w, pid, ns
        self.exit = None  # the candidate's exit status, once it ended
        self.killed = False  # ended by the judge, not by itself

    def _ask(self, req):
        if self.exit is None:
            try:
                _send(self.w, req)
            except OSError:  # the candidate is gone: reading says how it ended
                pass
        return self._read()

    def _read(self):
        if self.exit is None:
            try:
                line = self.answers.readline(1 << 26)
            except OSError:
                line = b""
            if line.endswith(b"\n"):
                try:
                    got = json.loads(line)
                except ValueError:
                    got = None
                if type(got) is dict:
                    return got
                raise ProgramError("the program's process answered out of protocol")
            if line:  # an answer over 64 MB: the candidate is ended here, not waited for
                self.killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
            _, status = os.waitpid(self.pid, 0)
            self.exit = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        raise ProgramError("the program's process ended (exit status %s)" % self.exit)

    def first(self):
        """How the program's top level ended: {"ready": True} or {"program": "error"/"oom", ...}."""
        try:
            got = self._read()
        except ProgramError as e:
            return {"program": "error", "error": "%s before the tests ran" % e}
        if got.get("ready") is True:
            return got
        if got.get("program") == "oom":
            return {"program": "oom"}
        return {"program": "error", "error": str(got.get("error", "?"))[:400]}

    def names(self, names):
        got = self._ask({"op": "names", "names": sorted(names)}).get("names")
        if type(got) is not dict:
            raise ProgramError("the program's process answered out of protocol")
        out = {}
        for n, t in got.items():
            if n not in names:
                continue
            if type(t) is list and len(t) == 2 and t[0] == "module" and type(t[1]) is str:
                m = self._module(t[1])
                if m is not None:
                    out[n] = m
            else:
                out[n] = self._value(t)
        return out

    def _module(self, name):
        """The judge's own copy of a module the program imported (by name only: never the program's object)."""
        if name in _NOT_SENT:
            return None
        stdlib = getattr(sys, "stdlib_module_names", None)
        if name not in sys.modules and stdlib is not None and name.split(".")[0] not in stdlib:
            return None
        try:
            import importlib

            return importlib.import_module(name)
        except BaseException:
            return None

    def _value(self, t):
        if type(t) is list and len(t) == 3 and t[0] == "ref" and type(t[1]) is int and type(t[2]) is str:
            return _Remote(self, t[1], t[2])
        try:
            return _from_json(t)
        except (ValueError, TypeError, RecursionError) as e:
            raise ProgramError("the program's process sent a malformed value (%s)" % e) from None

    def _result(self, got):
        if "ok" in got:
            return self._value(got["ok"])
        name, text = got.get("raised"), got.get("error")
        if type(name) is not str or type(text) is not str:
            raise ProgramError("the program's process answered out of protocol")
        cls = getattr(builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):  # Python's own exceptions keep their type
            try:
                exc = cls(text.split(": ", 1)[-1])
            except BaseException:
                exc = None
            if isinstance(exc, cls):
                raise exc
        raise ProgramError(text)

    def _arg(self, v, memo):
        t = type(v)
        if t in _PLAIN:
            return _tag(v)
        if t is _Remote:
            if object.__getattribute__(v, "_rlvr_link") is not self:
                raise TypeError("a reference from another program's process")
            return ["ref", object.__getattribute__(v, "_rlvr_ref")]
        if t in _CONTAINERS:
            return [t.__name__, [self._arg(x, memo) for x in v]]
        if t is dict:
            return ["dict", [[self._arg(k, memo), self._arg(x, memo)] for k, x in v.items()]]
        if t is range:
            return ["range", [v.start, v.stop, v.step]]
        if getattr(t, "__module__", None) == "__main__" and self.ns.get(t.__name__) is t and hasattr(v, "__dict__"):
            # an instance of a class the trusted setup defines (MBPP's test_setup_code: trees, linked lists)
            if id(v) in memo:
                return ["same", memo[id(v)][0]]
            memo[id(v)] = (len(memo), v)
            return ["obj", t.__name__, memo[id(v)][0], [[k, self._arg(x, memo)] for k, x in vars(v).items()]]
        raise TypeError("the test passes a value of type %s to the program: only plain values, ranges, what the "
                        "program returned, and instances of classes the tests' setup defines can be sent" % _type_name(v))

    def call(self, ref, args, kwargs):
        memo = {}
        req = {"op": "call", "ref": object.__getattribute__(ref, "_rlvr_ref"),
               "args": [self._arg(a, memo) for a in args], "kw": [[k, self._arg(x, memo)] for k, x in kwargs.items()]}
        return self._result(self._ask(req))

    def attr(self, ref, name):
        return self._result(self._ask({"op": "attr", "ref": object.__getattribute__(ref, "_rlvr_ref"), "name": name}))

    def close(self):
        """End the candidate (it serves until killed) and reap it; its exit status if it had ended by itself."""
        if self.killed:
            return None
        if self.exit is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
            os.waitpid(self.pid, 0)
            return None
        return self.exit


def _global_names(codes):
    """Every name the tests' code looks up (globals and attributes; never a constant such as an expected value)."""
    out, stack = set(), list(codes)
    while stack:
        c = stack.pop()
        out.update(c.co_names)
        stack.extend(x for x in c.co_consts if isinstance(x, types.CodeType))
    return out


def _judge(job, report_fd):
    """The job process of an assert or call job: fork the candidate, then run the tests here."""
    c_in, j_out = os.pipe()
    j_in, c_out = os.pipe()
    pid = os.fork()
    if pid == 0:  # the candidate: it keeps the program and its setup, and drops the rest of the job (nonce, tests)
        os.close(report_fd)
        os.close(j_out)
        os.close(j_in)
        program, setup = job["program"], job.get("setup") or ""
        job.clear()
        _candidate(program, setup, c_in, c_out)
    os.close(c_in)
    os.close(c_out)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a request to a candidate that is gone raises here
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    nonce = job["nonce"]

    def emit(obj):
        obj["nonce"] = nonce
        _send(report_fd, obj)

    style, tests, entry = job["style"], job.get("tests") or [], job.get("entry_point")
    ns = {"__name__": "__main__", "__builtins__": builtins}
    link = _Link(j_in, j_out, pid, ns)
    first = link.first()
    if "ready" not in first:
        emit(first)
        _end(link, emit)
        return
    try:
        if job.get("setup"):
            exec(compile(job["setup"], "<setup>", "exec"), ns)
    except BaseException as e:
        emit({"program": "error", "error": "the tests' setup failed: " + _describe(e)})
        _end(link, emit)
        return
    codes = []
    if style == "assert":
        for i, t in enumerate(tests):
            try:
                codes.append(compile(t, "<test %d>" % i, "exec"))
            except BaseException as e:  # reported when this test's turn comes
                codes.append(e)
    if entry:
        names = {entry}
    else:
        names = {n for n in _global_names(c for c in codes if isinstance(c, types.CodeType))
                 if not n.startswith("__") and n not in ns and not hasattr(builtins, n)}
    try:
        got = link.names(names) if names else {}
    except ProgramError as e:
        emit({"program": "error", "error": str(e)})
        _end(link, emit)
        return
    ns.update(got)
    for i, t in enumerate(tests):
        t0 = time.perf_counter()
        n_refused = len(_REFUSALS)
        try:
            if style == "assert":
                if not isinstance(codes[i], types.CodeType):
                    raise codes[i]
                exec(codes[i], ns)
                out = {"test": i, "status": "passed"}
            else:  # call
                if entry not in got:
                    raise NameError("the program defines no %s" % entry)
                value = got[entry](*t["input"])
                shown = ["!unsupported", "a value of type " + object.__getattribute__(value, "_rlvr_type")] \
                    if type(value) is _Remote else _to_json(value)
                out = {"test": i, "status": "returned", "value": shown}
        except AssertionError as e:
            out = {"test": i, "status": "failed", "error": ("AssertionError: " + str(e))[:300]}
        except MemoryError:
            out = {"test": i, "status": "oom"}
        except ProgramError as e:
            out = {"test": i, "status": "error", "error": str(e)[:300]}
        except BaseException as e:
            out = {"test": i, "status": "error", "error": _describe(e)}
        if len(_REFUSALS) > n_refused:  # even if the test swallowed the refusal
            out = {"test": i, "status": "failed", "error": _REFUSALS[n_refused][:300]}
        out["seconds"] = time.perf_counter() - t0
        emit(out)
    emit({"done": True})
    _end(link, emit)


def _end(link, emit):
    code = link.close()
    if code is not None:  # the candidate ended by itself (an exit, a kill, the memory limit): the runner's exit code
        emit({"candidate_exit": code})


# ------------------------------------------------------------------------------ a stdio program


def _exit_status(code):
    """The exit status ``SystemExit(code)`` gives, as the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        try:
            return int(code) & 0xFF
        except BaseException:
            return 1
    try:
        sys.stderr.write("%s\n" % (code,))
    except BaseException:
        pass
    return 1


def _print_exc():
    try:
        import traceback

        traceback.print_exc()
    except BaseException:
        pass


def _flush(status):
    """Flush the standard streams as the interpreter does at exit (stdout failing: status 120)."""
    for f in (sys.stdout, sys.__stdout__, sys.stderr):
        try:
            if f is not None and not f.closed:
                f.flush()
        except BaseException:
            if f is not sys.stderr and status == 0:
                status = 120
    return status


def _run_main(program):
    """The job process of a stdio job: the program as ``python3 program.py`` runs it, then its exit."""
    import atexit

    atexit._clear()
    sys.argv = ["program.py"]
    g = {"__name__": "__main__", "__builtins__": builtins}
    status = 0
    try:
        exec(compile(program, "<program>", "exec"), g)
    except SystemExit as e:
        status = _exit_status(e.code)
    except MemoryError:
        _print_exc()
        status = 137  # over the memory limit: the judge's memory_limit
    except BaseException:
        _print_exc()
        status = 1
    # what the interpreter does at exit: wait for non-daemon threads, run atexit handlers, flush
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            _print_exc()
    try:
        atexit._run_exitfuncs()
    except BaseException:
        _print_exc()
    status = _flush(status)
    try:
        g.clear()  # the program's objects finalised (a file object it never closed is flushed), then flushed again
    except BaseException:
        pass
    _flush(0)
    os._exit(status)


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
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a program writing to a closed pipe ends, as it always did
        sys.stdin = sys.__stdin__ = os.fdopen(0, "r", encoding="utf-8", errors="surrogateescape")
        if job["style"] == "stdio":
            os.close(w_rep)
            program = job["program"]
            job.clear()
            # block-buffered, as the interpreter's own stdout on a pipe (flushed at exit)
            sys.stdout = sys.__stdout__ = os.fdopen(1, "w", encoding="utf-8", errors="surrogateescape")
            sys.stderr = sys.__stderr__ = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
            _run_main(program)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        _judge(job, w_rep)
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


def _feed(fd, data, sent):
    """Write what the pipe takes of ``data[sent:]`` (non-blocking); close it once all is written or the
    job stopped reading. Returns (fd or -1 once closed, bytes sent)."""
    if sent < len(data):
        try:
            sent += os.write(fd, data[sent:sent + 65536])
        except BlockingIOError:
            pass
        except OSError:  # the job closed its stdin or ended: the rest is not wanted
            sent = len(data)
    if sent >= len(data):
        os.close(fd)
        return -1, sent
    return fd, sent


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
    stdin_data = memoryview((job.get("stdin") or "").encode())  # all of it, streamed as the job reads it
    os.set_blocking(w_in, False)
    w_in, sent = _feed(w_in, stdin_data, 0)  # a small input goes at once, without waiting for select
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
        ready, writable, _ = select.select(list(open_fds), [w_in] if w_in >= 0 else [], [], left)
        if writable:
            w_in, sent = _feed(w_in, stdin_data, sent)
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
    if w_in >= 0:
        os.close(w_in)
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
            if "candidate_exit" in obj and code == 0:  # the judge finished; the program's process ended by itself
                code = obj["candidate_exit"]
            reports.append(obj)
    return {
        "exit_code": code, "timed_out": timed_out, "output_limit": output_limit, "leftover_processes": leftover,
        "stdout": bytes(bufs[r_out]).decode(errors="replace"), "stderr": bytes(bufs[r_err]).decode(errors="replace"),
        "stdout_truncated": truncated[r_out], "stderr_truncated": truncated[r_err], "reports": reports,
        "seconds": time.perf_counter() - t_start,
    }


# imported once in the runner and shared by every forked job: the tests' usual imports cost nothing
_TEST_MODULES = ("math", "cmath", "re", "string", "collections", "itertools", "functools", "operator", "heapq",
                 "bisect", "fractions", "statistics", "copy", "random", "hashlib", "decimal", "threading", "atexit",
                 "traceback")


def _not_dumpable():
    """prctl(PR_SET_DUMPABLE, 0), inherited by every fork: a process of the same user cannot ptrace
    the runner or a judge, nor open their /proc/PID/mem or /proc/PID/fd (the report pipe)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) == 0
    except Exception:  # noqa: BLE001 - no ctypes or no prctl (not Linux): the report pipe's nonce still holds
        return False


def main():
    dumpable = not _not_dumpable()
    for name in _TEST_MODULES:
        try:
            __import__(name)
        except ImportError:
            pass
    if os.environ.get("RLVR_SWEEP_ALL") == "1":
        _scrub_init()
    gc.freeze()  # keep the runner's own objects out of collections, in it and in its forked children
    me = os.getpid()
    write_msg({"ready": True, "pid": me, "uid": os.getuid(), "python": sys.version.split()[0], "dumpable": dumpable})
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
    try:
        main()
    except BrokenPipeError:  # the host went away
        os._exit(0)
