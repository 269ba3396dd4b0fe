import os
import time

from verifiers.pool import HardTimeoutPool


def test_timeouts_crashes_and_errors_are_reported_and_the_pool_recovers():
    pool = HardTimeoutPool("tests.pool_jobs:job", workers=2, timeout=1.0)
    try:
        t0 = time.perf_counter()
        out = pool.map([("ok", 1), ("sleep", 30), ("raise", 0), ("exit", 0), ("ok", 2), ("ok", 3)])
        took = time.perf_counter() - t0
        assert out[0] == ("ok", 1) and out[4] == ("ok", 2) and out[5] == ("ok", 3)
        assert out[1] == ("timeout", 1.0)
        assert out[2][0] == "error" and "ZeroDivisionError" in out[2][1]
        assert out[3][0] == "error" and "died" in out[3][1]
        assert took < 6, took
        assert pool.map([("ok", 9)] * 5) == [("ok", 9)] * 5
        assert pool.n_killed == 1
    finally:
        pool.close()


def test_worker_does_not_reimport_callers_main():
    # the pool starts `python -m verifiers._worker`, never a fork or re-run of the caller
    pool = HardTimeoutPool("tests.pool_jobs:job", workers=1, timeout=5)
    try:
        (kind, pid), = pool.map([("pid", 0)])
        assert kind == "ok" and pid != os.getpid()
    finally:
        pool.close()
