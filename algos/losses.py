"""Pure tensor functions shared by the algorithms: advantages, policy-gradient clipping, KL,
loss aggregation, GAE and the preference losses. Each is tested against hand-computed values
in tests/test_losses.py.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

AdvantageScale = Literal["group", "none", "batch"]
LossAgg = Literal["token", "sequence", "constant"]


def group_advantages(rewards: torch.Tensor, scale: AdvantageScale = "group", eps: float = 1e-6) -> torch.Tensor:
    """Group-relative advantages for rewards of shape [groups, G].

    ``A = r - mean(group)``, divided by the group's std (GRPO, Shao et al. 2024), by nothing
    (Dr. GRPO, Liu et al. 2025: the std division over-weights easy and hard groups), or by the
    std of the whole batch (REINFORCE++-style). Stds are population stds (ddof=0).
    """
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "group":
        return centered / (rewards.std(dim=1, keepdim=True, unbiased=False) + eps)
    if scale == "batch":
        return centered / (rewards.std(unbiased=False) + eps)
    if scale == "none":
        return centered
    raise ValueError(f"advantage scale must be 'group', 'none' or 'batch', got {scale!r}")


def clipped_pg_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, eps_low: float = 0.2,
                    eps_high: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, per token: ``-min(r A, clip(r, 1-eps_low, 1+eps_high) A)``.

    ``advantages`` is per sequence [N] (broadcast over tokens) or per token [N, T]. A higher
    upper bound than lower ("clip-higher", DAPO, Yu et al. 2025) keeps low-probability tokens
    explorable. Returns (per-token loss [N, T], per-token 1.0 where the clip was active).
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    ratio = torch.exp(logp - old_logp)
    pg_loss1 = -ratio * advantages
    pg_loss2 = -torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    loss = torch.maximum(pg_loss1, pg_loss2)
    clipped = (pg_loss2 > pg_loss1).float()
    return loss, clipped


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || ref) estimate, k3 = exp(ref - logp) - (ref - logp) - 1 >= 0.
    http://joschu.net/blog/kl-approx.html"""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: LossAgg = "token", max_tokens: int | None = None) -> torch.Tensor:
    """Reduce a per-token loss [N, T] with a 0/1 mask to a scalar.

    * ``token``: sum over all tokens / number of tokens in the batch (DAPO);
    * ``sequence``: mean over each sequence's tokens, then mean over sequences (GRPO);
    * ``constant``: sum / (N * max_tokens), a constant normaliser (Dr. GRPO).
    """
    mask = mask.to(per_token.dtype)
    if mode == "token":
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    if mode == "sequence":
        per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        return per_seq.mean()
    if mode == "constant":
        T = max_tokens if max_tokens is not None else per_token.shape[-1]
        return (per_token * mask).sum() / (per_token.shape[0] * T)
    raise ValueError(f"loss aggregation must be 'token', 'sequence' or 'constant', got {mode!r}")


def aggregate_parts(per_token: torch.Tensor, mask: torch.Tensor, mode: LossAgg = "token",
                    max_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``aggregate`` as (numerator, count) with ``aggregate = numerator / count``: the count is the
    batch's tokens (token) or rows (sequence, constant). Under data parallel each rank's numerator
    is divided by the count summed over ranks, so the sum of the ranks' losses is the whole batch's."""
    mask = mask.to(per_token.dtype)
    count = normaliser(mask.sum(-1), mode)
    if mode == "token":
        return (per_token * mask).sum(), count
    if mode == "sequence":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum(), count
    T = max_tokens if max_tokens is not None else per_token.shape[-1]
    return (per_token * mask).sum() / T, count


def normaliser(tokens: torch.Tensor, mode: LossAgg = "token") -> torch.Tensor:
    """The count ``aggregate`` divides by, from each row's loss tokens [N]: their sum (token) or the
    rows (sequence, constant). Computed on a whole minibatch before it is split into micro-batches,
    so each micro-batch's numerator over it is that micro-batch's share of the minibatch's loss."""
    if mode == "token":
        return tokens.sum()
    if mode in ("sequence", "constant"):
        return torch.tensor(float(tokens.shape[0]), dtype=tokens.dtype, device=tokens.device)
    raise ValueError(f"loss aggregation must be 'token', 'sequence' or 'constant', got {mode!r}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over token positions [N, T] (Schulman et al. 2016).

    ``rewards`` and ``values`` are per token. Positions where ``mask`` is 0 are not the model's:
    padding after the sequence end, or a tool's result inside it. They are skipped: the step after
    a model token is the next model token, so the outcome reaches the turns before a tool call.
    They get advantage and return 0. Returns (advantages, returns = adv + values).
    """
    mask = mask.to(rewards.dtype)
    holes = (mask[:, :-1] == 0) & (mask[:, 1:] > 0)  # a masked position with a model token after it
    if bool(holes.any()):  # pack each row's model tokens to the left, estimate there, put them back
        order = torch.sort((mask == 0).to(torch.int8), dim=1, stable=True).indices
        adv_p, _ = gae(rewards.gather(1, order), values.gather(1, order), mask.gather(1, order), gamma, lam)
        adv = torch.zeros_like(adv_p).scatter_(1, order, adv_p)
        return adv, adv + values * mask
    N, T = rewards.shape
    values = values * mask
    adv = torch.zeros_like(rewards)
    last = torch.zeros(N, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        next_v = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < T else 0.0)
        adv[:, t] = last * mask[:, t]
    return adv, adv + values


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float = 0.1) -> torch.Tensor:
    """DPO (Rafailov et al. 2023): -log sigmoid(beta [(pi_c - ref_c) - (pi_r - ref_r)]), per pair.
    Inputs are summed sequence logprobs [N]."""
    return -F.logsigmoid(beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)))


def simpo_loss(avg_chosen: torch.Tensor, avg_rejected: torch.Tensor, beta: float = 2.0, gamma: float = 0.5) -> torch.Tensor:
    """SimPO (Meng et al. 2024): -log sigmoid(beta (avg_c - avg_r) - gamma); inputs are length-normalised logprobs."""
    return -F.logsigmoid(beta * (avg_chosen - avg_rejected) - gamma)


def orpo_loss(avg_chosen: torch.Tensor, avg_rejected: torch.Tensor, nll_chosen: torch.Tensor, lam: float = 0.1) -> torch.Tensor:
    """ORPO (Hong et al. 2024): NLL(chosen) + lam * -log sigmoid(log odds(c) - log odds(r)),
    odds(y) = p / (1 - p) with p = exp(mean token logprob)."""
    def log_odds(avg: torch.Tensor) -> torch.Tensor:
        return avg - torch.log1p(-torch.exp(avg).clamp(max=1 - 1e-6))

    return nll_chosen - lam * F.logsigmoid(log_odds(avg_chosen) - log_odds(avg_rejected))


def kto_loss(pi_logp: torch.Tensor, ref_logp: torch.Tensor, desirable: torch.Tensor, kl_ref: torch.Tensor,
             beta: float = 0.1, w_desirable: float = 1.0, w_undesirable: float = 1.0) -> torch.Tensor:
    """KTO (Ethayarajh et al. 2024) per example: with r = pi - ref and z = KL reference point,
    desirable: w_d (1 - sigmoid(beta (r - z))), undesirable: w_u (1 - sigmoid(beta (z - r)))."""
    r = pi_logp - ref_logp
    z = kl_ref.detach().clamp(min=0)
    des = w_desirable * (1 - torch.sigmoid(beta * (r - z)))
    und = w_undesirable * (1 - torch.sigmoid(beta * (z - r)))
    return torch.where(desirable.bool(), des, und)
