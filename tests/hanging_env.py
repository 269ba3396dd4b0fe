"""A math environment whose scoring hangs on the completion "HANG" (for the reward-worker timeout test)."""

import time

from envs.math_procedural import MathEnv


class HangingMathEnv(MathEnv):
    def score_batch(self, completions, tasks):
        if "HANG" in completions:
            time.sleep(3600)
        return super().score_batch(completions, tasks)


class FailingMathEnv(MathEnv):
    """A math environment whose scoring raises on every batch inside a Ray actor (a broken remote scorer);
    in the trainer's own process (held-out evaluation) it scores as MathEnv."""

    def score_batch(self, completions, tasks):
        import ray

        if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
            raise RuntimeError("the grader's database is gone")
        return super().score_batch(completions, tasks)
