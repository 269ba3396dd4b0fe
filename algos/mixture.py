"""Training on a mixture of environments, and the per-environment metrics of a batch.

    python -m algos.grpo env=[math,ifeval] env.weights=[0.7,0.3] env.math.difficulty=2

* ``env=[A,B,...]`` names the environments (aliases, Gymnasium ids, entry points, ``module:Class``:
  a third-party environment mixes in as any other); ``env.weights=[...]`` gives one weight per
  environment, in order (default: equal); ``env.KEY=VALUE`` goes to every environment and
  ``env.NAME.KEY=VALUE`` to one (the same parsing as ``algos.evaluate``: `env_names`, `env_options`).
* `Mixture` stands where one environment stands in every algorithm (``env.unwrapped``,
  ``source.tasks``, ``prompt_of``, ``score_batch``, ``tasks``, ``demonstration``): the k-th task of
  the mixture's stream comes from the environment chosen by a hash of (seed, split, k) against the
  weights, and is that environment's next task. The stream is a pure function of its position, so
  the data position already saved in every checkpoint is the sampler's whole state: a resumed run
  draws the same tasks as an uninterrupted one. Each task carries its environment's name
  (``task.metadata["env"]``); each environment keeps its own system prompt, reward parts and
  verifier, and a group (the G completions of one task) never mixes environments.
* One environment (``env=math``, or a list of one) is built exactly as before: no `Mixture`.

`batch_metrics` adds what every algorithm logs per environment (``reward/NAME/mean`` and each
part, ``train/NAME/accuracy``, ``rollout/NAME/length``, ``rollout/NAME/zero_std_groups``,
``rollout/NAME/self_correction``) and the "aha" markers of DeepSeek-R1 (`self_correction`:
"wait", "let me check", "let me re-check", "actually", or two different answers in one
completion).

Left out: per-environment sampling temperatures or lengths (one ``max_new_tokens`` for all), a
mixture under ``reward_workers=ray`` (refused), and curricula that change the weights during a run.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import re
from typing import Any, Sequence

import envs
from envs.core import EnvError, Task, item_rng


# ----------------------------------------------------------------------------- the env=[...] syntax


def env_names(spec: str) -> list[str]:
    """The environments of ``env=``: ``math``, ``[math,gsm8k]`` or a YAML list's ``['math', 'gsm8k']``."""
    s = str(spec).strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    names = [x.strip().strip("'\"").strip() for x in s.split(",")]
    names = [x for x in names if x]
    if not names:
        raise envs.EnvError(f"env={spec!r} names no environment")
    return names


def is_list(spec: str) -> bool:
    return str(spec).strip().startswith("[")


def env_options(name: str, kwargs: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The options of environment ``name`` among ``names``: every ``env.KEY`` that names no environment,
    then its own ``env.NAME.KEY``."""
    out = {k: v for k, v in kwargs.items() if "." not in k or k.split(".", 1)[0] not in names}
    out.update({k.split(".", 1)[1]: v for k, v in kwargs.items() if "." in k and k.split(".", 1)[0] == name})
    return out


def parse_weights(raw: Any, names: list[str]) -> list[float]:
    """``env.weights`` checked against the environments: one number >= 0 each, not all 0; normalised."""
    shown = f"env.weights={raw!r}"
    if raw is None:
        return [1.0 / len(names)] * len(names)
    if isinstance(raw, str):
        import yaml

        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError:
            pass
    if not isinstance(raw, (list, tuple)) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
        raise EnvError(f"{shown} must be a list of numbers, one per environment, e.g. env.weights=[0.7,0.3]")
    if len(raw) != len(names):
        raise EnvError(f"{shown} has {len(raw)} weight(s) for {len(names)} environments ({', '.join(names)}): "
                       f"give one weight per environment, in the same order")
    for x, n in zip(raw, names):
        if not math.isfinite(x) or x < 0:
            raise EnvError(f"{shown}: the weight of {n} is {x}; weights must be finite and >= 0")
    total = float(sum(raw))
    if total <= 0:
        raise EnvError(f"{shown}: every weight is 0; give at least one environment a positive weight")
    return [float(x) / total for x in raw]


def make(spec: str, kwargs: dict[str, Any], seed: int = 0) -> Any:
    """The environment of ``env=`` and ``env.*`` options: one environment (built exactly as
    ``envs.make(spec, **kwargs)``) or, for two or more names, a `Mixture`."""
    names = env_names(spec) if is_list(spec) else [spec]
    kwargs = dict(kwargs)
    weights = kwargs.pop("weights", None) if is_list(spec) else None
    if len(names) == 1:
        if weights is not None:
            parse_weights(weights, names)
        return envs.make(names[0], **kwargs)
    labels = [envs.canonical_name(n) for n in names]  # metric keys and task tags: math, gsm8k, my_pkg_env_MyEnv
    dup = sorted({n for n, x in zip(names, labels) if labels.count(x) > 1})
    if dup:
        raise EnvError(f"env={spec}: {', '.join(dup)} appears twice; name each environment once (its options go in "
                       f"env.NAME.KEY=VALUE; two settings of one environment are not supported)")
    for k in kwargs:
        head = k.split(".", 1)[0]
        if "." in k and head not in names:
            raise EnvError(f"env.{k}: {head!r} is not one of the mixture's environments ({', '.join(names)}); "
                           f"use env.NAME.KEY=VALUE with one of them")
    w = parse_weights(weights, names)
    members = {}
    for n, label in zip(names, labels):
        try:
            members[label] = envs.make(n, **env_options(n, kwargs, names))
        except (EnvError, OSError, ImportError, TypeError, ValueError, KeyError) as e:
            shared = [k for k in kwargs if "." not in k]
            hint = (f" (shared options {', '.join('env.' + k for k in shared)} go to every environment: set one "
                    f"environment's as env.{n}.KEY=VALUE)" if shared else "")
            raise EnvError(f"env={spec}: environment {n!r} failed to load: {str(e).strip() or type(e).__name__}{hint}") from None
    return Mixture(members, w, seed)


# ----------------------------------------------------------------------------- the mixture


class MixtureSource:
    """The mixture's task stream: item k of a split comes from the environment picked by
    ``item_rng("mixture", seed, split, k)`` against the cumulative weights, and is that
    environment's next task of the split (its own index counts how often it was picked before k)."""

    name = "mixture"

    def __init__(self, mix: "Mixture", seed: int):
        self.mix, self.seed = mix, seed
        self._cum = [sum(mix.weights[:i + 1]) for i in range(len(mix.weights))]
        self._picks: dict[str, list[tuple[int, int]]] = {}  # split -> [(environment, its index)] for k = 0, 1, ...
        self._counts: dict[str, list[int]] = {}

    def pick(self, k: int, split: str = "train") -> tuple[int, int]:
        """(environment number, index in that environment's split) of item ``k``."""
        picks = self._picks.setdefault(split, [])
        counts = self._counts.setdefault(split, [0] * len(self._cum))
        while len(picks) <= k:
            u = item_rng(self.name, self.seed, split, len(picks)).random()
            e = min(bisect.bisect_right(self._cum, u), len(self._cum) - 1)
            while self.mix.weights[e] == 0:  # float edges: never an environment of weight 0
                e = (e + 1) % len(self._cum)
            picks.append((e, counts[e]))
            counts[e] += 1
        return picks[k]

    def task(self, index: int, split: str = "train") -> Task:
        e, i = self.pick(index, split)
        label = self.mix.labels[e]
        t = self.mix.members[label].source.task(i, split)
        return dataclasses.replace(t, metadata={**t.metadata, "env": label})

    def size(self, split: str = "train") -> int | None:
        return None

    def tasks(self, n: int, split: str = "train", start: int = 0) -> list[Task]:
        return [self.task(i, split) for i in range(start, start + n)]


class Mixture:
    """Several environments behind one environment's interface (see the module docstring). ``members``:
    name -> environment (its ``unwrapped`` is used); ``weights``: normalised, in the same order."""

    def __init__(self, members: dict[str, Any], weights: Sequence[float], seed: int = 0):
        self.labels = list(members)
        self.members = {k: getattr(v, "unwrapped", v) for k, v in members.items()}
        self.weights = list(weights)
        self.split = "train"
        self.source = MixtureSource(self, seed)

    @property
    def unwrapped(self) -> "Mixture":
        return self

    def __repr__(self) -> str:
        return "Mixture(" + ", ".join(f"{n}={w:.3g}" for n, w in zip(self.labels, self.weights)) + ")"

    def env_of(self, task: Task) -> str:
        label = task.metadata.get("env")
        if label not in self.members:
            raise EnvError(f"task {task.id!r} does not come from this mixture ({', '.join(self.labels)}): draw tasks "
                           f"with mixture.source.tasks or mixture.tasks")
        return label

    def member(self, task: Task) -> Any:
        return self.members[self.env_of(task)]

    def prompt_of(self, task: Task) -> Any:
        return self.member(task).prompt_of(task)

    def gold_completion(self, task: Task) -> str:
        return self.member(task).gold_completion(task)

    def demonstration(self, task: Task) -> str:
        return self.member(task).demonstration(task)

    def demonstration_parts(self, task: Task) -> list[tuple[str, bool]]:
        m = self.member(task)
        return m.demonstration_parts(task) if hasattr(m, "demonstration_parts") else [(m.demonstration(task), True)]

    def tasks(self, n: int, split: str | None = None, start: int = 0) -> list[Task]:
        return self.source.tasks(n, split or self.split, start)

    def score_batch(self, completions: Sequence[str], tasks: Sequence[Task]) -> list[Any]:
        """Each environment scores its own tasks' completions (one batch per environment), in order."""
        if len(completions) != len(tasks):
            raise EnvError(f"got {len(completions)} completions for {len(tasks)} tasks")
        out: list[Any] = [None] * len(tasks)
        for label in self.labels:
            idx = [i for i, t in enumerate(tasks) if self.env_of(t) == label]
            if idx:
                for i, r in zip(idx, self.members[label].score_batch([completions[i] for i in idx], [tasks[i] for i in idx])):
                    out[i] = r
        return out

    def use_scorer(self, scorer: Any) -> None:
        raise EnvError("reward_workers=ray with a mixture of environments is not supported yet; use reward_workers=local")


def is_mixture(env: Any) -> bool:
    return isinstance(getattr(env, "unwrapped", env), Mixture)


def env_label(task: Any) -> str | None:
    md = getattr(task, "metadata", None)
    return md.get("env") if isinstance(md, dict) else None


# ----------------------------------------------------------------------------- "aha": self-correction markers

# DeepSeek-R1's "aha moment" (Guo et al. 2025, table 3): the model stops, re-checks and revises
MARKERS = re.compile(r"\b(wait|actually|let me (?:re-?)?check|let me re-?(?:examine|evaluate|consider|calculate)|"
                     r"let me double[- ]check)\b", re.IGNORECASE)
ANSWERS = re.compile(r"<answer>(.*?)</answer>|\\boxed\{([^{}]*)\}|answer is[:\s]+([^\s.,;]+)", re.IGNORECASE | re.DOTALL)


def answers_in(text: str) -> list[str]:
    """Every answer a completion states, in order: ``<answer>...</answer>``, ``\\boxed{...}``, "answer is X"."""
    return [" ".join(next(g for g in m.groups() if g is not None).split()).rstrip(".").lower()
            for m in ANSWERS.finditer(text)]


def revised_answer(text: str) -> bool:
    """Two different answers in one completion."""
    return len(set(answers_in(text))) > 1


def self_correction(text: str) -> bool:
    """A self-correction marker ("wait", "actually", "let me check", "let me re-check", ...) or a revised answer."""
    return bool(MARKERS.search(text)) or revised_answer(text)


# ----------------------------------------------------------------------------- per-environment metrics


def batch_metrics(rows: Sequence[tuple[str | None, float, dict[str, float], bool, int, bool, bool]],
                  group_size: int = 0) -> dict[str, float]:
    """Metrics of every rank's rows (env label, reward, parts, correct, length, self-correction, revised):
    ``rollout/self_correction`` and ``rollout/revised_answer`` always; with environment labels, per
    environment ``reward/NAME/mean`` and each part, ``train/NAME/accuracy``, ``rollout/NAME/length``,
    ``rollout/NAME/self_correction``, ``rollout/NAME/share`` and, for consecutive groups of
    ``group_size`` rows, ``rollout/NAME/zero_std_groups``."""
    n = max(len(rows), 1)
    m = {"rollout/self_correction": sum(r[5] for r in rows) / n, "rollout/revised_answer": sum(r[6] for r in rows) / n}
    labels = list(dict.fromkeys(r[0] for r in rows if r[0] is not None))
    for e in labels:
        mine = [r for r in rows if r[0] == e]
        k = len(mine)
        m[f"reward/{e}/mean"] = sum(r[1] for r in mine) / k
        for part in mine[0][2]:
            m[f"reward/{e}/{part}"] = sum(r[2].get(part, 0.0) for r in mine) / k
        m[f"train/{e}/accuracy"] = sum(r[3] for r in mine) / k
        m[f"rollout/{e}/length"] = sum(r[4] for r in mine) / k
        m[f"rollout/{e}/self_correction"] = sum(r[5] for r in mine) / k
        m[f"rollout/{e}/share"] = k / n
        if group_size > 1:
            groups = [mine[i:i + group_size] for i in range(0, k - group_size + 1, group_size)]
            m[f"rollout/{e}/zero_std_groups"] = sum(len({g[1] for g in grp}) == 1 for grp in groups) / max(len(groups), 1)
    return m
