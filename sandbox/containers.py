"""Lifecycle of our containers: every container a pool starts carries `LABEL` and its owner process
(`owner_label`); pools close at interpreter exit and on SIGTERM (`install_exit_hooks`), and
`prune` (``python -m sandbox prune``) removes ours, all of them or those whose owner is gone.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import threading
import weakref
from typing import Any



LABEL = "rlvr-gym.sandbox"  # every container we start carries it; `python -m sandbox prune` removes them all
_POOLS: "weakref.WeakSet[Any]" = weakref.WeakSet()  # open sandbox.core.Sandbox pools
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
