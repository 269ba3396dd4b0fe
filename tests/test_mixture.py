"""Mixtures of environments (algos/mixture.py), dynamic sampling per environment and the online
difficulty filter (algos/filtering.py), and the self-correction ("aha") markers."""

import collections
import json
import os
import subprocess
import sys

import pytest

import envs
from algos import filtering, grpo, mixture
from algos.runs import load_trainer_state, plot_panels

IFEVAL = "../shared/data/ifeval"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def scripted_registered():
    """A third-party environment, registered the way a user's package would (envs.register)."""
    envs.register("scripted", "test/Scripted-v0", "tests.mix_envs:ScriptedEnv")
    yield
    envs.registry.ALIASES.pop("scripted", None)


def _rows(d):
    return [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]


# ----------------------------------------------------------------------------- the sampler


def test_sampler_is_seeded_resumable_and_follows_the_weights():
    mk = lambda seed, w=(0.7, 0.3): mixture.make("[math,scripted]", {"weights": list(w)}, seed=seed)
    a, b, c = mk(0), mk(0), mk(1)
    stream = [t.id + t.metadata["env"] for t in a.source.tasks(400)]
    assert stream == [t.id + t.metadata["env"] for t in b.source.tasks(400)]  # seeded: the same draws
    assert stream != [t.id + t.metadata["env"] for t in c.source.tasks(400)]  # another seed, other draws
    # resumable: a fresh mixture at position k (what a checkpoint saves) continues the same stream
    assert [t.id + t.metadata["env"] for t in mk(0).source.tasks(50, start=300)] == stream[300:350]
    share = collections.Counter(t.metadata["env"] for t in mk(0).source.tasks(2000))
    assert abs(share["math"] / 2000 - 0.7) < 0.04, share
    # each environment's tasks come in its own order: the mixture takes its next one
    math_ids = [t.id for t in a.source.tasks(400) if t.metadata["env"] == "math"]
    assert math_ids == [t.id for t in envs.make("math").unwrapped.source.tasks(len(math_ids))]
    assert {t.metadata["env"] for t in mk(0, (1, 0)).source.tasks(300)} == {"math"}  # weight 0: never drawn


def test_each_environment_keeps_its_prompt_and_verifier():
    mix = mixture.make("[math,ifeval]", {"weights": [0.5, 0.5], "ifeval.path": IFEVAL, "math.difficulty": 2})
    tasks = mix.source.tasks(40)
    by_env = {e: [t for t in tasks if t.metadata["env"] == e] for e in ("math", "ifeval")}
    assert all(by_env.values())
    for e, ts in by_env.items():
        member = envs.make(e, **({"path": IFEVAL} if e == "ifeval" else {"difficulty": 2})).unwrapped
        assert mix.prompt_of(ts[0]) == member.prompt_of(ts[0])  # its own system prompt
    assert "d2" in by_env["math"][0].id  # env.math.difficulty reached math only
    gold = [mix.gold_completion(t) for t in tasks]
    res = mix.score_batch(gold, tasks)
    assert all(r.reward == 1.0 for r in res)
    # each completion is scored by its task's own environment: the same verdicts as that environment gives alone
    shifted = gold[1:] + gold[:1]  # other tasks' golds: right for some, wrong for most
    mixed = mix.score_batch(shifted, tasks)
    for c, t, r in zip(shifted, tasks, mixed):
        own = mix.members[t.metadata["env"]].score_batch([c], [t])[0]
        assert (r.reward, r.parts, r.status) == (own.reward, own.parts, own.status)
    assert any(r.reward < 1.0 for r in mixed)
    # a math answer scored as the math task, not as an ifeval one: order kept
    wrong = mix.score_batch(["<think>x</think><answer>-12345</answer>"] + gold[1:], tasks)
    assert wrong[0].reward < 1.0 and all(r.reward == 1.0 for r in wrong[1:])


@pytest.mark.parametrize("kwargs, says", [
    ({"weights": [1.0]}, "has 1 weight(s) for 2 environments (math, scripted)"),
    ({"weights": [0.5, -0.5]}, "the weight of scripted is -0.5; weights must be finite and >= 0"),
    ({"weights": [0, 0]}, "every weight is 0"),
    ({"weights": "heavy"}, "must be a list of numbers"),
    ({"gsm8k.path": "x"}, "'gsm8k' is not one of the mixture's environments (math, scripted)"),
    ({"difficulty": 2}, "environment 'scripted' failed to load: "),  # its own TypeError, in one line
    ({"math.difficulty": "hard"}, "environment 'math' failed to load: "),
])
def test_bad_mixtures_are_one_clear_error(kwargs, says):
    with pytest.raises(envs.EnvError) as e:
        mixture.make("[math,scripted]", kwargs)
    assert says in str(e.value) and "\n" not in str(e.value)
    if "failed to load" in says and "." not in next(iter(kwargs)):
        assert "set one environment's as env.scripted.KEY=VALUE" in str(e.value)  # the fix


def test_bad_mixtures_on_the_command_line_are_one_line():
    for argv, says in [(["env=[math,gsm8k]", "env.weights=[0.7,0.2,0.1]"], "has 3 weight(s) for 2 environments"),
                       (["env=[math,no_such_env]"], "environment 'no_such_env' failed to load: unknown environment")]:
        p = subprocess.run([sys.executable, "-m", "algos.grpo", *argv], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert p.returncode == 2, p.stderr[-2000:]
        lines = [x for x in p.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], p.stderr[-2000:]


def test_one_environment_is_built_as_before():
    assert not mixture.is_mixture(mixture.make("math", {"difficulty": 2}))
    assert not mixture.is_mixture(mixture.make("[math]", {}))
    assert mixture.env_names("['math', 'gsm8k']") == ["math", "gsm8k"]  # a recipe's YAML list


# ----------------------------------------------------------------------------- GRPO on a mixture

FAST = ["prompts_per_step=6", "group_size=4", "max_new_tokens=24", "heldout_size=4", "samples_every=1", "lr=1e-3",
        "warmup_steps=1", "temperature=1.0"]


def _recording(monkeypatch):
    calls = []
    real = grpo.sample_and_score

    def rec(engine, env, tasks, params, **kw):
        out = real(engine, env, tasks, params, **kw)
        calls.append((list(tasks), out))
        return out

    monkeypatch.setattr(grpo, "sample_and_score", rec)
    return calls


def test_grpo_on_a_mixture_logs_per_environment_and_never_mixes_groups(tmp_path, monkeypatch):
    calls = _recording(monkeypatch)
    out = tmp_path / "mix"
    s = grpo.main(FAST + ["env=[math,scripted]", "env.weights=[0.5,0.5]", "env.scripted.kinds=coin,always", "steps=2",
                          f"out={out}"])
    for tasks, (rollouts, results, flat) in calls:  # every group: G completions of one task of one environment
        G = len(flat) // len(tasks)
        for g, t in enumerate(tasks):
            assert {(x.id, x.metadata["env"]) for x in flat[g * G:(g + 1) * G]} == {(t.id, t.metadata["env"])}
            assert all(r.prompt_ids == rollouts[g * G].prompt_ids for r in rollouts[g * G:(g + 1) * G])
    rows = _rows(out)
    train = [r for r in rows if "reward/mean" in r]
    assert len(train) == 2
    for e in ("math", "scripted"):
        for k in ("reward/{}/mean", "reward/{}/correct", "train/{}/accuracy", "rollout/{}/length",
                  "rollout/{}/zero_std_groups", "rollout/{}/self_correction"):
            assert all(k.format(e) in r for r in train), k.format(e)
        assert f"eval/{e}/accuracy" in rows[0] and f"eval/{e}/accuracy" in rows[-1]  # held-out before and after
    assert "reward/math/format" in train[0] and "reward/scripted/format" not in train[0]  # each its own parts
    # the per-environment figures are those of its own rollouts (step 1's first sampling)
    tasks, (rollouts, results, flat) = calls[0]
    sc = [r for r, t in zip(results, flat) if t.metadata["env"] == "scripted"]
    assert train[0]["reward/scripted/mean"] == pytest.approx(sum(r.reward for r in sc) / len(sc))
    assert s["heldout_per_env"]["math"]["before"] == rows[0]["eval/math/accuracy"]
    assert set(s["heldout_per_env"]) == {"math", "scripted"}
    logged = sorted({k for r in rows for k in r if k != "step"})
    panels = dict(plot_panels(logged, {}))
    assert {"train/math/accuracy", "eval/scripted/accuracy"} <= set(panels["accuracy (held-out eval/, sampled train/)"])
    assert {"reward/math/mean", "reward/scripted/mean"} == set(panels["reward per environment"])
    assert "rollout/scripted/self_correction" in panels["self-correction (share of completions)"]
    assert (out / "curves.png").exists()


def test_dynamic_sampling_refills_each_environment_with_its_own_tasks(tmp_path, monkeypatch):
    calls = _recording(monkeypatch)
    seen = []
    real_update = grpo.policy_update

    def upd(model, opt, groups, cfg, pad, ref=None):
        seen.append(groups)
        return real_update(model, opt, groups, cfg, pad, ref)

    monkeypatch.setattr(grpo, "policy_update", upd)
    out = tmp_path / "dyn"
    # "always" groups never carry signal: that environment keeps nothing, and the other may not take its place
    grpo.main(FAST + ["env=[scripted,math]", "env.weights=[0.5,0.5]", "env.scripted.kinds=always", "steps=2",
                      "dynamic_sampling=true", "max_resample_rounds=2", f"out={out}"])
    train = [r for r in _rows(out) if "reward/mean" in r]
    assert len(train) == 2
    firsts, i = [], 0  # each step samples its draw, then once per refill round
    for r in train:
        firsts.append(calls[i][0])
        i += 1 + r["rollout/resample_rounds"]
    assert i == len(calls)
    assert sum(r["rollout/resample_rounds"] for r in train) > 0  # the scripted share is never filled: refills ran
    for first, r in zip(firsts, train):
        quota = collections.Counter(t.metadata["env"] for t in first)
        assert r["rollout/scripted/kept_groups"] == 0
        assert r["rollout/math/kept_groups"] <= quota["math"] < 6  # math refilled its own share only
        assert r["rollout/samples_per_kept_group"] >= 4
    kept = [r["rollout/math/kept_groups"] for r in train if r["rollout/math/kept_groups"] > 0]
    assert [len(g) for g in seen] == kept  # what reached the loss: those groups, each with signal
    assert all(g[1].std() > 0 for groups in seen for g in groups)


def test_difficulty_filter_drops_and_skips_tasks_solved_always_or_never(tmp_path, monkeypatch):
    calls = _recording(monkeypatch)
    seen = []
    real_update = grpo.policy_update

    def upd(model, opt, groups, cfg, pad, ref=None):
        seen.append([r.tolist() for _, r in groups])
        return real_update(model, opt, groups, cfg, pad, ref)

    monkeypatch.setattr(grpo, "policy_update", upd)
    out = tmp_path / "flt"
    # tasks 0 (always) and 1 (never) of six; the stream comes back to them every three steps
    s = grpo.main(FAST + ["env=scripted", "env.kinds=always,never,coin,coin,coin,coin", "prompts_per_step=2", "steps=7",
                          "difficulty_filter=true", "filter_recheck=5", f"out={out}"])
    drawn = [[t.id.split("/")[-1] for t in tasks] for tasks, _ in calls]
    assert len(drawn) == 7 and drawn[0] == ["0", "1"]  # measured at step 0: solved always / never
    assert all(i not in ("0", "1") for d in drawn[1:5] for i in d), drawn  # skipped at steps 1-4 (step 3 came to them)
    assert "0" in drawn[5] + drawn[6], drawn  # re-checked once filter_recheck steps have passed
    for batch in seen:  # no group solved always or never reached the loss
        assert all(0 < sum(g) < len(g) for g in batch), batch
    rows = [r for r in _rows(out) if "filter/dropped_groups" in r]
    assert rows[0]["filter/dropped_groups"] == 2 and rows[3]["filter/skipped_tasks"] >= 2
    assert all(r["rollout/samples_per_kept_group"] >= 4 for r in rows if "loss/policy" in r)
    st = load_trainer_state(s["checkpoint"])["state"]["difficulty_filter"]  # saved with the checkpoint
    assert all(k.startswith("|scripted/train/") for k in st)


def test_filter_unit_marks_skips_and_rechecks():
    from envs import Task

    t = Task("a", "p", "r", {})
    f = filtering.DifficultyFilter(recheck=2)
    f.observe([(filtering.key_of(t), 1.0)], step=5)
    assert f.skip(t, 6) and not f.skip(t, 7)
    g = filtering.DifficultyFilter(2, f.state())  # restored from a checkpoint
    assert g.skip(t, 6)
    g.observe([(filtering.key_of(t), 0.5)], step=6)  # informative again: cleared
    assert not g.skip(t, 6)
    quota = collections.Counter({"math": 1, "code": 2})
    mk = lambda e: Task(e, "p", "r", {"env": e})
    kept = filtering.take([], [("m1", mk("math")), ("m2", mk("math")), ("c1", mk("code"))], quota)
    assert [g for g, _ in kept] == ["m1", "c1"] and filtering.short(kept, quota)


# ----------------------------------------------------------------------------- "aha" markers


@pytest.mark.parametrize("text, marker, revised", [
    ("<think>2+2=5. Wait, that is wrong: 4.</think><answer>4</answer>", True, False),
    ("<think>Let me check: 3*3=9.</think><answer>9</answer>", True, False),
    ("<think>Let me re-check the sum.</think><answer>9</answer>", True, False),
    ("<think>Actually the answer differs.</think><answer>7</answer>", True, False),
    ("<think>so 12</think><answer>12</answer> no: <answer>13</answer>", True, True),
    ("The answer is 5. Hmm, \\boxed{6}", True, True),
    ("<think>await the result; waiting</think><answer>3</answer><answer> 3 </answer>", False, False),
    ("<think>plain steps</think><answer>8</answer>", False, False),
])
def test_self_correction_markers_on_given_texts(text, marker, revised):
    assert mixture.self_correction(text) is marker
    assert mixture.revised_answer(text) is revised


def test_batch_metrics_count_markers_per_environment():
    row = lambda e, text: (e, 1.0, {"correct": 1.0}, True, len(text), mixture.self_correction(text),
                           mixture.revised_answer(text))
    m = mixture.batch_metrics([row("math", "Wait, no."), row("math", "ok"), row("ifeval", "fine"), row("ifeval", "fine")],
                              group_size=2)
    assert m["rollout/self_correction"] == 0.25
    assert m["rollout/math/self_correction"] == 0.5 and m["rollout/ifeval/self_correction"] == 0.0
    assert m["rollout/math/length"] == 5.5 and m["rollout/ifeval/zero_std_groups"] == 1.0


def test_a_resumed_run_draws_what_an_uninterrupted_one_does(tmp_path, monkeypatch):
    """The mixture's sampler state is the data position, the filter's table is in the checkpoint: a run
    stopped after step 2 and resumed draws the tasks of steps 3 and 4 that a run straight through draws."""
    argv = FAST + ["env=[scripted,math]", "env.weights=[0.8,0.2]", "env.scripted.kinds=always,never,coin,coin,coin,coin",
                   "prompts_per_step=2", "difficulty_filter=true", "filter_recheck=5"]
    calls = _recording(monkeypatch)
    grpo.main(argv + ["steps=4", f"out={tmp_path / 'a'}"])
    straight = [[(t.metadata["env"], t.id) for t in tasks] for tasks, _ in calls]
    calls.clear()
    grpo.main(argv + ["steps=2", f"out={tmp_path / 'b'}"])
    grpo.main([f"resume={tmp_path / 'b'}", "steps=4"])
    resumed = [[(t.metadata["env"], t.id) for t in tasks] for tasks, _ in calls]
    assert len(straight) == len(resumed) == 4
    assert resumed == straight
    # scripted task 0 (solved always) was measured at step 1; the stream brings it again at step 4, within
    # filter_recheck: skipped there, by the resumed run too (its table came back with the checkpoint)
    assert ("scripted", "scripted/train/0") in straight[0]
    assert ("scripted", "scripted/train/0") not in resumed[3]
    assert ("scripted", "scripted/train/5") in resumed[3]  # the position reached it (the stream went on)


@pytest.mark.parametrize("algo, argv", [
    ("ppo", ["steps=2", "prompts_per_step=6", "samples_per_prompt=2"]),
    ("rejection_sampling", ["rounds=1", "tasks_per_round=6", "samples_per_task=4", "batch_size=4"]),
    ("iterative_dpo", ["rounds=1", "tasks_per_round=6", "samples_per_task=4", "batch_size=4"]),
])
def test_every_rl_algorithm_trains_on_a_mixture(tmp_path, algo, argv):
    import importlib

    out = tmp_path / algo
    s = importlib.import_module(f"algos.{algo}").main(
        ["env=[math,scripted]", "env.weights=[0.5,0.5]", "env.scripted.kinds=coin,always", "max_new_tokens=24",
         "heldout_size=4", "temperature=1.0", *argv, f"out={out}"])
    rows = _rows(out)
    train = [r for r in rows if "reward/mean" in r]
    assert train
    for e in ("math", "scripted"):
        # a step's draw may hold no task of an environment: then that step has no keys of it
        assert any(f"reward/{e}/mean" in r and f"train/{e}/accuracy" in r and f"rollout/{e}/self_correction" in r
                   for r in train)
        assert f"eval/{e}/accuracy" in rows[0] and f"eval/{e}/accuracy" in rows[-1]
    assert set(s["heldout_per_env"]) == {"math", "scripted"}
    assert 0.0 <= s["heldout_accuracy_after"] <= 1.0
