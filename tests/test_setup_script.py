""".ci/setup (the set-up that .ci/run calls): --check changes nothing and says, one line a step, what is
done, what is to do and what cannot be done here (no apt-get, not root, no Docker)."""

import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = os.path.join(ROOT, ".ci", "setup")
BASH = shutil.which("bash")


def _fake_path(tmp_path, tools, uid):
    """A PATH with only the basic tools (no apt-get, dockerd, docker, debootstrap, bwrap) and an `id`
    that reports ``uid``."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for t in tools:
        real = subprocess.run(["bash", "-c", f"command -v {t}"], capture_output=True, text=True).stdout.strip()
        os.symlink(real, bin_ / t)
    (bin_ / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_ / "id").chmod(0o755)
    return str(bin_)


def test_check_reports_what_cannot_be_done_here(tmp_path):
    path = _fake_path(tmp_path, ["dirname", "sed", "cat", "seq", "sleep"], uid=1000)
    p = subprocess.run([BASH, SETUP, "--check"], env={"PATH": path, "HOME": str(tmp_path)}, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 1
    err = p.stderr.splitlines()
    assert err[0] == ("setup: cannot install docker.io debootstrap bubblewrap: no apt-get on this machine; install "
                      "them with its package manager")
    assert "setup: cannot start the Docker daemon: dockerd is not installed (step 1)" in err
    assert "setup: cannot build the sandbox image rlvr-sandbox:latest: no running Docker daemon (step 2)" in err
    assert err[-1].startswith("setup: 3 step(s) cannot be done here")
    assert "Traceback" not in p.stdout + p.stderr


def test_not_root_is_one_line(tmp_path):
    path = _fake_path(tmp_path, ["dirname", "sed", "cat", "seq", "sleep"], uid=1000)
    apt = tmp_path / "bin" / "apt-get"
    apt.write_text("#!/bin/sh\necho apt-get must not run >&2; exit 1\n")
    apt.chmod(0o755)
    p = subprocess.run([BASH, SETUP, "--check"], env={"PATH": path, "HOME": str(tmp_path)}, capture_output=True,
                       text=True, timeout=120)
    assert ("setup: cannot install docker.io debootstrap bubblewrap: not root; run as root or: sudo apt-get install -y "
            "docker.io debootstrap bubblewrap") in p.stderr.splitlines()
    assert "must not run" not in p.stderr


def test_little_free_disk_is_a_warning_that_names_the_folder(tmp_path):
    path = _fake_path(tmp_path, ["dirname", "sed", "cat", "seq", "sleep", "awk"], uid=1000)
    df = tmp_path / "bin" / "df"  # 2 GB available, in df -Pk's columns
    df.write_text("#!/bin/sh\necho 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
                  "echo '/dev/x 100000000 97902848 2097152 98% /'\n")
    df.chmod(0o755)
    env = {"PATH": path, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    p = subprocess.run([BASH, SETUP, "--check"], env=env, capture_output=True, text=True, timeout=120)
    assert (f"setup: warning: 2 GB free in {tmp_path}; the tests need about 4 GB there at their peak (free some, "
            f"or set TMPDIR)") in p.stderr.splitlines()
    assert "setup: 3 step(s) cannot be done here" in p.stderr  # a warning, not a step that cannot be done
    df.write_text("#!/bin/sh\necho 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
                  "echo '/dev/x 100000000 10 20971520 1% /'\n")
    p = subprocess.run([BASH, SETUP, "--check"], env=env, capture_output=True, text=True, timeout=120)
    assert f"setup: disk (20 GB free in {tmp_path}): done" in p.stdout.splitlines() and "warning" not in p.stderr


def test_this_machine_is_set_up_and_check_changes_nothing():
    """On the machine the tests run on, every step is done: --check (and so .ci/setup) skips each."""
    before = os.path.getmtime(os.path.join(ROOT, ".venv"))
    p = subprocess.run([BASH, SETUP, "--check"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[-1] == "setup: ready" and all(line.endswith(": done") for line in lines[:-1])
    assert len([x for x in lines if not x.startswith("setup: disk")]) == 8  # the disk line: when there is room
    assert os.path.getmtime(os.path.join(ROOT, ".venv")) == before


def test_ci_run_calls_the_setup():
    run = open(os.path.join(ROOT, ".ci", "run")).read()
    assert ".ci/setup\n" in run and "python -m pytest -q" in run
