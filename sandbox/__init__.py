"""Isolated execution of untrusted, model-written code.

What the Docker backend (the default) isolates, per long-lived container:
  * network: none (``network_mode=none``: no interfaces but loopback);
  * filesystem: read-only root; the only writable place is a small tmpfs at /tmp (64 MB,
    nosuid, nodev, noexec); each job gets a fresh working directory there, deleted after;
  * privileges: a non-root user (65534, nobody), all capabilities dropped, no-new-privileges;
  * resources: a pids limit (64), memory limit equal to memory+swap (512 MB), a CPU quota
    (1 CPU), file-size (32 MB) and open-file (256) limits; per job, in the runner's forked
    child: a new session, RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE, a wall-clock
    limit enforced by killing the job's whole process group, a cap on captured output (more
    kills the job), and a sweep that kills any process the job left behind;
  * verdicts: decided where the program cannot reach them. Tests run in a judge process that
    never runs the program; the program runs in a process of its own that only answers calls
    with plain values (anything else is a reference the tests may call but never compare), and
    the judge reports on a pipe the program does not hold, with a per-job nonce; the runner and
    the judge are non-dumpable (no ptrace, no /proc/PID/mem or fd by the same user). Patching
    ``json``, ``os.write`` or builtins, exiting or killing never scores as a pass. A stdio
    program's verdict is its exit status and output, read by the runner.
A container is replaced after ``max_jobs_per_worker`` jobs, and at once after a timeout, an
out-of-memory kill, a leftover process or a runner that stopped answering.

What it does not isolate: the host kernel is shared (a kernel exploit escapes any
container; use gVisor/Kata via Docker's runtime for that); jobs in the same container run
one after another and share its /tmp between jobs only through what the sweep and the
per-job directory cleanup leave (nothing by design, but a job can fill the tmpfs for its own
duration); CPU time of one job can slow its neighbours on the same host; timing side
channels; and the freed heap of a program's process may still hold the text of its tests
(reading it needs the process's own memory: ``/proc/self/mem`` and ``ctypes`` are refused there).

``bwrap`` backend: bubblewrap namespaces (no network, PID/IPC/UTS/user namespaces, read-only
host root, private /tmp), the same runner limits; no cgroup memory/pids limits.
``unsafe-process`` backend: the runner as a plain subprocess of yours, with only the
per-job rlimits and process-group kill: NO isolation (network, files, your user's rights);
it must be asked for by name and exists for machines where neither Docker nor bubblewrap
is available and the code is trusted.
"""

__rlvr_gym__ = True  # marks rlvr-gym's package (envs/_layout.py tells it from a same-named one)

from sandbox.core import Job, Result, Sandbox, SandboxError, SandboxUnavailable, TestResult

__all__ = ["Job", "Result", "Sandbox", "SandboxError", "SandboxUnavailable", "TestResult"]
