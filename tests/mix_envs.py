"""A scripted environment whose outcome the test controls (for mixtures, dynamic sampling and the
difficulty filter): task i of ``kinds`` (wrapping around, as a dataset's epochs do) is solved by
every completion ("always"), by none ("never"), or when the CRC-32 of the completion is even
("coin": sampled completions differ, so its groups usually carry signal)."""

import zlib

from envs import Task, TaskSource, TextEnv
from verifiers import Rubric


class ScriptedSource(TaskSource):
    name = "scripted"

    def __init__(self, kinds, seed=0):
        self.kinds, self.seed = list(kinds), seed

    def task(self, index, split="train"):
        i = index % len(self.kinds)
        return Task(f"scripted/{split}/{i}", f"Say anything. ({self.kinds[i]} #{i})", self.kinds[i],
                    {"source": self.name, "split": split, "index": i})

    def size(self, split="train"):
        return len(self.kinds)


def scripted(prompts, completions, answer, **columns):
    return [1.0 if a == "always" else 0.0 if a == "never" else float(zlib.crc32(c.encode()) % 2 == 0) for c, a in zip(completions, answer)]


class ScriptedEnv(TextEnv):
    correctness_part = "correct"

    def __init__(self, kinds="always,never,coin,coin", seed=0, **kw):
        kw.setdefault("system_prompt", "You are scripted.")
        super().__init__(ScriptedSource(str(kinds).split(","), seed), Rubric().add_function("correct", scripted, 1.0), **kw)
