"""Resume after real interruptions, for every training module.

Each test stops a run part-way (a crash: an exception no handler catches, after the last
checkpoint; or Ctrl-C: a KeyboardInterrupt, whose handler saves), checks that the run really
stopped there (the log ends at the interruption, the latest checkpoint is the one expected), resumes
it, and checks that the resumed steps ran (the resumed process logged them) and that the whole log
equals that of an uninterrupted run with the same config.
"""

import json
import os

import pytest

from algos import dpo, grpo, iterative_dpo, ppo, rejection_sampling, sft
from algos.runs import Run


class Crash(RuntimeError):
    """A crash that no handler catches (a segfault, an OOM kill, a power cut)."""


def rows(d, key):
    return [r for r in (json.loads(x) for x in open(os.path.join(d, "metrics.jsonl"))) if key in r]


def latest(d):
    return open(os.path.join(d, "checkpoints", "latest")).read().strip()


def interrupted_then_resumed(module, args, tmp_path, key, stop, exc, monkeypatch, n_steps, expect_latest, resume=None):
    """Run uninterrupted; run again stopped after `stop` by `exc`; resume; return (full rows, resumed rows, logged)."""
    full, part = tmp_path / "full", tmp_path / "part"
    module.main(args + [f"out={full}"])
    real_log = Run.log
    fired = []

    def log(self, s, metrics):
        real_log(self, s, metrics)
        if s == stop and key in metrics and not fired:
            fired.append(1)
            raise exc

    monkeypatch.setattr(Run, "log", log)
    if isinstance(exc, KeyboardInterrupt):
        with pytest.raises(SystemExit) as e:
            module.main(args + [f"out={part}"])
        assert e.value.code == 130
    else:
        with pytest.raises(Crash):
            module.main(args + [f"out={part}"])
    # it really stopped there: nothing after the interruption was logged, the checkpoint is the expected one
    assert [r["step"] for r in rows(part, key)] == list(range(1, stop + 1))
    assert latest(part) == expect_latest
    assert not (part / "summary.json").exists()
    logged = []

    def counting(self, s, metrics):
        logged.append(s)
        real_log(self, s, metrics)

    monkeypatch.setattr(Run, "log", counting)
    (resume or module.main)([f"resume={part}"])
    done_before = int(expect_latest.split("-")[1])
    assert [s for s in logged if s > done_before][:n_steps - done_before] == list(range(done_before + 1, n_steps + 1))
    return rows(full, key), rows(part, key), logged


def same(a, b, keys):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for k in keys:
            if not all(isinstance(x, (int, float)) for x in (ra.get(k), rb.get(k))):  # missing, or "nan"
                assert ra.get(k) == rb.get(k), (k, ra["step"])
            else:
                assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-9), (k, ra["step"], ra[k], rb[k])


GRPO = ["env=math", "prompts_per_step=4", "group_size=4", "max_new_tokens=48", "heldout_size=8", "lr=1e-3",
        "warmup_steps=1", "steps=5", "save_every=2"]
GRPO_KEYS = ("reward/mean", "loss/policy", "policy/entropy", "rollout/length", "train/grad_norm")


def test_grpo_crash_then_resume(tmp_path, monkeypatch):
    a, b, _ = interrupted_then_resumed(grpo, GRPO, tmp_path, "loss/policy", 3, Crash("boom"), monkeypatch, 5, "step-2")
    same(a, b, GRPO_KEYS)
    assert json.load(open(tmp_path / "full" / "summary.json"))["heldout_accuracy_after"] == \
        json.load(open(tmp_path / "part" / "summary.json"))["heldout_accuracy_after"]


def test_grpo_ctrl_c_after_a_step_saves_it(tmp_path, monkeypatch):
    a, b, _ = interrupted_then_resumed(grpo, GRPO, tmp_path, "loss/policy", 3, KeyboardInterrupt(), monkeypatch, 5,
                                       "step-3")
    same(a, b, GRPO_KEYS)


def test_grpo_ctrl_c_mid_step_with_dynamic_sampling_resumes_at_the_right_data(tmp_path, monkeypatch):
    # refills draw extra tasks; an interrupt during the next step's sampling must save the data position
    # after the last finished step (not "position - prompts_per_step")
    args = GRPO + ["dynamic_sampling=true", "max_resample_rounds=2", "temperature=1.0", "steps=4"]
    full, part = tmp_path / "full", tmp_path / "part"
    grpo.main(args + [f"out={full}"])
    assert any(r.get("rollout/resample_rounds", 0) > 0 for r in rows(full, "reward/mean")), "no refill happened"
    real = grpo.sample_and_score
    stopped_in = []

    def interrupt_first_refill(engine, env, tasks, params):
        if params.seed >= 7919 and not stopped_in:  # a refill: seed = step + 7919 * round (cfg.seed 0)
            stopped_in.append(params.seed % 7919)
            raise KeyboardInterrupt
        return real(engine, env, tasks, params)

    monkeypatch.setattr(grpo, "sample_and_score", interrupt_first_refill)
    with pytest.raises(SystemExit):
        grpo.main(args + [f"out={part}"])
    k = stopped_in[0]  # the step (0-based) whose refill was interrupted: k steps were finished
    assert latest(part) == f"step-{k}" and [r["step"] for r in rows(part, "loss/policy")] == list(range(1, k + 1))
    monkeypatch.setattr(grpo, "sample_and_score", real)
    grpo.main([f"resume={part}"])
    same(rows(full, "reward/mean"), rows(part, "reward/mean"), GRPO_KEYS + ("rollout/resample_rounds",))


SFT = ["env=math", "policy.model=tiny", "batch_size=8", "heldout_size=8", "max_new_tokens=24", "lr=3e-3",
       "warmup_steps=2", "steps=6", "save_every=2"]


def test_sft_crash_then_resume(tmp_path, monkeypatch):
    a, b, _ = interrupted_then_resumed(sft, SFT, tmp_path, "loss/sft", 3, Crash("boom"), monkeypatch, 6, "step-2")
    same(a, b, ("loss/sft", "train/grad_norm"))


def test_sft_ctrl_c_saves_and_resumes(tmp_path, monkeypatch):
    a, b, _ = interrupted_then_resumed(sft, SFT, tmp_path, "loss/sft", 3, KeyboardInterrupt(), monkeypatch, 6, "step-3")
    same(a, b, ("loss/sft", "train/grad_norm"))


PPO = ["env=math", "max_new_tokens=48", "heldout_size=8", "lr=1e-3", "warmup_steps=1", "steps=4", "prompts_per_step=4",
       "samples_per_prompt=2", "minibatches=2", "save_every=2"]


def test_ppo_crash_then_resume(tmp_path, monkeypatch):
    a, b, _ = interrupted_then_resumed(ppo, PPO, tmp_path, "loss/value", 3, Crash("boom"), monkeypatch, 4, "step-2")
    same(a, b, ("reward/mean", "loss/policy", "loss/value", "rollout/length"))


RS = ["env=math", "max_new_tokens=48", "heldout_size=8", "lr=1e-3", "warmup_steps=1", "rounds=4", "tasks_per_round=8",
      "samples_per_task=4", "batch_size=4", "temperature=1.0", "save_every=2"]


def test_rejection_sampling_crash_then_resume_keeps_the_accepted_set(tmp_path, monkeypatch):
    a, b, _ = interrupted_then_resumed(rejection_sampling, RS, tmp_path, "rs/accepted", 3, Crash("boom"), monkeypatch, 4,
                                       "step-2")
    same(a, b, ("reward/mean", "loss/sft", "rs/accepted", "train/updates"))
    assert open(tmp_path / "full" / "accepted.jsonl").read() == open(tmp_path / "part" / "accepted.jsonl").read()


IDPO = ["env=math", "max_new_tokens=48", "heldout_size=8", "lr=1e-3", "warmup_steps=1", "rounds=5", "tasks_per_round=8",
        "samples_per_task=4", "batch_size=4", "temperature=1.0", "save_every=3", "ref_refresh_every=2"]


def test_iterative_dpo_crash_then_resume_restores_the_reference(tmp_path, monkeypatch):
    # the checkpoint at round 3 holds a reference last refreshed at round 2 (not the round-3 policy)
    a, b, _ = interrupted_then_resumed(iterative_dpo, IDPO, tmp_path, "pref/pairs", 4, Crash("boom"), monkeypatch, 5,
                                       "step-3")
    assert os.path.exists(tmp_path / "part" / "checkpoints" / "step-3" / "reference.pt")
    same(a, b, ("reward/mean", "loss/dpo", "pref/pairs", "pref/reward_margin", "train/updates"))


def test_dpo_crash_then_resume(tmp_path, monkeypatch):
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"What is {i} + {i}?", "chosen": f"<answer>{2 * i}</answer>",
                                          "rejected": f"<answer>{2 * i + 1}</answer>"}) for i in range(48)))
    args = ["env=math", "heldout_size=8", "max_new_tokens=24", f"data={data}", "batch_size=8", "lr=1e-3",
            "warmup_steps=1", "save_every=2", "epochs=1"]
    a, b, _ = interrupted_then_resumed(dpo, args, tmp_path, "loss/dpo", 3, Crash("boom"), monkeypatch, 6, "step-2")
    same(a, b, ("loss/dpo", "pref/accuracy", "pref/reward_margin", "train/grad_norm"))


def test_one_process_checkpoint_keeps_its_rank_rng(tmp_path):
    """One process saves the RNG of its one rank as rng_per_rank (it saved None, so a resume could not tell a
    one-process checkpoint from one that lost its ranks' states)."""
    import torch

    from algos.runs import load_trainer_state, rng_state
    from policies import PolicyConfig, load_model

    model, tok = load_model(PolicyConfig(model="tiny-sft"))
    run = Run("grpo", "math", grpo.GRPOConfig(), out=str(tmp_path / "r"))
    torch.manual_seed(123)
    want = rng_state()
    st = load_trainer_state(run.save_checkpoint(1, model, tok, None, {}))
    run.close()
    assert isinstance(st["rng_per_rank"], list) and len(st["rng_per_rank"]) == 1
    assert torch.equal(st["rng_per_rank"][0]["torch"], want["torch"])


def test_a_checkpoint_of_rank_0_alone_seeds_the_other_ranks_apart():
    """An interrupt under data parallel saves rank 0's RNG only: on resume rank 0 gets it back exactly and
    the others are seeded from the seed, rank and step (before, every rank took rank 0's state and the
    ranks sampled the same completions)."""
    import random

    import torch

    from algos.runs import restore_rng, rng_state, seed_everything

    seed_everything(5)
    s0 = rng_state()
    want0 = (torch.rand(4), random.random())
    solo = {"step": 3, "rng": s0, "rng_per_rank": None}  # what rank 0 writes alone on an interrupt

    def draw(st, rank):
        exact = restore_rng(st, rank, seed=5)
        return exact, (torch.rand(4), random.random())

    exact, got0 = draw(solo, 0)
    assert exact and torch.equal(got0[0], want0[0]) and got0[1] == want0[1]
    exact, got1 = draw(solo, 1)
    assert not exact and not torch.equal(got1[0], got0[0]) and got1[1] != got0[1]
    assert torch.equal(draw(solo, 1)[1][0], got1[0])  # deterministic: the same resume draws the same
    assert not torch.equal(draw(solo, 2)[1][0], got1[0])
    assert not torch.equal(draw({**solo, "step": 4}, 1)[1][0], got1[0])
    seed_everything(6)
    s1 = rng_state()
    want1 = torch.rand(4)
    exact, got = draw({"step": 3, "rng": s0, "rng_per_rank": [s0, s1]}, 1)  # a collective save: each rank's own
    assert exact and torch.equal(got[0], want1)


def test_grpo_resumed_with_beta_keeps_the_starting_model_as_reference(tmp_path, monkeypatch):
    """The KL reference of a resumed run is the run's starting model (tiny-sft here), not the checkpoint."""
    from policies import PolicyConfig, load_model
    from policies.weight_sync import weights_checksum

    args = ["env=math", "prompts_per_step=8", "group_size=4", "max_new_tokens=64", "heldout_size=4", "lr=1e-3",
            "temperature=1.0",
            "warmup_steps=0", "beta=0.1", "save_every=1", f"out={tmp_path / 'r'}"]
    grpo.main(args + ["steps=1"])
    refs = []
    real = grpo.policy_update

    def spy(model, opt, groups, cfg, pad_id, ref=None):
        refs.append(weights_checksum(ref))
        return real(model, opt, groups, cfg, pad_id, ref)

    monkeypatch.setattr(grpo, "policy_update", spy)
    grpo.main([f"resume={tmp_path / 'r'}", "steps=2"])
    start = weights_checksum(load_model(PolicyConfig(model="tiny-sft"))[0])
    step1 = weights_checksum(load_model(PolicyConfig(model=str(tmp_path / "r" / "checkpoints" / "step-1")))[0])
    assert start != step1  # the first step changed the weights
    assert refs == [start]
