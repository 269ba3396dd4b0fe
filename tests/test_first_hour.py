"""Issue 27: a new user's first hour. Bad values, files and interrupts give one line, not a
traceback; run folders never mix two models or two configs; the last samples are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from algos import config as cfglib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["steps=1", "prompts_per_step=2", "group_size=2", "heldout_size=2", "max_new_tokens=8", "save_every=0"]


def cli(*args: str, cwd: str = ROOT, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


def one_line_error(p: subprocess.CompletedProcess, code: int = 2) -> str:
    """The process failed with ``code`` and said why in exactly one line on stderr, no traceback."""
    assert p.returncode == code, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = [line for line in p.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("warning:") and "%|" not in line]  # progress bars aside
    assert len(lines) == 1, p.stderr[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------- 5. ranges of numeric keys


@pytest.mark.parametrize("module,arg,want", [
    ("grpo", "prompts_per_step=0", "prompts_per_step=0 is out of range: it must be >= 1"),
    ("grpo", "max_new_tokens=-5", "max_new_tokens=-5 is out of range: it must be >= 1"),
    ("grpo", "lr=-1", "lr=-1.0 is out of range: it must be > 0"),
    ("grpo", "temperature=0", "temperature=0.0 is out of range: it must be > 0"),
    ("grpo", "group_size=1", "group_size=1 is out of range: it must be >= 2 (advantages are relative to the group"),
    ("grpo", "policy.gpu_memory_utilization=1.5", "policy.gpu_memory_utilization=1.5 is out of range: it must be in (0, 1]"),
    ("ppo", "gamma=1.5", "gamma=1.5 is out of range: it must be in [0, 1]"),
    ("ppo", "temperature=0", "temperature=0.0 is out of range"),
    ("sft", "batch_size=0", "batch_size=0 is out of range: it must be >= 1"),
    ("dpo", "beta=0", "beta=0.0 is out of range: it must be > 0"),
    ("rejection_sampling", "seed=-3", "seed=-3 is out of range: it must be >= 0"),  # undeclared: >= 0
    ("iterative_dpo", "samples_per_task=1", "samples_per_task=1 is out of range: it must be >= 2"),
    ("evaluate", "tasks=0", "tasks=0 is out of range: it must be >= 1"),
])
def test_every_numeric_key_is_range_checked(module, arg, want):
    mod = __import__(f"algos.{module}", fromlist=["x"])
    cls = next(v for k, v in vars(mod).items() if k.endswith("Config") and isinstance(v, type)
               and (v.__module__ == mod.__name__ or k == "EvalConfig")  # algos.evaluate re-exports the core's
               and k not in ("BuildConfig",))
    with pytest.raises(cfglib.ConfigError) as e:
        cfglib.parse(cls, [arg])
    assert want in str(e.value)


def test_a_bad_value_is_one_line_at_the_command_line():
    line = one_line_error(cli("algos.grpo", "group_size=1"))
    assert line.startswith("error: group_size=1 is out of range")
    assert "(>= 2)" in cli("algos.grpo", "--help").stdout.split("\n  group_size")[1].splitlines()[0]


def test_evaluate_says_pass_at_k_is_pass_at_1_when_greedy(tmp_path):
    p = cli("algos.evaluate", "tasks=2", "n=2", "max_new_tokens=4", f"out={tmp_path / 'ev'}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "n=2 at temperature=0 repeats one greedy completion per task, so pass@2 equals pass@1; set temperature=" in p.stderr
    p = cli("algos.evaluate", "tasks=2", "n=2", "temperature=1.0", "max_new_tokens=4", f"out={tmp_path / 'ev2'}")
    assert p.returncode == 0 and "greedy" not in p.stderr


# ---------------------------------------------------------------------------- 2-4. run folders, resume, samples


def test_a_training_folder_holds_one_run_and_resume_takes_only_resumable_overrides(tmp_path):
    out = str(tmp_path / "run")
    p = cli("algos.grpo", *TINY, f"out={out}")
    assert p.returncode == 0, p.stderr[-2000:]
    # 4. a one-step run (samples_every=10) still writes its last step's samples
    samples = [json.loads(line) for line in open(os.path.join(out, "samples.jsonl"))]
    assert samples and {r["step"] for r in samples} == {1} and all("completion" in r for r in samples)
    metrics_before = open(os.path.join(out, "metrics.jsonl")).read()
    # 2. the same out= again: refused in one line, nothing appended
    line = one_line_error(cli("algos.grpo", *TINY, f"out={out}"))
    assert f"out={out} already holds a run" in line and f"resume={out}" in line and "overwrite=true" in line
    assert open(os.path.join(out, "metrics.jsonl")).read() == metrics_before
    # 3. resume with a key that cannot change: refused, listing every such key
    line = one_line_error(cli("algos.grpo", f"resume={out}", "steps=2", "lr=1e-3", "group_size=4"))
    assert "group_size (2 in the run, 4 now)" in line and "lr (5e-05 in the run, 0.001 now)" in line
    assert "cannot change on resume" in line and "steps" not in line.split(":")[1].split("cannot")[0]
    # 3. steps applies on resume (before: the saved steps=1 was kept silently)
    p = cli("algos.grpo", f"resume={out}", "steps=2")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "with steps=2" in p.stderr
    assert json.load(open(os.path.join(out, "summary.json")))["steps"] == 2
    steps = [json.loads(line)["step"] for line in open(os.path.join(out, "metrics.jsonl"))]
    assert steps.count(2) >= 1 and steps.count(1) == 2  # step 1's training row and the first run's final evaluation
    assert "steps: 2" in open(os.path.join(out, "config.yaml")).read()
    # overwrite=true starts over
    p = cli("algos.grpo", *TINY, f"out={out}", "overwrite=true")
    assert p.returncode == 0, p.stderr[-2000:]
    assert max(json.loads(line)["step"] for line in open(os.path.join(out, "metrics.jsonl"))) == 1


def test_an_evaluation_folder_belongs_to_one_model(tmp_path):
    out = str(tmp_path / "ev")
    args = ["tasks=2", "max_new_tokens=4", f"out={out}"]
    assert cli("algos.evaluate", *args).returncode == 0
    again = cli("algos.evaluate", *args)  # the same model and settings: resumes, nothing generated
    assert again.returncode == 0 and "already evaluated" in again.stderr
    line = one_line_error(cli("algos.evaluate", *args, "policy.model=tiny"))
    assert "policy.model ('tiny-sft' there, 'tiny' now)" in line and "overwrite=true" in line
    p = cli("algos.evaluate", *args, "policy.model=tiny", "overwrite=true")
    assert p.returncode == 0 and "already evaluated" not in p.stderr
    assert "policy.model: tiny\n" in open(os.path.join(out, "eval_config.yaml")).read()


# ---------------------------------------------------------------------------- 6. files


def test_bad_files_are_one_line_each(tmp_path):
    import time

    bad = tmp_path / "prefs.jsonl"
    bad.write_text('{"prompt": "1+1?", "chosen": "2", "rejected": "3"}\n{"prompt": "2+2?", "chosen": "4",\n')
    line = one_line_error(cli("algos.dpo", f"data={bad}", "steps=1"))
    assert f"{bad}, line 2: not valid JSON" in line
    sft = tmp_path / "sft.jsonl"
    sft.write_text('{"prompt": "a", "response": "b"}\n\n[1, 2]\n')
    assert f"{sft}, line 3: a JSON line must be an object" in one_line_error(cli("algos.sft", f"data={sft}", "steps=1"))
    ifeval = tmp_path / "ifeval.jsonl"
    ifeval.write_text("not json\n")
    assert "ifeval.jsonl, line 1: not valid JSON" in one_line_error(
        cli("algos.evaluate", "env=ifeval", f"env.path={ifeval}", "tasks=1", f"out={tmp_path / 'e'}"))
    t0 = time.time()  # a missing local file: at once, never a hub lookup
    line = one_line_error(cli("algos.sft", "data=./no/such/data.jsonl", "steps=1", cwd=str(tmp_path)))
    assert "not found locally" in line and f"{tmp_path}/no/such/data.jsonl, relative to the current directory" in line
    line = one_line_error(cli("algos.evaluate", "env=gsm8k", "env.path=../missing_gsm8k", "tasks=1", cwd=str(tmp_path),
                              env={"HF_HUB_OFFLINE": "0"}))
    assert "not found locally" in line and os.path.join(os.path.dirname(str(tmp_path)), "missing_gsm8k") in line
    assert time.time() - t0 < 60  # two processes, no hub retries (29 s each before)
    empty = tmp_path / "model"
    empty.mkdir()
    line = one_line_error(cli("algos.evaluate", f"policy.model={empty}", "tasks=1", f"out={tmp_path / 'e2'}"))
    assert "the folder is empty" in line and "config.json" in line
    fake = tmp_path / "model.gguf"
    fake.write_text("<html>not a model</html>")
    line = one_line_error(cli("algos.evaluate", f"policy.model={fake}", "tasks=1", f"out={tmp_path / 'e3'}"))
    assert "is not a GGUF file" in line


# ---------------------------------------------------------------------------- 7. Ctrl-C before training


@pytest.mark.parametrize("when", ["starting", "first held-out evaluation"])
def test_ctrl_c_before_training_is_one_line(tmp_path, when):
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "algos.grpo", "steps=1", "heldout_size=2000", f"out={tmp_path / 'r'}"],
                         cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT})
    head = b""
    if when == "starting":
        time.sleep(1.0)
    else:  # wait for the evaluation's progress bar itself, not a guess at how long start-up takes
        deadline = time.time() + 120
        while b"held-out eval:" not in head and time.time() < deadline and p.poll() is None:
            head += os.read(p.stderr.fileno(), 4096)
        assert b"held-out eval:" in head, head.decode(errors="replace")[-2000:]
    p.send_signal(signal.SIGINT)
    _, rest = p.communicate(timeout=120)
    err = (head + rest).decode(errors="replace")
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = [line for line in err.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert last.startswith("interrupted") and "nothing was trained, nothing saved" in last
    assert not os.path.isdir(tmp_path / "r" / "checkpoints")


# ---------------------------------------------------------------------------- bfloat16 training, said


def test_training_bfloat16_weights_at_rl_rates_is_warned_about_with_the_share_lost(tmp_path):
    """A bfloat16 model keeps no float32 copy of its weights: at lr 5e-5 the rounding swallows most updates of
    the tiny model (all but a few at SmolLM2's RL rates: 98% at 1e-5); a float32 run says nothing."""
    from algos.lifecycle import lost_update_share
    from policies import PolicyConfig, load_model

    bf16, _ = load_model(PolicyConfig(model="tiny-sft", dtype="bfloat16"))
    assert 0.5 < lost_update_share(bf16, 5e-5) < lost_update_share(bf16, 1e-6) and lost_update_share(bf16, 1.0) < 0.1
    fp32, _ = load_model(PolicyConfig(model="tiny-sft"))
    assert lost_update_share(fp32, 5e-5) == 0.0
    for dtype, warned in (("bfloat16", True), ("float32", False)):
        p = cli("algos.grpo", "steps=1", "prompts_per_step=2", "group_size=2", "heldout_size=2", "max_new_tokens=8",
                f"policy.dtype={dtype}", f"out={tmp_path / dtype}")
        assert p.returncode == 0, p.stderr[-2000:]
        line = [x for x in p.stderr.splitlines() if x.startswith("warning: policy.dtype=")]
        assert bool(line) == warned, p.stderr[-2000:]
        if warned:
            assert "lr=5e-05 leaves" in line[0] and "train with policy.dtype=float32" in line[0]
