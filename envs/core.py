"""The text-task contract: `Task` records and the `TextEnv` Gymnasium base.

One episode is one task: ``reset`` poses it (the observation is the prompt, as text or
chat messages), ``step(completion)`` scores the model's answer and terminates.
Multi-turn environments override ``step`` to return a next observation instead.
Environments know nothing of models, chat templates or algorithms, and import no torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import random
from typing import Any, Literal, Sequence, Union

import gymnasium
from verifiers.rewards import RewardResult, Rubric
from verifiers.verdict import Status, Verdict

Message = dict[str, str]
Prompt = Union[str, list[Message]]
SPLITS = ("train", "heldout")
FORMAT_INSTRUCTION = ("Think step by step inside <think> </think>, then give only the final answer "
                      "inside <answer> </answer>.")


@dataclasses.dataclass(frozen=True)
class Task:
    """One task. ``reference`` is what the verifier compares against (an answer, or tests).
    ``metadata`` holds at least ``source``, ``split`` and ``index``: ``source.task(index, split)``
    rebuilds it."""

    id: str
    prompt: str
    reference: Any
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def solution(self) -> str | None:
        """A worked solution (reasoning steps), when the source can write one."""
        return self.metadata.get("solution")


class EnvError(ValueError):
    """Bad use of an environment (wrong option, step before reset, ...)."""


def item_rng(source: str, seed: int, split: str, index: int, attempt: int = 0) -> random.Random:
    """Randomness for one item, derived by hashing (source, seed, split, index, attempt).

    Unlike ``Random(seed + index)``, nearby seeds and indices give unrelated streams:
    seed 1 item 0 is not seed 0 item 1.
    """
    key = f"{source}\x1f{seed}\x1f{split}\x1f{index}\x1f{attempt}".encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))


def content_split(text: str, heldout_fraction: float = 0.1) -> str:
    """The split a problem belongs to, decided by a hash of its text alone.

    A procedural source only emits a problem in the split this function names, so the
    train and held-out splits can never share a problem, whatever the seeds and indices.
    """
    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
    return "heldout" if (h % 10_000) < heldout_fraction * 10_000 else "train"


class TaskSource:
    """A reproducible sequence of tasks: ``task(index, split)`` is a pure function of
    (source name, seed, split, index)."""

    name: str = "source"
    seed: int = 0

    def task(self, index: int, split: str = "train") -> Task:
        raise NotImplementedError

    def size(self, split: str = "train") -> int | None:
        """Number of distinct items, or None for an unbounded procedural source."""
        return None

    def tasks(self, n: int, split: str = "train", start: int = 0) -> list[Task]:
        return [self.task(i, split) for i in range(start, start + n)]


class TextSpace(gymnasium.Space):
    """Any Python string of at most ``max_length`` characters."""

    def __init__(self, max_length: int = 1_000_000, seed: int | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)
        self.max_length = max_length

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        n = int(self.np_random.integers(0, 32))
        return "".join(chr(int(c)) for c in self.np_random.integers(32, 127, size=n))

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"


class PromptSpace(TextSpace):
    """A prompt: a string, or chat messages (a list of {"role", "content"} dicts)."""

    def contains(self, x: Any) -> bool:
        if isinstance(x, list):
            return all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in x)
        return super().contains(x)

    def __repr__(self) -> str:
        return "PromptSpace()"


class TextEnv(gymnasium.Env):
    """Base of every text environment.

    Args:
        source: where tasks come from.
        rubric: how a completion is scored (weighted parts; the first part is correctness).
        split: ``"train"`` or ``"heldout"``: which tasks ``reset`` draws.
        prompt_format: ``"chat"`` (a list of messages) or ``"text"`` (the bare question).
        system_prompt: prepended as a system message in chat format (None: no system message).
    """

    metadata = {"render_modes": ["ansi"]}
    correctness_part: str | None = None
    """The reward part that says whether a completion is right: held-out accuracy, pass@k, the
    ``verdict/*`` shares and rejection sampling read it. None: the part named ``correct``, else the
    rubric's first part (`envs.check_env` warns then). A verifier part is right when its verdict is
    ``correct``; a reward-function part when it returns full marks (>= 1)."""

    def __init__(self, source: TaskSource, rubric: Rubric, *, split: str = "train",
                 prompt_format: Literal["chat", "text"] = "chat", system_prompt: str | None = None,
                 render_mode: str | None = None):
        if split not in SPLITS:
            raise EnvError(f"split must be one of {SPLITS}, got {split!r}")
        if prompt_format not in ("chat", "text"):
            raise EnvError(f"prompt_format must be 'chat' or 'text', got {prompt_format!r}")
        if render_mode not in (None, "ansi"):
            raise EnvError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.source = source
        self.rubric = rubric
        self.split = split
        self.prompt_format = prompt_format
        self.system_prompt = system_prompt
        self.render_mode = render_mode
        self.observation_space = PromptSpace()
        self.action_space = TextSpace()
        self._task: Task | None = None
        self._last: tuple[str, RewardResult] | None = None

    # ---------------------------------------------------------------- prompts and gold

    def prompt_of(self, task: Task) -> Prompt:
        if self.prompt_format == "text":
            return task.prompt
        msgs: list[Message] = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        msgs.append({"role": "user", "content": task.prompt})
        return msgs

    def gold_completion(self, task: Task) -> str:
        """A completion that states the reference answer in the expected format."""
        steps = task.solution or ""
        return f"<think>\n{steps}\n</think>\n<answer>{task.reference}</answer>"

    def demonstration(self, task: Task) -> str:
        """The completion SFT trains on for this task; the gold completion unless an environment
        is configured to teach with imperfect demonstrations."""
        return self.gold_completion(task)

    def tasks(self, n: int, split: str | None = None, start: int = 0) -> list[Task]:
        return self.source.tasks(n, split or self.split, start)

    # ---------------------------------------------------------------- gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Prompt, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"index", "split", "task"}
        if unknown:
            raise EnvError(f"unknown reset option(s) {sorted(unknown)}; valid: 'index', 'split', 'task'")
        if "task" in options:
            task = options["task"]
            if not isinstance(task, Task):
                raise EnvError(f"options['task'] must be a Task, got {type(task).__name__}")
        else:
            split = options.get("split", self.split)
            if split not in SPLITS:
                raise EnvError(f"split must be one of {SPLITS}, got {split!r}")
            if "index" in options:
                index = int(options["index"])
            else:
                size = self.source.size(split)
                index = int(self.np_random.integers(0, size if size else 2**31 - 1))
            task = self.source.task(index, split)
        self._task = task
        self._last = None
        return self.prompt_of(task), {"task_id": task.id, "task": task}

    def step(self, action: str) -> tuple[Prompt, float, bool, bool, dict[str, Any]]:
        if self._task is None:
            raise EnvError("step() called before reset(); call env.reset() to pose a task first")
        if not isinstance(action, str):
            raise EnvError(f"the action must be the completion text (str), got {type(action).__name__}")
        task = self._task
        result = self.score_batch([action], [task])[0]
        self._task = None  # one task, one answer
        self._last = (action, result)
        info = {"task_id": task.id, "verdict": next(iter(result.verdicts.values()), None),
                "verdicts": result.verdicts, "reward_parts": result.parts}
        return self.prompt_of(task), float(result.reward), True, False, info

    def score_batch(self, completions: Sequence[str], tasks: Sequence[Task]) -> list[RewardResult]:
        """Score many completions at once (sympy checks run in parallel worker processes; with
        ``use_scorer``, wherever that scorer sends them, e.g. Ray actors). The correctness part's
        verdict comes first in each result's ``verdicts`` (`correctness`), so ``result.status``
        is that part's status."""
        if len(completions) != len(tasks):
            raise EnvError(f"got {len(completions)} completions for {len(tasks)} tasks")
        if getattr(self, "_scorer", None) is not None:
            return self._scorer(list(completions), list(tasks))
        results = self.rubric.score(list(completions), [t.reference for t in tasks],
                                    prompts=[t.prompt for t in tasks], answer=[t.reference for t in tasks])
        return [self.with_correctness(r) for r in results]

    def correctness(self) -> tuple[str, bool]:
        """(the name of the part that says right or wrong, whether the environment declared it): the
        declared ``correctness_part``, else the part named ``correct``, else the rubric's first part."""
        names = [p.name for p in self.rubric.parts]
        if self.correctness_part is not None:
            if self.correctness_part not in names:
                raise EnvError(f"{type(self).__name__}.correctness_part={self.correctness_part!r} is not a reward part "
                               f"of its rubric {names}; set it to one of them")
            return self.correctness_part, True
        if "correct" in names:
            return "correct", True
        if not names:
            raise EnvError(f"{type(self).__name__}'s rubric has no parts; add one with add_verifier or add_function")
        return names[0], False

    def with_correctness(self, result: RewardResult) -> RewardResult:
        """``result`` with the correctness part's verdict first in ``verdicts``; a reward function's part
        gets one made from its score (correct at full marks, >= 1, else wrong)."""
        name, _ = self.correctness()
        v = result.verdicts.get(name)
        if v is None:
            score = result.parts[name]
            v = Verdict(Status.CORRECT if score >= 1.0 else Status.WRONG, score, details={"reward_function": name})
        return RewardResult(result.reward, result.parts, {name: v, **{k: x for k, x in result.verdicts.items() if k != name}})

    def use_scorer(self, scorer: Any) -> None:
        """Score batches with ``scorer(completions, tasks)`` instead of in this process (``None``: back to local).
        It must return what ``score_batch`` would (``envs.ray_scoring.RayScorer.score_batch`` does)."""
        self._scorer = scorer

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._last is None:
            return f"task: {self._task.prompt if self._task else '(none)'}"
        action, result = self._last
        return f"completion: {action}\nreward: {result.reward:.3f} {result.parts}"


def looks_local(path: str) -> bool:
    """A path rather than a hub name: it holds a path separator or starts with ``.``, ``~`` or ``/``
    (hub names are ``owner/name``: one slash, neither part a dot). Such a path is never looked up on the hub."""
    p = os.path.expanduser(path)
    if p.startswith((".", "/", "~")) or os.sep != "/" and os.sep in p:
        return True
    parts = p.split("/")
    return len(parts) > 2 or os.path.exists(p) or os.path.splitext(p)[1] in (".jsonl", ".json", ".parquet", ".csv", ".gz")


def where(path: str) -> str:
    """``path`` as an error message shows it: relative paths with their absolute form (relative to the
    current directory)."""
    full = os.path.abspath(os.path.expanduser(path))
    return path if full == path else f"{path} ({full}, relative to the current directory)"


def path_hint(name: str, example: str | None = None) -> str:
    """How to give environment ``name``'s data file, under each command's key for it."""
    eg = f"e.g. env.path={where(example)}; " if example else ""
    return (f"env.path=DIR_OR_FILE ({eg}in algos.evaluate with several environments env.{name}.path=, in a tax suite "
            f"tax_options={{{name}.path: ...}})")


def not_found_locally(path: str, key: str | None = None) -> EnvError:
    """A local path that does not exist, with its absolute form, under ``key`` (``env.path``) when given."""
    shown = f"{key}={where(path)}" if key else where(path)
    return EnvError(f"not found locally: {shown} does not exist (a path is never looked up on the hub)")


def check_json_lines(path: str) -> None:
    """Raise `EnvError` naming the file and line of the first line of a JSON-lines file that is not a
    JSON object (a ``.json`` file that is one JSON document passes)."""
    import gzip
    import json

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json") and text.lstrip()[:1] in ("[", "{"):
        try:
            json.loads(text)
            return  # one JSON document
        except json.JSONDecodeError:
            pass  # JSON lines, perhaps
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise EnvError(f"{where(path)}, line {n}: not valid JSON ({e.msg} at column {e.colno}): {line.strip()[:60]!r}; "
                           f"fix or delete that line") from None
        if not isinstance(row, dict):
            raise EnvError(f"{where(path)}, line {n}: a JSON line must be an object {{...}}, got {type(row).__name__}")


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (``.gz`` too); a malformed line is an `EnvError` naming file and line."""
    import gzip
    import json

    check_json_lines(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@contextlib.contextmanager
def quiet_hub():
    """Silence huggingface_hub's retry warnings while a dataset loads: when the hub is out of reach
    the caller says so in one line (naming env.path=), not after five "Retrying in 8s" lines."""
    log = logging.getLogger("huggingface_hub")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
