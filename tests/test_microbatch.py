"""Micro-batches with gradient accumulation (algos/microbatch.py): the packing by hand, the bad
settings, and, for every algorithm's update on the tiny model, split and unsplit steps give the same
gradient on every parameter and the same logged statistics. The torchrun cases (DDP and FSDP) are in
tests/test_distributed.py."""

import copy
import dataclasses
import json
import os

import pytest
import torch

from algos import grpo, losses, microbatch, ppo
from algos.config import ConfigError
from algos.preference import LossSettings, Pair, Thumb, kto_step, pair_step
from algos.sft import sft_loss
from policies import PolicyConfig, Rollout, load_model
from policies.hf import collate, token_logprobs

# the model runs in float64: split and unsplit gradients then agree to ~1e-15 (in float32 to ~1e-6 of their scale)
RTOL, ATOL = 1e-9, 1e-12


def grads(model):
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def assert_same_grads(a, b, float32=False):
    assert a.keys() == b.keys()
    assert any(g is not None and g.abs().sum() > 0 for g in a.values())  # something was learned
    for k in a:
        assert (a[k] is None) == (b[k] is None), k
        if a[k] is not None:
            rtol, atol = (1e-5, 1e-5 * a[k].abs().max().item()) if float32 else (RTOL, ATOL)
            torch.testing.assert_close(b[k], a[k], rtol=rtol, atol=atol, msg=k)


def assert_same_stats(a, b, rel=1e-9, abs=1e-12):
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=rel, abs=abs), k


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model(PolicyConfig(model="tiny-sft"))
    return model.double(), tok


def fresh(tiny):
    model = copy.deepcopy(tiny[0])
    return model, torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every step sees the same weights


# ---------------------------------------------------------------------- packing and bad settings by hand


def test_plan_by_hand():
    lens = [(3, 2), (2, 9), (4, 4), (1, 1), (5, 6)]
    assert microbatch.plan(lens, microbatch.Limits()) == [[0, 1, 2, 3, 4]]  # no limit: one pass, in order
    assert microbatch.plan([], microbatch.Limits(rows=2)) == []
    # longest first (11, 11, 8, 5, 2), then at most 2 rows
    assert microbatch.plan(lens, microbatch.Limits(rows=2)) == [[1, 4], [2, 0], [3]]
    # token budget 24: [1] costs 11; with 4: 2 x (5 + 9) = 28 > 24; [4, 2]: 2 x (5 + 6) = 22; + 0: 3 x 11 = 33
    assert microbatch.plan(lens, microbatch.Limits(tokens=24)) == [[1], [4, 2], [0, 3]]
    assert microbatch.plan(lens, microbatch.Limits(rows=1, tokens=100)) == [[1], [4], [2], [0], [3]]
    # a pair is 2 rows: [1] alone is 22 tokens
    assert microbatch.plan(lens, microbatch.Limits(tokens=44), rows_per_unit=2) == [[1], [4, 2], [0, 3]]
    with pytest.raises(microbatch.BudgetError, match=r"micro_batch_tokens=10 is smaller than the longest row "
                                                     r"\(prompt 2 \+ completion 9 tokens\) = 11 tokens; use micro_batch_tokens>=11"):
        microbatch.plan(lens, microbatch.Limits(tokens=10))
    with pytest.raises(microbatch.BudgetError, match=r"longest pair .* x2 rows\) = 22 tokens"):
        microbatch.plan(lens, microbatch.Limits(tokens=21), rows_per_unit=2, unit="pair")
    # passes without gradients: a row over the budget is a micro-batch of its own
    assert microbatch.plan(lens, microbatch.Limits(tokens=10), strict=False) == [[1], [4], [2], [0, 3]]


def test_every_row_lands_in_exactly_one_micro_batch_within_the_limits():
    g = torch.Generator().manual_seed(0)
    lens = [(int(a), int(b)) for a, b in zip(torch.randint(1, 30, (57,), generator=g), torch.randint(0, 80, (57,), generator=g))]
    for limits in (microbatch.Limits(rows=5), microbatch.Limits(tokens=200), microbatch.Limits(rows=3, tokens=150)):
        parts = microbatch.plan(lens, limits)
        assert sorted(i for p in parts for i in p) == list(range(57))
        for p in parts:
            if limits.rows:
                assert len(p) <= limits.rows
            if limits.tokens:
                assert len(p) * (max(lens[i][0] for i in p) + max(lens[i][1] for i in p)) <= limits.tokens


@pytest.mark.parametrize("args,message", [
    (["micro_batch_size=-1"], "micro_batch_size=-1 is out of range: it must be >= 0"),
    (["micro_batch_tokens=-8"], "micro_batch_tokens=-8 is out of range: it must be >= 0"),
    (["micro_batch_size=17"], "micro_batch_size=17 is larger than an optimizer step's 16 rows (prompts_per_step x "
                              "group_size / minibatches); use micro_batch_size<=16, or micro_batch_size=0 for no limit"),
    (["micro_batch_size=9", "minibatches=2"], "micro_batch_size=9 is larger than an optimizer step's 8 rows"),
    (["micro_batch_tokens=40"], "micro_batch_tokens=40 is smaller than the longest row a step can hold (a completion of "
                                "max_new_tokens=48 and its prompt, at least 49 tokens); use micro_batch_tokens>=49, or "
                                "micro_batch_tokens=0 for no budget"),
])
def test_bad_micro_batch_settings_are_one_line_errors(tmp_path, args, message):
    with pytest.raises(ConfigError) as e:
        grpo.main(["prompts_per_step=4", "group_size=4", "max_new_tokens=48", "steps=1", f"out={tmp_path / 'r'}", *args])
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("module,args,message", [
    ("sft", ["batch_size=8", "micro_batch_size=9"], "micro_batch_size=9 is larger than an optimizer step's 8 rows (batch_size)"),
    ("ppo", ["prompts_per_step=4", "samples_per_prompt=2", "micro_batch_size=5"],
     "micro_batch_size=5 is larger than an optimizer step's 4 rows (prompts_per_step x samples_per_prompt / minibatches)"),
    ("rejection_sampling", ["batch_size=4", "micro_batch_size=5"], "micro_batch_size=5 is larger than an optimizer step's 4 rows"),
    ("iterative_dpo", ["batch_size=4", "micro_batch_size=5"], "micro_batch_size=5 is larger than an optimizer step's 4 pairs"),
    ("iterative_dpo", ["micro_batch_tokens=100"], "micro_batch_tokens=100 is smaller than the longest row a step can hold (a pair"),
])
def test_every_algorithm_checks_its_micro_batch(tmp_path, module, args, message):
    import importlib

    with pytest.raises(ConfigError, match=None) as e:
        importlib.import_module(f"algos.{module}").main([*args, f"out={tmp_path / 'r'}"])
    assert message in str(e.value), str(e.value)


def test_dpo_checks_the_token_budget_against_its_data(tmp_path):
    from algos import dpo

    prefs = tmp_path / "p.jsonl"
    prefs.write_text(json.dumps({"prompt": "What is 2 + 2?", "chosen": "<answer>4</answer>", "rejected": "five " * 30}) + "\n")
    with pytest.raises(ConfigError, match=r"micro_batch_tokens=20 is smaller than the longest row a step can hold \(the "
                                          r"longest pair \(2 rows\) of data=.*: \d+ tokens\)"):
        dpo.main([f"data={prefs}", "micro_batch_tokens=20", f"out={tmp_path / 'r'}"])


# ---------------------------------------------------------------------- GRPO: split and unsplit updates agree


def grpo_groups(tok, model, temperature=0.7, spread=0.03):
    """4 groups of 4 of varied lengths: one group all-equal, one truncated row, one row with a tool's tokens."""
    g = torch.Generator().manual_seed(1)
    rewards = [[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 0.25, 0.0], [1.0, 1.0, 0.0, 0.75]]
    groups = []
    for k in range(4):
        prompt = torch.randint(5, 40, (3 + 2 * k,), generator=g).tolist()
        ros = []
        for i in range(4):
            comp = torch.randint(5, 40, (2 + (k * 5 + 3 * i) % 11,), generator=g).tolist()
            with torch.no_grad():
                lp = token_logprobs(model, collate([prompt], [comp], tok.pad_token_id), temperature=temperature)[0]
            lp = (lp - spread * (i + 1) * torch.linspace(-1, 1, len(comp))).tolist()  # ratios on both sides of the clip
            mask = tuple([1] * (len(comp) // 2) + [0] + [1] * (len(comp) - len(comp) // 2 - 1)) if (k, i) == (2, 1) else None
            ros.append(Rollout(prompt="", text="", prompt_ids=tuple(prompt), completion_ids=tuple(comp), logprobs=tuple(lp),
                               finish_reason="length" if (k, i) == (0, 1) else "stop", loss_mask=mask))
        groups.append((ros, torch.tensor(rewards[k])))
    return groups


def perturbed(model):
    """A frozen reference apart from the policy (else the KL term and its gradient are 0)."""
    ref = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(0.98)
    return ref


def run_grpo(tiny, cfg, ref=False):
    model, opt = fresh(tiny)
    stats = grpo.policy_update(model, opt, grpo_groups(tiny[1], model, cfg.temperature, 0.3 if cfg.max_off_policy_steps else 0.15),
                               cfg, tiny[1].pad_token_id, perturbed(tiny[0]) if ref else None)
    return grads(model), stats


SPLITS = [{"micro_batch_size": 3}, {"micro_batch_tokens": 40}, {"micro_batch_size": 1}, {"micro_batch_size": 4, "micro_batch_tokens": 50}]


@pytest.mark.parametrize("loss_agg", ["token", "sequence", "constant"])
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_grpo_split_update_equals_the_unsplit_one(tiny, loss_agg, beta):
    cfg = grpo.GRPOConfig(temperature=0.7, grad_clip=0.0, max_new_tokens=16, loss_agg=loss_agg, beta=beta)
    want, want_stats = run_grpo(tiny, cfg, ref=beta > 0)
    assert want_stats["policy/clip_frac"][0] > 0 and (beta == 0 or want_stats["loss/kl"][0] > 0)
    for split in SPLITS if loss_agg == "token" else SPLITS[:2]:
        got, stats = run_grpo(tiny, dataclasses.replace(cfg, **split), ref=beta > 0)
        assert_same_grads(want, got)
        assert_same_stats({k: v[0] for k, v in want_stats.items() if v}, {k: v[0] for k, v in stats.items() if v})


def test_grpo_split_update_equals_the_unsplit_one_with_truncated_importance_weights(tiny):
    cfg = grpo.GRPOConfig(temperature=0.7, grad_clip=0.0, max_new_tokens=16, max_off_policy_steps=1, is_cap=1.2)
    want, want_stats = run_grpo(tiny, cfg)
    assert 0 < want_stats["policy/is_truncated"][0] < 1  # some tokens' weights were cut at the cap
    for split in SPLITS[:2]:
        got, stats = run_grpo(tiny, dataclasses.replace(cfg, **split))
        assert_same_grads(want, got)
        assert_same_stats({k: v[0] for k, v in want_stats.items() if v}, {k: v[0] for k, v in stats.items() if v})


def test_grpo_minibatches_and_mu_split_alike(tiny):
    cfg = grpo.GRPOConfig(temperature=0.7, grad_clip=1.0, max_new_tokens=16, minibatches=2, mu=2, beta=0.05)
    want, want_stats = run_grpo(tiny, cfg, ref=True)
    got, stats = run_grpo(tiny, dataclasses.replace(cfg, micro_batch_size=3, micro_batch_tokens=60), ref=True)
    assert_same_grads(want, got)
    assert want_stats.keys() == stats.keys() and len(stats["loss/policy"]) == 4
    for k in want_stats:
        assert stats[k] == pytest.approx(want_stats[k], rel=1e-9, abs=1e-12), k


def test_micro_batches_are_padded_on_their_own(tiny, monkeypatch):
    shapes = []
    real = grpo.token_logprobs

    def spy(model, batch, **kw):
        shapes.append(tuple(batch.input_ids.shape))
        return real(model, batch, **kw)

    monkeypatch.setattr(grpo, "token_logprobs", spy)
    cfg = grpo.GRPOConfig(temperature=0.7, grad_clip=0.0, max_new_tokens=16)
    run_grpo(tiny, cfg)
    (whole,) = shapes
    shapes.clear()
    run_grpo(tiny, dataclasses.replace(cfg, micro_batch_tokens=40))
    assert len(shapes) > 2 and sum(r for r, _ in shapes) == whole[0]  # every live row, once
    assert all(r * t <= 40 for r, t in shapes)  # the budget holds, padding included
    assert min(t for _, t in shapes) < whole[1]  # short rows are not padded to the batch's longest


def test_a_row_over_the_token_budget_is_a_clear_error(tiny):
    cfg = grpo.GRPOConfig(temperature=0.7, grad_clip=0.0, max_new_tokens=16, micro_batch_tokens=12)
    with pytest.raises(microbatch.BudgetError, match=r"micro_batch_tokens=12 is smaller than the longest row \(prompt 9 \+ "
                                                     r"completion \d+ tokens\) = \d+ tokens; use micro_batch_tokens>=\d+"):
        run_grpo(tiny, cfg)


# ---------------------------------------------------------------------- PPO: actor and critic


def test_ppo_actor_and_critic_split_updates_equal_the_unsplit_ones(tiny):
    model0, tok = tiny
    g = torch.Generator().manual_seed(4)
    n = 7
    prompts = [torch.randint(5, 40, (2 + i % 4,), generator=g).tolist() for i in range(n)]
    comps = [torch.randint(5, 40, (1 + (3 * i) % 9,), generator=g).tolist() for i in range(n)]
    model0 = load_model(PolicyConfig(model="tiny-sft"))[0]  # float32: the critic's head runs in float32
    critic0 = ppo.Critic(model0)
    torch.nn.init.normal_(critic0.head.weight, std=0.1, generator=g)  # values that are not all 0
    with torch.no_grad():
        old = token_logprobs(model0, collate(prompts, comps, tok.pad_token_id), temperature=0.7)
        old_values = critic0(collate(prompts, comps, tok.pad_token_id))
    lens = [len(c) for c in comps]
    per_token = {"old_logp": [old[i, :lens[i]] - 0.1 * torch.rand(lens[i], generator=g) for i in range(n)],
                 "adv": [torch.randn(lens[i], generator=g) for i in range(n)],
                 "returns": [torch.randn(lens[i], generator=g) for i in range(n)],
                 "old_values": [old_values[i, :lens[i]] + 0.3 * torch.randn(lens[i], generator=g) for i in range(n)]}
    rows = microbatch.Rows(prompts, comps, [None] * n, per_token)
    cfg = ppo.PPOConfig(temperature=0.7, grad_clip=0.0, value_clip=0.05)

    def run(c):
        model, critic = copy.deepcopy(model0), copy.deepcopy(critic0)
        stats = ppo.minibatch_update(model, critic, torch.optim.SGD(model.parameters(), lr=0.0),
                                     torch.optim.SGD(critic.parameters(), lr=0.0), rows, c, tok.pad_token_id)
        return grads(model), grads(critic), stats

    want_actor, want_critic, want_stats = run(cfg)
    for split in ({"micro_batch_size": 2}, {"micro_batch_tokens": 24}):
        actor, critic, stats = run(dataclasses.replace(cfg, **split))
        assert_same_grads(want_actor, actor, float32=True)
        assert_same_grads(want_critic, critic, float32=True)
        assert_same_stats(want_stats, stats, rel=1e-5, abs=2e-6)  # float32 sums of terms of both signs


# ---------------------------------------------------------------------- SFT and the preference losses


def test_sft_split_step_equals_the_unsplit_one(tiny):
    model0, tok = tiny
    g = torch.Generator().manual_seed(2)
    comps = [torch.randint(5, 40, (1 + (3 * i) % 7,), generator=g).tolist() for i in range(8)] + [list(range(5, 12))]
    rows = microbatch.Rows([torch.randint(5, 40, (2 + i % 3,), generator=g).tolist() for i in range(9)], comps,
                           [None] * 8 + [[1, 0, 1, 1, 0, 1, 1]])  # the last: a tool's tokens, no loss there
    tokens = rows.tokens().sum().item()

    def run(limits):
        model, opt = fresh(tiny)
        out = []

        def loss_of(part):
            loss = sft_loss(model, part.collate(tok.pad_token_id, "cpu")[0], tokens)
            out.append(loss.item())
            return loss

        gn = microbatch.step(opt, model, rows.split(limits), loss_of, 0.0)
        return grads(model), sum(out), gn, len(out)

    want, loss, gn, k = run(microbatch.Limits())
    assert k == 1
    for limits in (microbatch.Limits(rows=2), microbatch.Limits(tokens=20)):
        got, l2, gn2, k2 = run(limits)
        assert k2 > 2
        assert_same_grads(want, got)
        assert l2 == pytest.approx(loss, rel=1e-12) and gn2 == pytest.approx(gn, rel=1e-12)


def pairs():
    g = torch.Generator().manual_seed(3)
    return [Pair(torch.randint(5, 40, (2 + i % 3,), generator=g).tolist(), torch.randint(5, 40, (2 + i % 4,), generator=g).tolist(),
                 torch.randint(5, 40, (1 + (5 * i) % 6,), generator=g).tolist()) for i in range(7)]


@pytest.mark.parametrize("loss", ["dpo", "orpo", "simpo"])
def test_pairwise_split_steps_equal_the_unsplit_ones(tiny, loss):
    ps, pad = pairs(), tiny[1].pad_token_id
    settings = LossSettings(loss, beta=0.5, nll_weight=0.3 if loss == "dpo" else 0.0)

    def run(limits):
        model, opt = fresh(tiny)
        ref = perturbed(tiny[0])
        gn, total, stats = pair_step(opt, model, ref, ps, pad, settings, float(len(ps)), limits, 0.0)
        return grads(model), total, stats

    want, total, stats = run(microbatch.Limits())
    for limits in (microbatch.Limits(rows=2), microbatch.Limits(tokens=30)):
        got, t2, s2 = run(limits)
        assert_same_grads(want, got)
        assert t2 == pytest.approx(total, rel=1e-12)
        assert_same_stats(stats, s2, rel=1e-6, abs=1e-9)  # pref/accuracy is a float32 mean


def test_kto_split_step_equals_the_unsplit_one(tiny):
    thumbs = [Thumb(p.prompt_ids, p.chosen_ids if i % 3 else p.rejected_ids, bool(i % 2)) for i, p in enumerate(pairs())]

    def run(limits):
        model, opt = fresh(tiny)
        ref = perturbed(tiny[0])
        gn, total, stats = kto_step(opt, model, ref, thumbs, tiny[1].pad_token_id, LossSettings("kto", beta=0.5), limits,
                                    0.0, 1.0, 1.5)
        return grads(model), total, stats

    want, total, stats = run(microbatch.Limits())
    assert stats["pref/kl_ref"] != 0
    for limits in (microbatch.Limits(rows=2), microbatch.Limits(tokens=16)):
        got, t2, s2 = run(limits)
        assert_same_grads(want, got)
        assert t2 == pytest.approx(total, rel=1e-12)
        assert_same_stats(stats, s2)


# ---------------------------------------------------------------------- whole runs log the same numbers


def first_step(d):
    return [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl")) if '"loss/' in x][0]


@pytest.mark.parametrize("module,args,keys", [
    ("grpo", ["env=math", "prompts_per_step=4", "group_size=4", "max_new_tokens=32", "heldout_size=4", "steps=1", "beta=0.05"],
     ["loss/policy", "loss/kl", "policy/entropy", "policy/clip_frac", "train/grad_norm", "reward/mean"]),
    ("sft", ["steps=1", "batch_size=8", "heldout_size=4", "max_new_tokens=32"], ["loss/sft", "train/grad_norm"]),
])
def test_a_run_logs_the_same_numbers_split_or_not(tmp_path, module, args, keys):
    import importlib

    main = importlib.import_module(f"algos.{module}").main
    main([*args, f"out={tmp_path / 'a'}"])
    main([*args, "micro_batch_size=3", "micro_batch_tokens=120", f"out={tmp_path / 'b'}"])
    a, b = first_step(tmp_path / "a"), first_step(tmp_path / "b")
    for k in keys:
        assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7), k
