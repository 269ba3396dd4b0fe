"""GRPO for language models with verifiable rewards.

    python -m algos.grpo env=math                          # CPU, the built-in cold-start model
    python -m algos.grpo env=gsm8k env.path=... policy.model=Qwen/Qwen2.5-0.5B-Instruct policy.engine=vllm

The variant implemented (defaults in brackets):

* per step, ``prompts_per_step`` training tasks [32], ``group_size`` completions each [8],
  sampled at ``temperature`` [0.7] with per-token logprobs of that tempered policy recorded at
  sampling time (the loss recomputes them at the same temperature);
* reward = the environment's weighted mean of verifiable parts (correctness, format);
  truncated completions are masked out of the loss [mask] or penalised;
* group-relative advantages (Shao et al. 2024, DeepSeekMath) scaled by the group's std
  [group], by nothing (Dr. GRPO, Liu et al. 2025) or by the batch's std; one advantage per
  completion, shared by its tokens;
* groups whose rewards are all equal carry no signal: their share is logged, and with
  ``dynamic_sampling=true`` more tasks are drawn to refill the batch (DAPO, Yu et al. 2025), each
  environment of a mixture (``env=[math,ifeval]``, algos/mixture.py) its own share; with
  ``difficulty_filter=true`` groups solved always or never are dropped and their tasks skipped for
  ``filter_recheck`` steps (online filtering as in Kimi k1.5 / PRIME; algos/filtering.py);
* ``mu`` [1] clipped policy-gradient updates on the batch, against the sampling-time
  logprobs, with separate lower/upper clip ranges [0.2 / 0.28, "clip-higher" from DAPO];
* loss aggregation over tokens of the whole batch [token, DAPO], per sequence (GRPO) or by
  a constant (Dr. GRPO);
* optional KL to a frozen reference model with the k3 estimator, off by default (beta=0,
  and then no reference model is loaded);
* with beta=0 and one minibatch, rows with zero advantage (all-equal groups) and fully masked
  rows are left out of the forward/backward pass, with the loss normaliser of the whole batch:
  the same loss and gradients for less compute (entropy and clip fraction are then logged
  over the rows that were run);
* each optimizer step runs as micro-batches of at most ``micro_batch_size`` rows and
  ``micro_batch_tokens`` tokens (algos/microbatch.py; real models: 4096 tokens), gradients
  accumulated: the loss normaliser is the whole minibatch's, so the update is the unsplit one.

Left out: PPO-style value baselines (see algos/ppo.py), entropy bonuses (entropy is logged),
overlong reward shaping beyond a flat penalty. Many processes: ``torchrun ... -m algos.grpo``
(see algos/dist.py): each rank samples whole groups of its share of the prompts; advantages,
loss normalisers and gradients are those of the whole step.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from typing import Any, ClassVar, Literal

import torch
from algos import dist, filtering, losses, microbatch, mixture
from algos.config import AT_LEAST_1, POSITIVE, ConfigError, Range
from algos.common import (Progress, RunConfig, adamw, has_error, reference, eval_metrics, evaluate, finish, heldout_before, progress_bar,
                          log_samples, reward_metrics, run_main, sample_and_score, save_on_interrupt, set_lr, start,
                          sync_engine, update, lr_at)
from policies import SamplingParams
from policies.hf import token_logprobs, train_without_dropout


@dataclasses.dataclass
class GRPOConfig(RunConfig):
    # defaults for any model but the built-in tiny ones (algos.config.TINY_MODELS); --help shows them
    REAL_MODEL_DEFAULTS: ClassVar[dict] = {"lr": 1e-6, "warmup_steps": 0, "temperature": 1.0, "max_new_tokens": 512, "heldout_size": 200,
                                              "micro_batch_tokens": microbatch.REAL_MODEL_TOKENS,
                                              "gradient_checkpointing": True}
    RANGES: ClassVar[dict] = {"steps": AT_LEAST_1, "prompts_per_step": AT_LEAST_1,
                              "group_size": Range(2, why="advantages are relative to the group: a group of one has advantage 0 "
                                                        "and trains nothing"),
                              "temperature": Range(0, lo_open=True, why="training samples; 0 is greedy: every completion of a "
                                                                       "group alike, advantage 0"),
                              "top_p": Range(0, 1, lo_open=True), "lr": POSITIVE, "mu": AT_LEAST_1, "minibatches": AT_LEAST_1,
                              "eps_low": Range(0, 1), "max_off_policy_steps": Range(0, 1), "is_cap": POSITIVE,
                              "filter_recheck": AT_LEAST_1}
    steps: int = 100
    """training steps (one batch of prompts each)"""
    save_every: int = 25
    """checkpoint every N steps (and at the end): a crashed run resumes from the last one"""
    prompts_per_step: int = 32
    """training tasks per step"""
    group_size: int = 8
    """completions sampled per task (G)"""
    temperature: float = 0.7
    """sampling temperature for training rollouts (logprobs and the loss use the same tempered policy)"""
    top_p: float = 1.0
    """nucleus sampling for training rollouts"""
    lr: float = 5e-5
    """learning rate (AdamW; warmup_steps, then lr_schedule)"""
    warmup_steps: int = 5
    """linear learning-rate warmup"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    grad_clip: float = 1.0
    """clip the gradient norm to this (0: off)"""
    mu: int = 1
    """policy updates per batch; updates after the first are off-policy and use the clipped ratio"""
    minibatches: int = 1
    """split each update over this many minibatches (gradient steps per update)"""
    eps_low: float = 0.2
    """lower clip range of the ratio (1 - eps_low)"""
    eps_high: float = 0.28
    """upper clip range of the ratio (1 + eps_high); > eps_low is DAPO's clip-higher"""
    beta: float = 0.0
    """KL(pi || ref) coefficient with the k3 estimator; 0 loads no reference model"""
    advantage: Literal["group", "none", "batch"] = "group"
    """advantage scaling: group std (GRPO), none (Dr. GRPO), batch std"""
    loss_agg: Literal["token", "sequence", "constant"] = "token"
    """loss aggregation: token (DAPO), sequence (GRPO), constant (Dr. GRPO)"""
    dynamic_sampling: bool = False
    """draw more tasks to replace groups whose rewards are all equal (DAPO)"""
    max_resample_rounds: int = 3
    """dynamic sampling: at most this many extra rounds of sampling per step"""
    difficulty_filter: bool = False
    """online difficulty filter: drop groups whose task the policy solved in all or none of its completions (the correctness verdict), and skip that task when the data brings it again, for filter_recheck steps (algos/filtering.py)"""
    filter_recheck: int = 10
    """difficulty filter: a task marked solved always/never is sampled and measured again after this many steps"""
    truncation: Literal["mask", "penalty", "none"] = "mask"
    """completions that hit max_new_tokens: mask them out of the loss, subtract truncation_penalty, or nothing"""
    truncation_penalty: float = 0.5
    """reward subtracted from truncated completions when truncation=penalty"""
    max_off_policy_steps: int = 0
    """0: synchronous; 1: the next step's rollouts are generated while this step trains (policy.engine=server), so they come from weights one update old; samples staler than this are dropped and counted"""
    is_cap: float = 2.0
    """off-policy steps: per-token importance weight pi_old / pi_sampler truncated at this (the clip ratio is then taken against pi_old, the weights before the update)"""


class Prefetch:
    """A step's rollouts made in a background thread (the generation servers work while the trainer
    updates); ``result()`` returns (tasks, params, what ``fn`` returned) or raises what it raised."""

    def __init__(self, drawn: tuple[list, SamplingParams], fn: Any):
        self.tasks, self.params = drawn
        self._out: Any = None
        self._err: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name="prefetch")
        self._thread.start()

    def _run(self, fn: Any) -> None:
        try:
            self._out = fn(self.tasks, self.params)
        except BaseException as e:  # noqa: BLE001 - handed to the trainer's thread by result()
            self._err = e

    def result(self) -> tuple[list, SamplingParams, Any]:
        self._thread.join()
        if self._err is not None:
            raise self._err
        return self.tasks, self.params, self._out


def drop_stale(rollouts: list, results: list, tasks: list, G: int, version: int, limit: int) -> tuple[list, list, list, list[int], int]:
    """Leave out the groups whose rollouts come from weights more than ``limit`` updates older than
    ``version`` (the weights being trained now). Returns the kept (rollouts, results, tasks), every
    rollout's staleness, and how many groups were dropped."""
    staleness = [version - (r.version if r.version is not None else version) for r in rollouts]
    keep = [g for g in range(len(rollouts) // G) if max(staleness[g * G:(g + 1) * G]) <= limit]
    idx = [g * G + j for g in keep for j in range(G)]
    return ([rollouts[i] for i in idx], [results[i] for i in idx], [tasks[g] for g in keep], staleness,
            len(rollouts) // G - len(keep))


def _sum_pairs(pairs: list) -> dict:
    """(key, count) pairs (every rank's) summed per key."""
    out: dict = {}
    for k, v in pairs:
        out[k] = out.get(k, 0) + v
    return out


def _groups(rollouts: list, results: list, cfg: GRPOConfig) -> list[tuple[list, torch.Tensor]]:
    """Split flat rollouts into groups of G with their rewards (truncation penalty applied). A group with
    an ``error`` verdict (a broken reference, a verifier or reward worker that failed) is masked: its
    rewards are all zero, so every advantage in it is 0 and it carries no policy gradient (nor counts as
    signal for dynamic sampling); an error is never scored as a wrong answer. Errors are logged apart
    (``verdict/error``)."""
    G = cfg.group_size
    out = []
    for g in range(len(rollouts) // G):
        ro = rollouts[g * G:(g + 1) * G]
        res = results[g * G:(g + 1) * G]
        if any(has_error(x) for x in res):
            out.append((ro, torch.zeros(len(ro))))
            continue
        r = torch.tensor([x.reward for x in res])
        if cfg.truncation == "penalty":
            r = r - cfg.truncation_penalty * torch.tensor([x.truncated for x in ro], dtype=torch.float32)
        out.append((ro, r))
    return out


def rollout_rows(rollouts: list, adv: torch.Tensor, cfg: GRPOConfig) -> microbatch.Rows:
    """The update's rows: ids, loss masks (tool results and, with ``truncation=mask``, truncated
    completions carry no loss), the sampling-time logprobs per token and the advantage per row."""
    masks = [[0.0] * len(r.completion_ids) if cfg.truncation == "mask" and r.truncated else r.loss_mask for r in rollouts]
    return microbatch.Rows([r.prompt_ids for r in rollouts], [r.completion_ids for r in rollouts], masks,
                           {"old_logp": [torch.tensor(r.logprobs, dtype=torch.float32) for r in rollouts]},
                           {"adv": adv.float().cpu()}).padded_as_a_whole()


def policy_update(model: Any, opt: Any, groups: list[tuple[list, torch.Tensor]], cfg: GRPOConfig, pad_id: int,
                  ref: Any = None) -> dict[str, list[float]]:
    """One GRPO update (``mu`` passes over ``minibatches``, each one optimizer step: `update_step`) on
    this rank's groups of rollouts.

    Under torchrun the advantages (``advantage=batch``), the loss normaliser of each minibatch and
    the gradients are those of every rank's groups together: the update equals one process's on the
    whole step's batch. Returns the logged statistics, reduced over ranks."""
    w = dist.world()
    counts = w.gather_counts(len(groups))
    all_rewards = w.gather([r for _, r in groups])
    offset = sum(counts[:w.rank])
    adv = losses.group_advantages(torch.stack(all_rewards), cfg.advantage)[offset:offset + len(groups)].flatten()
    rows = rollout_rows([r for ro, _ in groups for r in ro], adv, cfg)
    stats: dict[str, list[float]] = {"loss/policy": [], "loss/kl": [], "policy/entropy": [], "policy/clip_frac": [],
                                     "train/grad_norm": []}
    train_without_dropout(model)  # the loss's logprobs are the sampler's: no dropout
    n, nmb = len(rows), cfg.minibatches
    # minibatch k: rows [k * MB, (k + 1) * MB) of the whole step's rows in rank order (the one-process split,
    # whatever the rank count); this rank runs the ones it holds, global rows [row_off, row_off + n)
    row_counts = w.gather_counts(n)
    row_off, MB = sum(row_counts[:w.rank]), max(1, math.ceil(sum(row_counts) / nmb))
    bounds = [(min(n, max(0, k * MB - row_off)), min(n, max(0, (k + 1) * MB - row_off))) for k in range(nmb)]
    limits = microbatch.Limits.of(cfg)
    # the loss normaliser of each minibatch: its count (tokens or rows) over every rank, before rows are left out
    denoms = [max(1.0, w.sum(losses.normaliser(rows.tokens()[lo:hi], cfg.loss_agg).item())) for lo, hi in bounds]
    # rows with zero advantage (groups whose rewards are all equal) or fully masked carry no gradient when
    # beta=0: leave them out of the forward/backward pass (identical loss and gradients, less compute);
    # with minibatches > 1 every row is kept
    if n and cfg.beta == 0 and nmb == 1:
        live = ((rows.per_row["adv"] != 0) & (rows.tokens() > 0)).nonzero().squeeze(-1).tolist()
        if len(live) < n and (len(live) > 0 or w.distributed):
            rows, n = rows.select(live), len(live)
            bounds = [(0, n)]  # one minibatch: all of this rank's rows that are run
    if ref is not None:
        rows = rows.with_values({"ref_logp": microbatch.token_values(
            ref, rows, limits, pad_id, lambda m, b: token_logprobs(m, b, temperature=cfg.temperature))})
    if cfg.max_off_policy_steps > 0:  # stale samples: clip against the weights before this update (proximal
        # policy), weight each token by min(pi_prox / pi_sampler, is_cap): truncated IS
        prox = microbatch.token_values(model, rows, limits, pad_id,
                                       lambda m, b: token_logprobs(m, b, temperature=cfg.temperature))
        ratio = [torch.exp(p - o) for p, o in zip(prox, rows.per_token["old_logp"])]
        keep = [torch.ones(len(c)) if m is None else torch.tensor(m, dtype=torch.float32)
                for c, m in zip(rows.completion_ids, rows.loss_masks)]
        is_w = [r.clamp(max=cfg.is_cap) * k for r, k in zip(ratio, keep)]
        n_tok = max(w.sum(float(sum(k.sum() for k in keep))), 1.0)
        stats["policy/is_weight"] = [w.sum(float(sum((x * k).sum() for x, k in zip(is_w, keep)))) / n_tok]
        stats["policy/is_truncated"] = [w.sum(float(sum(((r > cfg.is_cap).float() * k).sum() for r, k in zip(ratio, keep))))
                                        / n_tok]
        rows = rows.with_values({"old_logp": prox, "is_w": is_w})
    for _ in range(cfg.mu):
        for k, (lo, hi) in enumerate(bounds):
            st = update_step(model, opt, rows.select(range(lo, hi)), cfg, pad_id, denoms[k])
            for key, v in st.items():
                stats[key].append(v)
    return stats


def update_step(model: Any, opt: Any, rows: microbatch.Rows, cfg: GRPOConfig, pad_id: int, denom: float) -> dict[str, float]:
    """One optimizer step of GRPO's loss on ``rows`` (this rank's rows of a minibatch; `rollout_rows`),
    run as micro-batches (``micro_batch_size`` rows / ``micro_batch_tokens`` tokens, each padded on its
    own) with gradients accumulated. ``rows`` carries per token ``old_logp`` (and ``ref_logp`` for the
    KL term, ``is_w`` for truncated importance weights), per row ``adv``; ``denom`` is the minibatch's
    loss normaliser over every rank (`losses.normaliser`), so the micro-batches' losses add up to the
    unsplit one. Returns loss/policy, loss/kl (with ``ref_logp``), policy/entropy, policy/clip_frac
    and train/grad_norm, over every rank."""
    w = dist.world()
    sums = {"pg": 0.0, "ent": 0.0, "clip": 0.0, "kl": 0.0, "tok": 0.0}

    def loss_of(part: microbatch.Rows) -> torch.Tensor:
        batch, v = part.collate(pad_id, model.device)
        m = batch.completion_mask
        logp, entropy = token_logprobs(model, batch, temperature=cfg.temperature, with_entropy=True)
        pg, clipped = losses.clipped_pg_loss(logp, v["old_logp"], v["adv"], cfg.eps_low, cfg.eps_high)
        per_token = pg * v["is_w"] if "is_w" in v else pg
        if "ref_logp" in v:
            kl = losses.kl_k3(logp, v["ref_logp"])
            per_token = per_token + cfg.beta * kl
            sums["kl"] += (kl.detach() * m).sum().item()
        loss = losses.aggregate_parts(per_token, m, cfg.loss_agg, cfg.max_new_tokens)[0] / denom
        sums["pg"] += loss.item()
        sums["ent"] += (entropy.detach() * m).sum().item()
        sums["clip"] += (clipped * m).sum().item()
        sums["tok"] += m.sum().item()
        return loss

    gn = microbatch.step(opt, model, rows.split(microbatch.Limits.of(cfg)), loss_of, cfg.grad_clip)
    tot = dict(zip(sums, w.sum(torch.tensor(list(sums.values()), dtype=torch.float64)).tolist()))  # one reduction
    tok = max(tot["tok"], 1.0)
    out = {"loss/policy": tot["pg"], "policy/entropy": tot["ent"] / tok, "policy/clip_frac": tot["clip"] / tok,
           "train/grad_norm": gn}
    if "ref_logp" in rows.per_token:
        out["loss/kl"] = tot["kl"] / tok
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # ------------------------------------------------------------------ setup
    s = start(GRPOConfig, argv, "grpo")
    cfg, env, engine, model, tok, run = s.cfg, s.env, s.engine, s.model, s.tokenizer, s.run
    base = env.unwrapped
    opt = adamw(s, model, cfg.lr, cfg.weight_decay)
    w = s.world
    share = w.shard(cfg.prompts_per_step, "the step's prompts", "prompts_per_step")  # whole groups per rank
    microbatch.check(cfg, math.ceil((share.stop - share.start) * cfg.group_size / cfg.minibatches),
                     "prompts_per_step x group_size / minibatches", longest=cfg.max_new_tokens + 1)
    ref = None
    if cfg.beta > 0:  # the frozen reference: the run's starting weights (on resume too)
        ref = reference(s, model)
    position = s.state.get("position", 0)
    acc_before = heldout_before(s)
    t_start = time.time() - s.state.get("wall_seconds", 0.0)
    progress = Progress(s.step, {"position": position, "heldout_accuracy_before": acc_before,
                                 "wall_seconds": s.state.get("wall_seconds", 0.0)})
    bar = progress_bar(range(s.step, cfg.steps), initial=s.step, total=cfg.steps, desc="grpo")
    off_policy = cfg.max_off_policy_steps > 0
    if off_policy and not hasattr(engine, "attach"):
        raise ConfigError(f"max_off_policy_steps={cfg.max_off_policy_steps} needs policy.engine=server: generation must run "
                          f"in another process to overlap the update (start one with python -m policies serve)")
    if cfg.max_off_policy_steps > 1:
        raise ConfigError(f"max_off_policy_steps={cfg.max_off_policy_steps}: 0 (synchronous) or 1 (one step off-policy)")
    if off_policy and (cfg.dynamic_sampling or cfg.difficulty_filter):
        raise ConfigError(f"{'dynamic_sampling' if cfg.dynamic_sampling else 'difficulty_filter'} with "
                          f"max_off_policy_steps=1 is not supported; use one of them")
    pending: Prefetch | None = None
    flt = filtering.DifficultyFilter(cfg.filter_recheck, s.state.get("difficulty_filter")) if cfg.difficulty_filter else None
    skipped: collections.Counter = collections.Counter()  # tasks the filter skipped in this step, per environment

    def next_tasks(step: int) -> list:
        """The step's next ``prompts_per_step`` tasks of the stream (every rank's), past the ones the filter skips."""
        nonlocal position
        if flt is None:
            out = base.source.tasks(cfg.prompts_per_step, "train", start=position)
            position += cfg.prompts_per_step
            return out
        out, passed = [], []
        while len(out) < cfg.prompts_per_step and len(passed) < 16 * cfg.prompts_per_step:
            chunk = base.source.tasks(cfg.prompts_per_step - len(out), "train", start=position)
            position += len(chunk)
            for t in chunk:
                (passed if flt.skip(t, step) else out).append(t)
        fill = cfg.prompts_per_step - len(out)  # (nearly) every task marked: measure some of them again early
        skipped.update(mixture.env_label(t) for t in passed[fill:])
        return out + passed[:fill]

    def keep_informative(groups: list, results: list, tasks: list, params: SamplingParams, step: int) -> tuple[list, dict]:
        """The step's groups that reach the loss, and what keeping them cost: with ``dynamic_sampling`` the groups
        whose rewards are not all equal, each environment refilled up to its count in the step's draw (at most
        ``max_resample_rounds`` more draws); with the difficulty filter, groups neither always nor never solved."""
        nonlocal position
        G = cfg.group_size
        quota = filtering.quotas(tasks)  # groups each environment may keep: its tasks in the step's draw
        sampled = collections.Counter(mixture.env_label(t) for t in tasks)  # groups sampled, refills included
        dropped: collections.Counter = collections.Counter()  # groups the filter dropped
        records: list[tuple[str, float]] = []  # (task, solve rate) for the filter

        def useful(new_groups: list, new_results: list, new_tasks: list) -> list:
            out = []
            for i, (g, t) in enumerate(zip(new_groups, new_tasks)):
                rate = filtering.solve_rate(new_results[i * G:(i + 1) * G])
                records.append((filtering.key_of(t), rate))
                if cfg.dynamic_sampling and not g[1].std() > 0:
                    continue
                if flt is not None and not flt.informative(rate):
                    dropped[mixture.env_label(t)] += 1
                    continue
                out.append((g, t))
            return out

        kept = filtering.take([], useful(groups, results, tasks), quota)
        rounds = 0
        while cfg.dynamic_sampling and w.any(filtering.short(kept, quota)) and rounds < cfg.max_resample_rounds:
            rounds += 1  # every rank decides alike
            extra = next_tasks(step)[share]
            if filtering.short(kept, quota) and extra:
                ro2, res2, _ = sample_and_score(engine, env, extra, dataclasses.replace(params, seed=params.seed + 7919 * rounds))
                sampled.update(mixture.env_label(t) for t in extra)
                kept = filtering.take(kept, useful(_groups(ro2, res2, cfg), res2, extra), quota)
        m: dict[str, float] = {}
        if cfg.dynamic_sampling:
            m["rollout/resample_rounds"] = rounds
        n_kept = collections.Counter(mixture.env_label(t) for _, t in kept)
        tot_s, tot_k, tot_d = (collections.Counter(dict(kv)) for kv in (
            _sum_pairs(w.gather(list(c.items()))) for c in (sampled, n_kept, dropped)))
        m["rollout/samples_per_kept_group"] = G * sum(tot_s.values()) / max(sum(tot_k.values()), 1)
        labels = [e for e in tot_s if e is not None]
        for e in labels:  # a mixture: each environment's
            m[f"rollout/{e}/samples_per_kept_group"] = G * tot_s[e] / max(tot_k[e], 1)
            m[f"rollout/{e}/kept_groups"] = tot_k[e]
        if flt is not None:
            flt.observe(w.gather(records), step)  # the same table on every rank
            m.update({"filter/dropped_groups": sum(tot_d.values()), "filter/skipped_tasks": sum(skipped.values()),
                      "filter/known_tasks": len(flt.marked)})
            for e in labels:
                m[f"filter/{e}/dropped_groups"] = tot_d[e]
                m[f"filter/{e}/skipped_tasks"] = skipped[e]
            skipped.clear()
        return [g for g, _ in kept], m

    def state_now() -> dict:
        st = {"position": unused(), "heldout_accuracy_before": acc_before, "wall_seconds": time.time() - t_start}
        return {**st, "difficulty_filter": flt.state()} if flt is not None else st

    def draw(step: int) -> tuple[list, SamplingParams]:
        """The step's tasks (this rank's share) and sampling parameters; advances the data position."""
        nonlocal position
        params = SamplingParams(n=cfg.group_size, temperature=cfg.temperature, top_p=cfg.top_p,
                                max_new_tokens=cfg.max_new_tokens, seed=cfg.seed * 1_000_003 + step + 104_729 * w.rank)
        return next_tasks(step)[share], params

    def unused() -> int:  # the data position to save: a prefetched batch not yet trained on is drawn again on resume
        return position - cfg.prompts_per_step if pending is not None else position
    with save_on_interrupt(s, progress, lambda st, state: run.save_checkpoint(st, model, tok, opt, state)):
        for step in bar:
            t0 = time.time()
            # -------------------------------------------------------------- rollout
            if pending is None:
                tasks, params = draw(step)
                rollouts, results, _ = sample_and_score(engine, env, tasks, params)
            else:  # generated while the previous step trained
                tasks, params, (rollouts, results, _) = pending.result()
                pending = None
            if off_policy and step + 1 < cfg.steps:  # the next step's rollouts, from the weights the servers have now
                pending = Prefetch(draw(step + 1), lambda t, p: sample_and_score(engine, env, t, p, check_version=False))
            staleness: list[int] = []
            if off_policy:  # how many updates old each rollout's weights are, now, as it is used
                drawn = tasks
                rollouts, results, tasks, staleness, dropped = drop_stale(rollouts, results, tasks, cfg.group_size,
                                                                          engine.version, cfg.max_off_policy_steps)
                if not rollouts:  # every group too stale (a server restarted): wait for fresh rollouts of these
                    engine.resync()  # tasks, from the weights of now (and never divide by zero groups)
                    rollouts, results, _ = sample_and_score(engine, env, drawn, params)
                    tasks, staleness = drawn, [0] * len(rollouts)
            groups = _groups(rollouts, results, cfg)
            # -------------------------------------------------------------- advantages
            zero_std_frac = w.sum(sum(float(r.std() == 0) for _, r in groups)) / w.sum(len(groups))
            metrics = reward_metrics(results, rollouts, [t for t in tasks for _ in range(cfg.group_size)], cfg.group_size)
            metrics["rollout/zero_std_groups"] = zero_std_frac
            if off_policy:
                metrics["rollout/staleness"] = sum(staleness) / max(len(staleness), 1)
                metrics["rollout/dropped_stale_groups"] = dropped
            if cfg.dynamic_sampling or flt is not None:  # keep groups with signal (per environment); refill
                groups, kept_metrics = keep_informative(groups, results, tasks, params, step)
                metrics.update(kept_metrics)
            # every N steps and at the last one (before a step with nothing to learn ends early)
            log_samples(s, step + 1, cfg.steps, [t for t in tasks for _ in range(cfg.group_size)], rollouts, results,
                        cfg.group_size * 2)
            if not w.any(groups):  # nothing to learn from this step (on any rank)
                run.log(step + 1, metrics)
                progress.finished(step + 1, state_now())
                continue
            set_lr(opt, lr_at(cfg, cfg.lr, step, cfg.steps))
            stats = policy_update(model, opt, groups, cfg, tok.pad_token_id, ref)
            progress.finished(step + 1, state_now(), metrics)  # the weights are now those of step + 1
            sync_engine(s)  # vLLM's copy of the weights, the full copy under fsdp
            # -------------------------------------------------------------- log
            dt = time.time() - t0
            n_tokens = w.sum(sum(len(r.completion_ids) for r in rollouts))
            n_rollouts = w.sum(len(rollouts))
            metrics.update({k: sum(v) / len(v) for k, v in stats.items() if v})
            metrics.update({"perf/step_seconds": dt, "perf/tokens_per_second": n_tokens / dt,
                            "perf/completions_per_second": n_rollouts / dt, "train/lr": opt.param_groups[0]["lr"]})
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                metrics.update(eval_metrics(evaluate(s)))
            run.log(step + 1, metrics)
            bar.set_postfix(reward=f"{metrics['reward/mean']:.2f}", acc=f"{metrics['train/accuracy']:.2f}",
                            tok_s=f"{metrics['perf/tokens_per_second']:.0f}")
            state = state_now()
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                run.save_checkpoint(step + 1, model, tok, opt, state)
    bar.close()
    # ------------------------------------------------------------------ final evaluation and save
    return finish(s, cfg.steps, opt, {"position": position, **({"difficulty_filter": flt.state()} if flt else {})},
                  acc_before, t_start,
                  {"reward": ["reward/mean", "reward/correct", "reward/format"],
                   "accuracy": ["train/accuracy", "eval/accuracy"],
                   "policy": ["policy/entropy", "policy/clip_frac", "rollout/zero_std_groups"],
                   "signal": ["rollout/samples_per_kept_group", "filter/dropped_groups", "filter/skipped_tasks"]},
                  f"GRPO on {cfg.env} ({cfg.policy.model})")


if __name__ == "__main__":
    run_main(main)
