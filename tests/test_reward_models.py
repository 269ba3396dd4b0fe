"""Issue 25: reward models (algos.reward_model, env=rm), LLM judges (policies.judge, env=judge, algos.evaluate
judge=), distillation (algos.rejection_sampling teacher.model=). All on the tiny model."""

import json
import math
import os
import random
import subprocess
import sys
import time

import pytest

import envs
from tests.fake_openai import FakeOpenAI

FAST = ["max_new_tokens=32", "heldout_size=4", "samples_every=1"]


def _pairs(path, n=120, seed=0, extra=()):
    """Prompts 'What is a + b?': chosen a worked, tagged answer; rejected an untagged wrong one."""
    r = random.Random(seed)
    operands = r.sample([(a, b) for a in range(1, 61) for b in range(1, 61)], n)  # n distinct prompts
    with open(path, "w") as f:
        for a, b in operands:
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
                                "chosen": f"<think>{a}+{b}={a + b}</think><answer>{a + b}</answer>",
                                "rejected": f"I think it is {a + b + r.randint(1, 9)}"}) + "\n")
        for row in extra:
            f.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    from algos import reward_model

    d = tmp_path_factory.mktemp("rm")
    data = _pairs(d / "pairs.jsonl", extra=[{"prompt": "x", "chosen": "", "rejected": "y"},
                                            {"prompt": "x", "chosen": "  ", "rejected": "y"},
                                            {"prompt": "z", "chosen": "same", "rejected": "same"}])
    summary = reward_model.main([f"data={data}", f"out={d / 'rm'}", "lr=1e-3", "center=true"])
    return d / "rm", summary, data


# ---------------------------------------------------------------------- 1. reward model training


def test_reward_model_learns_and_reports_heldout_accuracy(rm_dir):
    out, s, _ = rm_dir
    assert s["skipped_empty"] == 2 and s["skipped_identical"] == 1
    assert s["train_pairs"] + s["heldout_pairs"] == 120 and s["heldout_pairs"] == 12  # 10% of 120 distinct prompts
    assert s["heldout_pair_accuracy"] >= 0.9 and s["heldout_pair_accuracy"] > s["heldout_pair_accuracy_before"]
    on_disk = json.load(open(out / "summary.json"))
    assert on_disk["heldout_pair_accuracy"] == s["heldout_pair_accuracy"] and on_disk["heldout_pairs"] == 12
    conf = json.load(open(out / "config.json"))
    assert conf["architectures"] == ["LlamaForSequenceClassification"] and len(conf["id2label"]) == 1
    assert conf["rlvr_reward_offset"] == pytest.approx(s["reward_offset"]) and s["reward_offset"] != 0.0


def test_split_never_shares_a_prompt_and_counts_skipped():
    from algos.preference import Pair
    from algos.reward_model import clean_and_split
    from policies import PolicyConfig, load_model

    _, tok = load_model(PolicyConfig())
    eos = tok.eos_token_id
    pairs = [Pair([i % 7], [5, 6, eos], [7, eos]) for i in range(70)]
    pairs += [Pair([1], [eos], [8, eos]), Pair([2], [9, eos], [9, eos])]
    sp = clean_and_split(pairs, tok, 0.3, seed=3)
    assert sp.empty == 1 and sp.identical == 1
    held, train = {tuple(p.prompt_ids) for p in sp.heldout}, {tuple(p.prompt_ids) for p in sp.train}
    assert held and train and not held & train and len(held) == 2  # round(0.3 * 7)


def test_reward_model_scores_are_centred_and_padding_free(rm_dir):
    from policies.reward_model import RewardModel

    out, s, data = rm_dir
    rm = RewardModel.load(str(out), device="cpu", batch_size=4)
    rows = [json.loads(line) for line in open(data)][:40]
    alone = rm.score([rows[0]["prompt"]], [rows[0]["chosen"]])[0]
    batch = rm.score([r["prompt"] for r in rows[:3]] + [rows[0]["prompt"]],
                     ["a much longer response " * 5, "x", rows[1]["rejected"], rows[0]["chosen"]])
    assert batch[-1] == pytest.approx(alone, abs=1e-4)  # left padding does not move a score
    both = rm.score([r["prompt"] for r in rows] * 2, [r["chosen"] for r in rows] + [r["rejected"] for r in rows])
    assert abs(sum(both) / len(both)) < 0.5 * (sum(abs(x) for x in both) / len(both))  # about mean 0: centred
    assert sum(c > r for c, r in zip(both[:40], both[40:])) >= 36


def test_reward_model_lora_microbatched_trains_the_head(tmp_path):
    from algos import reward_model

    data = _pairs(tmp_path / "p.jsonl", n=40)
    s = reward_model.main([f"data={data}", f"out={tmp_path / 'rm'}", "lr=3e-3", "lora.r=4", "micro_batch_size=2",
                           "batch_size=8", "gradient_checkpointing=true", "epochs=2"])
    assert s["heldout_pair_accuracy"] > s["heldout_pair_accuracy_before"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "rm" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "score.weight" in keys and not any("lora_" in k for k in keys)  # merged, plain folder


def test_reward_model_cli_bad_input(tmp_path):
    p = subprocess.run([sys.executable, "-m", "algos.reward_model", f"out={tmp_path / 'x'}"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "data= is required" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"}) + "\n")
    p = subprocess.run([sys.executable, "-m", "algos.reward_model", f"data={bad}", f"out={tmp_path / 'y'}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no pair left to train on" in p.stderr and "1 identical" in p.stderr
    assert "skipped 1 of 1 pairs" in p.stderr


# ---------------------------------------------------------------------- 2. env=rm


def test_env_rm_refuses_a_folder_without_value_head(tmp_path):
    with pytest.raises(envs.EnvError, match="without a value head"):
        envs.make("rm", model="tiny-sft", tasks_from="math")
    p = subprocess.run([sys.executable, "-m", "algos.grpo", "env=rm", "env.model=tiny-sft", "env.tasks_from=math",
                        f"out={tmp_path / 'g'}"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "without a value head" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_env_rm_mixes_verifier_and_reward_model(rm_dir):
    out, _, _ = rm_dir
    env = envs.make("rm", model=str(out), tasks_from="math", verifier_weight=1.0, rm_weight=1.0).unwrapped
    inner = envs.make("math").unwrapped
    tasks = env.tasks(4)
    texts = [env.gold_completion(t) for t in tasks[:2]] + ["qwerty", "no"]
    got = env.score_batch(texts, tasks)
    want = inner.score_batch(texts, tasks)
    raw = env.raw_scores([env.prompt_of(t) for t in tasks], texts)
    for g, w, s in zip(got, want, raw):
        assert set(g.parts) == {"correct", "format", "rm"}
        assert g.parts["rm"] == pytest.approx(1 / (1 + math.exp(-s)))
        assert g.reward == pytest.approx((w.reward + g.parts["rm"]) / 2)
        assert g.status == w.status  # correctness: the verifier's (true accuracy)
    only_rm = envs.make("rm", model=str(out), tasks_from="math", correctness="rm").unwrapped
    r = only_rm.score_batch(texts, tasks)
    assert [x.reward for x in r] == pytest.approx([x.parts["rm"] for x in r])  # verifier_weight=0: the proxy alone
    assert list(r[0].verdicts)[0] == "rm" and "correct" in r[0].parts  # true accuracy still logged as a part


def test_env_rm_prompt_file_and_bad_options(rm_dir, tmp_path):
    out, _, data = rm_dir
    env = envs.make("rm", model=str(out), prompts=str(data)).unwrapped
    t = env.tasks(3)
    assert env.source.size("heldout") > 0 and isinstance(t[0].prompt, list)
    res = env.score_batch(["<think>1</think><answer>2</answer>"] * 3, t)
    assert list(res[0].parts) == ["rm"] and res[0].status is not None
    with pytest.raises(envs.EnvError, match="exactly one of env.prompts"):
        envs.make("rm", model=str(out))
    with pytest.raises(envs.EnvError, match="verifier"):
        envs.make("rm", model=str(out), prompts=str(data), verifier_weight=1.0)
    with pytest.raises(envs.EnvError, match="env.model=FOLDER"):
        envs.make("rm", tasks_from="math")


def test_grpo_and_iterative_dpo_against_rm_log_proxy_and_true_accuracy(rm_dir, tmp_path):
    from algos import grpo, iterative_dpo

    out, _, _ = rm_dir
    env = ["env=rm", f"env.model={out}", "env.tasks_from=math"]
    s = grpo.main(env + FAST + ["steps=2", "prompts_per_step=2", "group_size=4", "beta=0.05", f"out={tmp_path / 'g'}"])
    rows = [json.loads(line) for line in open(tmp_path / "g" / "metrics.jsonl")]
    step_rows = [r for r in rows if "reward/rm" in r]
    assert len(step_rows) == 2 and all("reward/correct" in r and "train/accuracy" in r for r in step_rows)
    assert all(r["train/accuracy"] == r["verdict/correct"] for r in step_rows)
    assert all(r["reward/mean"] == pytest.approx(r["reward/rm"]) for r in step_rows)  # the proxy is the reward
    assert "heldout_accuracy_after" in s
    s = iterative_dpo.main(env + FAST + ["rounds=1", "tasks_per_round=4", "samples_per_task=4", "batch_size=4",
                                         "temperature=1.0", f"out={tmp_path / 'i'}"])
    rows = [json.loads(line) for line in open(tmp_path / "i" / "metrics.jsonl")]
    assert any(r.get("pref/pairs", 0) > 0 for r in rows)  # pairs from reward-model scores (no ties among floats)


# ---------------------------------------------------------------------- 3. judges


def test_rubric_without_score_format_is_one_line(tmp_path):
    from policies.judge import Judge, JudgeConfig, JudgeError

    r = tmp_path / "rubric.txt"
    r.write_text("Grade {prompt} / {response} from 1 to 10.")
    with pytest.raises(JudgeError, match="no score format.*Score: <1-10>"):
        Judge(JudgeConfig(model="m", rubric=str(r)))
    with pytest.raises(envs.EnvError, match="no score format"):
        envs.make("judge", prompts="x.jsonl", **{"judge.model": "m", "judge.rubric": str(r)})
    p = subprocess.run([sys.executable, "-m", "algos.evaluate", "judge.model=m", f"judge.rubric={r}", "tasks=1",
                        f"out={tmp_path / 'e'}"], capture_output=True, text=True, timeout=180)
    assert p.returncode == 2 and "no score format" in p.stderr and "Traceback" not in p.stderr


def test_judge_parses_strictly_caches_and_counts_calls(tmp_path):
    from policies.judge import Judge, JudgeConfig, parse_score

    assert parse_score("fine\n**Score:** 7", 1, 10) == (7.0, "")
    assert parse_score("Score: 7\nScore: 8", 1, 10)[0] is None
    assert parse_score("Score: 11", 1, 10)[0] is None
    replies = {"good": "Solid.\nScore: 9", "meh": "Score: 3/10", "junk": "I would give it a seven"}
    fake = FakeOpenAI(reply=lambda q: next(v for k, v in replies.items() if f"Response:\n{k}" in q))
    try:
        cfg = JudgeConfig(model="judge", base_url=fake.url, cache=str(tmp_path / "cache.jsonl"))
        j = Judge(cfg)
        v = j.score(["q"] * 3, ["good", "meh", "junk"])
        assert [x.status.value for x in v] == ["correct", "wrong", "error"]
        assert v[0].score == pytest.approx(8 / 9) and v[1].score == pytest.approx(2 / 9)
        assert "unparsable" in v[2].details["error"]  # never a 0 that looks like a bad answer
        assert fake.requests == 3 and j.calls == 3
        again = Judge(cfg).score(["q"] * 3, ["good", "meh", "junk"])  # a new process: the cache on disk
        assert fake.requests == 3 and [x.to_dict() for x in again] == [x.to_dict() for x in v]
        other = Judge(JudgeConfig(model="judge2", base_url=fake.url, cache=cfg.cache)).score(["q"], ["good"])
        assert fake.requests == 4 and other[0].correct  # another judge: not the same cache key
    finally:
        fake.close()


def test_judge_pairwise_swaps_positions():
    from policies.judge import Judge, JudgeConfig

    def prefers_good(q):  # an unbiased judge: the response holding GOOD wins
        a = q.split("Response A:\n", 1)[1].split("Response B:", 1)[0]
        return "Winner: A" if "GOOD" in a else "Winner: B"

    biased = FakeOpenAI(default="Winner: A")  # always the first position
    fair = FakeOpenAI(reply=prefers_good)
    try:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            v = Judge(JudgeConfig(model="j", base_url=fair.url, cache=f"{d}/c.jsonl")).pairwise(
                ["q", "q"], ["GOOD one", "bad one"], ["bad", "GOOD"])
            assert [x.score for x in v] == [1.0, 0.0] and fair.requests == 4  # both orders each
            v = Judge(JudgeConfig(model="j", base_url=biased.url, cache=f"{d}/b.jsonl")).pairwise(["q"], ["x"], ["y"])
            assert v[0].score == 0.5 and v[0].extracted == "A/A"  # position bias cancels to a tie
    finally:
        biased.close()
        fair.close()


def test_judge_endpoint_down_or_rate_limited_is_error_verdicts(tmp_path):
    import socket

    from policies.judge import Judge, JudgeConfig

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    t0 = time.time()
    j = Judge(JudgeConfig(model="j", base_url=f"http://127.0.0.1:{port}/v1", retries=2, backoff=0.05, timeout=5,
                          cache=str(tmp_path / "c.jsonl")))
    v = j.score(["q", "q"], ["a", "b"])
    assert all(x.is_error and "unreachable" in x.details["error"] for x in v) and j.calls == 6  # 3 tries each
    assert time.time() - t0 < 30
    limited = FakeOpenAI(status=429)
    try:
        j = Judge(JudgeConfig(model="j", base_url=limited.url, retries=1, backoff=0.05, cache=str(tmp_path / "c.jsonl")))
        v = j.score(["q"], ["a"])
        assert v[0].is_error and "429" in v[0].details["error"] and limited.requests == 2
        assert not os.path.exists(tmp_path / "c.jsonl") or "429" not in open(tmp_path / "c.jsonl").read()  # not cached
    finally:
        limited.close()


def test_evaluate_with_judge_and_win_rate_rerun_is_free(tmp_path):
    from algos import evaluate

    fake = FakeOpenAI(reply=lambda q: "Winner: tie" if "Response A:" in q else "Score: 6")
    try:
        judge = ["judge.model=j", f"judge.base_url={fake.url}", f"judge.cache={tmp_path / 'cache.jsonl'}"]
        evaluate.main(["env=math", "tasks=3", "max_new_tokens=16", f"out={tmp_path / 'ref'}"])
        s = evaluate.main(["env=math", "tasks=3", "max_new_tokens=24", f"out={tmp_path / 'ev'}",
                           f"judge.reference={tmp_path / 'ref'}"] + judge)
        j = s["_judge"]["math"]
        assert j["judged"] == 3 and j["errors"] == 0 and j["score"] == pytest.approx(5 / 9)
        assert j["win_rate"] == 0.5 and j["ties"] == 3 and fake.requests == 3 + 6
        report = open(tmp_path / "ev" / "report.md").read()
        assert "## Judge" in report and "50.0%" in report
        again = evaluate.main(["env=math", "tasks=3", "max_new_tokens=24", f"out={tmp_path / 'ev'}",
                               f"judge.reference={tmp_path / 'ref'}"] + judge)
        assert fake.requests == 9 and again["_judge"]["_calls"]["requests"] == 0  # cached: zero calls
        assert again["_judge"]["math"] == j
    finally:
        fake.close()


def test_env_judge_error_verdicts_are_counted_not_scored(tmp_path):
    fake = FakeOpenAI(default="no score here")
    try:
        env = envs.make("judge", tasks_from="math", **{"judge.model": "j", "judge.base_url": fake.url,
                                                       "judge.cache": str(tmp_path / "c.jsonl")}, correctness="judge").unwrapped
        t = env.tasks(2)
        r = env.score_batch(["a", "b"], t)
        assert all(x.status.value == "error" and "judge" in x.parts for x in r)
    finally:
        fake.close()


# ---------------------------------------------------------------------- 4. distillation


def test_rejection_sampling_distils_from_a_teacher(tmp_path):
    from algos import rejection_sampling

    out = tmp_path / "rs"
    s = rejection_sampling.main(["env=math", "policy.model=tiny", "teacher.model=tiny-sft", "rounds=1",
                                 "tasks_per_round=8", "samples_per_task=4", "batch_size=4", "temperature=1.0",
                                 f"out={out}", "max_new_tokens=48", "heldout_size=4"])
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    acc = [r for r in rows if "rs/accepted" in r][0]
    # the untrained student solves nothing; the teacher's samples are what was filtered and trained on
    assert acc["train/accuracy"] > 0 and acc["rs/accepted"] > 0 and s["heldout_accuracy_before"] == 0.0
    accepted = [json.loads(line) for line in open(out / "accepted.jsonl")]
    assert accepted and all(r["reward"] >= 1.0 for r in accepted)


# ---------------------------------------------------------------------- 5. over-optimisation, measured

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def _overopt():
    sys.path.insert(0, BENCH)
    try:
        import rm_overoptimisation
    finally:
        sys.path.remove(BENCH)
    return rm_overoptimisation


def test_overoptimisation_point_is_where_the_true_score_turns_down_while_the_proxy_rises():
    a = _overopt().analyse
    rows = [{"step": 0, "eval/accuracy": 0.30, "eval/mean_reward": 0.40}]
    true = [0.3, 0.4, 0.5, 0.55, 0.5, 0.45, 0.4, 0.35]  # peaks at step 4, then falls
    for i, t in enumerate(true, 1):
        rows.append({"step": i, "reward/rm": 0.4 + 0.05 * i, "train/accuracy": t, "loss/kl": 0.01 * i})
        if i % 2 == 0:
            rows.append({"step": i, "eval/accuracy": t, "eval/mean_reward": 0.4 + 0.05 * i})
    got = a(rows)
    assert got["true_from"] == "greedy held-out" and got["peak"] == pytest.approx({"step": 4, "true": 0.55, "proxy": 0.6})
    assert got["end"]["step"] == 8 and got["overoptimised"]
    assert got["series"]["kl"] == pytest.approx([0.01 * i for i in range(1, 9)]) and got["eval"]["kl"][0] == 0.0
    # a run whose true score keeps rising is not over-optimised; so is one whose proxy fell with it
    assert not a([r if "eval/accuracy" not in r else {**r, "eval/accuracy": 0.1 * r["step"]} for r in rows])["overoptimised"]
    assert not a([r if "eval/accuracy" not in r else {**r, "eval/mean_reward": 1 - 0.05 * r["step"]}
                  for r in rows])["overoptimised"]
    with pytest.raises(SystemExit, match="env=rm"):
        a([{"step": 1, "reward/mean": 0.5}])


def test_overoptimisation_bench_runs_pairs_reward_model_and_grpo_end_to_end(tmp_path, capsys):
    """bench/rm_overoptimisation.py on the tiny model, minimal sizes: pairs from the policy, a reward model, GRPO
    against it with the verifier watching; the JSON, the plot and the printed table."""
    out = tmp_path / "o"
    a = _overopt().main(["--pair-tasks", "48", "--samples", "4", "--max-new-tokens", "32", "--steps", "2", "--prompts", "2",
                         "--eval-every", "1", "--heldout", "4", "--out", str(out), "--rm", "lr=1e-3"])
    saved = json.load(open(out / "overoptimisation.json"))
    assert saved["pairs"] == sum(1 for _ in open(out / "pairs.jsonl")) > 0
    kl = saved["series"]["kl"]  # beta > 0: the KL to the start is logged (0 while the policy is the start)
    assert len(saved["series"]["step"]) == 2 and not any(math.isnan(k) for k in kl) and min(kl) >= 0
    assert saved["eval"]["step"] == [0, 1, 2] and saved["true_from"] == "greedy held-out"
    assert 0 <= saved["rm_heldout_pair_accuracy"] <= 1 and saved["peak"] == a["peak"]
    assert (out / "overoptimisation.png").stat().st_size > 10_000 and (out / "rm" / "config.json").exists()
    printed = capsys.readouterr().out
    assert "reward model: held-out pair accuracy" in printed and "over-optimised" in printed
