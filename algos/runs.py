"""The run folder every ``algos`` module writes, and resuming from it.

    runs/<algo>-<env>-<time>/         (or out=DIR)
      config.yaml                     the resolved config
      metrics.jsonl                   one line per step, flushed as written
      samples.jsonl                   sampled completions with their rewards
      events.out.tfevents.*           TensorBoard: every scalar, and the samples as a markdown table (text tab)
      curves.png                      one panel per quantity (reward parts, accuracy, losses, grad norm, ...)
      checkpoints/step-N/             Hugging Face checkpoint + trainer_state.pt (optimizer, RNG, data position);
                                      with lora.r > 0 the adapter alone, in peft's format (policies/lora.py)
      summary.json                    the headline figures
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from typing import Any

import numpy as np
import torch
import yaml

from algos.config import to_dict


def default_run_dir(algo: str, env_label: str) -> str:
    return os.path.join("runs", f"{algo}-{env_label}-{time.strftime('%Y%m%d-%H%M%S')}")


class Run:
    """The run folder. Under torchrun every rank has one (``writer=False`` on ranks > 0: they read
    it, for resuming, and take part in saving checkpoints, but write nothing)."""

    def __init__(self, algo: str, env_label: str, cfg: Any, out: str | None = None, resume: str | None = None,
                 tensorboard: bool = True, wandb: bool = False, writer: bool = True):
        if resume:
            if not os.path.isdir(resume):
                from envs.core import where

                raise FileNotFoundError(f"resume={where(resume)}: no such run folder")
            self.dir = resume
        else:
            self.dir = out or default_run_dir(algo, env_label)
            if writer:
                os.makedirs(self.dir, exist_ok=True)
        self.algo = algo
        self.writer = writer
        self.solo = False  # set when rank 0 must save without the other ranks (an interrupt under data parallel)
        self.last_step = 0
        self._tb = self._wandb = None
        if not writer:
            return
        with open(os.path.join(self.dir, "config.yaml"), "w") as f:
            yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
        self._metrics = open(os.path.join(self.dir, "metrics.jsonl"), "a")
        self._samples = open(os.path.join(self.dir, "samples.jsonl"), "a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(self.dir)
            except ImportError:  # tensorboard is in the train extra; metrics.jsonl still has everything
                self._tb = None
        self._wandb = None
        if wandb:
            import wandb as _wandb  # opt-in; raises ImportError with pip's name if missing

            self._wandb = _wandb.init(project="rlvr-gym", name=os.path.basename(self.dir), config=to_dict(cfg),
                                      dir=self.dir, resume="allow")

    # ------------------------------------------------------------------ logging
    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self.last_step = max(self.last_step, step)
        if not self.writer:
            return
        row = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                if self._tb is not None:
                    self._tb.add_scalar(k, v, step)
        if self._tb is not None:
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(row, step=step)

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        if not self.writer:
            return
        for r in rows:
            self._samples.write(json.dumps({"step": step, **{k: _jsonable(v) for k, v in r.items()}}) + "\n")
        self._samples.flush()
        if rows and self._tb is not None:  # TensorBoard's text tab: a markdown table per logged step
            self._tb.add_text("samples", samples_markdown(step, rows), step)
            self._tb.flush()
        if rows and self._wandb is not None:  # a W&B table per logged step
            import wandb as _wandb

            data = [[step] + [_jsonable(r.get(c)) if c != "completion" else str(r.get(c, "")) for c in SAMPLE_COLUMNS[1:]]
                    for r in rows]
            self._wandb.log({"samples": _wandb.Table(columns=list(SAMPLE_COLUMNS), data=data)}, step=step)

    def metrics(self) -> list[dict[str, Any]]:
        path = os.path.join(self.dir, "metrics.jsonl")
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def truncate_after(self, step: int) -> None:
        """On resume: drop what was logged after the checkpoint, so the log reads as one run."""
        self.last_step = step
        if not self.writer:
            return
        for name in ("metrics.jsonl", "samples.jsonl"):
            path = os.path.join(self.dir, name)
            with open(path) as f:
                keep = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
            with open(path, "w") as f:
                f.writelines(keep)
        self._metrics.close()
        self._samples.close()
        self._metrics = open(os.path.join(self.dir, "metrics.jsonl"), "a")
        self._samples = open(os.path.join(self.dir, "samples.jsonl"), "a")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, step: int, model: Any, tokenizer: Any, optimizer: Any = None,
                        state: dict[str, Any] | None = None, keep: int = 2, extra: dict[str, Any] | None = None) -> str:
        """A Hugging Face folder plus trainer_state.pt (optimizer, RNG of every rank, data position) and
        ``extra`` files (name -> object for torch.save). Under torchrun every rank calls it (the weights and
        RNG states are gathered) and rank 0 writes."""
        from algos import dist

        w = dist.world()
        path = os.path.join(self.dir, "checkpoints", f"step-{step}")
        collective = w.distributed and not self.solo
        full = dist.full_model(model, w) if collective else model
        opt_state = dist.optimizer_state(model, optimizer) if optimizer is not None else None
        # every rank's RNG (a world of one: its own; an interrupt under data parallel: rank 0 cannot reach the others)
        rngs = w.gather([rng_state()]) if collective else None if w.distributed else [rng_state()]
        if self.writer:
            self._write_checkpoint(path, step, full, tokenizer, opt_state, state, rngs, extra, keep)
        if collective:
            w.barrier()  # the others may read it right after (resume, critic.pt)
        return path

    def _write_checkpoint(self, path: str, step: int, model: Any, tokenizer: Any, opt_state: Any, state: Any,
                          rngs: list | None, extra: dict[str, Any] | None, keep: int) -> None:
        from policies import lora

        tmp = path + ".tmp"
        os.makedirs(tmp, exist_ok=True)
        if lora.enabled(model):  # the adapter and the base model's name: policies.load_model loads both again
            lora.save_adapter(model, tmp)
        else:
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save({"step": step, "optimizer": opt_state, "state": state or {}, "rng": rng_state(),
                    "rng_per_rank": rngs}, os.path.join(tmp, "trainer_state.pt"))
        for name, obj in (extra or {}).items():
            torch.save(obj, os.path.join(tmp, name))
        if os.path.isdir(path):
            import shutil

            shutil.rmtree(path)
        os.replace(tmp, path)  # a crash mid-save never leaves a half checkpoint as the latest
        with open(os.path.join(self.dir, "checkpoints", "latest"), "w") as f:
            f.write(f"step-{step}\n")
        self._prune(keep)

    def _prune(self, keep: int) -> None:
        import shutil

        root = os.path.join(self.dir, "checkpoints")
        steps = sorted(int(d.split("-")[1]) for d in os.listdir(root) if d.startswith("step-") and not d.endswith(".tmp"))
        for s in steps[:-keep] if keep > 0 else []:
            shutil.rmtree(os.path.join(root, f"step-{s}"), ignore_errors=True)

    def latest_checkpoint(self) -> str | None:
        p = os.path.join(self.dir, "checkpoints", "latest")
        if not os.path.exists(p):
            return None
        with open(p) as f:
            return os.path.join(self.dir, "checkpoints", f.read().strip())

    # ------------------------------------------------------------------ end of run
    def write_summary(self, summary: dict[str, Any]) -> None:
        if not self.writer:
            return
        with open(os.path.join(self.dir, "summary.json"), "w") as f:
            json.dump({k: _jsonable(v) for k, v in summary.items()}, f, indent=2)

    def plot(self, groups: dict[str, list[str]], title: str) -> str | None:
        """curves.png: one panel per quantity, each on its own axis, against step: reward per part,
        accuracy (held-out, and the sampled training accuracy), each loss, grad norm, entropy, KL, clip
        fraction, completion length, tokens/s, learning rate (those the run logged), then a panel for each
        key of ``groups`` (the algorithm's own, e.g. preference accuracy) not already drawn. Returns the PNG
        path (None when nothing was logged)."""
        if not self.writer:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.metrics()
        logged = [k for k in dict.fromkeys(k for r in rows for k in r)
                  if k != "step" and any(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) for r in rows)]
        panels = plot_panels(logged, groups)
        if not panels:
            return None
        cols = min(3, len(panels))
        nrows = -(-len(panels) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.4 * nrows), squeeze=False)
        for ax, (name, keys) in zip(axes.flat, panels):
            for k in keys:
                pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, marker="o" if len(pts) < 20 else None, markersize=3, label=k)
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            if len(keys) > 1:
                ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        fig.suptitle(title)
        fig.tight_layout()
        path = os.path.join(self.dir, "curves.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def close(self) -> None:
        if not self.writer:
            return
        self._metrics.close()
        self._samples.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _per_env(k: str, head: str, tail: str) -> bool:
    """``k`` is ``head/NAME/tail``: a mixture's per-environment series (algos.mixture)."""
    parts = k.split("/")
    return len(parts) == 3 and parts[0] == head and parts[2] == tail


# curves.png's panels, in order: (title, keys it draws, in the order tried); one quantity per panel; a
# mixture's per-environment series (reward/NAME/mean, train/NAME/accuracy, ...) go in their quantity's panel
PANELS = (("reward per part", lambda k: k.startswith("reward/") and k.count("/") == 1),
          ("reward per environment", lambda k: _per_env(k, "reward", "mean")),
          ("format per environment", lambda k: _per_env(k, "reward", "format")),
          ("accuracy (held-out eval/, sampled train/)", lambda k: k in ("eval/accuracy", "train/accuracy")
           or _per_env(k, "eval", "accuracy") or _per_env(k, "train", "accuracy")),
          ("loss", lambda k: k.startswith("loss/")),  # one panel per loss: their scales differ
          ("grad norm", lambda k: k == "train/grad_norm"),
          ("entropy", lambda k: "entropy" in k),
          ("KL", lambda k: "kl" in k.split("/")[-1] and not k.startswith("loss/")),
          ("clip fraction", lambda k: "clip_frac" in k),
          ("completion length (tokens)", lambda k: k == "rollout/length" or _per_env(k, "rollout", "length")),
          ("all-equal groups", lambda k: k == "rollout/zero_std_groups" or _per_env(k, "rollout", "zero_std_groups")),
          ("self-correction (share of completions)", lambda k: k == "rollout/self_correction"
           or _per_env(k, "rollout", "self_correction")),
          ("samples per kept group", lambda k: k == "rollout/samples_per_kept_group"
           or _per_env(k, "rollout", "samples_per_kept_group")),
          ("tokens/s", lambda k: k == "perf/tokens_per_second"),
          ("learning rate", lambda k: k in ("train/lr", "train/critic_lr")))


def plot_panels(logged: list[str], groups: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """The panels of curves.png for these logged keys: `PANELS` first (each loss on its own), then each
    key of the algorithm's ``groups`` that none of them drew, alone on its own axis."""
    panels: list[tuple[str, list[str]]] = []
    drawn: set[str] = set()
    for title, wants in PANELS:
        keys = [k for k in logged if wants(k)]
        if title == "loss":
            panels += [(k, [k]) for k in keys]
        elif keys:
            panels.append((title, keys))
        drawn.update(keys)
    for name, keys in groups.items():
        for k in keys:
            if k in logged and k not in drawn:
                panels.append((k if len(keys) > 1 else name, [k]))
                drawn.add(k)
    return panels


def samples_markdown(step: int, rows: list[dict[str, Any]], width: int = 300) -> str:
    """A markdown table of sampled completions (TensorBoard's text tab): task, reward, status, completion."""
    def cell(v: Any) -> str:
        text = str(_jsonable(v)) if v is not None else ""
        text = text if len(text) <= width else text[:width] + "…"
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")

    lines = [f"step {step}", "", "| task | reward | status | completion |", "| --- | --- | --- | --- |"]
    for r in rows:
        reward = r.get("reward")
        lines.append(f"| {cell(r.get('task_id'))} | {reward:.3g} | {cell(r.get('status'))} | {cell(r.get('completion'))} |"
                     if isinstance(reward, (int, float)) else
                     f"| {cell(r.get('task_id'))} | {cell(reward)} | {cell(r.get('status'))} | {cell(r.get('completion'))} |")
    return "\n".join(lines)


SAMPLE_COLUMNS = ("step", "task_id", "reward", "status", "completion")


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if dataclasses.is_dataclass(v):
        return dataclasses.asdict(v)
    if hasattr(v, "value") and isinstance(getattr(v, "value"), str):  # enums
        return v.value
    return v


def rng_state() -> dict[str, Any]:
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def restore_rng(st: dict[str, Any], rank: int, seed: int) -> bool:
    """Set this rank's RNG from a checkpoint's trainer state: its own saved state (``rng_per_rank``), else,
    on rank 0 or in a world of one, the saved ``rng``. A checkpoint written by rank 0 alone (an interrupt
    under data parallel: it cannot reach the others) has no state for the other ranks: each is seeded from
    the run's seed, its rank and the step, so the ranks keep drawing different numbers (giving every rank
    rank 0's state would make them sample the same completions). Returns whether the exact state was restored."""
    per_rank = st.get("rng_per_rank")
    if per_rank and rank < len(per_rank):
        set_rng_state(per_rank[rank])
        return True
    if rank == 0:
        set_rng_state(st["rng"])
        return True
    seed_everything(seed + 1_000_003 * rank + 7_919 * (int(st.get("step", 0)) + 1))
    return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_trainer_state(ckpt: str) -> dict[str, Any]:
    return torch.load(os.path.join(ckpt, "trainer_state.pt"), weights_only=False)
