"""What every training module shares: the run-level config keys, setup and resume,
sampling-and-scoring a batch of tasks, and metrics of a batch of rewards."""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
from typing import Any, Callable, Sequence

import torch

import envs
from algos import config as cfglib
from algos.runs import Run, load_trainer_state, seed_everything, set_rng_state
from policies import PolicyConfig, Rollout, SamplingParams, load


@dataclasses.dataclass
class RunConfig:
    env: str = "math"
    """environment: alias (math, gsm8k), Gymnasium id, or package.module:Class"""
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    """environment options (set them as env.KEY=VALUE, e.g. env.difficulty=3)"""
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """the model (see policy.* keys); default the shipped cold-start checkpoint tiny-sft"""
    max_new_tokens: int = 96
    """completion length limit"""
    heldout_size: int = 500
    """held-out tasks in the greedy evaluation at the start, the end and every eval_every steps"""
    eval_every: int = 0
    """also evaluate every N steps (0: start and end only)"""
    save_every: int = 100
    """checkpoint every N steps (and at the end)"""
    samples_every: int = 10
    """write sampled completions with their rewards every N steps"""
    seed: int = 0
    """seed for sampling, data order and initialisation"""
    out: str | None = None
    """run folder (default runs/<algo>-<env>-<time>)"""
    resume: str | None = None
    """continue the run in this folder from its last checkpoint (model, optimizer, RNG, data position)"""
    wandb: bool = False
    """also log to Weights & Biases"""


@dataclasses.dataclass
class Setup:
    cfg: Any
    env: Any
    engine: Any
    model: Any
    tokenizer: Any
    run: Run
    step: int = 0
    state: dict = dataclasses.field(default_factory=dict)
    optimizer_state: Any = None


def start(cfg_cls: type, argv: list[str] | None, algo: str) -> Setup:
    """Parse the config (or reload it from ``resume=``), build env, policy and run folder,
    and restore the last checkpoint when resuming."""
    cfg = cfglib.parse(cfg_cls, argv, prog=f"algos.{algo}")
    if cfg.resume:
        import yaml

        path = os.path.join(cfg.resume, "config.yaml")
        if not os.path.exists(path):
            raise FileNotFoundError(f"resume={cfg.resume!r} has no config.yaml: is it a run folder?")
        with open(path) as f:
            saved = cfglib.from_dict(cfg_cls, yaml.safe_load(f))
        saved.resume, cfg = cfg.resume, saved
    torch.set_num_threads(os.cpu_count() or 1)
    seed_everything(cfg.seed)
    # SFT on a plain dataset needs no environment; preference training keeps it for evaluation
    data_only = getattr(cfg, "data", None) and getattr(cfg_cls, "data_replaces_env", False)
    env = envs.make(cfg.env, **cfg.env_kwargs) if cfg.env and not data_only else None
    run = Run(algo, envs.canonical_name(cfg.env) if env is not None else "data", cfg, out=cfg.out, resume=cfg.resume,
              wandb=cfg.wandb)
    setup = Setup(cfg, env, None, None, None, run)
    ckpt = run.latest_checkpoint() if cfg.resume else None
    policy_cfg = dataclasses.replace(cfg.policy, model=ckpt) if ckpt else cfg.policy
    setup.engine, setup.model, setup.tokenizer = load(policy_cfg)
    if setup.model is None:
        raise cfglib.ConfigError(f"policy.engine={cfg.policy.engine} cannot be trained; use policy.engine=transformers or vllm")
    if ckpt:
        st = load_trainer_state(ckpt)
        setup.step, setup.state, setup.optimizer_state = st["step"], st["state"], st["optimizer"]
        set_rng_state(st["rng"])
        run.truncate_after(setup.step)
        print(f"resumed from {ckpt} at step {setup.step}", file=sys.stderr)
    return setup


def sample_and_score(engine: Any, env: Any, tasks: Sequence[Any], params: SamplingParams) -> tuple[list[Rollout], list[Any], list[Any]]:
    """G rollouts per task, scored by the environment. Returns flat (rollouts, results, tasks)."""
    base = env.unwrapped
    outs = engine.generate([base.prompt_of(t) for t in tasks], params)
    rollouts = [r for rs in outs for r in rs]
    flat_tasks = [t for t, rs in zip(tasks, outs) for _ in rs]
    results = base.score_batch([r.text for r in rollouts], flat_tasks)
    return rollouts, results, flat_tasks


def reward_metrics(results: Sequence[Any], rollouts: Sequence[Rollout]) -> dict[str, float]:
    """Means of the reward and each part, the accuracy, verdict-status shares, lengths."""
    n = max(len(results), 1)
    m: dict[str, float] = {"reward/mean": sum(r.reward for r in results) / n}
    for part in results[0].parts if results else {}:
        m[f"reward/{part}"] = sum(r.parts[part] for r in results) / n
    statuses = collections.Counter(r.status.value for r in results if r.status is not None)
    for s in ("correct", "wrong", "no_answer", "timeout", "error"):
        m[f"verdict/{s}"] = statuses.get(s, 0) / n
    m["train/accuracy"] = m["verdict/correct"]
    m["rollout/length"] = sum(len(r.completion_ids) for r in rollouts) / max(len(rollouts), 1)
    m["rollout/truncated"] = sum(r.truncated for r in rollouts) / max(len(rollouts), 1)
    return m


def run_main(main: Callable[[list[str] | None], Any]) -> None:
    """Entry point: a bad config, env or model is a one-line error and exit code 2, not a traceback."""
    try:
        main(None)
    except (cfglib.ConfigError, envs.EnvError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
