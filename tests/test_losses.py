import math

import numpy as np
import pytest
import torch

from algos import losses


def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    g = losses.group_advantages(r, "group", eps=0.0 + 1e-12)
    assert g[0].tolist() == pytest.approx([1, -1, -1, 1])
    assert g[1].tolist() == pytest.approx([0, 0, 0, 0])  # no signal in an all-equal group
    assert losses.group_advantages(r, "none")[0].tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5])
    b = losses.group_advantages(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "batch", eps=0.0)
    assert b.flatten().tolist() == pytest.approx([0.5 / math.sqrt(0.1875), -0.5 / math.sqrt(0.1875), 0, 0])
    with pytest.raises(ValueError, match="advantage scale"):
        losses.group_advantages(r, "std")  # type: ignore[arg-type]


def test_clipped_pg_loss_by_hand():
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]]))
    old = torch.zeros_like(logp)
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0]])
    loss, clipped = losses.clipped_pg_loss(logp, old, adv, eps_low=0.2, eps_high=0.28)
    assert loss[0].tolist() == pytest.approx([-1.28, 1.5, 0.8, -0.5])
    assert clipped[0].tolist() == [1.0, 0.0, 1.0, 0.0]
    # per-sequence advantages broadcast over tokens
    loss2, _ = losses.clipped_pg_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([2.0, -1.0]))
    assert loss2.tolist() == [[-2.0] * 3, [1.0] * 3]


def test_kl_k3_by_hand():
    v = losses.kl_k3(torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25])))
    assert v.item() == pytest.approx(0.5 + math.log(2) - 1)
    assert losses.kl_k3(torch.tensor([-1.0]), torch.tensor([-1.0])).item() == 0.0


def test_aggregate_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert losses.aggregate(x, m, "token").item() == pytest.approx(2.5)
    assert losses.aggregate(x, m, "sequence").item() == pytest.approx(3.0)
    assert losses.aggregate(x, m, "constant", max_tokens=4).item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match="aggregation"):
        losses.aggregate(x, m, "mean")  # type: ignore[arg-type]


def _gae_loop(r, v, gamma, lam):
    T = len(r)
    adv = np.zeros(T)
    last = 0.0
    for t in reversed(range(T)):
        nv = v[t + 1] if t + 1 < T else 0.0
        delta = r[t] + gamma * nv - v[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (1.0, 0.95), (0.99, 0.9), (0.9, 0.0), (0.5, 0.5)])
def test_gae_matches_plain_loop(gamma, lam):
    rng = np.random.default_rng(0)
    lens = [5, 3, 1]
    T = max(lens)
    r = rng.normal(size=(3, T))
    v = rng.normal(size=(3, T))
    mask = np.array([[1 if t < n else 0 for t in range(T)] for n in lens])
    adv, ret = losses.gae(torch.tensor(r), torch.tensor(v), torch.tensor(mask), gamma, lam)
    for i, n in enumerate(lens):
        ref = _gae_loop(r[i, :n], v[i, :n], gamma, lam)
        assert adv[i, :n].numpy() == pytest.approx(ref)
        assert (adv[i, n:] == 0).all()
        assert ret[i, :n].numpy() == pytest.approx(ref + v[i, :n])


def test_gae_analytic_single_reward():
    # reward 1 at the last token, zero values: advantage at t is (gamma*lam)^(T-1-t)
    adv, _ = losses.gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.zeros(1, 3), torch.ones(1, 3), gamma=0.9, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.45 ** 2, 0.45, 1.0])


def test_gae_skips_tool_tokens_inside_a_sequence():
    """Tokens the environment wrote (mask 0 inside the sequence) are stepped over: the model's tokens
    get the advantages of the same sequence without them, so the turn before a tool call sees the outcome."""
    rng = np.random.default_rng(1)
    mask = np.array([[1, 1, 0, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0]])
    r, v = rng.normal(size=mask.shape), rng.normal(size=mask.shape)
    adv, ret = losses.gae(torch.tensor(r), torch.tensor(v), torch.tensor(mask), 0.99, 0.9)
    for i in range(3):
        keep = mask[i] == 1
        ref = _gae_loop(r[i, keep], v[i, keep], 0.99, 0.9)
        assert adv[i, keep].numpy() == pytest.approx(ref)
        assert ret[i, keep].numpy() == pytest.approx(ref + v[i, keep])
        assert (adv[i, ~keep] == 0).all() and (ret[i, ~keep] == 0).all()
    # the outcome alone (reward 1 at the last model token, values 0, gamma = lam = 1) reaches every model token
    adv, _ = losses.gae(torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]]), torch.zeros(1, 5),
                        torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0]]), 1.0, 1.0)
    assert adv[0].tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]


def test_preference_losses_by_hand():
    d = losses.dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]), beta=0.1)
    assert d.item() == pytest.approx(math.log1p(math.exp(-0.1)))
    s = losses.simpo_loss(torch.tensor([-0.5]), torch.tensor([-1.0]), beta=2.0, gamma=0.5)
    assert s.item() == pytest.approx(math.log1p(math.exp(-0.5)))
    a_c, a_r = math.log(0.5), math.log(0.25)  # odds 1 and 1/3
    o = losses.orpo_loss(torch.tensor([a_c]), torch.tensor([a_r]), torch.tensor([0.7]), lam=0.1)
    assert o.item() == pytest.approx(0.7 + 0.1 * math.log1p(math.exp(-math.log(3))), rel=1e-5)
    k = losses.kto_loss(torch.tensor([-1.0, -1.0]), torch.tensor([-2.0, -2.0]), torch.tensor([1, 0]), torch.tensor(0.5), beta=1.0)
    sig = 1 / (1 + math.exp(-0.5))
    assert k.tolist() == pytest.approx([1 - sig, 1 - (1 - sig)])
