"""A run from start to finish: the run-level config keys (`RunConfig`), setup and resume (`start`), the
held-out evaluation at the start and the end and the alignment-tax suite, the final checkpoint,
summary and curves (`finish`), and saving on Ctrl-C (`save_on_interrupt`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, ClassVar, Literal

import torch

import envs
from algos import config as cfglib
from algos.config import AT_LEAST_1, POLICY_RANGES, POSITIVE, Range
from algos import dist, mixture
from algos.cli import say
from algos.heldout import heldout_eval
from algos.runs import Run, default_run_dir, load_trainer_state, restore_rng, seed_everything
from algos.steps import sync_engine
from policies import PolicyConfig, load
from policies.hf import return_freed_memory
from policies.lora import LoRAConfig
from policies.base import ServerDown, WeightSyncError
from verifiers.code import SandboxDown


@dataclasses.dataclass
class RunConfig:
    # the allowed values of numeric keys (algos.config.check_ranges; any other numeric key: >= 0)
    RANGES: ClassVar[dict] = {**POLICY_RANGES, "lora.dropout": Range(0, 1, hi_open=True), "lora.alpha": POSITIVE,
                              "max_new_tokens": AT_LEAST_1, "heldout_size": AT_LEAST_1, "tax_tasks": AT_LEAST_1,
                              "ray_actors": AT_LEAST_1, "dist_timeout": POSITIVE}
    env: str = "math"
    """environment: alias (math, gsm8k), Gymnasium id, or package.module:Class"""
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    """environment options (set them as env.KEY=VALUE, e.g. env.difficulty=3)"""
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """the model (see policy.* keys); default the shipped cold-start checkpoint tiny-sft"""
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    """train LoRA adapters instead of every weight (see lora.* keys; lora.r=0, the default: full fine-tuning)"""
    max_new_tokens: int = 96
    """completion length limit"""
    gradient_checkpointing: bool = False
    """activation checkpointing: keep each decoder layer's input only and recompute the layer in the backward pass (about one more forward pass of time; on for real models: a GRPO step of SmolLM2-135M with 4096-token micro-batches peaks at 3.6 GB with it, 7.6 GB without)"""
    heldout_size: int = 500
    """held-out tasks in the greedy evaluation at the start, the end and every eval_every steps"""
    eval_every: int = 0
    """also evaluate every N steps (0: start and end only)"""
    save_every: int = 100
    """checkpoint every N steps (and at the end)"""
    samples_every: int = 10
    """write sampled completions with their rewards every N steps and at the last step (0: never)"""
    seed: int = 0
    """seed for sampling, data order and initialisation"""
    out: str | None = None
    """run folder (default runs/<algo>-<env>-<time>)"""
    resume: str | None = None
    """continue the run in this folder from its last checkpoint (model, optimizer, RNG, data position); steps, save_every, eval_every, samples_every, wandb and dist_timeout may be changed on the command line, no other key"""
    overwrite: bool = False
    """out= names a folder that already holds a run: delete it and start over (without it such an out= is refused)"""
    wandb: bool = False
    """also log to Weights & Biases"""
    tax_envs: str = ""
    """alignment-tax suite: environments evaluated at the start and the end (e.g. [math,gsm8k,ifeval]); deltas go in summary.json (empty: off)"""
    tax_tasks: int = 100
    """held-out tasks per environment of the tax suite"""
    tax_options: dict = dataclasses.field(default_factory=dict)
    """options of the tax suite's environments, as algos.evaluate's env.NAME.KEY (e.g. {gsm8k.path: ../shared/data/gsm8k})"""
    reward_workers: Literal["local", "ray"] = "local"
    """where rewards are computed: local (this process's verifier and sandbox pools) or ray (actors, each with its own pools; pip install 'rlvr-gym[ray]')"""
    ray_address: str = ""
    """reward_workers=ray: the cluster to join (auto: the one this node belongs to; empty: start a local Ray instance)"""
    ray_actors: int = 2
    """reward_workers=ray: scoring actors (each builds the environment, with its own Docker pool for code)"""
    parallel: Literal["auto", "ddp", "fsdp"] = "auto"
    """under torchrun: ddp (replicated weights, gradients summed over ranks; auto picks it) or fsdp (weights sharded per decoder layer)"""
    dist_backend: Literal["auto", "gloo", "nccl"] = "auto"
    """under torchrun: process-group backend; auto is nccl on GPUs, gloo on CPUs"""
    dist_timeout: float = 1800.0
    """under torchrun: seconds any collective may wait for the other ranks before every rank stops with an error"""
    micro_batch_size: int = 0
    """rows per forward/backward pass (pairs for dpo/orpo/simpo, examples for kto), per process: each optimizer step runs as micro-batches, gradients accumulated, the same update (0: no limit)"""
    micro_batch_tokens: int = 0
    """tokens per forward/backward pass, padding included (rows x longest prompt+completion), per process: rows packed longest-first (0: no budget)"""
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """learning rate after the linear warmup (warmup_steps): constant, or a linear or cosine decay that reaches lr x lr_final_ratio at the end of the run (rejection_sampling, iterative_dpo: over rounds)"""
    lr_final_ratio: float = 0.0
    """linear/cosine: the learning rate at the end of the run, as a share of lr"""


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
    world: dist.World = dataclasses.field(default_factory=dist.World)
    synced: int = 0  # the engine has the weights of this many optimizer steps (dist.World.updates)


def lost_update_share(model: Any, lr: float) -> float:
    """Share of the trainable weights that an update of size ``lr`` leaves unchanged once the result is
    rounded back to their dtype (0 for float32 at any sensible lr; most of a bfloat16 model at RL's rates)."""
    lost = total = 0
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16):
                lost += int(((p.float() + lr).to(p.dtype) == p).sum())
                total += p.numel()
    return lost / total if total else 0.0


def warn_low_precision(model: Any, lr: float, dtype: str) -> None:
    """Training a bfloat16/float16 model keeps no float32 copy of the weights: say so when most updates of the
    configured size would be rounded away (measured on the model's own weights)."""
    share = lost_update_share(model, lr)
    if share > 0.5:
        say(f"warning: policy.dtype={dtype} trains {dtype} weights with no float32 copy: an update of lr={lr:g} "
            f"leaves {share:.1%} of the trainable weights unchanged after rounding; train with policy.dtype=float32 "
            f"({dtype} is for generation and evaluation)")


def start(cfg_cls: type, argv: list[str] | None, algo: str) -> Setup:
    """Parse the config (or reload it from ``resume=``), build env, policy and run folder,
    and restore the last checkpoint when resuming."""
    cfg = cfglib.parse(cfg_cls, argv, prog=f"algos.{algo}")
    changed: dict[str, Any] = {}
    if cfg.resume:
        import yaml

        path = os.path.join(cfg.resume, "config.yaml")
        if not os.path.exists(path):
            raise FileNotFoundError(f"resume={cfg.resume!r} has no config.yaml ({os.path.abspath(path)}): is it a run folder?")
        with open(path) as f:
            saved = cfglib.from_dict(cfg_cls, yaml.safe_load(f))
        cfg, changed = resumed_config(cfg, saved, algo)
    else:
        claim_run_dir(cfg.out, getattr(cfg, "overwrite", False), algo)
    w = dist.init(cfg.parallel, cfg.dist_backend, cfg.dist_timeout, cfg.policy.device)
    if w.distributed and cfg.policy.device == "auto" and w.device.type == "cuda":
        cfg.policy.device = str(w.device)  # each rank on its own GPU
    elif w.distributed and cfg.policy.device == "auto":
        cfg.policy.device = "cpu"
    torch.set_num_threads(dist.threads_per_rank())
    return_freed_memory()  # CPU: freed activations leave the process (policies.hf)
    seed_everything(cfg.seed + 1_000_003 * w.rank)  # ranks draw different random numbers
    # SFT on a plain dataset needs no environment; preference training keeps it for evaluation
    data_only = getattr(cfg, "data", None) and getattr(cfg_cls, "data_replaces_env", False)
    # one environment, or a mixture for env=[A,B] (algos.mixture: env.weights, env.NAME.KEY options)
    env = mixture.make(cfg.env, cfg.env_kwargs, seed=cfg.seed) if cfg.env and not data_only else None
    if env is not None and getattr(cfg, "reward_workers", "local") == "ray" and mixture.is_mixture(env):
        raise cfglib.ConfigError("reward_workers=ray with a mixture of environments is not supported yet; use "
                                 "reward_workers=local")
    if env is not None and getattr(cfg, "reward_workers", "local") == "ray":
        from envs.ray_scoring import RayScorer

        scorer = RayScorer(cfg.env, dict(cfg.env_kwargs), actors=cfg.ray_actors, address=cfg.ray_address or None)
        env.unwrapped.use_scorer(scorer.score_batch)  # actors live as long as this process
    label = ("+".join(envs.canonical_name(n) for n in env.unwrapped.labels) if mixture.is_mixture(env)
             else envs.canonical_name(cfg.env) if env is not None else "data")
    out = cfg.out if cfg.resume or not w.distributed else w.broadcast(cfg.out or default_run_dir(algo, label))
    run = Run(algo, label, cfg, out=out, resume=cfg.resume, wandb=cfg.wandb, writer=w.is_main)
    setup = Setup(cfg, env, None, None, None, run, world=w)
    ckpt = run.latest_checkpoint() if cfg.resume else None
    policy_cfg = dataclasses.replace(cfg.policy, model=ckpt) if ckpt else cfg.policy
    setup.engine, setup.model, setup.tokenizer = load(policy_cfg, cfg.lora)  # a LoRA checkpoint: base + its adapter
    if setup.model is None:
        raise cfglib.ConfigError(f"policy.engine={cfg.policy.engine} cannot be trained; use policy.engine=transformers or vllm")
    if getattr(cfg, "gradient_checkpointing", False):
        from policies.hf import enable_activation_checkpointing

        enable_activation_checkpointing(setup.model)  # copies (critic, reference, fsdp shards) inherit it
    if w.is_main and getattr(cfg, "lr", None):
        warn_low_precision(setup.model, cfg.lr, cfg.policy.dtype)
    setup.model = dist.prepare(setup.model, w)  # the engine keeps the unsharded model
    if hasattr(setup.engine, "attach"):  # generation servers: they must serve the weights we start from
        if w.distributed:
            raise cfglib.ConfigError("policy.engine=server under torchrun is not supported yet; run one trainer process "
                                     "(the servers do the generation) or use policy.engine=transformers")
        setup.engine.attach(setup.model)
    if ckpt:
        st = load_trainer_state(ckpt)
        setup.step, setup.state, setup.optimizer_state = st["step"], st["state"], st["optimizer"]
        restore_rng(st, w.rank, cfg.seed)
        saved = len(st.get("rng_per_rank") or []) or 1  # ranks whose random state the checkpoint holds
        if w.distributed and saved < w.size:  # rank 0 saved alone (an interrupt)
            say(f"{ckpt} holds the random state of {saved} rank(s) of {w.size} (rank 0 "
                f"saves alone on an interrupt): the others are seeded from the seed, their rank and the step, so the "
                f"samples from here differ from an uninterrupted run's")
        if "steps" in changed and cfg.steps and cfg.steps < setup.step:
            raise cfglib.ConfigError(f"steps={cfg.steps}: the run in {cfg.resume} is already at step {setup.step}; "
                                     f"resume with steps={setup.step} or more")
        run.truncate_after(setup.step)
        say(f"resumed from {ckpt} at step {setup.step}" +
            (f" with {', '.join(f'{k}={v!r}' for k, v in changed.items())}" if changed else ""))
    return setup


# the keys a resumed run may change (the rest define what was trained, and how: they must match config.yaml)
RESUME_KEYS = ("steps", "rounds", "save_every", "eval_every", "samples_every", "wandb", "dist_timeout", "resume",
               "overwrite")


def resumed_config(cfg: Any, saved: Any, algo: str) -> tuple[Any, dict[str, Any]]:
    """The saved config of ``cfg.resume`` with the keys set now that may change on resume (`RESUME_KEYS`)
    applied; any other key set to another value than the saved one is a `ConfigError` listing them all.
    Returns (the config, the keys changed)."""
    differ, changed = [], {}
    for k in sorted(cfglib.explicit_keys(cfg)):
        new, old = cfglib.get(cfg, k), cfglib.get(saved, k)
        if new == old or k == "resume":
            continue
        if k in RESUME_KEYS:
            cfglib._set(saved, k.split("."), new, k)
            changed[k] = new
        else:
            differ.append(f"{k} ({old!r} in the run, {new!r} now)")
    if differ:
        raise cfglib.ConfigError(f"resume={cfg.resume}: {', '.join(differ)} cannot change on resume (only "
                                 f"{', '.join(k for k in RESUME_KEYS if k not in ('resume', 'overwrite'))} can); drop "
                                 f"{'it' if len(differ) == 1 else 'them'}, or start a new run: python -m algos.{algo} "
                                 f"out=NEW_FOLDER ...")
    saved.resume = cfg.resume
    cfglib.check_ranges(saved)
    return saved, changed


def claim_run_dir(out: str | None, overwrite: bool, algo: str) -> None:
    """A run folder holds one run: an ``out=`` that already holds one (its config.yaml) is refused,
    pointing to resume=, or emptied with ``overwrite=true``. Checked before the process group starts,
    so no rank has written yet; rank 0 (the RANK variable, set by torchrun) deletes."""
    if not out or not os.path.exists(os.path.join(out, "config.yaml")):
        return
    if not overwrite:
        raise cfglib.ConfigError(f"out={out} already holds a run ({os.path.abspath(out)}); continue it with "
                                 f"python -m algos.{algo} resume={out}, replace it with overwrite=true, or choose "
                                 f"another out=")
    if os.environ.get("RANK", "0") == "0":
        import shutil

        shutil.rmtree(out)


def eval_metrics(ev: dict[str, Any]) -> dict[str, float]:
    m = {"eval/accuracy": ev["accuracy"], "eval/mean_reward": ev["mean_reward"], "eval/format": ev["format"]}
    for e, x in ev.get("per_env", {}).items():  # a mixture: each environment's own
        m.update({f"eval/{e}/accuracy": x["accuracy"], f"eval/{e}/mean_reward": x["mean_reward"], f"eval/{e}/format": x["format"]})
    return m


def evaluate(s: Setup) -> dict[str, Any]:
    """Greedy accuracy and mean reward on the run's fixed held-out tasks (every rank calls it). A mixture:
    ``heldout_size`` held-out tasks of each environment, each environment's figures under ``per_env``, and
    the mixture's as the weighted mean of its environments' (``env.weights``)."""
    sync_engine(s)
    if not mixture.is_mixture(s.env):
        return heldout_eval(s.engine, s.env, s.cfg.heldout_size, s.cfg.max_new_tokens, seed=s.cfg.seed)
    mix = s.env.unwrapped
    per = {e: heldout_eval(s.engine, mix.members[e], s.cfg.heldout_size, s.cfg.max_new_tokens, seed=s.cfg.seed)
           for e in mix.labels}
    out: dict[str, Any] = {k: sum(w * per[e][k] for e, w in zip(mix.labels, mix.weights))
                           for k in ("accuracy", "mean_reward", "format")}
    out.update({"verifier_errors": sum(x["verifier_errors"] for x in per.values()),
                "n": sum(x["n"] for x in per.values()), "per_env": per})
    return out


def heldout_before(s: Setup) -> float | None:
    """Held-out accuracy of the starting model: measured and logged at step 0, or read back
    from the checkpoint when resuming (None without an environment)."""
    acc = s.state.get("heldout_accuracy_before")
    if acc is None and s.env is not None:
        ev = evaluate(s)
        acc = ev["accuracy"]
        s.run.log(0, eval_metrics(ev))
        say(f"held-out accuracy before: {acc:.1%} ({s.cfg.heldout_size} tasks)")
    if getattr(s.cfg, "tax_envs", "") and s.world.broadcast(  # rank 0's run folder decides (resumed: done)
            not os.path.exists(os.path.join(s.run.dir, "tax-before", "summary.json"))):
        # rank 0 alone (the engine needs no other rank); the others wait for it, saying so, bounded by dist_timeout
        s.world.main_only("alignment-tax suite (before)", lambda: tax_suite(s, "before"), s.cfg.dist_timeout)
    return acc


def tax_suite(s: Setup, tag: str) -> dict[str, Any]:
    """The alignment-tax suite (``tax_envs``) on the model as it is now, into RUN/tax-{tag}/."""
    from algos import evaluation as ev_mod

    return ev_mod.suite(s.engine, s.cfg.tax_envs, dict(s.cfg.tax_options), os.path.join(s.run.dir, f"tax-{tag}"),
                        s.cfg.tax_tasks, s.cfg.max_new_tokens, model_label=f"{s.cfg.policy.model} ({tag})")


def finish(s: Setup, step: int, optimizer: Any, state: dict[str, Any], acc_before: float | None, t_start: float,
           plot: dict[str, list[str]], title: str, extra: dict[str, Any] | None = None,
           save: Callable[[int, dict], str] | None = None) -> dict[str, Any]:
    """The end of every RL run: held-out evaluation, final checkpoint, summary.json, curves,
    and the before/after line. ``save(step, state)`` replaces the plain checkpoint (PPO adds
    its critic)."""
    run, cfg = s.run, s.cfg
    try:
        ev = evaluate(s) if s.env is not None else None
    except KeyboardInterrupt:  # the steps are trained: save them, then stop in one line
        path = save(step, state) if save else run.save_checkpoint(step, s.model, s.tokenizer, optimizer, state)
        run.close()
        say(f"\ninterrupted during the final held-out evaluation: saved {path}; evaluate it with python -m "
            f"algos.evaluate policy.model={path}")
        raise SystemExit(130)
    wall = time.time() - t_start
    if ev is not None:
        run.log(step, eval_metrics(ev))
    state = {**state, "heldout_accuracy_before": acc_before, "wall_seconds": wall}
    path = save(step, state) if save else run.save_checkpoint(step, s.model, s.tokenizer, optimizer, state)
    summary: dict[str, Any] = {"steps": step, **(extra or {})}
    if ev is not None:
        summary.update({"heldout_accuracy_before": acc_before, "heldout_accuracy_after": ev["accuracy"],
                        "heldout_mean_reward_after": ev["mean_reward"], "heldout_size": cfg.heldout_size})
        if "per_env" in ev:  # a mixture: each environment's held-out accuracy before (logged at step 0) and after
            first = next((r for r in run.metrics() if r.get("step") == 0), {}) if run.writer else {}
            summary["heldout_per_env"] = {e: {"before": first.get(f"eval/{e}/accuracy"), "after": x["accuracy"],
                                              "mean_reward_after": x["mean_reward"], "format_after": x["format"]}
                                          for e, x in ev["per_env"].items()}
    summary.update({"wall_seconds": round(wall, 1), "checkpoint": path})
    if s.world.distributed:
        summary.update({"world_size": s.world.size, "parallel": s.world.parallel})
    if getattr(cfg, "tax_envs", ""):  # the alignment tax: every suite metric after - before, with its error
        def tax_after() -> None:
            from algos import evaluation as ev_mod

            tax_suite(s, "after")
            deltas = ev_mod.compare_runs(os.path.join(run.dir, "tax-before"), os.path.join(run.dir, "tax-after"),
                                         os.path.join(run.dir, "tax"))
            with open(os.path.join(run.dir, "tax", "compare.json")) as f:
                summary["alignment_tax"] = {"deltas": deltas, "se": json.load(f)["se"],
                                            "report": os.path.join(run.dir, "tax", "compare.md")}

        # rank 0 alone; the others wait for it, saying so, bounded by dist_timeout (they sat in the exit barrier)
        s.world.main_only("alignment-tax suite (after)", tax_after, cfg.dist_timeout)
    run.write_summary(summary)
    run.plot(plot, title)
    run.close()
    if hasattr(s.engine, "close"):  # a server engine: its connections, and its temporary weights folder
        s.engine.close()
    if not s.world.is_main:
        return summary
    if ev is not None:
        print(f"held-out accuracy: before {acc_before:.1%} -> after {ev['accuracy']:.1%} "
              f"({cfg.heldout_size} tasks, {wall:.0f}s); run folder {run.dir}")
    else:
        print(f"done in {wall:.0f}s; run folder {run.dir}")
    return summary


@dataclasses.dataclass
class Progress:
    """The last finished step of a run (its update done: the weights are those of that step), the
    trainer state to save with it, and its metrics until they are logged."""

    step: int
    state: dict[str, Any]
    pending: dict[str, Any] | None = None

    def finished(self, step: int, state: dict[str, Any], metrics: dict[str, Any] | None = None) -> None:
        """Call right after the step's update: an interrupt from here on saves this step (and logs it)."""
        self.step, self.state, self.pending = step, state, metrics


@contextlib.contextmanager
def save_on_interrupt(s: Setup, progress: Progress, save: Callable[[int, dict], str]):
    """Ctrl-C inside the block saves a checkpoint at the last finished step (with the weights as
    they are), says how to resume, and exits with 130; a sandbox that stayed down (`SandboxDown`), a
    generation server that did (`ServerDown`) or that cannot be synced (`WeightSyncError`) does the same
    and exits with 3."""
    try:
        yield
    except (KeyboardInterrupt, SandboxDown, ServerDown, WeightSyncError) as e:
        if progress.pending is not None and s.run.last_step < progress.step:  # updated, not yet logged
            s.run.log(progress.step, progress.pending)
        if s.world.distributed:  # the other ranks may be anywhere: no collective now
            if s.world.parallel == "fsdp" or not s.world.is_main:  # the weights are sharded, or rank 0 saves them
                last = s.run.latest_checkpoint()
                if s.world.is_main:
                    print(f"\nstopped ({type(e).__name__}); a sharded model cannot be saved without every rank: "
                          f"continue from {last} with: torchrun --nproc_per_node={s.world.local_size} -m "
                          f"algos.{s.run.algo} resume={s.run.dir}", file=sys.stderr)
                raise SystemExit(130 if isinstance(e, KeyboardInterrupt) else 3)
            s.run.solo = True  # data parallel: rank 0 holds the whole model and saves alone
        path = save(progress.step, progress.state)
        why = ("interrupted" if isinstance(e, KeyboardInterrupt) else f"stopped, the sandbox is down ({e})"
               if isinstance(e, SandboxDown) else f"stopped, a generation server is down ({e})"
               if isinstance(e, ServerDown) else f"stopped, a generation server cannot be synced ({e})")
        s.run.close()  # logs flushed and closed before the process ends
        launcher = f"torchrun --nproc_per_node={s.world.local_size} -m" if s.world.distributed else "python -m"
        print(f"\n{why}: saved {path}; continue with: {launcher} algos.{s.run.algo} resume={s.run.dir}", file=sys.stderr)
        raise SystemExit(130 if isinstance(e, KeyboardInterrupt) else 3)
