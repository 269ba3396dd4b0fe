"""LoRA (``lora.r > 0``, policies/lora.py): the keys in every algorithm, the adapted layers, one clear error
for targets that match nothing, the reference as the base with the adapters off (no copy), sampling from the
adapted model (lean decoder and generic path), merged weights through the weight sync into our server,
adapter checkpoints, resume, the merged export loaded without peft, and a smoke run of every algorithm
that trains the adapters alone."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from algos import config as cfglib
from algos import dist, dpo, grpo, iterative_dpo, ppo, rejection_sampling, sft
from policies import PolicyConfig, SamplingParams, load_model, lora
from policies.base import PolicyError
from policies.hf import TransformersEngine, collate, token_logprobs
from policies.tiny import SHIPPED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def adapted(r=4, seed=11, **kw):
    """tiny-sft with rank-r adapters, A and B drawn from a fixed seed (B non-zero: the model differs from its base)."""
    model, tok = load_model(PolicyConfig(model="tiny-sft"), lora.LoRAConfig(r=r, **kw))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora.layers(model):
            for p in (layer.lora_A[lora.NAME].weight, layer.lora_B[lora.NAME].weight):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model, tok


def base_model():
    return load_model(PolicyConfig(model="tiny-sft"))[0]


def fixed_batch(tok):
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(5, 40, (3 + i,), generator=gen).tolist() for i in range(3)]
    comps = [torch.randint(5, 40, (4 + 2 * i,), generator=gen).tolist() for i in range(3)]
    return collate(prompts, comps, tok.pad_token_id)


def logps(model, batch):
    with torch.no_grad():
        return token_logprobs(model, batch) * batch.completion_mask


# ---------------------------------------------------------------------- config and the adapted layers


@pytest.mark.parametrize("cls", [grpo.GRPOConfig, ppo.PPOConfig, rejection_sampling.RejectionSamplingConfig,
                                 sft.SFTConfig, dpo.DPOConfig, iterative_dpo.IterativeDPOConfig])
def test_every_algorithm_has_the_lora_keys(cls):
    default = cfglib.parse(cls, [])
    assert default.lora.r == 0 and default.lora.target_modules == PROJ  # off by default
    cfg = cfglib.parse(cls, ["lora.r=16", "lora.alpha=8", "lora.dropout=0.1", "lora.target_modules=q_proj,v_proj"])
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules) == (16, 8.0, 0.1, ["q_proj", "v_proj"])
    assert "lora.target_modules" in cfglib.help_text(cls, "x") and "LoRA rank" in cfglib.help_text(cls, "x")
    with pytest.raises(cfglib.ConfigError, match="lora.r"):
        cfglib.parse(cls, ["lora.r=sixteen"])
    assert cfglib.from_dict(cls, cfglib.to_dict(cfg)).lora == cfg.lora  # resume reads it back from config.yaml


def test_default_targets_are_the_projections_of_the_tiny_model_and_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model, _ = load_model(PolicyConfig(model="tiny-sft"), lora.LoRAConfig(r=4))
    names = [n for n, _ in lora.layers(model)]
    assert len(names) == 4 * 7 and {n.rsplit(".", 1)[-1] for n in names} == set(PROJ)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)  # everything else is frozen
    assert not model.get_input_embeddings().weight.requires_grad
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))
    lora.attach(qwen, lora.LoRAConfig(r=2), base="qwen-test")
    assert len(lora.layers(qwen)) == 2 * 7  # q/k/v carry biases in Qwen2: adapted all the same
    assert qwen.peft_config[lora.NAME].base_model_name_or_path == "qwen-test"


def test_target_modules_that_match_nothing_are_one_clear_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(PolicyError) as e:
        load_model(PolicyConfig(model="tiny-sft"), lora.LoRAConfig(r=4, target_modules=["c_attn", "c_proj"]))
    msg = str(e.value)
    assert "\n" not in msg and "lora.target_modules=c_attn,c_proj" in msg
    assert "q_proj" in msg and "down_proj" in msg and "pick from those" in msg  # what there is, and the fix
    with pytest.raises(PolicyError, match="embed_tokens .Embedding., not a linear layer"):
        load_model(PolicyConfig(model="tiny-sft"), lora.LoRAConfig(r=4, target_modules=["q_proj", "embed_tokens"]))
    # from the command line: exit code 2 and the one line, no traceback
    monkeypatch.setattr(sys, "argv", ["grpo", "lora.r=4", "lora.target_modules=c_attn", "steps=1", "heldout_size=4",
                                      f"out={tmp_path / 'x'}"])
    from algos.common import run_main

    with pytest.raises(SystemExit) as ex:
        run_main(grpo.main)
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: lora.target_modules=c_attn matches no linear layer") and "Traceback" not in "".join(err)


# ---------------------------------------------------------------------- the reference


def test_the_reference_is_the_base_with_the_adapters_off_and_no_copy():
    model, tok = adapted()
    batch = fixed_batch(tok)
    ref = dist.frozen_copy(model)
    assert isinstance(ref, lora.Reference)
    assert {p.data_ptr() for p in ref.parameters()} == {p.data_ptr() for p in model.parameters()}  # the same tensors
    before = logps(model, batch)
    base = logps(base_model(), batch)
    assert (before - base).abs().max() > 0.1  # the adapter changes the model
    torch.testing.assert_close(logps(ref, batch), base, rtol=0, atol=1e-6)  # the reference is the base
    torch.testing.assert_close(logps(model, batch), before, rtol=0, atol=0)  # and the adapters are back on
    assert all(p.requires_grad == (".lora_" in n) for n, p in model.named_parameters())  # flags untouched
    # a policy forward with its graph, then the reference, then backward: the adapters get their gradients
    lp = token_logprobs(model, batch)
    with torch.no_grad():
        token_logprobs(ref, batch)
    (lp * batch.completion_mask).sum().backward()
    assert all((p.grad is not None) == (".lora_" in n) for n, p in model.named_parameters())


def test_a_refreshed_reference_holds_a_copy_of_the_adapter_alone():
    model, tok = adapted()
    batch = fixed_batch(tok)
    ref = dist.frozen_copy(model)
    ref.load_state_dict(dist.full_state_dict(model))  # iterative DPO's refresh
    snap = logps(model, batch)
    torch.testing.assert_close(logps(ref, batch), snap, rtol=0, atol=1e-5)
    with torch.no_grad():  # the policy moves on; the reference stays where it was refreshed
        for _, layer in lora.layers(model):
            layer.lora_B[lora.NAME].weight.mul_(-1.0)
    assert (logps(model, batch) - snap).abs().max() > 0.1
    torch.testing.assert_close(logps(ref, batch), snap, rtol=0, atol=1e-5)
    saved = ref.state_dict()  # reference.pt: the adapter's tensors only
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)
    again = dist.frozen_copy(model)
    again.load_state_dict(saved)  # a resume
    torch.testing.assert_close(logps(again, batch), snap, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------- sampling and the weight sync


@pytest.mark.parametrize("lean", [True, False])
def test_sampled_logprobs_are_the_adapted_models(lean):
    model, tok = adapted(seed=3)
    engine = TransformersEngine(model, tok, lean=lean)
    params = SamplingParams(n=4, temperature=0.8, max_new_tokens=24, seed=1)
    rollouts = [r for rs in engine.generate(["What is 12 + 7?", "Compute: 3 * 4"], params) for r in rs]
    batch = collate([r.prompt_ids for r in rollouts], [r.completion_ids for r in rollouts], tok.pad_token_id)
    with torch.no_grad():
        adapted_lp = token_logprobs(model, batch, temperature=0.8)
        base_lp = token_logprobs(base_model(), batch, temperature=0.8)
    far = 0.0
    for i, r in enumerate(rollouts):
        n = len(r.completion_ids)
        torch.testing.assert_close(torch.tensor(r.logprobs), adapted_lp[i, :n], rtol=0, atol=1e-4)
        far = max(far, (base_lp[i, :n] - adapted_lp[i, :n]).abs().max().item())
    assert far > 0.1  # the base would have given other numbers
    if lean:  # the lean decoder (merged weights) and the generic path (LoRA layers) sample the same tokens
        other = TransformersEngine(model, tok, lean=False).generate(["What is 12 + 7?", "Compute: 3 * 4"], params)
        assert [r.completion_ids for rs in other for r in rs] == [r.completion_ids for r in rollouts]


def test_the_weight_sync_sends_merged_weights_that_our_server_loads(tmp_path):
    from safetensors import safe_open

    from policies.server import Server
    from policies.weight_sync import FilesystemSync, weights_checksum

    model, tok = adapted(seed=4)
    plain, ptok = load_model(PolicyConfig(model="tiny-sft"))
    server = Server(TransformersEngine(plain, ptok), plain, ptok, "tiny-sft")

    def post(i, path, body):  # what the HTTP route does
        return server.load_weights(body["path"], body["version"]) if path == "/weights/load" else {}

    sync = FilesystemSync(str(tmp_path), post)
    want = sync.push(model, 1, [0])  # raises WeightSyncError unless the server's checksum is the trainer's
    assert server.version == 1 and server.checksum == want == weights_checksum(model)
    with safe_open(str(tmp_path / "v1.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys <= set(plain.state_dict()) and not any("lora" in k or "base_layer" in k for k in keys)
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=16)
    a = TransformersEngine(model, tok).generate(["What is 5 + 9?"], params)[0]
    b = server.engine.generate(["What is 5 + 9?"], params)[0]
    assert [r.completion_ids for r in a] == [r.completion_ids for r in b]
    torch.testing.assert_close(torch.tensor(b[0].logprobs), torch.tensor(a[0].logprobs), rtol=0, atol=1e-4)
    # vLLM's loader gets the same merged tensors, under the plain model's parameter names, and starts from them
    merged = lora.merged_parameters(model)
    assert [n for n, _ in merged] == [n for n, _ in plain.named_parameters()]
    for (_, t), (_, p) in zip(merged, plain.named_parameters()):
        assert torch.equal(t, p)
    from transformers import AutoModelForCausalLM

    from policies.vllm_engine import model_source

    src, tmp = model_source(PolicyConfig(model="tiny-sft"), model, tok)
    assert tmp is not None and src != SHIPPED["tiny-sft"]  # not the base's own folder: a merged copy
    for (n, t), (_, p) in zip(AutoModelForCausalLM.from_pretrained(src).named_parameters(), plain.named_parameters()):
        assert torch.equal(t, p), n
    tmp.cleanup()
    # vLLM's NCCL transfer would send the split LoRA parameters: refused, with the fix
    from policies.weight_sync import NCCLSync

    with pytest.raises(PolicyError, match="use policy.weight_sync=filesystem"):
        NCCLSync.__new__(NCCLSync).push(model, 1, [0])


def test_activation_checkpointing_gives_the_adapters_the_same_gradients():
    from policies.hf import enable_activation_checkpointing

    grads = []
    for checkpointing in (False, True):
        model, tok = adapted(seed=8)
        if checkpointing:
            enable_activation_checkpointing(model)
        model.train()
        batch = fixed_batch(tok)
        (token_logprobs(model, batch) * batch.completion_mask).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and all(".lora_" in n for n in grads[0])
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-6, msg=n)


def saved_for_backward(model, batch):
    """Bytes of the tensors autograd keeps for backward outside the checkpointed layers (parameters left out)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        token_logprobs(model, batch)
    return sum(kept.values())


def test_under_checkpointing_lora_keeps_no_more_for_backward_than_full_fine_tuning():
    """Issue 30: checkpointing is on for the adapted model (its layers keep only their inputs) and the
    logprobs take the chunked path, so a LoRA step keeps at most what full fine-tuning keeps."""
    from policies.hf import enable_activation_checkpointing

    kept = {}
    for name, make in (("full", lambda: load_model(PolicyConfig(model="tiny-sft"))), ("lora", adapted)):
        for checkpointing in (False, True):
            model, tok = make()
            if checkpointing:
                enable_activation_checkpointing(model)
            model.train()
            kept[name, checkpointing] = saved_for_backward(model, fixed_batch(tok))
    assert kept["lora", True] < kept["lora", False] / 2, kept  # checkpointing is active on the adapted layers
    assert kept["lora", True] <= kept["full", True], kept


FREED = """
import sys, torch
from policies.hf import return_freed_memory
assert sys.argv[1] == "0" or return_freed_memory()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
torch.empty(6 << 20).fill_(1)  # a 24 MiB block freed: glibc would raise its mmap threshold to it
before = rss()
big, small = [], []
for _ in range(64):  # a step's pattern: 4 MiB temporaries, each followed by a small tensor that stays
    big.append(torch.ones(1 << 20))
    small.append(torch.ones(64 << 10))
del big
print(round(rss() - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
                    reason="glibc's malloc")
def test_freed_tensors_leave_the_process():
    """Issue 30: with glibc's dynamic mmap threshold, 256 MiB of freed temporaries stayed resident behind
    the small tensors kept between them (LoRA's step peaked above full fine-tuning's); training
    processes fix the threshold (`return_freed_memory`, called by algos.common's setup)."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    grown = [int(subprocess.run([sys.executable, "-c", FREED, fix], capture_output=True, text=True, check=True, cwd=ROOT,
                                env=env).stdout.split()[-1]) for fix in ("0", "1")]
    assert grown[0] > 200 and grown[1] < 64, grown  # MiB: without the fix, then with it


# ---------------------------------------------------------------------- checkpoints, export, resume


def test_checkpoints_hold_the_adapter_and_the_merged_export_loads_without_peft(tmp_path):
    from algos.runs import Run

    model, tok = adapted(seed=6)
    batch = fixed_batch(tok)
    want = logps(model, batch)
    run = Run("grpo", "math", grpo.GRPOConfig(), out=str(tmp_path / "run"), tensorboard=False)
    ckpt = run.save_checkpoint(3, model, tok)
    run.close()
    assert sorted(f for f in os.listdir(ckpt) if f.startswith("adapter")) == ["adapter_config.json",
                                                                            "adapter_model.safetensors"]
    assert not os.path.exists(os.path.join(ckpt, "model.safetensors"))  # the adapter alone, a few hundred KB
    assert json.load(open(os.path.join(ckpt, "adapter_config.json")))["base_model_name_or_path"] == "tiny-sft"
    # policies.load_model: base + adapter, trainable (resume) or merged (evaluation)
    again, _ = load_model(PolicyConfig(model=ckpt), lora.LoRAConfig(r=4))
    assert lora.enabled(again)
    torch.testing.assert_close(logps(again, batch), want, rtol=0, atol=0)
    merged, _ = load_model(PolicyConfig(model=ckpt))
    assert not lora.enabled(merged)
    torch.testing.assert_close(logps(merged, batch), want, rtol=0, atol=1e-4)
    # peft's own loader reads the checkpoint as a peft adapter
    from peft import PeftModel

    via_peft = PeftModel.from_pretrained(base_model(), ckpt)
    torch.testing.assert_close(logps(via_peft.base_model.model, batch), want, rtol=0, atol=1e-5)
    # one command exports a merged Hugging Face folder; transformers loads it with peft unimportable
    out = tmp_path / "merged"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "policies", "merge", str(tmp_path / "run"), f"out={out}"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not any(f.startswith("adapter") for f in os.listdir(out))
    probe = ("import sys, torch; sys.modules['peft'] = None\n"
             "from transformers import AutoModelForCausalLM\n"
             f"m = AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
             f"b = torch.load({str(tmp_path / 'batch.pt')!r})\n"
             "with torch.no_grad(): lg = m(input_ids=b['ids'], attention_mask=b['mask']).logits\n"
             f"torch.save(lg, {str(tmp_path / 'logits.pt')!r})\n")
    torch.save({"ids": batch.input_ids, "mask": batch.attention_mask}, tmp_path / "batch.pt")
    p = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    with torch.no_grad():
        expected = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=1e-4)
    p = subprocess.run([sys.executable, "-m", "policies", "merge", str(tmp_path / "nothing"), f"out={out}"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "neither a checkpoint folder nor a run folder" in p.stderr


GRPO = ["env=math", "prompts_per_step=4", "group_size=4", "max_new_tokens=48", "heldout_size=8", "lr=1e-2",
        "warmup_steps=1", "steps=4", "save_every=2", "temperature=1.0", "beta=0.05", "lora.r=4"]


def test_grpo_with_lora_crash_then_resume_matches_an_unbroken_run(tmp_path, monkeypatch):
    from tests.test_resume import Crash, interrupted_then_resumed, same

    a, b, _ = interrupted_then_resumed(grpo, GRPO, tmp_path, "loss/policy", 3, Crash("boom"), monkeypatch, 4, "step-2")
    same(a, b, ("reward/mean", "loss/policy", "loss/kl", "policy/entropy", "rollout/length", "train/grad_norm"))
    assert any(r["train/grad_norm"] > 0 for r in a)
    # base + adapter + optimizer state came back: the final adapters are equal, the base untouched
    ends = [load_model(PolicyConfig(model=str(tmp_path / d / "checkpoints" / "step-4")), lora.LoRAConfig(r=4))[0]
            for d in ("full", "part")]
    start = dict(base_model().named_parameters())
    for (name, p), (_, q) in zip(ends[0].named_parameters(), ends[1].named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)
        if ".lora_" not in name:
            assert torch.equal(p, start[name.replace(".base_layer.", ".")]), name


# ---------------------------------------------------------------------- every algorithm trains the adapters alone


FAST = ["env=math", "max_new_tokens=48", "heldout_size=8", "lr=1e-2", "warmup_steps=1", "temperature=1.0", "lora.r=4"]
OFFLINE = [a for a in FAST if not a.startswith("temperature=")]  # offline preference training samples nothing


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    path = tmp_path_factory.mktemp("prefs") / "prefs.jsonl"
    with open(path, "w") as f:
        for i in range(8):
            f.write(json.dumps({"prompt": f"What is {i} + {i + 3}?", "chosen": f"<answer>{2 * i + 3}</answer>",
                                "rejected": f"<answer>{2 * i + 4}</answer>"}) + "\n")
    return path


@pytest.mark.parametrize("case", ["ppo", "rejection_sampling", "sft", "dpo", "kto", "iterative_dpo"])
def test_every_algorithm_trains_the_adapters_alone(tmp_path, case, prefs):
    out = tmp_path / case
    runs = {
        "ppo": lambda: ppo.main(FAST + ["steps=2", "prompts_per_step=4", "samples_per_prompt=2", f"out={out}"]),
        "rejection_sampling": lambda: rejection_sampling.main(FAST + ["rounds=1", "tasks_per_round=8",
                                                                      "samples_per_task=4", "batch_size=4", f"out={out}"]),
        "sft": lambda: sft.main(["env=math", "policy.model=tiny-sft", "steps=2", "batch_size=8", "lr=1e-2",
                                 "heldout_size=8", "max_new_tokens=48", "lora.r=4", f"out={out}"]),
        "dpo": lambda: dpo.main(OFFLINE + [f"data={prefs}", "loss=dpo", "batch_size=4", "steps=2", f"out={out}"]),
        "kto": lambda: dpo.main(OFFLINE + [f"data={prefs}", "loss=kto", "batch_size=4", "steps=2", f"out={out}"]),
        "iterative_dpo": lambda: iterative_dpo.main(FAST + ["rounds=2", "tasks_per_round=8", "samples_per_task=4",
                                                            "batch_size=4", "ref_refresh_every=1", f"out={out}"]),
    }
    summary = runs[case]()
    rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
    assert any(k.startswith("loss/") for r in rows for k in r)
    for r in rows:
        for k, v in r.items():
            assert not isinstance(v, float) or math.isfinite(v), (k, v)
    ckpt = summary["checkpoint"]
    assert os.path.exists(os.path.join(ckpt, "adapter_model.safetensors"))
    trained, _ = load_model(PolicyConfig(model=ckpt), lora.LoRAConfig(r=4))
    start = dict(base_model().named_parameters())
    for name, p in trained.named_parameters():
        if ".lora_" not in name:  # the base is frozen
            assert torch.equal(p, start[name.replace(".base_layer.", ".")]), name
    assert any(layer.lora_B[lora.NAME].weight.abs().max() > 0 for _, layer in lora.layers(trained))  # trained
    if case == "iterative_dpo":  # the refreshed reference is a copy of the adapter, saved with the checkpoint
        saved = torch.load(os.path.join(ckpt, "reference.pt"), weights_only=True)
        assert saved and all(".lora_" in k for k in saved)
