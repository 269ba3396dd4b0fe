"""`check_env`: one conformance check, run in the tests over every registered environment."""

from __future__ import annotations

import warnings
from typing import Any

from envs.core import PromptSpace, Task, TextEnv


class EnvCheckError(AssertionError):
    """An environment broke the `TextEnv` contract; the message says which rule and how."""


def _fail(msg: str) -> None:
    raise EnvCheckError(msg)


def check_env(env: Any, n_tasks: int = 8) -> None:
    """Check seeded determinism, types, gold answers score 1, junk and empty score 0, no warnings,
    and that train and held-out tasks are disjoint. Raises `EnvCheckError` on the first failure.
    Warns (``UserWarning``) when the environment declares no correctness part (``correctness_part``
    or a part named ``correct``): accuracy is then read from its rubric's first part."""
    base = getattr(env, "unwrapped", env)
    if not isinstance(base, TextEnv):
        _fail(f"{type(base).__name__} is not a TextEnv")
    try:
        part, declared = base.correctness()
    except ValueError as e:  # EnvError: a declared part the rubric lacks
        _fail(str(e))
    if not declared:
        warnings.warn(f"{type(base).__name__} declares no correctness part: held-out accuracy and pass@k read its "
                      f"rubric's first part {part!r}; set correctness_part = {part!r} on the class (or the part "
                      f"that says right or wrong)", UserWarning, stacklevel=2)
    import gc

    gc.collect()  # other objects' garbage (an unclosed socket's ResourceWarning) is not this environment's warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _check(env, base, n_tasks)
    if caught:
        w = caught[0]
        _fail(f"the environment emitted {len(caught)} warning(s), first: {w.category.__name__}: {w.message} "
              f"({w.filename}:{w.lineno})")


def _check(env: Any, base: TextEnv, n_tasks: int) -> None:
    # seeded determinism
    obs1, info1 = env.reset(seed=123)
    obs2, info2 = env.reset(seed=123)
    if obs1 != obs2 or info1.get("task_id") != info2.get("task_id"):
        _fail(f"reset(seed=123) twice gave different tasks: {info1.get('task_id')!r} vs {info2.get('task_id')!r}")
    ids = {env.reset(seed=s)[1]["task_id"] for s in range(max(n_tasks, 16))}
    if len(ids) < 2:
        _fail(f"reset with {n_tasks} different seeds always gave the same task {ids}")
    # types
    if not isinstance(info1, dict) or not isinstance(info1.get("task_id"), str):
        _fail(f"reset() must return (prompt, info) with a str info['task_id'], got info={info1!r:.200}")
    if not PromptSpace().contains(obs1) or not base.observation_space.contains(obs1):
        _fail(f"reset() observation must be a str or a list of chat messages, got {obs1!r:.200}")
    if not isinstance(info1.get("task"), Task):
        _fail("reset() info must hold the Task under 'task'")
    # scoring: gold 1, junk 0, empty 0, through step and through score_batch
    split = "train" if base.source.size("train") != 0 else "heldout"  # evaluation-only sets have no train split
    tasks = base.tasks(n_tasks, split)
    if len(tasks) != n_tasks or not all(isinstance(t, Task) for t in tasks):
        _fail(f"tasks({n_tasks}) must return {n_tasks} Task records")
    if [t.id for t in tasks] != [t.id for t in base.tasks(n_tasks, split)]:
        _fail("tasks() is not reproducible: two calls gave different task ids")
    for kind, make_completion, want in (("gold", base.gold_completion, 1.0), ("junk", lambda t: "qwerty uiop zxcv", 0.0),
                                         ("empty", lambda t: "", 0.0)):
        for t in tasks[:3]:
            env.reset(options={"task": t})
            obs, reward, terminated, truncated, info = env.step(make_completion(t))
            if not isinstance(reward, float):
                _fail(f"step() reward must be a float, got {type(reward).__name__}")
            if not isinstance(terminated, bool) or not isinstance(truncated, bool):
                _fail("step() terminated and truncated must be bools")
            if "reward_parts" not in info or "verdict" not in info:
                _fail(f"step() info must hold 'verdict' and 'reward_parts', got keys {sorted(info)}")
            v = info["verdict"]
            if v is not None and v.is_error:
                _fail(f"the verifier failed on a {kind} completion for task {t.id}: {v.status} {v.details}")
            if abs(reward - want) > 1e-9:
                _fail(f"a {kind} completion for task {t.id} scored {reward}, expected {want}: parts {info['reward_parts']}, "
                      f"verdict {v}")
        batch = base.score_batch([make_completion(t) for t in tasks], tasks)
        bad = [(t.id, r.reward) for t, r in zip(tasks, batch) if abs(r.reward - want) > 1e-9]
        if bad:
            _fail(f"score_batch scored {kind} completions {bad[:3]}, expected {want}")
    # held-out split is disjoint from train
    if split == "heldout":
        return
    train = {t.prompt for t in base.tasks(4 * n_tasks, "train")}
    held = {t.prompt for t in base.tasks(4 * n_tasks, "heldout")}
    if train & held:
        _fail(f"train and held-out splits share {len(train & held)} task(s), e.g. {sorted(train & held)[0]!r:.100}")
