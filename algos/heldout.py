"""Held-out evaluation shared by every algorithm: greedy accuracy and mean reward on a fixed
set of the environment's held-out tasks (disjoint from training tasks by construction)."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from policies.base import SamplingParams
from verifiers.code import raise_if_sandbox_down


def heldout_eval(engine: Any, env: Any, n_tasks: int, max_new_tokens: int, batch_size: int = 256,
                 temperature: float = 0.0, n: int = 1, seed: int = 0) -> dict[str, float]:
    """Generate for the first ``n_tasks`` held-out tasks and score them.

    Returns ``accuracy`` (share judged correct), ``mean_reward``, ``format`` (share well formed,
    where the environment scores format) and the count of verifier errors/timeouts. Under
    torchrun the tasks are split over ranks (every rank must call it) and the figures are those
    of all of them. A progress bar (tasks done, rate, ETA; rank 0 only) counts this process's tasks,
    advancing once per ``batch_size`` chunk; it is cleared when the evaluation ends.
    """
    from algos.dist import world
    from algos.episodes import generate

    w = world()
    base = env.unwrapped
    tasks = w.strided(base.tasks(n_tasks, "heldout"))
    params = SamplingParams(n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    correct = reward = fmt = errors = 0.0
    total = 0
    bar = tqdm(total=len(tasks), desc="held-out eval", unit="task", leave=False, dynamic_ncols=True,
               disable=not w.is_main)
    for s in range(0, len(tasks), batch_size):
        chunk = tasks[s:s + batch_size]
        outs = generate(engine, base, chunk, params)  # one turn, or several with tools
        flat_tasks = [t for t, rs in zip(chunk, outs) for _ in rs]
        results = base.score_batch([r.text for rs in outs for r in rs], flat_tasks)
        raise_if_sandbox_down(results)
        for res in results:
            total += 1
            v = next(iter(res.verdicts.values()), None)  # the correctness part's (TextEnv.with_correctness)
            correct += float(v is not None and v.correct)
            errors += float(v is not None and v.is_error)
            reward += res.reward
            fmt += res.parts.get("format", 0.0)
        bar.update(len(chunk))
    bar.close()
    import torch

    correct, reward, fmt, errors, total = w.sum(torch.tensor([correct, reward, fmt, errors, float(total)],
                                                             dtype=torch.float64)).tolist()  # one reduction
    total = max(total, 1)
    return {"accuracy": correct / total, "mean_reward": reward / total, "format": fmt / total,
            "verifier_errors": errors, "n": float(total)}
