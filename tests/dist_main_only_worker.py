"""Rank-0-only work under torchrun (`algos.dist.World.main_only`), for tests/test_distributed.py:

    torchrun --standalone --nproc_per_node=2 tests/dist_main_only_worker.py quick|slow|fails
"""

import sys
import time

from algos import dist
from algos.common import run_main


def main(argv):
    mode = sys.argv[1]
    w = dist.init("ddp", "gloo", 120)
    if mode == "quick":
        got = w.main_only("quick job", lambda: (time.sleep(2), 42)[1], timeout=60)
        print(f"rank {w.rank} got {got}", file=sys.stderr)
    elif mode == "slow":
        w.main_only("slow job", lambda: time.sleep(60), timeout=3)
    else:
        def boom():
            raise ValueError("the suite broke")

        w.main_only("failing job", boom, timeout=60)


if __name__ == "__main__":
    run_main(main)
