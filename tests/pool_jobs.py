"""Jobs for tests/test_pool.py (run inside worker processes)."""

import os
import time


def job(kind, value):
    if kind == "sleep":
        time.sleep(value)
    if kind == "raise":
        return 1 / value
    if kind == "exit":
        os._exit(3)
    if kind == "pid":
        return os.getpid()
    return value
