"""The format verifier's adversarial cases (issue 28, item 9): a closed answer followed by an
unclosed think block, and completions cut off mid-think or mid-answer, earn no format credit in
either mode. Scored as training scores them: the format part of ``envs.make("math")``'s rubric
(``format_mode`` soft or strict, the case's ``reference``), through ``score_batch``.
"""

from __future__ import annotations

import functools

from verifiers.audit import HOLE, RIGHT, Case
from verifiers.verdict import Verdict

ENV = "format"


def _cases() -> list[Case]:
    out: list[Case] = []
    cut = ["<think>a</think><answer>5</answer><think>", "<think>a</think><answer>5</answer><think>more thoughts",
           "<think>a</think>\n<answer>5</answer>\n<think>\nwait, let me", "<answer>5</answer><think>x",
           "<think>a</think><answer>5</answer> <think> b </think> <think> c", "<think>a <answer>5</answer>",
           "<think>a</think><answer>5", "<think>a</think><answer>5</answer><answer>6", "<think>the answer is",
           "<think>a</think><answer>5</answer><think>b</think><answer>6", "<think>a</think><think>b<answer>5</answer>",
           "<think>a</think><answer>", "<think>"]
    for mode in ("soft", "strict"):
        for text in cut:
            out.append(Case(ENV, "soft format: cut-off completions", f"{mode}: {text!r}", HOLE, text, mode))
        for text in ("<answer>5</answer>", "5", "<think></think>", "<think>a</think><answer> </answer>"):
            out.append(Case(ENV, "soft format: no think-then-answer", f"{mode}: {text!r}", HOLE, text, mode))
        for text in ("<think>a</think><answer>5</answer>", "<think>\na\n</think>\n<answer>\n5\n</answer>\n"):
            out.append(Case(ENV, "soft format: well formed", f"{mode}: {text!r}", RIGHT, text, mode))
    out.append(Case(ENV, "soft format: well formed", "soft: text around the blocks", RIGHT,
                    "ok <think>a</think> so <answer>5</answer> done", "soft"))
    return out


CASES = _cases()


@functools.lru_cache(maxsize=2)
def _env(mode: str):
    import envs

    return envs.make("math", format_mode=mode).unwrapped


def score(cases: list[Case]) -> list[Verdict]:
    from envs.core import Task

    out = []
    for c in cases:
        res = _env(c.reference).score_batch([c.completion], [Task("audit/format", "", "5", {})])[0]
        out.append(res.verdicts["format"])
    return out
