"""Reward composition: weighted parts, each kept and logged.

A part is either one of our verifiers (it yields a `Verdict` per completion) or any
function with TRL's reward signature ``f(prompts, completions, **columns) -> list[float]``.
The functions below have that signature too, so they can be handed to TRL unchanged:

>>> math_reward(["1+1?"], ["<think>1+1=2</think><answer>2</answer>"], answer=["2"])
[1.0]
>>> format_reward(["1+1?"], ["2"])
[0.0]

The total reward is the weighted mean of the parts, ``sum(w_i r_i) / sum(w_i)``, so it
lies in [0, 1] whatever the weights, and a fully correct, well-formed answer scores 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from verifiers.format import FormatVerifier
from verifiers.math import MathVerifier
from verifiers.verdict import Status, Verdict

RewardFunc = Callable[..., list[float]]


def completion_text(c: Any) -> str:
    """TRL passes either strings or conversational completions (a list of messages). Of a conversation,
    the model's last message is read: a tool's message (role ``tool``, ``function``, ``ipython``) or
    any other role's is never read as the model's answer; a conversation with no assistant message
    reads as empty (no answer)."""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and all(isinstance(m, dict) and "content" in m for m in c):
        own = [m for m in c if m.get("role", "assistant") == "assistant"]
        return str(own[-1]["content"]) if own else ""
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(c).__name__}: {c!r:.80}")


def math_reward(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str], **columns: Any) -> list[float]:
    """1.0 when the final answer is equivalent to ``answer``, else 0.0 (TRL signature)."""
    return [v.score for v in MathVerifier().verify_batch([completion_text(c) for c in completions], [str(a) for a in answer])]


def format_reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
    """1.0 for ``<think>...</think>`` followed by ``<answer>...</answer>`` (soft), else 0.0 (TRL signature)."""
    return [v.score for v in FormatVerifier("soft").verify_batch([completion_text(c) for c in completions])]


@dataclasses.dataclass(frozen=True)
class RewardResult:
    """The reward of one completion, with every part and (for our verifiers) its verdict."""

    reward: float
    parts: dict[str, float]
    verdicts: dict[str, Verdict]

    @property
    def status(self) -> Status | None:
        """The status of the first verdict-producing part (the correctness check, by convention)."""
        return next(iter(self.verdicts.values())).status if self.verdicts else None


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    weight: float
    verifier: Any = None  # has verify_batch(completions, references) -> list[Verdict]
    func: RewardFunc | None = None  # TRL-signature function


class Rubric:
    """Weighted reward parts. ``Rubric().add_verifier("correct", MathVerifier(), 1.0)``."""

    def __init__(self) -> None:
        self.parts: list[Part] = []

    def add_verifier(self, name: str, verifier: Any, weight: float = 1.0) -> "Rubric":
        self._check(name, weight)
        self.parts.append(Part(name, float(weight), verifier=verifier))
        return self

    def add_function(self, name: str, func: RewardFunc, weight: float = 1.0) -> "Rubric":
        self._check(name, weight)
        self.parts.append(Part(name, float(weight), func=func))
        return self

    def _check(self, name: str, weight: float) -> None:
        if any(p.name == name for p in self.parts):
            raise ValueError(f"reward part {name!r} is already in this rubric")
        if weight < 0:
            raise ValueError(f"reward weight for {name!r} must be >= 0, got {weight}")

    @property
    def total_weight(self) -> float:
        return sum(p.weight for p in self.parts)

    def score(self, completions: Sequence[str], references: Sequence[Any], prompts: Sequence[Any] | None = None,
              **columns: Any) -> list[RewardResult]:
        n = len(completions)
        if not self.parts:
            raise ValueError("this rubric has no parts; add one with add_verifier or add_function")
        part_scores: dict[str, list[float]] = {}
        part_verdicts: dict[str, list[Verdict]] = {}
        for p in self.parts:
            if p.verifier is not None:
                vs = p.verifier.verify_batch(completions, references)
                part_verdicts[p.name] = vs
                part_scores[p.name] = [v.score for v in vs]
            else:
                vals = p.func(list(prompts or [None] * n), list(completions), **columns)
                if len(vals) != n:
                    raise ValueError(f"reward function {p.name!r} returned {len(vals)} values for {n} completions")
                part_scores[p.name] = [float(x) for x in vals]
        tw = self.total_weight or 1.0
        out = []
        for i in range(n):
            parts = {k: v[i] for k, v in part_scores.items()}
            reward = sum(p.weight * parts[p.name] for p in self.parts) / tw
            out.append(RewardResult(reward, parts, {k: v[i] for k, v in part_verdicts.items()}))
        return out
