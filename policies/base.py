"""The policy interface: generate ``n`` samples per prompt and return `Rollout` records.

A `Rollout` keeps the token ids and the per-token sampling logprobs, so a trainer never
re-tokenizes text it did not see. Logprobs are those of the sampling policy: log-softmax of
``logits / temperature`` (raw logits for greedy decoding), before any top-k/top-p
truncation; the quantity a policy-gradient ratio needs, and what
`TransformersEngine.logprobs(rollouts, temperature)` and `hf.token_logprobs` recompute.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol, Sequence, Union, runtime_checkable

Message = dict[str, str]
Prompt = Union[str, list[Message]]
FinishReason = Literal["eos", "stop", "length", "abort"]  # abort: ended early by the server (/pause, vLLM's abort)


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature=0`` means greedy."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))


@dataclasses.dataclass(frozen=True)
class Rollout:
    """One sampled completion."""

    prompt: Prompt
    text: str
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    logprobs: tuple[float, ...] | None  # one per completion token; None when the engine gives none
    finish_reason: FinishReason
    version: int | None = None  # the weights version that produced it (generation servers report it)
    loss_mask: tuple[int, ...] | None = None  # per completion token, 0 where the environment wrote it (tool results)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@runtime_checkable
class Policy(Protocol):
    """Anything that generates: the transformers engine, vLLM, an OpenAI-compatible server."""

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Rollout]]:
        """``n`` rollouts for each prompt, in order: ``out[i][j]`` is sample j of prompt i."""
        ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string (the stop string itself is dropped)."""
    cut = min((k for k in (text.find(s) for s in stop if s) if k >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class ServerDown(ConnectionError):
    """A generation server stayed unreachable past its retries: a trainer saves a checkpoint and stops."""


class WeightSyncError(RuntimeError):
    """A server does not serve the weights the trainer sent (and a re-sync did not bring it to them): a
    trainer saves a checkpoint and stops with one line (exit 3). (`policies.weight_sync` raises it.)"""


class PolicyError(ValueError):
    """A policy setting this machine cannot honour (device, dtype): the message names the value and the fix."""
