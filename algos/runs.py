"""The run folder every ``algos`` module writes, and resuming from it.

    runs/<algo>-<env>-<time>/         (or out=DIR)
      config.yaml                     the resolved config
      metrics.jsonl                   one line per step, flushed as written
      samples.jsonl                   sampled completions with their rewards
      events.out.tfevents.*           TensorBoard
      curves.png                      reward parts and accuracy
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
                raise FileNotFoundError(f"resume={resume!r}: no such run folder")
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
        rngs = w.gather([rng_state()]) if collective else None
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
        """One panel per group of metric keys, against step. Returns the PNG path."""
        if not self.writer:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.metrics()
        panels = [(name, keys) for name, keys in groups.items() if any(k in r for r in rows for k in keys)]
        if not panels:
            return None
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        for ax, (name, keys) in zip(axes[0], panels):
            for k in keys:
                pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, marker="o" if len(pts) < 20 else None, markersize=3, label=k)
            ax.set_xlabel("training step")
            ax.set_ylabel(name)
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        path = os.path.join(self.dir, "curves.png")
        fig.savefig(path, dpi=110)
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_trainer_state(ckpt: str) -> dict[str, Any]:
    return torch.load(os.path.join(ckpt, "trainer_state.pt"), weights_only=False)
