"""A math environment whose scoring hangs on the completion "HANG" (for the reward-worker timeout test)."""

import time

from envs.math_procedural import MathEnv


class HangingMathEnv(MathEnv):
    def score_batch(self, completions, tasks):
        if "HANG" in completions:
            time.sleep(3600)
        return super().score_batch(completions, tasks)
