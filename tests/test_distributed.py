"""Many processes with torchrun on the CPU (gloo): the update of 2 ranks equals one process's on
the same global batch (data parallel and FSDP2), a whole run writes one run folder from rank 0,
survives a rank that dies (every rank stops, no hang) and resumes to the log of an unbroken run,
and bad setups end with one clear error."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "dist_worker.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    return e


def run(cmd, cwd, timeout=300):
    p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    return p


@pytest.fixture(scope="module")
def updates(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    out = {}
    for label, cmd in (("one", [sys.executable, WORKER, str(d / "one.pt")]),
                       ("ddp", TORCHRUN + [WORKER, str(d / "ddp.pt"), "parallel=ddp"]),
                       ("fsdp", TORCHRUN + [WORKER, str(d / "fsdp.pt"), "parallel=fsdp"])):
        p = run(cmd, d)
        assert p.returncode == 0, p.stderr[-3000:]
        out[label] = torch.load(d / f"{label}.pt", weights_only=False)
    return out


@pytest.mark.parametrize("algo", ["grpo", "sft", "dpo"])
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_update_like_one_process(updates, algo, mode):
    one, two = updates["one"], updates[mode]
    assert one["world_size"] == 1 and two["world_size"] == 2 and two["parallel"] == mode
    a, b = one["results"][algo], two["results"][algo]
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    assert a["grad_norm"] > 0
    assert a["grads"].keys() == b["grads"].keys()
    for k in a["grads"]:
        assert (a["grads"][k] is None) == (b["grads"][k] is None), k
        if a["grads"][k] is not None:
            torch.testing.assert_close(b["grads"][k], a["grads"][k], rtol=1e-4, atol=2e-5, msg=k)
        torch.testing.assert_close(b["weights"][k], a["weights"][k], rtol=1e-4, atol=2e-6, msg=k)
    sums = b["rank_weight_sums"]
    assert len(sums) == 2 and sums[0] == sums[1]  # both ranks hold the same weights after the step


@pytest.mark.parametrize("algo", ["grpo", "sft", "dpo"])
@pytest.mark.parametrize("mode", ["one", "ddp", "fsdp"])
def test_micro_batches_update_like_the_unsplit_step(updates, algo, mode):
    """Split into micro-batches (ranks with different numbers of them), gradients accumulated and reduced once
    (ddp) or in the last backward only (fsdp: set_requires_gradient_sync): the step of one process, unsplit."""
    a, b = updates["one"]["results"][algo], updates[mode]["results"][f"{algo}/micro"]
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    for k in a["grads"]:
        assert (a["grads"][k] is None) == (b["grads"][k] is None), k
        if a["grads"][k] is not None:
            torch.testing.assert_close(b["grads"][k], a["grads"][k], rtol=1e-4, atol=2e-5, msg=k)
        torch.testing.assert_close(b["weights"][k], a["weights"][k], rtol=1e-4, atol=2e-6, msg=k)
    sums = b["rank_weight_sums"]
    assert len(sums) == updates[mode]["world_size"] and len(set(sums)) == 1


@pytest.mark.parametrize("algo", ["kto", "kto/micro", "grpo/minibatches", "grpo/minibatches/micro", "ppo", "ppo/micro",
                                  "rs", "rs/micro", "idpo", "idpo/micro"])
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
@pytest.mark.faults
def test_kto_and_minibatches_update_like_one_process(updates, algo, mode):
    """Issue 26 #10: KTO's z (mismatched pairs of the whole minibatch), GRPO with minibatches > 1 and PPO's
    shuffled minibatches (the minibatches of one process, whatever the rank count); KTO with an uneven minibatch (5 examples: 3 and 2)
    under fsdp does not wait on a rank with fewer passes (#8); rejection sampling's and iterative DPO's rounds (several
    minibatches, uneven strided shares, one rank without rows in the last). Two ranks equal one process."""
    a, b = updates["one"]["results"][algo], updates[mode]["results"][algo]
    ref = updates["one"]["results"][{"kto": "kto", "grpo": "grpo/minibatches", "ppo": "ppo", "rs": "rs", "idpo": "idpo"}[algo.split("/")[0]]]
    assert a["loss"] == pytest.approx(ref["loss"], rel=1e-5, abs=1e-6)  # micro-batches: the unsplit step
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    for k in a["grads"]:
        assert (a["grads"][k] is None) == (b["grads"][k] is None), k
        if a["grads"][k] is not None:
            torch.testing.assert_close(b["grads"][k], a["grads"][k], rtol=1e-4, atol=2e-5, msg=k)
        torch.testing.assert_close(b["weights"][k], a["weights"][k], rtol=1e-4, atol=2e-6, msg=k)


def test_vllm_under_torchrun_gets_one_engine_per_rank(updates):
    assert updates["one"]["vllm_kwargs"] == [{}]
    assert updates["ddp"]["vllm_kwargs"] == [
        {"distributed_executor_backend": "external_launcher", "tensor_parallel_size": 1, "seed": 5 + r} for r in (0, 1)]


def test_fsdp_updates_like_ddp(updates):
    for algo in ("grpo", "sft", "dpo"):
        a, b = updates["ddp"]["results"][algo], updates["fsdp"]["results"][algo]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-7)
        for k in a["grads"]:
            if a["grads"][k] is not None:
                torch.testing.assert_close(b["grads"][k], a["grads"][k], rtol=1e-5, atol=1e-6, msg=k)


GRPO = ["env=math", "prompts_per_step=8", "group_size=4", "max_new_tokens=48", "heldout_size=16", "lr=1e-3",
        "warmup_steps=1", "steps=8", "save_every=2", "samples_every=2"]
KEYS = ("reward/mean", "loss/policy", "policy/entropy", "rollout/length", "train/grad_norm", "eval/accuracy")


def metrics(d):
    return [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl"))]


def rank1_pid(torchrun_pid):
    """The worker process whose RANK is 1 (a child of torchrun's agent)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\x00")
        except OSError:
            continue
        if ppid == torchrun_pid and b"RANK=1" in environ:
            return int(pid)
    return None


@pytest.mark.faults
def test_grpo_under_torchrun_one_folder_a_dead_rank_stops_all_and_resume_matches(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    p = run(TORCHRUN + ["-m", "algos.grpo", *GRPO, f"out={full}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    # rank 0 alone wrote: one folder, each step logged once, one progress bar, one summary line
    rows = metrics(full)
    assert [r["step"] for r in rows if "loss/policy" in r] == list(range(1, 9))
    summary = json.load(open(full / "summary.json"))
    assert summary["world_size"] == 2 and summary["parallel"] == "ddp"
    assert p.stdout.count("held-out accuracy: before") == 1
    assert sorted(os.listdir(full / "checkpoints")) == ["latest", "step-6", "step-8"]
    state = torch.load(full / "checkpoints" / "step-8" / "trainer_state.pt", weights_only=False)
    assert len(state["rng_per_rank"]) == 2 and not torch.equal(state["rng_per_rank"][0]["torch"], state["rng_per_rank"][1]["torch"])
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(full / "checkpoints" / "step-8")  # an ordinary Hugging Face folder

    # the same run; rank 1 is killed once step 2's checkpoint is on disk
    proc = subprocess.Popen(TORCHRUN + ["-m", "algos.grpo", *GRPO, f"out={part}"], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_at = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        latest = part / "checkpoints" / "latest"
        if latest.exists():
            pid = rank1_pid(proc.pid)
            if pid:
                os.kill(pid, signal.SIGKILL)
                killed_at = time.time()
                break
        time.sleep(0.01)
    assert killed_at is not None, "the run ended before a checkpoint could be waited for"
    _, err = proc.communicate(timeout=120)  # every rank stops: no hang
    assert proc.returncode != 0
    assert time.time() - killed_at < 90
    assert "rank" in err and ("SIGKILL" in err or "Signal 9" in err or "exitcode" in err), err[-2000:]
    assert not (part / "summary.json").exists()
    done = int(open(part / "checkpoints" / "latest").read().strip().split("-")[1])
    assert 2 <= done < 8

    p = run(TORCHRUN + ["-m", "algos.grpo", f"resume={part}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"resumed from {part}/checkpoints/step-{done} at step {done}" in p.stderr
    a = [r for r in metrics(full)]
    b = [r for r in metrics(part)]
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in KEYS:
            if k in ra or k in rb:
                assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-7), (k, ra["step"])
    assert json.load(open(part / "summary.json"))["heldout_accuracy_after"] == summary["heldout_accuracy_after"]


def test_fsdp_run_writes_a_loadable_checkpoint_and_resumes(tmp_path):
    out = tmp_path / "f"
    args = ["env=math", "prompts_per_step=4", "group_size=4", "max_new_tokens=48", "temperature=1.0", "lr=1e-3",
            "heldout_size=8", "steps=2",
            "save_every=1", "parallel=fsdp", f"out={out}"]
    p = run(TORCHRUN + ["-m", "algos.grpo", *args], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    from transformers import AutoModelForCausalLM

    from policies import PolicyConfig, SamplingParams, load

    ckpt = out / "checkpoints" / "step-2"
    m = AutoModelForCausalLM.from_pretrained(ckpt)
    from policies.tiny import resolve_model_path

    start = AutoModelForCausalLM.from_pretrained(resolve_model_path("tiny-sft"))
    assert any(not torch.equal(a, b) for a, b in zip(m.parameters(), start.parameters()))  # trained
    engine, _, _ = load(PolicyConfig(model=str(ckpt)))  # policy.model= takes it
    assert engine.generate(["1+1"], SamplingParams(max_new_tokens=4))[0][0].completion_ids
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    assert "__fqn_full__" in state["optimizer"]
    # continue it for one more step (resume reads steps from config.yaml: raise it there)
    cfg = (out / "config.yaml").read_text().replace("steps: 2", "steps: 3")
    (out / "config.yaml").write_text(cfg)
    p = run(TORCHRUN + ["-m", "algos.grpo", f"resume={out}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.load(open(out / "summary.json"))["steps"] == 3


@pytest.mark.parametrize("args,message", [
    (["prompts_per_step=3"], "prompts_per_step=3 does not divide over 2 processes"),
    (["dist_backend=nccl"], "dist_backend=nccl needs GPUs"),
])
def test_bad_setups_end_every_rank_with_one_clear_error(tmp_path, args, message):
    if "nccl" in args[0] and torch.cuda.is_available():
        pytest.skip("this machine has GPUs")
    t0 = time.time()
    p = run(TORCHRUN + ["-m", "algos.grpo", "steps=1", "heldout_size=4", f"out={tmp_path / 'x'}", *args], tmp_path,
            timeout=180)
    assert p.returncode != 0
    assert p.stderr.count(f"error: {message}") == 1  # said once, by rank 0
    assert "algos/" not in p.stderr  # no traceback from our processes (torchrun prints its own summary)
    assert time.time() - t0 < 120


@pytest.mark.parametrize("module,args,parallel", [
    ("sft", ["policy.model=tiny-sft", "steps=2", "batch_size=8"], "ddp"),
    ("sft", ["policy.model=tiny-sft", "steps=2", "batch_size=8"], "fsdp"),
    ("ppo", ["steps=2", "prompts_per_step=4", "samples_per_prompt=2"], "ddp"),
    ("ppo", ["steps=2", "prompts_per_step=4", "samples_per_prompt=2"], "fsdp"),
    ("rejection_sampling", ["rounds=2", "tasks_per_round=8", "samples_per_task=4", "batch_size=4"], "ddp"),
    ("iterative_dpo", ["rounds=2", "tasks_per_round=8", "samples_per_task=4", "batch_size=4"], "fsdp"),
])
def test_every_algorithm_runs_under_torchrun(tmp_path, module, args, parallel):
    out = tmp_path / "r"
    p = run(TORCHRUN + ["-m", f"algos.{module}", *args, "heldout_size=8", "max_new_tokens=48", f"parallel={parallel}",
                        f"out={out}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.load(open(out / "summary.json"))
    assert summary["checkpoint"].endswith("step-2")
    rows = metrics(out)
    assert [r["step"] for r in rows].count(1) >= 1 and len({json.dumps(r) for r in rows}) == len(rows)
    steps = [r["step"] for r in rows if any(k.startswith("loss/") for k in r)]
    assert steps == [1, 2]  # each step logged once (rank 0 alone writes)
    if module == "rejection_sampling":  # the accepted set of every rank, written once
        accepted = [json.loads(x) for x in open(out / "accepted.jsonl")]
        assert len(accepted) == sum(r["rs/accepted"] for r in rows if "rs/accepted" in r)


@pytest.mark.faults
def test_kto_under_fsdp_with_an_uneven_last_minibatch_ends(tmp_path):
    """Issue 26 #8: 5 examples, batch 4: the last minibatch is one example and rank 1 has none; under fsdp it
    still takes part in every sharded pass (z's and the loss's), so the run ends instead of waiting out
    dist_timeout."""
    data = tmp_path / "kto.jsonl"
    with open(data, "w") as f:
        for i in range(5):
            f.write(json.dumps({"prompt": f"What is {i} + {i}?", "completion": f"<answer>{2 * i + i % 2}</answer>",
                                "label": i % 2 == 0}) + "\n")
    t0 = time.time()
    p = run(TORCHRUN + ["-m", "algos.dpo", f"data={data}", "loss=kto", "batch_size=4", "epochs=1", "heldout_size=8",
                        "parallel=fsdp", "dist_timeout=90", f"out={tmp_path / 'k'}"], tmp_path, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    assert time.time() - t0 < 90
    assert [r["step"] for r in metrics(tmp_path / "k") if "loss/kto" in r] == [1, 2]


def test_dpo_runs_under_torchrun_with_an_uneven_last_minibatch(tmp_path):
    prefs = tmp_path / "prefs.jsonl"
    with open(prefs, "w") as f:
        for i in range(5):
            f.write(json.dumps({"prompt": f"What is {i} + {i}?", "chosen": f"<answer>{2 * i}</answer>",
                                "rejected": f"<answer>{2 * i + 1}</answer>"}) + "\n")
    p = run(TORCHRUN + ["-m", "algos.dpo", f"data={prefs}", "batch_size=4", "epochs=1", "heldout_size=8",
                        f"out={tmp_path / 'd'}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = metrics(tmp_path / "d")
    assert [r["step"] for r in rows if "loss/dpo" in r] == [1, 2]  # 5 pairs, batch 4: the last minibatch is one pair, rank 1 has none


# ---------------------------------------------------------------------- LoRA (lora.r > 0) under torchrun
LORA_WORKER = os.path.join(ROOT, "tests", "dist_lora_worker.py")


@pytest.fixture(scope="module")
def lora_updates(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist_lora")
    out = {}
    for label, cmd in (("one", [sys.executable, LORA_WORKER, str(d / "one.pt")]),
                       ("ddp", TORCHRUN + [LORA_WORKER, str(d / "ddp.pt"), "parallel=ddp"]),
                       ("fsdp", TORCHRUN + [LORA_WORKER, str(d / "fsdp.pt"), "parallel=fsdp"])):
        p = run(cmd, d)
        assert p.returncode == 0, p.stderr[-3000:]
        out[label] = torch.load(d / f"{label}.pt", weights_only=False)
    return out


@pytest.mark.parametrize("algo", ["grpo", "dpo"])
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_lora_two_ranks_update_like_one_process(lora_updates, algo, mode):
    # GRPO with its KL term and DPO: the reference is the base with the adapters off (under fsdp the unsharded copy's)
    one, two = lora_updates["one"], lora_updates[mode]
    assert two["world_size"] == 2 and two["parallel"] == mode
    a, b = one["results"][algo], two["results"][algo]
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5) and a["grad_norm"] > 0
    trained = {k for k, g in a["grads"].items() if g is not None}
    assert trained and all(".lora_" in k for k in trained)  # the adapters alone have gradients
    assert trained == {k for k, g in b["grads"].items() if g is not None}
    for k in a["grads"]:
        if k in trained:
            torch.testing.assert_close(b["grads"][k], a["grads"][k], rtol=1e-4, atol=2e-5, msg=k)
        torch.testing.assert_close(b["weights"][k], a["weights"][k], rtol=1e-4, atol=2e-6, msg=k)
    assert b["rank_weight_sums"][0] == b["rank_weight_sums"][1]


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_lora_grpo_runs_under_torchrun_and_checkpoints_the_adapter(tmp_path, parallel):
    out = tmp_path / "r"
    p = run(TORCHRUN + ["-m", "algos.grpo", "env=math", "prompts_per_step=4", "group_size=4", "max_new_tokens=48",
                        "temperature=1.0", "heldout_size=8", "steps=2", "save_every=1", "beta=0.05", "lora.r=4",
                        "lr=1e-2", f"parallel={parallel}", f"out={out}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert any(r.get("train/grad_norm", 0) > 0 for r in metrics(out))  # some group carried a signal
    ckpt = out / "checkpoints" / "step-2"
    assert (ckpt / "adapter_config.json").exists() and not (ckpt / "model.safetensors").exists()
    from policies import PolicyConfig, load_model, lora
    from policies.tiny import resolve_model_path

    merged, _ = load_model(PolicyConfig(model=str(ckpt)))  # base + adapter, merged
    base, _ = load_model(PolicyConfig(model=resolve_model_path("tiny-sft")))
    assert not lora.enabled(merged)
    assert any(not torch.equal(a, b) for a, b in zip(merged.parameters(), base.parameters()))  # trained
    assert [r["step"] for r in metrics(out) if "loss/kl" in r] == [1, 2]


# ---------------------------------------------------------------------- rank-0-only work (issue 26 #9)
MAIN_ONLY = os.path.join(ROOT, "tests", "dist_main_only_worker.py")


@pytest.mark.faults
@pytest.mark.faults
def test_rank0_only_work_is_waited_for_explicitly_and_bounded(tmp_path):
    """The other ranks say what they wait for (they sat silent in a collective, bounded only by dist_timeout),
    stop with one line each when rank 0 overruns the bound or fails, and go on when it finishes."""
    p = run(TORCHRUN + [MAIN_ONLY, "quick"], tmp_path, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "[rank 1] waiting for rank 0's quick job (at most 60 s" in p.stderr and "rank 1 got None" in p.stderr
    t0 = time.time()
    p = run(TORCHRUN + [MAIN_ONLY, "slow"], tmp_path, timeout=180)
    assert p.returncode != 0 and time.time() - t0 < 50  # not the job's 60 s, nor a hang
    assert p.stderr.count("error: rank 0's slow job did not finish in 3 s (dist_timeout)") == 1
    assert "algos/" not in p.stderr  # one line, no traceback of ours
    p = run(TORCHRUN + [MAIN_ONLY, "fails"], tmp_path, timeout=180)
    assert p.returncode != 0 and "error: rank 0's failing job failed (ValueError: the suite broke)" in p.stderr


@pytest.mark.faults
@pytest.mark.faults
def test_the_alignment_tax_suite_under_torchrun_is_waited_for_on_every_rank(tmp_path):
    out = tmp_path / "r"
    p = run(TORCHRUN + ["-m", "algos.grpo", "steps=1", "prompts_per_step=2", "group_size=2", "max_new_tokens=16",
                        "heldout_size=2", "tax_envs=[math]", "tax_tasks=2", f"out={out}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    for tag in ("before", "after"):
        assert f"[rank 1] waiting for rank 0's alignment-tax suite ({tag})" in p.stderr
    assert "alignment_tax" in json.load(open(out / "summary.json"))
