"""The reasoning-gym bridge (env=rg:NAME): every exposed generator passes check_env, items are
seeded by hashing (no overlap between neighbouring seeds, nor between train and held-out),
scoring is strict by default (our comparators) and runs in worker processes with a time limit.
The adversarial cases (model text that runs code, lenient scorers, the think block) are in
tests/test_integrity_rg.py and verifiers/audit_cases/rg.py."""

import re
import sys

import pytest

import envs
from envs import rg
from envs.checker import check_env


@pytest.mark.parametrize("name", rg.available())
def test_check_env_passes_on_every_exposed_generator(name):
    check_env(envs.make(f"rg:{name}"))


def test_left_out_generators_say_why_and_the_rest_are_listed():
    assert len(rg.available()) + len(rg.LEFT_OUT) == len(rg.all_generators())
    assert "countdown" in rg.available() and "knights_knaves" in rg.available() and "sudoku" in rg.available()
    with pytest.raises(envs.EnvError, match="left out of the bridge: no stored answer"):
        envs.make("rg:rush_hour")
    listed = envs.list()
    assert "rg:countdown" in listed and "min_numbers" in listed["rg:countdown"] and "stdio" in listed


@pytest.mark.parametrize("name", ["countdown", "knights_knaves"])
def test_neighbouring_seeds_and_splits_share_no_item(name):
    def questions(seed, split, n=60):
        src = rg.RGSource(name, seed)
        return [src.task(i, split).prompt for i in range(n)]

    s0, s1 = questions(0, "train"), questions(1, "train")
    assert not set(s0) & set(questions(0, "heldout"))
    assert not set(s1) & set(questions(1, "heldout")) and not set(s0) & set(questions(1, "heldout"))
    assert not set(s0) & set(s1)  # unrelated streams
    assert len(set(s0)) == len(s0)
    # reasoning-gym's own datasets: Random(seed + idx), so item i+1 of seed 0 is item i of seed 1
    import reasoning_gym

    a = reasoning_gym.create_dataset(name, seed=0, size=20)
    b = reasoning_gym.create_dataset(name, seed=1, size=20)
    assert [a[i + 1]["question"] for i in range(10)] == [b[i]["question"] for i in range(10)]


def test_strict_scoring_pays_nothing_for_partial_answers():
    env = envs.make("rg:knights_knaves")
    lax = envs.make("rg:knights_knaves", strict=False)
    task = env.unwrapped.tasks(1, "train")[0]
    gold = task.reference["answer"]
    good, bad = re.search(r"inhabited only by (\w+?)s and (\w+?)s\.", task.prompt).groups()  # e.g. pioneers, laggards
    flipped = re.sub(rf"\b({good}|{bad})\b", lambda m: bad if m.group(1) == good else good, gold, count=1)
    assert flipped != gold
    completion = f"<think>x</think><answer>{flipped}</answer>"
    strict_v = env.unwrapped.score_batch([completion], [task])[0].verdicts["correct"]
    lax_v = lax.unwrapped.score_batch([completion], [task])[0].verdicts["correct"]
    assert strict_v.score == 0.0 and strict_v.status.value == "wrong" and "rg_score" not in strict_v.details
    assert lax_v.details["rg_score"] > 0.3  # reasoning-gym pays for one wrong role in three
    assert lax_v.score == pytest.approx(lax_v.details["rg_score"]) and lax_v.status.value == "wrong"


def test_lax_mode_never_pays_their_full_credit_to_an_answer_we_refuse():
    env = envs.make("rg:game_of_life_halting", strict=False)
    task = env.unwrapped.tasks(1, "train")[0]
    v = env.unwrapped.score_batch(["<answer>maybe</answer>"], [task])[0].verdicts["correct"]
    assert v.details["rg_score"] == 1.0 and v.score == 0.0 and v.status.value == "wrong"  # bool("maybe") is True


def test_sudoku_validity_check():
    from verifiers.rg import valid_sudoku

    env = envs.make("rg:mini_sudoku")
    task = env.unwrapped.tasks(1, "train")[0]
    meta = task.reference["metadata"]
    sol = [row[:] for row in meta["solution"]]
    text = "\n".join(" ".join(map(str, r)) for r in sol)
    assert valid_sudoku(text, meta["puzzle"])
    sol[0][0], sol[0][1] = sol[0][1], sol[0][0]  # a row still a permutation, columns broken
    assert not valid_sudoku("\n".join(" ".join(map(str, r)) for r in sol), meta["puzzle"])
    # a valid grid that ignores a given digit is not a solution of this puzzle
    relabel = {1: 2, 2: 1, 3: 3, 4: 4}
    other = "\n".join(" ".join(str(relabel[v]) for v in r) for r in meta["solution"])
    if any(v in (1, 2) for r in meta["puzzle"] for v in r):
        assert not valid_sudoku(other, meta["puzzle"])
    assert not valid_sudoku(text.replace("2", "\u00b2"), meta["puzzle"])  # a superscript digit is not a digit
    one_off = text[:-1] + ("1" if text[-1] != "1" else "2")  # reasoning-gym pays this 0.84, strict 0
    v = env.unwrapped.score_batch([f"<think>x</think><answer>\n{one_off}\n</answer>"], [task])[0].verdicts["correct"]
    assert v.score == 0.0 and v.status.value == "wrong"


def test_scoring_runs_in_a_worker_and_never_evaluates_the_answer():
    env = envs.make("rg:countdown", timeout=2.0)
    task = env.unwrapped.tasks(1, "train")[0]
    v = env.unwrapped.score_batch(["<think>x</think><answer>9**9**9**9</answer>"], [task])[0].verdicts["correct"]
    assert v.status.value == "wrong" and v.score == 0.0  # refused by the whitelist parse: ** is not + - * /
    v = env.unwrapped.score_batch(["no answer tags"], [task])[0].verdicts["correct"]
    assert v.status.value == "no_answer"


def test_bad_names_and_options_are_clear_errors():
    with pytest.raises(envs.EnvError, match="did you mean countdown"):
        envs.make("rg:countdwn")
    with pytest.raises(envs.EnvError, match="no option.*max_numbrs.*its options: min_numbers"):
        envs.make("rg:countdown", max_numbrs=3)


def test_missing_extra_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    with pytest.raises(envs.EnvError, match="pip install 'rlvr-gym\\[reasoning-gym\\]'"):
        rg.available()


def test_grpo_runs_on_an_rg_generator(tmp_path):
    from algos import grpo

    summary = grpo.main(["env=rg:chain_sum", "env.max_terms=2", "steps=2", "prompts_per_step=4", "group_size=4",
                         "max_new_tokens=48", "heldout_size=8", f"out={tmp_path / 'r'}"])
    assert summary["steps"] == 2 and 0.0 <= summary["heldout_accuracy_after"] <= 1.0
