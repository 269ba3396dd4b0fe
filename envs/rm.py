"""Rewards from a learned reward model: ``env=rm`` (and the base `ModelScoredEnv` that ``env=judge`` shares).

    python -m algos.grpo env=rm env.model=runs/rm env.tasks_from=math                   # RM reward, true accuracy logged
    python -m algos.grpo env=rm env.model=runs/rm env.tasks_from=math env.verifier_weight=1  # verifier + RM, mixed
    python -m algos.iterative_dpo env=rm env.model=runs/rm env.prompts=prompts.jsonl    # pairs from RM scores

Tasks come from a prompt file (``prompts=``: JSON lines / JSON / Parquet with a ``prompt`` or ``question``
column, text or chat messages; an ``answer`` column is kept as the reference; 10% of the prompts, by a hash of
their text, form the held-out split) or from any registered environment (``tasks_from=math``, with that
environment's own options given as further ``env.KEY=VALUE``; its prompts, system prompt and verifiers
are used as they are).

The reward of a completion is the weighted mean of two parts:

* the environment's own reward (``tasks_from`` only; its parts ``correct``, ``format``, ... are all kept and
  logged), weight ``verifier_weight`` (0 by default: still computed and logged, so the true accuracy of a
  policy trained against the reward model is measured at every step);
* ``rm``: the reward model's score of (prompt, completion), normalised by ``normalize`` (``sigmoid``:
  sigmoid(score / scale), in (0, 1) like the verifiers' parts; ``none``: the score itself; ``batch``: the
  z-score within each scored batch), weight ``rm_weight``.

The ``rm`` part's verdict is ``correct`` when its normalised value is at least ``accept`` (0.5 under sigmoid:
a positive score), else ``wrong``; rejection sampling keeps accepted completions. Which part says right or
wrong (``correctness``): the environment's verifier when tasks come from an environment (true accuracy in
``train/accuracy`` and the held-out evaluation; ``reward/rm`` is the proxy), else ``rm``.
``correctness=rm`` makes rejection sampling filter by the reward model on an environment's tasks.

The reward model is loaded on the first batch, in this process (``device``), in batches of
``batch_size``; under ``reward_workers=ray`` each scoring actor loads its own (another process, or
machine, when the policy's has no room). A folder without a value head is refused when the environment
is built, in one line. The environment imports no torch itself: `policies.reward_model` does.

Left out: scoring on a generation server (``python -m policies serve`` serves causal LMs only).
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal, Sequence

from envs.core import EnvError, Task, TaskSource, TextEnv, content_split, where
from verifiers.rewards import RewardResult, Rubric
from verifiers.verdict import Status, Verdict


class PromptFile(TaskSource):
    """Tasks from a file of prompts: a ``prompt`` (or ``question``) column, text or chat messages, and an
    optional ``answer`` (the reference; None without it). The held-out split is 10% of the rows, picked by a
    hash of the prompt's text (`content_split`), so the two splits never share a prompt."""

    def __init__(self, path: str):
        from envs.math_dataset import _load

        if not os.path.exists(os.path.expanduser(path)):
            raise EnvError(f"env.prompts={where(path)}: not found (a JSON-lines file with a 'prompt' column)")
        rows = _load(path, None, "train")
        key = "prompt" if "prompt" in rows.column_names else "question" if "question" in rows.column_names else None
        if key is None:
            raise EnvError(f"env.prompts={path} has columns {rows.column_names}; it needs a 'prompt' (or 'question') column")
        self.name, self.seed, self.path = f"prompts:{os.path.basename(path)}", 0, path
        self._rows: dict[str, list[tuple[Any, Any]]] = {"train": [], "heldout": []}
        for r in rows:
            text = r[key] if isinstance(r[key], str) else "\n".join(m["content"] for m in r[key])
            self._rows[content_split(text)].append((r[key], r.get("answer")))
        if not self._rows["train"]:
            raise EnvError(f"env.prompts={path}: no prompts")

    def size(self, split: str = "train") -> int:
        return len(self._rows[split])

    def task(self, index: int, split: str = "train") -> Task:
        rows = self._rows[split] or self._rows["train"]
        prompt, answer = rows[index % len(rows)]
        return Task(id=f"{self.name}/{split}/{index % len(rows)}", prompt=prompt, reference=answer,
                    metadata={"source": self.name, "split": split, "index": index % len(rows)})


class ModelScoredEnv(TextEnv):
    """Tasks from a prompt file or another environment; a reward part computed by a model from (prompt,
    completion) (`model_verdicts`), mixed with the other environment's reward. Subclasses: `RewardModelEnv`
    (``env=rm``), `envs.judge.JudgeEnv` (``env=judge``)."""

    part = "model"

    def __init__(self, prompts: str | None = None, tasks_from: str | None = None, verifier_weight: float = 0.0,
                 model_weight: float = 1.0, correctness: Literal["auto", "verifier", "model"] = "auto",
                 split: str = "train", prompt_format: str = "chat", system_prompt: str | None = None,
                 render_mode: str | None = None, **options: Any):
        if (prompts is None) == (tasks_from is None):
            raise EnvError(f"env={self.part}: give the tasks with exactly one of env.prompts=FILE (a JSON-lines file of "
                           f"prompts) or env.tasks_from=ENV (e.g. math)")
        if verifier_weight < 0 or model_weight < 0 or verifier_weight + model_weight <= 0:
            raise EnvError(f"env.verifier_weight={verifier_weight}, env.{self.part}_weight={model_weight}: weights are "
                           f">= 0 and not both 0")
        self.inner: TextEnv | None = None
        if tasks_from is not None:
            from envs.registry import make

            self.inner = make(tasks_from, **options, split=split).unwrapped
            source, self.verifier_weight = self.inner.source, verifier_weight
        else:
            if options:
                raise EnvError(f"env={self.part} has no option(s) {sorted(options)} (options of another environment "
                               f"go with env.tasks_from=NAME)")
            if verifier_weight:
                raise EnvError(f"env.verifier_weight={verifier_weight} needs an environment's verifier: use "
                               f"env.tasks_from=NAME instead of env.prompts=")
            source, self.verifier_weight = PromptFile(prompts), 0.0
        self.model_weight = model_weight
        rubric = Rubric()
        if self.inner is not None:
            tw = self.inner.rubric.total_weight or 1.0
            for p in self.inner.rubric.parts:  # kept for their names (logging, correctness); scored by the inner env
                rubric.parts.append(type(p)(p.name, verifier_weight * p.weight / tw, p.verifier, p.func))
        rubric.add_function(self.part, self._unbatched, model_weight)
        super().__init__(source, rubric, split=split, prompt_format=prompt_format, system_prompt=system_prompt,
                         render_mode=render_mode)
        if correctness == "auto":
            correctness = "verifier" if self.inner is not None else "model"
        if correctness == "verifier":
            if self.inner is None:
                raise EnvError("env.correctness=verifier needs env.tasks_from=NAME (a prompt file has no verifier)")
            self.correctness_part = self.inner.correctness()[0]
        elif correctness == "model":
            self.correctness_part = self.part
        else:
            raise EnvError(f"env.correctness={correctness!r}: use auto, verifier or model")

    def _unbatched(self, prompts: Any, completions: Any, **columns: Any) -> list[float]:
        raise EnvError(f"the {self.part} part needs the environment's prompts: score with env.score_batch")

    def prompt_of(self, task: Task) -> Any:
        return self.inner.prompt_of(task) if self.inner is not None else super().prompt_of(task)

    def gold_completion(self, task: Task) -> str:
        return self.inner.gold_completion(task) if self.inner is not None else super().gold_completion(task)

    def model_verdicts(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[Verdict]:
        """The model part of each completion: a verdict whose ``details['value']`` is the part's value."""
        raise NotImplementedError

    def score_batch(self, completions: Sequence[str], tasks: Sequence[Task]) -> list[RewardResult]:
        if len(completions) != len(tasks):
            raise EnvError(f"got {len(completions)} completions for {len(tasks)} tasks")
        if getattr(self, "_scorer", None) is not None:
            return self._scorer(list(completions), list(tasks))
        inner = self.inner.score_batch(completions, tasks) if self.inner is not None else [None] * len(tasks)
        verdicts = self.model_verdicts([self.prompt_of(t) for t in tasks], list(completions))
        tw = self.verifier_weight + self.model_weight
        out = []
        for base, v in zip(inner, verdicts):
            value = float(v.details["value"])
            parts = {**(base.parts if base else {}), self.part: value}
            reward = (self.verifier_weight * (base.reward if base else 0.0) + self.model_weight * value) / tw
            out.append(self.with_correctness(RewardResult(reward, parts, {**(base.verdicts if base else {}), self.part: v})))
        return out


class RewardModelEnv(ModelScoredEnv):
    """``env=rm``: rewards from a learned reward model (a folder of python -m algos.reward_model), on the prompts
    of a file or of another environment, optionally mixed with that environment's verifiers.

    Args:
        model: the reward-model folder.
        prompts / tasks_from: where tasks come from (exactly one); further options go to ``tasks_from``'s env.
        verifier_weight, rm_weight: weights of the environment's reward and of the reward model's part.
        normalize: ``sigmoid`` (of score / scale), ``none`` or ``batch`` (z-score per scored batch).
        scale: divides the score before the sigmoid.
        accept: the normalised value from which the ``rm`` verdict is correct.
        correctness: ``auto`` (the verifier with tasks_from, else rm), ``verifier`` or ``model`` (rm).
        batch_size, device, dtype: how the reward model runs.
    """

    part = "rm"

    def __init__(self, model: str = "", prompts: str | None = None, tasks_from: str | None = None,
                 verifier_weight: float = 0.0, rm_weight: float = 1.0,
                 normalize: Literal["sigmoid", "none", "batch"] = "sigmoid", scale: float = 1.0,
                 accept: float | None = None, correctness: str = "auto", batch_size: int = 16, device: str = "auto",
                 dtype: str = "float32", split: str = "train", prompt_format: str = "chat",
                 system_prompt: str | None = None, render_mode: str | None = None, **options: Any):
        if not model:
            raise EnvError("env=rm needs env.model=FOLDER: a reward model (train one with python -m algos.reward_model "
                           "data=pairs.jsonl out=FOLDER)")
        if normalize not in ("sigmoid", "none", "batch"):
            raise EnvError(f"env.normalize={normalize!r}: use sigmoid, none or batch")
        if scale <= 0 or batch_size < 1:
            raise EnvError(f"env.scale={scale}, env.batch_size={batch_size}: use scale > 0 and batch_size >= 1")
        from policies.base import PolicyError
        from policies.reward_model import check_folder  # reads config.json only

        try:
            self.model_path = check_folder(model)
        except PolicyError as e:
            raise EnvError(str(e)) from None
        self.normalize, self.scale, self.batch_size, self.device, self.dtype = normalize, scale, batch_size, device, dtype
        self.accept = accept if accept is not None else (0.5 if normalize == "sigmoid" else 0.0)
        self._rm: Any = None
        super().__init__(prompts, tasks_from, verifier_weight, rm_weight, "model" if correctness == "rm" else correctness,
                         split, prompt_format, system_prompt, render_mode, **options)

    def raw_scores(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[float]:
        """The reward model's scores (its centring offset subtracted)."""
        if self._rm is None:
            from policies.reward_model import RewardModel

            self._rm = RewardModel.load(self.model_path, self.device, self.dtype, self.batch_size)
        return self._rm.score(prompts, completions)

    def model_verdicts(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[Verdict]:
        raw = self.raw_scores(prompts, completions)
        if self.normalize == "sigmoid":
            vals = [1.0 / (1.0 + math.exp(-max(min(s / self.scale, 60.0), -60.0))) for s in raw]
        elif self.normalize == "batch":
            mu = sum(raw) / max(len(raw), 1)
            sd = math.sqrt(sum((s - mu) ** 2 for s in raw) / max(len(raw), 1))
            vals = [(s - mu) / (sd + 1e-6) for s in raw]
        else:
            vals = list(raw)
        return [Verdict(Status.CORRECT if v >= self.accept else Status.WRONG, 1.0 if v >= self.accept else 0.0,
                        details={"value": v, "score": s}) for s, v in zip(raw, vals)]
