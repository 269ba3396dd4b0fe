"""Rewards from an LLM judge: ``env=judge``.

    python -m algos.rejection_sampling env=judge env.prompts=prompts.jsonl env.judge.model=NAME \\
        env.judge.base_url=http://localhost:8000/v1 env.judge.rubric=rubric.txt

Tasks as in ``env=rm`` (`envs.rm.ModelScoredEnv`: ``prompts=FILE`` or ``tasks_from=ENV`` with its options,
``verifier_weight`` for that environment's reward, ``correctness``); the ``judge`` part is the judge's score
mapped to [0, 1], weight ``judge_weight``; its verdict is ``correct`` from ``judge.accept``, and an
unparsable judgement or an endpoint that stayed down is an ``error`` verdict (counted in ``verdict/error``,
never a 0 that looks like a bad answer). ``judge`` takes the keys of `policies.judge.JudgeConfig`
(``env.judge.model=``, ``env.judge.base_url=``, ``env.judge.api_key_env=``, ``env.judge.rubric=``,
``env.judge.cache=``, ...). Judgements are cached on disk (`policies.judge`), so a rerun judges nothing twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from envs.core import EnvError
from envs.rm import ModelScoredEnv
from verifiers.verdict import Verdict


class JudgeEnv(ModelScoredEnv):
    """``env=judge``: rewards from an LLM judge with a rubric (policies.judge), on the prompts of a file or of
    another environment, optionally mixed with that environment's verifiers.

    Args:
        judge: the judge's settings (policies.judge.JudgeConfig keys, as env.judge.KEY=VALUE).
        prompts / tasks_from, verifier_weight, correctness: as in env=rm.
        judge_weight: weight of the judge's part.
    """

    part = "judge"

    def __init__(self, judge: dict | None = None, prompts: str | None = None, tasks_from: str | None = None,
                 verifier_weight: float = 0.0, judge_weight: float = 1.0, correctness: str = "auto",
                 split: str = "train", prompt_format: str = "chat", system_prompt: str | None = None,
                 render_mode: str | None = None, **options: Any):
        from policies.base import PolicyError
        from policies.judge import Judge, JudgeConfig

        judge = dict(judge or {})
        judge.update({k[len("judge."):]: options.pop(k) for k in [k for k in options if k.startswith("judge.")]})
        fields = {f.name for f in dataclasses.fields(JudgeConfig)}
        unknown = sorted(set(judge) - fields)
        if unknown:
            raise EnvError(f"env.judge.{unknown[0]} is not a judge key; the keys: {', '.join(sorted(fields))}")
        try:
            self.judge = Judge(JudgeConfig(**judge))
        except PolicyError as e:
            raise EnvError(str(e).replace("judge.", "env.judge.")) from None
        super().__init__(prompts, tasks_from, verifier_weight, judge_weight,
                         "model" if correctness == "judge" else correctness, split, prompt_format, system_prompt,
                         render_mode, **options)

    def model_verdicts(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[Verdict]:
        return self.judge.score(prompts, completions)
