import dataclasses
import subprocess
import sys

import pytest

from algos import config as cfglib
from algos.sft import SFTConfig


def test_overrides_types_and_nested():
    cfg = cfglib.parse(SFTConfig, ["steps=12", "lr=1e-4", "policy.model=tiny", "policy.dtype=bfloat16", "env=gsm8k",
                                   "env.difficulty=3", "env.path=/x", "wandb=true", "out=none"])
    assert (cfg.steps, cfg.lr, cfg.policy.model, cfg.policy.dtype, cfg.env) == (12, 1e-4, "tiny", "bfloat16", "gsm8k")
    assert cfg.env_kwargs == {"difficulty": 3, "path": "/x"} and cfg.wandb is True and cfg.out is None


@pytest.mark.parametrize("arg,msg", [
    ("step=3", r"unknown key 'step'.*did you mean 'steps'"),
    ("policy.modle=x", r"did you mean 'policy.model'"),
    ("steps=abc", r"steps='abc' is not an integer"),
    ("steps=1.5", "is not an integer"),
    ("lr=fast", "is not a number"),
    ("wandb=maybe", "not a boolean"),
    ("policy.engine=vlm", r"not one of \['transformers', 'vllm', 'openai', 'server'\]; did you mean 'vllm'"),
    ("steps", "is not key=value"),
])
def test_bad_keys_and_values(arg, msg):
    with pytest.raises(cfglib.ConfigError, match=msg):
        cfglib.parse(SFTConfig, [arg])


def test_yaml_config_then_command_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 7\npolicy:\n  model: tiny\nenv:\n  name: math\n  difficulty: 4\nbatch_size: 3\n")
    cfg = cfglib.parse(SFTConfig, [f"config={f}", "batch_size=5"])
    assert (cfg.steps, cfg.policy.model, cfg.env, cfg.env_kwargs, cfg.batch_size) == (7, "tiny", "math", {"difficulty": 4}, 5)
    f.write_text("stepz: 7\n")
    with pytest.raises(cfglib.ConfigError, match=r"unknown key 'stepz' \(from config file"):
        cfglib.parse(SFTConfig, [f"config={f}"])
    with pytest.raises(cfglib.ConfigError, match="cannot read"):
        cfglib.parse(SFTConfig, ["config=/no/such.yaml"])


def test_help_lists_every_key_with_type_default_doc():
    text = cfglib.help_text(SFTConfig, "algos.sft")
    for key in cfglib.all_keys(SFTConfig):
        assert key in text
    assert "steps" in text and "int = 900" in text
    assert "optimizer steps" in text and "env.KEY=VALUE" in text
    docs = cfglib.field_docs(SFTConfig)
    missing = [f.name for f in dataclasses.fields(SFTConfig) if f.name not in docs]
    assert not missing, f"fields without a docstring: {missing}"


def test_help_on_the_command_line():
    p = subprocess.run([sys.executable, "-m", "algos.sft", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "policy.model" in p.stdout
    p = subprocess.run([sys.executable, "-m", "algos.sft", "stepz=3"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "did you mean 'steps'" in p.stderr
    p = subprocess.run([sys.executable, "-m", "algos.sft", "env=mth"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Did you mean: math" in p.stderr
    # a policy setting this machine cannot honour: one line naming the value and the fix, trainer and evaluate alike
    for module in ("algos.sft", "algos.evaluate"):
        p = subprocess.run([sys.executable, "-m", module, "env=math", "policy.dtype=float8"], capture_output=True,
                           text=True, timeout=120)
        err = p.stderr.strip().splitlines()
        assert p.returncode == 2 and "Traceback" not in p.stderr, (module, p.stderr)
        assert "policy.dtype='float8'" in err[-1] and "use policy.dtype=float32" in err[-1], (module, p.stderr)


def test_real_models_get_safe_defaults_unless_set():
    from algos import dpo, grpo, iterative_dpo, ppo, rejection_sampling, sft
    from algos.config import TINY_MODELS, parse

    for mod, cls in ((grpo, grpo.GRPOConfig), (ppo, ppo.PPOConfig), (sft, sft.SFTConfig), (dpo, dpo.DPOConfig),
                     (rejection_sampling, rejection_sampling.RejectionSamplingConfig),
                     (iterative_dpo, iterative_dpo.IterativeDPOConfig)):
        real = cls.REAL_MODEL_DEFAULTS
        assert real["lr"] <= 2e-5, cls  # conservative learning rates for pretrained models
        tiny = parse(cls, [])
        for m in TINY_MODELS:
            assert parse(cls, [f"policy.model={m}"]).lr == tiny.lr == cls().lr
        c = parse(cls, ["policy.model=some/real-model"])
        assert all(getattr(c, k) == v for k, v in real.items()), cls
        c = parse(cls, ["policy.model=some/real-model", "lr=3e-4"])
        assert c.lr == 3e-4  # an explicit value always wins
    assert "(real models: 1e-06)" in grpo_help()


def grpo_help():
    from algos import grpo
    from algos.config import help_text

    return help_text(grpo.GRPOConfig, "algos.grpo")


def test_real_model_token_budget_grows_with_long_completions_unless_set():
    from algos import grpo
    from algos.config import parse

    assert parse(grpo.GRPOConfig, ["policy.model=smollm2-135m"]).micro_batch_tokens == 4096
    assert parse(grpo.GRPOConfig, ["policy.model=smollm2-135m", "max_new_tokens=4096"]).micro_batch_tokens == 5120
    assert parse(grpo.GRPOConfig, ["policy.model=smollm2-135m", "max_new_tokens=4096",
                                   "micro_batch_tokens=2048"]).micro_batch_tokens == 2048
    assert parse(grpo.GRPOConfig, ["max_new_tokens=4096"]).micro_batch_tokens == 0  # tiny models: no split


def test_dpo_takes_steps_and_reads_max_steps_as_its_alias(tmp_path, capsys):
    """DPO's step key is steps=, as in every module; the old max_steps= still works (command line,
    config file, a resumed run's config.yaml) with one warning line."""
    from algos.config import from_dict, parse
    from algos.dpo import DPOConfig

    assert parse(DPOConfig, ["steps=7"]).steps == 7
    assert capsys.readouterr().err == ""
    assert parse(DPOConfig, ["max_steps=3"]).steps == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_steps" in err[0] and "steps=3" in err[0]
    (tmp_path / "c.yaml").write_text("max_steps: 4\n")
    assert parse(DPOConfig, [f"config={tmp_path / 'c.yaml'}"]).steps == 4
    assert "config file" in capsys.readouterr().err
    assert from_dict(DPOConfig, {"max_steps": 5}).steps == 5
    assert not hasattr(DPOConfig(), "max_steps")
