import dataclasses
import json
import os
import sys
import warnings
from fractions import Fraction

import gymnasium
import pytest

import envs
from envs import EnvCheckError, MathEnv, ProceduralMath, Task, UnknownEnvError, check_env, item_rng
from verifiers import Status

# every registered environment, with the options it needs offline
ENV_KWARGS = {"rlvr/Math-v0": {}, "rlvr/GSM8K-v0": "gsm8k", "rlvr/HumanEval-v0": "humaneval", "rlvr/IFEval-v0": "ifeval",
              "rlvr/Stdio-v0": {}, "rlvr/ToolMath-v0": {}, "rlvr/RG-v0": {"name": "countdown"}}


def _kwargs(env_id, gsm8k_path):
    kw = ENV_KWARGS[env_id]
    if kw == "humaneval":  # the sandbox image CI builds
        return {"image": os.environ.get("RLVR_SANDBOX_IMAGE", "rlvr-sandbox:latest"), "workers": 2}
    if kw == "ifeval":
        from tests.conftest import IFEVAL

        return {"path": IFEVAL}
    return {"path": gsm8k_path} if kw == "gsm8k" else dict(kw)


def test_every_registered_env_is_in_this_test():
    ours = sorted(i for i in gymnasium.registry if i.startswith("rlvr/"))
    assert ours == sorted(ENV_KWARGS), "add the new environment to ENV_KWARGS so check_env runs on it"


@pytest.mark.parametrize("env_id", sorted(ENV_KWARGS))
def test_check_env_on_every_registered_env(env_id, gsm8k_path):
    check_env(gymnasium.make(env_id, **_kwargs(env_id, gsm8k_path)))


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_check_env_every_difficulty(difficulty):
    check_env(envs.make("math", difficulty=difficulty))


def test_check_env_catches_a_broken_env():
    class Broken(MathEnv):
        def gold_completion(self, task):
            return "<think></think><answer>nope</answer>"

    with pytest.raises(EnvCheckError, match="gold completion"):
        check_env(Broken())

    class Noisy(MathEnv):
        def reset(self, *, seed=None, options=None):
            warnings.warn("noise")
            return super().reset(seed=seed, options=options)

    with pytest.raises(EnvCheckError, match="warning"):
        check_env(Noisy())


def test_item_rng_seeds_do_not_overlap():
    a = [item_rng("s", 0, "train", i).random() for i in range(1000)]
    b = [item_rng("s", 1, "train", i).random() for i in range(1000)]
    assert not set(a) & set(b)
    assert item_rng("s", 1, "train", 0).random() != item_rng("s", 0, "train", 1).random()
    src0, src1 = ProceduralMath(4, seed=0), ProceduralMath(4, seed=1)
    assert src0.task(1).prompt != src1.task(0).prompt


def test_tasks_are_reproducible_and_splits_disjoint():
    s = ProceduralMath(3, seed=7)
    assert [t.prompt for t in s.tasks(50)] == [t.prompt for t in ProceduralMath(3, seed=7).tasks(50)]
    train = {t.prompt for seed in range(3) for t in ProceduralMath(3, seed=seed).tasks(2000, "train")}
    held = {t.prompt for seed in range(3) for t in ProceduralMath(3, seed=seed).tasks(500, "heldout")}
    assert not train & held
    # the rule, restated here rather than called: a 64-bit blake2b of the problem text, 10% held out
    import hashlib

    def is_heldout(text):
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % 10_000 < 1_000
    assert all(is_heldout(p) for p in held) and not any(is_heldout(p) for p in train)
    # and it holds out about a tenth of all problems, not a handful
    share = sum(is_heldout(f"Compute: {a} + {b}") for a in range(100, 160) for b in range(100, 160)) / 3600
    assert 0.08 < share < 0.12


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_answers_are_exact_and_solutions_reach_them(difficulty):
    for t in ProceduralMath(difficulty).tasks(200):
        assert isinstance(t.reference, str)
        Fraction(t.reference)  # exact, never a float repr
        assert t.solution and t.solution.strip().splitlines()
        last = t.solution.strip().splitlines()[-1]
        assert last.endswith("=" + t.reference), (t.prompt, t.solution)
        q = t.prompt.removeprefix("Compute: ")
        if not q.startswith("Solve"):
            assert Fraction(eval(q.replace("/", "*Fraction(1)/"), {"Fraction": Fraction})) == Fraction(t.reference)
        else:
            lhs, rhs = q.removeprefix("Solve for x: ").split(" = ")
            x = Fraction(t.reference)
            assert eval(lhs.replace("x", f"*({x})"), {}) == int(rhs)


def test_column_addition_shows_carries():
    # each column's line, computed here by hand from the digits: "a+b=s", "+1" when a carry comes in,
    # " carry 1" when the sum is 10 or more, and a final "carry 1" line when the last column carries
    seen_carry = 0
    for t in ProceduralMath(2).tasks(200):
        if " + " not in t.prompt:
            continue
        a, b = map(int, t.prompt.removeprefix("Compute: ").split(" + "))
        want, carry = [], 0
        da, db = str(a)[::-1], str(b)[::-1]
        for i in range(max(len(da), len(db))):
            x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
            s = x + y + carry
            want.append(f"{x}+{y}" + ("+1" if carry else "") + f"={s}" + (" carry 1" if s >= 10 else ""))
            carry = int(s >= 10)
            seen_carry += carry
        if carry:
            want.append("carry 1")
        want.append(f"{a}+{b}={a + b}")
        assert t.solution.strip().splitlines() == want, (t.prompt, t.solution)
    assert seen_carry > 10


def test_bad_options_raise_clear_errors():
    with pytest.raises(envs.EnvError, match="difficulty must be an integer from 1 to 5, got 9"):
        envs.make("math", difficulty=9)
    with pytest.raises(envs.EnvError, match="split"):
        envs.make("math", split="test")
    with pytest.raises(envs.EnvError, match="has no option 'dificulty'; did you mean 'difficulty'"):
        envs.make("math", dificulty=2)
    env = envs.make("math")
    with pytest.raises(envs.EnvError, match="before reset"):
        env.step("x")
    env.reset(seed=0)
    with pytest.raises(envs.EnvError, match="completion text"):
        env.step(42)
    with pytest.raises(envs.EnvError, match="unknown reset option"):
        env.reset(options={"idx": 1})


def test_step_info_holds_verdict_and_parts():
    env = envs.make("math", format_weight=0.5)
    obs, info = env.reset(seed=3)
    task = info["task"]
    assert obs[-1] == {"role": "user", "content": task.prompt}
    _, r, term, trunc, info = env.step(f"<answer>{task.reference}</answer>")
    assert (term, trunc) == (True, False)
    assert info["verdict"].status is Status.CORRECT
    assert info["reward_parts"] == {"correct": 1.0, "format": 0.0}
    assert r == pytest.approx(1 / 1.5)


def test_text_prompt_format_and_index_option():
    env = envs.make("math", prompt_format="text")
    obs, info = env.reset(options={"index": 5, "split": "heldout"})
    assert obs == ProceduralMath(3).task(5, "heldout").prompt
    assert info["task_id"].startswith("math-d3/heldout/")


def test_gsm8k_loader_local_and_file(gsm8k_path, tmp_path):
    env = envs.make("gsm8k", path=gsm8k_path)
    t = env.tasks(1)[0]
    assert t.reference == "72" or t.reference.lstrip("-").isdigit()
    assert "<<" not in t.solution
    assert env.unwrapped.source.size("heldout") == 1319
    train = {env.unwrapped.source.task(i, "train").prompt for i in range(7473)}
    held = {env.unwrapped.source.task(i, "heldout").prompt for i in range(1319)}
    assert len(train & held) <= 1  # GSM8K's own splits (one known duplicate question across them, if any)
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}) + "\n")
    e2 = envs.make("gsm8k", path=str(f), heldout_split="train")
    assert e2.tasks(1, "heldout")[0].reference == "2"


def test_math_format_loader(tmp_path):
    rows = [{"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "solution": "We add: $\\boxed{\\frac{3}{4}}$.",
             "level": "Level 1", "type": "Algebra"},
            {"problem": "Solve $x^2=4$, $x>0$.", "solution": "So $x=\\boxed{2}$.", "level": "Level 2", "type": "Algebra"}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "test.jsonl").write_text(json.dumps({**rows[1], "problem": "Solve $x^2=9$, $x>0$.",
                                                     "solution": "$x=\\boxed{3}$"}))
    env = envs.make("gsm8k", path=str(tmp_path), format="math")
    t = env.tasks(1)[0]
    assert t.reference == "\\frac{3}{4}" and t.metadata["level"] == "Level 1"
    assert env.score_batch(["The sum is \\boxed{0.75}"], [t])[0].parts["correct"] == 1.0
    check_env(env)


def test_dataset_errors_name_the_fix(tmp_path, gsm8k_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"q": "x", "a": "y"}) + "\n")
    env = envs.make("gsm8k", path=str(f), heldout_split="train")
    with pytest.raises(envs.EnvError, match="question_key"):
        env.tasks(1)
    with pytest.raises(envs.EnvError, match="format must be one of"):
        envs.make("gsm8k", path=gsm8k_path, format="mmlu")


# ------------------------------------------------------------------------- registry


def test_names_alias_id_and_module_class():
    assert isinstance(envs.make("math").unwrapped, MathEnv)
    assert isinstance(envs.make("rlvr/Math-v0").unwrapped, MathEnv)
    assert isinstance(envs.make("envs.math_procedural:MathEnv", difficulty=1).unwrapped, MathEnv)


def test_unknown_names_suggest_nearest():
    with pytest.raises(UnknownEnvError, match=r"unknown environment 'mth'.*Did you mean: math"):
        envs.make("mth")
    with pytest.raises(UnknownEnvError, match="rlvr/Math-v0"):
        envs.make("rlvr/Maths-v0")
    with pytest.raises(UnknownEnvError, match="has no 'MathEnvv'; did you mean"):
        envs.make("envs.math_procedural:MathEnvv")
    with pytest.raises(UnknownEnvError, match="cannot import module"):
        envs.make("no_such_pkg.mod:Env")


def test_third_party_entry_point_found_without_changes_here(tmp_path, monkeypatch):
    """A real installed-distribution layout on sys.path: importlib.metadata finds its entry point."""
    pkg = tmp_path / "my_rlvr_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from envs import MathEnv\n"
        "class TinyAdd(MathEnv):\n"
        "    def __init__(self, **kw):\n"
        "        super().__init__(difficulty=1, **kw)\n")
    dist = tmp_path / "my_rlvr_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-rlvr-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rlvr_gym.envs]\ntinyadd = my_rlvr_pkg:TinyAdd\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    env = envs.make("tinyadd")
    assert type(env).__name__ == "TinyAdd" and env.source.difficulty == 1
    assert "tinyadd" in envs.known_names()
    check_env(env)
    sys.modules.pop("my_rlvr_pkg", None)


def test_runtime_register():
    envs.register("addone", "test/AddOne-v0", lambda **kw: MathEnv(difficulty=1, **kw))
    assert envs.make("addone").source.difficulty == 1
    assert envs.canonical_name("rlvr/Math-v0") == "math"


def test_task_is_frozen():
    t = Task("a", "p", "1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.id = "b"  # type: ignore[misc]


def test_readme_custom_env_example(tmp_path, monkeypatch):
    """The README's "Your own environment" example, exactly as written, makes a conforming environment."""
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    part = readme[readme.index("**Your own environment.**"):]
    code = part[part.index("```python\n") + len("```python\n"):part.index("\n```", part.index("```python\n"))]
    assert len(code.splitlines()) <= 30, "keep the example short"
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "reverse.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = envs.make("my_pkg.reverse:ReverseEnv")
    envs.check_env(env)
    task = env.unwrapped.source.task(0, "heldout")
    res = env.unwrapped.score_batch([f"<think>x</think><answer>{task.reference}</answer>", "<answer>no</answer>"],
                                    [task, task])
    assert [r.parts["correct"] for r in res] == [1.0, 0.0]


def _readme_env_code() -> str:
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    part = readme[readme.index("**Your own environment.**"):]
    return part[part.index("```python\n") + len("```python\n"):part.index("\n```", part.index("```python\n"))]


class _AnswerEngine:
    """Answers each prompt with a completion ``answer(prompt)`` (no model)."""

    def __init__(self, answer):
        self.answer = answer

    def generate(self, prompts, params):
        from policies import Rollout

        return [[Rollout(p, self.answer(p), (1,), (1, 2), None, "stop") for _ in range(params.n)] for p in prompts]


def test_readme_env_accuracy_comes_from_its_reward_function(tmp_path, monkeypatch):
    """Issue 27: a reward-function part named as the correctness part is what held-out accuracy,
    pass@1 and the verdict shares read (before: 0% whatever the model did)."""
    from algos.heldout import heldout_eval

    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "reverse.py").write_text(_readme_env_code())
    monkeypatch.syspath_prepend(str(tmp_path))
    env = envs.make("my_pkg.reverse:ReverseEnv")
    base = env.unwrapped
    assert base.prompt_of(base.tasks(1)[0])[0] == {"role": "system", "content": envs.FORMAT_INSTRUCTION}
    word = lambda p: p[-1]["content"].split()[-1].rstrip(".")  # "Reverse the letters of WORD."
    right = _AnswerEngine(lambda p: f"<think>x</think><answer>{word(p)[::-1]}</answer>")
    assert heldout_eval(right, env, 6, 16)["accuracy"] == 1.0
    half = iter(range(10**6))
    mixed = _AnswerEngine(lambda p: f"<think>x</think><answer>{word(p)[::-1] if next(half) % 2 else 'no'}</answer>")
    ev = heldout_eval(mixed, env, 6, 16)
    assert ev["accuracy"] == 0.5
    res = base.score_batch(["<answer>no</answer>"], base.tasks(1))[0]
    assert res.status.value == "wrong" and list(res.verdicts)[0] == "correct"


def test_readme_env_trains_and_reports_its_accuracy(tmp_path):
    """The README's example as printed, trained by the printed command: the run reports held-out
    accuracy, and the training accuracy is the reward function's share of full marks."""
    import json
    import subprocess
    import sys

    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "reverse.py").write_text(_readme_env_code())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "algos.grpo", "env=my_pkg.reverse:ReverseEnv", "steps=2", "prompts_per_step=4",
                        "group_size=4", "heldout_size=8", "max_new_tokens=24", f"out={out}"], cwd=root, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}"}, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.load(open(out / "summary.json"))
    assert 0.0 <= summary["heldout_accuracy_before"] <= 1.0 and 0.0 <= summary["heldout_accuracy_after"] <= 1.0
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    train = [r for r in rows if "train/accuracy" in r]
    assert train and all(r["train/accuracy"] == r["verdict/correct"] for r in train)
    # a 0/1 reward function: its mean is the share at full marks
    assert all(abs(r["train/accuracy"] - r["reward/correct"]) < 1e-9 for r in train)


def test_check_env_warns_without_a_correctness_part():
    from envs.core import TaskSource, TextEnv
    from verifiers import FormatVerifier, Rubric

    class Src(TaskSource):
        name = "w"

        def task(self, index, split="train"):
            word = f"{split}{index}"
            return envs.Task(f"{split}/{index}", f"say {word}", word, metadata={"source": "w"})

    def said(prompts, completions, answer, **kw):
        return [float(f"<answer>{a}</answer>" in c) for c, a in zip(completions, answer)]

    class Undeclared(TextEnv):
        def __init__(self, **kw):
            super().__init__(Src(), Rubric().add_function("said", said).add_verifier("format", FormatVerifier(), 0.0), **kw)

    with pytest.warns(UserWarning, match=r"declares no correctness part.*correctness_part = 'said'"):
        envs.check_env(Undeclared())

    class Declared(Undeclared):
        correctness_part = "said"

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        envs.check_env(Declared())

    class Wrong(Undeclared):
        correctness_part = "correct"

    with pytest.raises(envs.EnvCheckError, match=r"correctness_part='correct' is not a reward part"):
        envs.check_env(Wrong())


def test_no_hub_is_one_clear_error_naming_env_path(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no route to the hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(envs.EnvError, match=r"env\.path=.*shared/data/gsm8k"):
        envs.make("gsm8k").unwrapped.tasks(1, "train")  # the dataset loads on first use
    with pytest.raises(envs.EnvError, match=r"env\.path=.*shared/data/ifeval"):
        envs.make("ifeval")
