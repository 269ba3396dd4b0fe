"""What offline DPO (`algos.dpo`) and online DPO (`algos.iterative_dpo`) share: building
(chosen, rejected) pairs from verifier rewards, preference datasets on disk, sequence
logprobs of a batch, and the loss for ``loss=dpo|orpo|simpo|kto``.

Build a preference file from a model's own samples (scored by the environment's verifiers):

    python -m algos.preference env=math out=prefs.jsonl tasks=2048 samples_per_task=8

It writes prompt/chosen/rejected rows (and, with ``format=kto``, prompt/completion/label rows).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Literal, Sequence

import torch

from algos import config as cfglib
from algos import losses, microbatch
from policies import PolicyConfig, SamplingParams
from policies.hf import Batch, collate, encode_prompt, token_logprobs
from verifiers.code import raise_if_sandbox_down

LOSSES = ("dpo", "orpo", "simpo", "kto")


def build_pairs(rewards: Sequence[float], lengths: Sequence[int], max_pairs: int = 1) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs within one group of samples of the same prompt.

    Chosen candidates are sorted by reward, high first, ties broken by shorter length; rejected
    candidates by reward, low first, ties broken by longer length. The k-th pair takes the k-th
    of each, as long as the chosen reward is strictly higher (ties carry no preference and are
    skipped) and no sample is used twice. At most ``max_pairs`` pairs.
    """
    n = len(rewards)
    if n != len(lengths):
        raise ValueError(f"rewards ({n}) and lengths ({len(lengths)}) differ in size")
    best = sorted(range(n), key=lambda i: (-rewards[i], lengths[i], i))
    worst = sorted(range(n), key=lambda i: (rewards[i], -lengths[i], i))
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for c, r in zip(best, worst):
        if len(pairs) >= max_pairs or rewards[c] <= rewards[r] or c in used or r in used:
            break
        pairs.append((c, r))
        used.update((c, r))
    return pairs


@dataclasses.dataclass
class Pair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    chosen_mask: list[int] | None = None  # per completion token, 0 where a tool wrote it (no loss there)
    rejected_mask: list[int] | None = None


@dataclasses.dataclass
class Thumb:
    prompt_ids: list[int]
    completion_ids: list[int]
    desirable: bool


def _response_text(x: Any) -> str:
    """A response given as text, or as chat messages (the last assistant message's content)."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and isinstance(x[-1], dict) and "content" in x[-1]:
        return x[-1]["content"]
    raise cfglib.ConfigError(f"a response must be a string or a list of chat messages, got {type(x).__name__}")


def load_preference_data(data: str, tokenizer: Any, kind: str) -> list[Pair] | list[Thumb]:
    """Rows of a preference dataset (hub name, JSON/JSONL/Parquet file or folder), tokenized.

    ``kind="pairs"``: columns prompt, chosen, rejected. ``kind="thumbs"`` (KTO): columns prompt,
    completion, label (true = desirable); a pairs dataset also works, each pair giving one
    desirable and one undesirable example.
    """
    from envs.math_dataset import _load
    import envs

    try:
        ds = _load(data, None, "train")
    except envs.EnvError as e:
        raise cfglib.ConfigError(f"data={data!r}: {e}") from None
    cols = set(ds.column_names)
    eos = [tokenizer.eos_token_id]

    def resp(x: Any) -> list[int]:
        return tokenizer(_response_text(x), add_special_tokens=False)["input_ids"] + eos

    has_pairs, has_thumbs = {"prompt", "chosen", "rejected"} <= cols, {"prompt", "completion", "label"} <= cols
    if kind == "pairs":
        if not has_pairs:
            raise cfglib.ConfigError(f"data={data!r} has columns {sorted(cols)}; pairwise losses need prompt, chosen, "
                                     f"rejected (for prompt/completion/label data use loss=kto)")
        return [Pair(encode_prompt(tokenizer, r["prompt"]), resp(r["chosen"]), resp(r["rejected"])) for r in ds]
    if has_thumbs:
        return [Thumb(encode_prompt(tokenizer, r["prompt"]), resp(r["completion"]), bool(r["label"])) for r in ds]
    if has_pairs:
        out: list[Thumb] = []
        for r in ds:
            p = encode_prompt(tokenizer, r["prompt"])
            out += [Thumb(p, resp(r["chosen"]), True), Thumb(p, resp(r["rejected"]), False)]
        return out
    raise cfglib.ConfigError(f"data={data!r} has columns {sorted(cols)}; KTO needs prompt, completion, label "
                             f"(or prompt, chosen, rejected)")


def sequence_logps(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed and mean completion logprob of each row [N]."""
    lp = token_logprobs(model, batch)
    m = batch.completion_mask
    total = (lp * m).sum(-1)
    return total, total / m.sum(-1).clamp(min=1.0)


@dataclasses.dataclass
class LossSettings:
    loss: str = "dpo"
    beta: float = 0.1
    simpo_beta: float = 2.0
    simpo_gamma: float = 0.5
    orpo_lambda: float = 0.1
    nll_weight: float = 0.0  # + this x mean-token NLL of the chosen response (RPO, Pang et al. 2024)


def pair_loss(model: Any, ref: Any, pairs: Sequence[Pair], pad_id: int, s: LossSettings,
              count: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean preference loss of a minibatch of pairs; chosen and rejected go through one forward pass.
    ``count``: the normaliser when it is not ``len(pairs)`` (the minibatch's pairs over every rank)."""
    n = len(pairs)
    count = float(n) if count is None else count
    batch = collate([p.prompt_ids for p in pairs] * 2, [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs],
                    pad_id, [p.chosen_mask for p in pairs] + [p.rejected_mask for p in pairs]
                    ).to(next(model.parameters()).device)
    total, avg = sequence_logps(model, batch)
    stats: dict[str, float] = {}
    if s.loss == "dpo":
        with torch.no_grad():
            ref_total, _ = sequence_logps(ref, batch)
        loss = losses.dpo_loss(total[:n], total[n:], ref_total[:n], ref_total[n:], s.beta)
        margin = s.beta * ((total[:n] - ref_total[:n]) - (total[n:] - ref_total[n:]))
        stats["pref/reward_margin"] = margin.mean().item()
        stats["pref/accuracy"] = (margin > 0).float().mean().item()
    elif s.loss == "simpo":
        loss = losses.simpo_loss(avg[:n], avg[n:], s.simpo_beta, s.simpo_gamma)
        stats["pref/accuracy"] = (avg[:n] > avg[n:]).float().mean().item()
    elif s.loss == "orpo":
        loss = losses.orpo_loss(avg[:n], avg[n:], -avg[:n], s.orpo_lambda)
        stats["pref/accuracy"] = (avg[:n] > avg[n:]).float().mean().item()
    else:
        raise cfglib.ConfigError(f"loss={s.loss!r} is not a pairwise loss; pick one of dpo, orpo, simpo")
    stats["pref/chosen_logp"] = avg[:n].mean().item()
    stats["pref/rejected_logp"] = avg[n:].mean().item()
    loss = loss.sum() / count
    if s.nll_weight > 0:
        loss = loss - s.nll_weight * avg[:n].sum() / count
    return loss, stats


def pair_step(opt: Any, model: Any, ref: Any, pairs: Sequence[Pair], pad_id: int, s: LossSettings, count: float,
              limits: microbatch.Limits, grad_clip: float) -> tuple[float, float, dict[str, float]]:
    """One optimizer step of a pairwise loss on ``pairs`` (this rank's share of a minibatch of ``count``
    pairs over every rank), as micro-batches of whole pairs (`microbatch.plan`: a pair is 2 rows) with
    gradients accumulated: each micro-batch's `pair_loss` is over ``count``, so they add up to the
    minibatch's mean. Returns (gradient norm, this rank's loss, its statistics: means over its pairs)."""
    means, total = microbatch.Means(), 0.0

    def loss_of(part: list[Pair]) -> torch.Tensor:
        nonlocal total
        loss, st = pair_loss(model, ref, part, pad_id, s, count)
        means.add(st, len(part))
        total += loss.item()
        return loss

    lengths = [(len(p.prompt_ids), max(len(p.chosen_ids), len(p.rejected_ids))) for p in pairs]
    parts = microbatch.split(pairs, lengths, limits, rows_per_unit=2, unit="pair")
    gn = microbatch.step(opt, model, parts, loss_of, grad_clip)
    return gn, total, means.result()


def kto_step(opt: Any, model: Any, ref: Any, thumbs: Sequence[Thumb], pad_id: int, s: LossSettings,
             limits: microbatch.Limits, grad_clip: float, w_desirable: float = 1.0,
             w_undesirable: float = 1.0, mismatched: Sequence[list[int]] | None = None) -> tuple[float, float, dict[str, float]]:
    """One optimizer step of KTO on ``thumbs`` (this rank's share of a minibatch), in micro-batches.
    The reference point z is the minibatch's mean KL estimate mean(pi - ref) over mismatched
    (prompt, completion) pairs: each completion scored after the next example's prompt (of the whole
    minibatch, in its order), as in the KTO paper and TRL. ``mismatched``: the prompt ids each of this
    rank's completions is scored after (`mismatched_prompts`; default: the next of ``thumbs``, the whole
    minibatch in one process), so z is the same pairs' mean on any number of ranks. It and the loss's
    mean are over every rank's examples, computed before the split, so the micro-batches' losses add
    up to the unsplit one. Returns (gradient norm, this rank's loss, its statistics)."""
    from algos.dist import world

    w = world()
    n = len(thumbs)
    count = max(w.sum(float(n)), 1.0)

    def summed(module: Any, rows: microbatch.Rows) -> torch.Tensor:  # each row's summed completion logprob [n]
        lp = microbatch.token_values(module, rows, limits, pad_id, lambda m, b: token_logprobs(m, b))
        return torch.stack([x.sum() for x in lp]) if lp else torch.zeros(0)

    mis_prompts = list(mismatched) if mismatched is not None else [thumbs[(i + 1) % n].prompt_ids for i in range(n)]
    mis = microbatch.Rows(mis_prompts, [t.completion_ids for t in thumbs], [None] * n)
    kl = w.sum((summed(model, mis) - summed(ref, mis)).sum().double()).float() / count  # z, without gradient
    rewards = torch.zeros(n)
    total = 0.0

    def loss_of(idx: list[int]) -> torch.Tensor:
        nonlocal total
        part = [thumbs[i] for i in idx]
        batch = collate([t.prompt_ids for t in part], [t.completion_ids for t in part], pad_id).to(next(model.parameters()).device)
        pi, _ = sequence_logps(model, batch)
        with torch.no_grad():
            ref_logp, _ = sequence_logps(ref, batch)
        desirable = torch.tensor([t.desirable for t in part], device=pi.device)
        loss = losses.kto_loss(pi, ref_logp, desirable, kl.to(pi.device).expand_as(pi), s.beta, w_desirable,
                               w_undesirable).sum() / count
        rewards[idx] = (pi - ref_logp).detach().float().cpu()
        total += loss.item()
        return loss

    parts = microbatch.plan([(len(t.prompt_ids), len(t.completion_ids)) for t in thumbs], limits, unit="example")
    gn = microbatch.step(opt, model, parts, loss_of, grad_clip)
    des = torch.tensor([t.desirable for t in thumbs], dtype=torch.bool)
    stats = {"pref/kl_ref": kl.item(), "pref/reward_desirable": rewards[des].mean().item() if des.any() else 0.0,
             "pref/reward_undesirable": rewards[~des].mean().item() if (~des).any() else 0.0} if n else {}
    return gn, total, stats


def mismatched_prompts(minibatch: Sequence[Thumb], rank: int = 0, size: int = 1) -> list[list[int]]:
    """KTO's mismatched pairs of the rows a rank holds (``minibatch[rank::size]``, `dist.World.strided`): the
    prompt after each one's, in the whole minibatch."""
    n = len(minibatch)
    return [minibatch[(j + 1) % n].prompt_ids for j in range(rank, n, size)]


# ---------------------------------------------------------------------- building a preference file


@dataclasses.dataclass
class BuildConfig:
    env: str = "math"
    """environment whose training tasks are sampled and scored"""
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    """environment options (env.KEY=VALUE)"""
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """the model that samples (default the shipped cold start tiny-sft)"""
    out: str = "prefs.jsonl"
    """output JSONL file"""
    format: Literal["pairs", "kto"] = "pairs"
    """pairs (prompt/chosen/rejected) or kto (prompt/completion/label)"""
    tasks: int = 2048
    """training tasks to sample"""
    start: int = 0
    """index of the first training task"""
    samples_per_task: int = 8
    """completions per task"""
    pairs_per_task: int = 1
    """at most this many pairs per task (ties are skipped)"""
    temperature: float = 1.0
    """sampling temperature"""
    max_new_tokens: int = 96
    """completion length limit"""
    seed: int = 0
    """sampling seed"""


def build_main(argv: list[str] | None = None) -> dict[str, Any]:
    import envs
    from policies import load
    from tqdm import tqdm

    cfg = cfglib.parse(BuildConfig, argv, prog="algos.preference")
    env = envs.make(cfg.env, **cfg.env_kwargs)
    base = env.unwrapped
    engine, _, _ = load(cfg.policy)
    os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
    rows = tasks_with_pair = 0
    chunk = 128
    with open(cfg.out, "w") as f:
        for lo in tqdm(range(0, cfg.tasks, chunk), desc="sampling", dynamic_ncols=True):
            tasks = base.source.tasks(min(chunk, cfg.tasks - lo), "train", start=cfg.start + lo)
            params = SamplingParams(n=cfg.samples_per_task, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                    seed=cfg.seed * 1_000_003 + lo)
            outs = engine.generate([base.prompt_of(t) for t in tasks], params)
            for t, group in zip(tasks, outs):
                res = base.score_batch([r.text for r in group], [t] * len(group))
                raise_if_sandbox_down(res)
                pairs = build_pairs([x.reward for x in res], [len(r.completion_ids) for r in group], cfg.pairs_per_task)
                tasks_with_pair += bool(pairs)
                for c, r in pairs:
                    if cfg.format == "pairs":
                        f.write(json.dumps({"prompt": base.prompt_of(t), "chosen": group[c].text, "rejected": group[r].text,
                                            "chosen_reward": res[c].reward, "rejected_reward": res[r].reward}) + "\n")
                        rows += 1
                    else:
                        for i, label in ((c, True), (r, False)):
                            f.write(json.dumps({"prompt": base.prompt_of(t), "completion": group[i].text, "label": label,
                                                "reward": res[i].reward}) + "\n")
                            rows += 1
    print(f"wrote {rows} rows to {cfg.out} ({tasks_with_pair} of {cfg.tasks} tasks had a preference)", file=sys.stderr)
    return {"rows": rows, "tasks_with_pair": tasks_with_pair, "out": cfg.out}


if __name__ == "__main__":
    from algos.common import run_main

    run_main(build_main)
