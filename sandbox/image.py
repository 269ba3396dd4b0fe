"""Build the sandbox image without a registry: debootstrap a minimal Debian with python3
into a folder, then ``docker import`` it.

    python -m sandbox image build [--name rlvr-sandbox:latest] [--suite bookworm] [--mirror URL]

Needs root, ``debootstrap`` (apt-get install debootstrap) and a reachable Debian mirror.
The result is equivalent, for the runner, to ``python:3.12-slim``: a minimal Debian with
python3 (3.11 on bookworm) and the ``nobody`` user (uid 65534).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile

DEFAULT_NAME = "rlvr-sandbox:latest"


def build(name: str = DEFAULT_NAME, suite: str = "bookworm", mirror: str | None = None, quiet: bool = False) -> str:
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is not installed: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise SystemExit("debootstrap needs root: run this command as root (or with sudo)")
    import docker

    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="rlvr-rootfs-") as d:
        root = os.path.join(d, "rootfs")
        cmd = ["debootstrap", "--variant=minbase", "--include=python3", suite, root] + ([mirror] if mirror else [])
        print("running: " + " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(os.path.join(root, junk), ignore_errors=True)
        # `docker import` via the CLI streams the tarball without holding it in memory
        p = subprocess.run(f"tar -C {shlex.quote(root)} -c . | docker import - {shlex.quote(name)}", shell=True,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"docker import failed: {p.stderr.strip()}")
    out = client.containers.run(name, ["python3", "-c", "import sys; print(sys.version.split()[0])"], remove=True,
                                network_mode="none")
    print(f"built {name} (python {out.decode().strip()})")
    return name
