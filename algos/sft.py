"""Supervised fine-tuning: the cold start of the DeepSeek-R1 recipe.

    python -m algos.sft env=math                 # on the environment's worked solutions
    python -m algos.sft data=PATH_OR_HUB_NAME    # on any (prompt, response) or chat dataset

Each example is a prompt (through the tokenizer's chat template) and a response: for an
environment, ``<think>`` + the task's worked solution + ``</think>`` + ``<answer>`` + the
answer + ``</answer>``, then EOS. On the math environment, ``demo_slip_rate`` (default 0.6,
the shipped cold start's recipe) of the problems that have the spot for it are demonstrated
with a classic slip instead (a forgotten carry or borrow, the answer following it): an
imperfect teacher, so the model learns the format and most of the arithmetic but also the
habit that RL has to unlearn. ``demo_slip_rate=0`` trains on correct solutions only. The loss is the mean token cross-entropy over response
tokens only; prompt tokens are masked out. AdamW with linear warmup, then ``lr_schedule`` (default: cosine
decay to 10% of lr), gradient clipping. Writes the run folder of `algos.runs` (metrics, checkpoints, curves,
summary) and resumes from its last checkpoint with ``resume=RUN_DIR``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, ClassVar, Literal

import torch
import envs
from algos import config as cfglib
from algos.config import AT_LEAST_1, POLICY_RANGES, POSITIVE, Range
from algos.heldout import heldout_eval
from algos import microbatch
from algos.common import Progress, adamw, lr_at, progress_bar, run_main, save_on_interrupt, set_lr, start, sync_engine
from policies import PolicyConfig
from policies.lora import LoRAConfig
from policies.hf import encode_prompt, token_logprobs


@dataclasses.dataclass
class SFTConfig:
    # defaults for any model but the built-in tiny ones (algos.config.TINY_MODELS); --help shows them
    REAL_MODEL_DEFAULTS: ClassVar[dict] = {"lr": 2e-5, "warmup_steps": 0, "weight_decay": 0.0, "steps": 100, "batch_size": 16,
                                              "max_new_tokens": 512, "heldout_size": 200,
                                              "micro_batch_tokens": microbatch.REAL_MODEL_TOKENS,
                                              "gradient_checkpointing": True}
    data_replaces_env: ClassVar[bool] = True  # with data=, no environment (and no held-out accuracy)
    RANGES: ClassVar[dict] = {**POLICY_RANGES, "lora.dropout": Range(0, 1, hi_open=True), "lora.alpha": POSITIVE,
                              "demo_slip_rate": Range(0, 1), "steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE,
                              "heldout_size": AT_LEAST_1, "max_new_tokens": AT_LEAST_1,
                              "dist_timeout": POSITIVE}  # algos.config.check_ranges

    env: str = "math"
    """environment whose worked solutions are the training data (alias, Gymnasium id or module:Class)"""
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    """options passed to the environment (set them as env.KEY=VALUE)"""
    data: str | None = None
    """train on this dataset instead (hub name or local file/folder): columns prompt+response (or completion), or messages"""
    policy: PolicyConfig = dataclasses.field(default_factory=lambda: PolicyConfig(model="tiny"))
    """the model to train (see policy.* keys); SFT starts from the fresh built-in tiny model"""
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    """train LoRA adapters instead of every weight (see lora.* keys; lora.r=0, the default: full fine-tuning)"""
    demo_slip_rate: float = 0.6
    """environments with imperfect demonstrations (math): share of slipped worked solutions (a forgotten carry or
    borrow, the answer following it) among problems that have the spot for one; 0.6 is the shipped cold start's
    recipe, an imperfect teacher whose habit RL then unlearns; 0 trains on correct solutions only"""
    steps: int = 900
    """optimizer steps"""
    batch_size: int = 64
    """examples per step"""
    lr: float = 2e-3
    """peak learning rate (AdamW)"""
    warmup_steps: int = 25
    """linear warmup steps, then lr_schedule"""
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    """learning rate after the warmup: constant, or a linear or cosine decay that reaches lr x lr_final_ratio at the end of the run"""
    lr_final_ratio: float = 0.1
    """linear/cosine: the learning rate at the end of the run, as a share of lr"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    grad_clip: float = 1.0
    """clip the gradient norm to this (0: off)"""
    heldout_size: int = 500
    """held-out tasks for the greedy accuracy at the end (and at eval_every)"""
    eval_every: int = 0
    """evaluate on the held-out tasks every N steps (0: only at the end)"""
    save_every: int = 250
    """checkpoint every N steps (and at the end)"""
    max_new_tokens: int = 96
    """generation limit for held-out evaluation"""
    gradient_checkpointing: bool = False
    """activation checkpointing: keep each decoder layer's input only and recompute the layer in the backward pass (about one more forward pass of time; on for real models: a GRPO step of SmolLM2-135M with 4096-token micro-batches peaks at 3.6 GB with it, 7.6 GB without)"""
    seed: int = 0
    """seed for data order and initialisation"""
    out: str | None = None
    """run folder (default runs/sft-<env>-<time>)"""
    resume: str | None = None
    """continue the run in this folder from its last checkpoint; steps, save_every, eval_every, wandb and dist_timeout may be changed on the command line, no other key"""
    overwrite: bool = False
    """out= names a folder that already holds a run: delete it and start over (without it such an out= is refused)"""
    wandb: bool = False
    """also log to Weights & Biases"""
    parallel: Literal["auto", "ddp", "fsdp"] = "auto"
    """under torchrun: ddp (replicated weights, gradients summed over ranks; auto picks it) or fsdp (weights sharded per decoder layer)"""
    dist_backend: Literal["auto", "gloo", "nccl"] = "auto"
    """under torchrun: process-group backend; auto is nccl on GPUs, gloo on CPUs"""
    dist_timeout: float = 1800.0
    """under torchrun: seconds any collective may wait for the other ranks before every rank stops with an error"""
    micro_batch_size: int = 0
    """examples per forward/backward pass, per process: each step runs as micro-batches, gradients accumulated, the same update (0: no limit)"""
    micro_batch_tokens: int = 0
    """tokens per forward/backward pass, padding included (rows x longest prompt+response), per process: rows packed longest-first (0: no budget)"""


class Examples:
    """(prompt ids, response ids) by index: from an environment's worked solutions or a dataset."""

    def __init__(self, cfg: SFTConfig, env: Any, tokenizer: Any):
        self.env, self.tok, self.eos = env, tokenizer, tokenizer.eos_token_id
        self.offset = cfg.seed * 1_000_003  # the seed picks which examples come in which order (0: from the first)
        self.rows = None
        if cfg.data:
            self.rows = load_sft_rows(cfg.data)

    def get(self, index: int) -> tuple[list[int], list[int], list[int] | None]:
        """Prompt ids, response ids (EOS last) and the response's loss mask (None: every token)."""
        index += self.offset
        if self.rows is not None:
            prompt, response = self.rows[index % len(self.rows)]
            parts = [(response, True)]
        else:
            base = self.env.unwrapped
            task = base.source.task(index, "train")
            prompt = base.prompt_of(task)
            # environments with tools split off the tools' results: no loss there, as in the RL trainers
            parts = base.demonstration_parts(task) if hasattr(base, "demonstration_parts") \
                else [(base.demonstration(task), True)]
        resp: list[int] = []
        mask: list[int] = []
        for text, trained in parts:  # each piece on its own, as an episode appends a tool's result
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            resp += ids
            mask += [int(trained)] * len(ids)
        return encode_prompt(self.tok, prompt), resp + [self.eos], (mask + [1] if 0 in mask else None)


def sft_loss(model: Any, batch: Any, tokens: float | None = None) -> torch.Tensor:
    """Mean cross-entropy over response tokens (prompt tokens masked out). ``tokens``: the
    normaliser, when it is not this batch's own token count (the whole step's, under torchrun)."""
    logp = token_logprobs(model, batch)
    return -(logp * batch.completion_mask).sum() / (batch.completion_mask.sum() if tokens is None else tokens)


def load_sft_rows(data: str) -> list[tuple[Any, str]]:
    """Rows of (prompt, response) from a dataset with prompt/response, prompt/completion or messages columns."""
    from envs.math_dataset import _load

    try:
        ds = _load(data, None, "train")
    except envs.EnvError as e:
        raise cfglib.ConfigError(f"data={data!r}: {e}") from None
    cols = set(ds.column_names)
    rows: list[tuple[Any, str]] = []
    if "messages" in cols:
        for r in ds:
            msgs = r["messages"]
            if not msgs or msgs[-1]["role"] != "assistant":
                raise cfglib.ConfigError(f"data={data!r}: each 'messages' row must end with an assistant message")
            rows.append((msgs[:-1], msgs[-1]["content"]))
    else:
        rkey = "response" if "response" in cols else "completion" if "completion" in cols else None
        pkey = "prompt" if "prompt" in cols else "question" if "question" in cols else None
        if rkey is None or pkey is None:
            raise cfglib.ConfigError(f"data={data!r} has columns {sorted(cols)}; SFT needs prompt + response "
                                     f"(or completion), or messages")
        for r in ds:
            p, c = r[pkey], r[rkey]
            rows.append((p, c if isinstance(c, str) else c[-1]["content"]))
    if not rows:
        raise cfglib.ConfigError(f"data={data!r} is empty")
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # ---------------------------------------------------------------- config and setup (shared with every algos module)
    s = start(SFTConfig, argv, "sft")
    cfg, env, engine, model, tok, run = s.cfg, s.env, s.engine, s.model, s.tokenizer, s.run
    eval_env = env  # held-out accuracy needs an environment; a plain dataset has none
    if env is not None and hasattr(env.unwrapped, "demo_slip_rate"):
        env.unwrapped.demo_slip_rate = cfg.demo_slip_rate
    data = Examples(cfg, env, tok)
    opt = adamw(s, model, cfg.lr, cfg.weight_decay, beta2=0.98)
    w = s.world
    share = w.shard(cfg.batch_size, "a step's examples", "batch_size")
    microbatch.check(cfg, share.stop - share.start, "batch_size")
    start_step, position = s.step, s.state.get("position", 0)
    t0 = time.time()
    loss_val = float("nan")
    step = start_step
    progress = Progress(start_step, {"position": position})
    bar = progress_bar(range(start_step, cfg.steps), initial=start_step, total=cfg.steps, desc="sft")
    with save_on_interrupt(s, progress, lambda st, state: run.save_checkpoint(st, model, tok, opt, state)):
        for step in bar:
            # ---------------------------------------------------------------- batch
            pairs = [data.get(position + i) for i in range(share.start, share.stop)]  # this rank's share
            position += cfg.batch_size
            rows = microbatch.Rows([p for p, _, _ in pairs], [r for _, r, _ in pairs], [m for _, _, m in pairs])
            # ---------------------------------------------------------------- loss: response tokens only
            model.train()
            tokens = w.sum(rows.tokens().sum().item())  # the whole step's, over every rank
            parts_loss: list[float] = []

            def loss_of(part: microbatch.Rows) -> torch.Tensor:  # a micro-batch's share of the step's loss
                loss = sft_loss(model, part.collate(tok.pad_token_id, model.device)[0], tokens)
                parts_loss.append(loss.item())
                return loss

            # ---------------------------------------------------------------- update
            set_lr(opt, lr_at(cfg, cfg.lr, step, cfg.steps))
            gnorm = microbatch.step(opt, model, rows.split(microbatch.Limits.of(cfg)), loss_of, cfg.grad_clip)
            # ---------------------------------------------------------------- log
            loss_val = w.sum(sum(parts_loss))
            metrics = {"loss/sft": loss_val, "train/grad_norm": gnorm, "train/lr": opt.param_groups[0]["lr"],
                       "perf/tokens": int(tokens)}
            progress.finished(step + 1, {"position": position}, metrics)  # the weights are now those of step + 1
            if eval_env is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                sync_engine(s)  # the generation engine gets the trained weights (vLLM's copy; the full copy under fsdp)
                ev = heldout_eval(engine, eval_env, cfg.heldout_size, cfg.max_new_tokens)
                metrics["eval/accuracy"] = ev["accuracy"]
            run.log(step + 1, metrics)
            bar.set_postfix(loss=f"{loss_val:.3f}")
            if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                run.save_checkpoint(step + 1, model, tok, opt, {"position": position})
        step = cfg.steps
    bar.close()
    wall = time.time() - t0
    # ---------------------------------------------------------------- final eval and save
    summary: dict[str, Any] = {"steps": cfg.steps, "wall_seconds": round(wall, 1), "final_loss": loss_val}
    if eval_env is not None:
        sync_engine(s)
        ev = heldout_eval(engine, eval_env, cfg.heldout_size, cfg.max_new_tokens)
        summary["heldout_accuracy"] = ev["accuracy"]
        summary["heldout_mean_reward"] = ev["mean_reward"]
        summary["heldout_format"] = ev["format"]
        run.log(cfg.steps, {"eval/accuracy": ev["accuracy"], "eval/mean_reward": ev["mean_reward"]})
    path = run.save_checkpoint(cfg.steps, model, tok, opt, {"position": position})
    summary["checkpoint"] = path
    run.write_summary(summary)
    run.plot({"loss": ["loss/sft"], "held-out accuracy": ["eval/accuracy"]}, f"SFT on {cfg.data or cfg.env}")
    run.close()
    if w.is_main:
        print(f"sft done: {summary}")
    return summary


if __name__ == "__main__":
    run_main(main)
