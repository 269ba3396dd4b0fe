"""Entry point of a verifier worker process (started by `verifiers.pool.HardTimeoutPool`)."""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from verifiers.pool import Outcome, _resolve


def _serve(fn_ref: str, rfd: int, wfd: int) -> None:
    rx, tx = Connection(rfd, writable=False), Connection(wfd, readable=False)
    fn = _resolve(fn_ref)
    tx.send("ready")
    while True:
        try:
            msg = rx.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, args = msg
        try:
            out: Outcome = ("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 - reported to the caller as an error, never as a score
            out = ("error", f"{type(e).__name__}: {e}"[:500])
        try:
            tx.send((job_id, out))
        except OSError:
            return


if __name__ == "__main__":
    if len(sys.argv) == 2:  # a manual check that the job module imports
        _resolve(sys.argv[1])
        print(f"ok: {sys.argv[1]} imports")
    else:
        _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
