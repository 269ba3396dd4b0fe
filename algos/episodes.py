"""Episodes: what a policy does with a batch of tasks, one turn or several.

For a single-turn environment an episode is one ``engine.generate`` call. For an environment
with tools (``env.unwrapped.parse_call``, e.g. ``rlvr/ToolMath-v0``) each row goes on turn by
turn: generation stops at the tool call, the environment runs the tools of every row that
called one (in one batch), the result's tokens are appended, and the model continues from the
token ids of everything so far, until a reply with no call, the turn limit, or the token budget
(``max_new_tokens`` for the whole episode). The rollout that comes back is one sequence:
``completion_ids`` has the model's tokens and the tools' tokens in order, ``logprobs`` the
model's sampling logprobs (0 at tool tokens), ``loss_mask`` 1 at the model's tokens and 0 at the
tools', ``text`` the transcript. Trainers leave the tools' tokens out of the loss. A tool's output
reaches the sequence only through ``base.run_tools`` (`envs.tools.result_block`), which opens no tag
inside it, so the transcript's ``<answer>`` and ``</think>`` are the model's own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from policies import Rollout, SamplingParams
from policies.hf import encode_prompt


def is_multi_turn(base: Any) -> bool:
    return hasattr(base, "parse_call") and getattr(base, "max_turns", 0) > 0


def generate(engine: Any, base: Any, tasks: Sequence[Any], params: SamplingParams) -> list[list[Rollout]]:
    """``params.n`` episodes per task, in order (``out[i][j]``: episode j of task i). A mixture
    (`algos.mixture.Mixture`) of single-turn environments is one generation call; with an environment
    that calls tools, each environment's tasks go through it on their own."""
    members = getattr(base, "members", None)
    if members is not None and any(is_multi_turn(m) for m in members.values()):
        out: list[list[Rollout]] = [[] for _ in tasks]
        for label, m in members.items():
            idx = [i for i, t in enumerate(tasks) if base.env_of(t) == label]
            for i, rs in zip(idx, generate(engine, m, [tasks[i] for i in idx], params) if idx else []):
                out[i] = rs
        return out
    prompts = [base.prompt_of(t) for t in tasks]
    if not is_multi_turn(base):
        return engine.generate(prompts, params)
    tok = getattr(engine, "tokenizer", None)
    if tok is None:
        from algos.config import ConfigError

        raise ConfigError(f"{type(base).__name__} calls tools over several turns, which needs token ids: use "
                          f"policy.engine=transformers, vllm or server (not openai)")
    from envs.tools import TOOL_STOP

    n = 1 if params.temperature == 0 else params.n
    rows = [(i, encode_prompt(tok, p)) for i, p in enumerate(prompts) for _ in range(n)]
    seq: list[list[int]] = [[] for _ in rows]
    lps: list[list[float]] = [[] for _ in rows]
    mask: list[list[int]] = [[] for _ in rows]
    finish = ["length"] * len(rows)
    versions: list[int | None] = [None] * len(rows)
    active = list(range(len(rows)))
    turn = 0
    while active:
        budget = {r: params.max_new_tokens - len(seq[r]) for r in active}
        active = [r for r in active if budget[r] > 0]
        if not active:
            break
        step = dataclasses.replace(params, n=1, stop=tuple(params.stop) + (TOOL_STOP,),
                                   max_new_tokens=max(budget[r] for r in active),
                                   seed=None if params.seed is None else params.seed + 7_919 * turn)
        outs = engine.generate([rows[r][1] + seq[r] for r in active], step)
        calls, callers = [], []
        for r, (ro,) in zip(active, outs):
            ids = list(ro.completion_ids)[:budget[r]]
            seq[r] += ids
            lps[r] += list(ro.logprobs or [0.0] * len(ids))[:len(ids)]
            mask[r] += [1] * len(ids)
            versions[r] = ro.version
            said = tok.decode(ids, skip_special_tokens=True)
            end = said.rfind(TOOL_STOP)
            call = base.parse_call(said[:end + len(TOOL_STOP)]) if ro.finish_reason == "stop" and end >= 0 else None
            used = tool_results(mask[r])
            if call is not None and used < base.max_turns and len(seq[r]) < params.max_new_tokens:
                calls.append(call)
                callers.append(r)
            else:
                finish[r] = "length" if len(seq[r]) >= params.max_new_tokens and ro.finish_reason == "length" else ro.finish_reason
                if call is not None:  # a call past the limit: the episode ends there, unanswered
                    finish[r] = "stop"
        for r, result in zip(callers, base.run_tools(calls) if calls else []):
            ids = tok(result, add_special_tokens=False)["input_ids"]
            seq[r] += ids
            lps[r] += [0.0] * len(ids)
            mask[r] += [0] * len(ids)
        active = callers
        turn += 1
    out = [[] for _ in prompts]
    for r, (i, pids) in enumerate(rows):
        text = tok.decode(seq[r], skip_special_tokens=True)
        out[i].append(Rollout(prompts[i], text, tuple(pids), tuple(seq[r]), tuple(lps[r]), finish[r],  # type: ignore[arg-type]
                              versions[r], tuple(mask[r])))
    if n == 1 and params.n > 1:  # greedy: one episode, copied
        out = [(rs * params.n)[:params.n] for rs in out]
    return out


def tool_results(mask: Sequence[int]) -> int:
    """How many tool results a loss mask holds: its runs of 0."""
    return sum(1 for k, v in enumerate(mask) if v == 0 and (k == 0 or mask[k - 1] != 0))
