"""The vLLM engine against vLLM-shaped objects (no GPU, no vLLM here): every decision it makes
before and after vLLM's own code runs. `bench/gpu_check.py` runs the real thing on a GPU."""

import os
import random
import sys
import types
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

from policies import PolicyConfig, SamplingParams
from policies import vllm_engine as ve
from policies.tiny import build_model


class FakeSamplingParams:
    """vLLM's SamplingParams takes keyword arguments only; record them."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeLLM:
    instances: list = []

    def __init__(self, **kw):
        self.kw = kw
        self.calls: list = []
        self.llm_engine = NS(engine_core=type("InprocClient", (), {})())
        random.seed(kw.get("seed", 0))  # as vLLM does: it reseeds the global RNGs
        np.random.seed(kw.get("seed", 0))
        torch.manual_seed(kw.get("seed", 0))
        FakeLLM.instances.append(self)

    def generate(self, prompts, params, use_tqdm=False):
        self.calls.append(("generate", len(prompts)))
        assert isinstance(params, list) and len(params) == len(prompts)  # one SamplingParams per prompt
        outs = []
        for p, sp in zip(prompts, params):
            ids = [7] * 3
            outs.append(NS(prompt_token_ids=p["prompt_token_ids"], outputs=[
                NS(token_ids=ids, text="abc", logprobs=[{7: NS(logprob=-0.5)}] * 3, finish_reason="stop", stop_reason=None)
                for _ in range(sp.n)]))
        return outs

    def collective_rpc(self, fn, args=()):
        self.calls.append(("collective_rpc", fn.__name__, len(args[0])))

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache",))

    def sleep(self, level=1):
        self.calls.append(("sleep", level))

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tuple(tags) if tags else None))


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.__version__ = "0.33.0"
    mod.SamplingParams = FakeSamplingParams
    mod.LLM = FakeLLM
    monkeypatch.setitem(sys.modules, "vllm", mod)
    FakeLLM.instances.clear()
    return mod


def test_per_prompt_seeds_are_distinct_and_never_collide():
    seen = {}
    for step_seed in (0, 1, 2, 1_000_003, 2 ** 40 + 5):
        seeds = ve.prompt_seeds(step_seed, 64, 8)
        assert len(set(seeds)) == 64
        for i, s in enumerate(seeds):  # sample j of prompt i uses s + j: all ranges disjoint
            for j in range(8):
                assert (s + j) not in seen, (step_seed, i, j, seen.get(s + j))
                seen[s + j] = (step_seed, i)
    assert ve.prompt_seeds(None, 3, 4) == [None, None, None]
    assert ve.prompt_seeds(5, 3, 4) == ve.prompt_seeds(5, 3, 4)  # reproducible


def test_sampling_params_one_per_prompt_with_their_seeds(fake_vllm):
    ps = ve.to_vllm_params(SamplingParams(n=4, temperature=0.7, max_new_tokens=16, stop=("</answer>",), seed=3),
                           fake_vllm, 5)
    assert len(ps) == 5 and [p.seed for p in ps] == ve.prompt_seeds(3, 5, 4)
    p = ps[0]
    assert (p.n, p.temperature, p.top_p, p.top_k, p.max_tokens, p.stop, p.logprobs) == (4, 0.7, 1.0, -1, 16, ["</answer>"], 0)
    # greedy asks for one sample (vLLM rejects n > 1 at temperature 0); the engine copies it
    assert ve.to_vllm_params(SamplingParams(n=4, temperature=0.0), fake_vllm, 2)[0].n == 1


@pytest.mark.parametrize("kw,match", [({"temperature": 2.5}, "above 2"), ({"top_p": 0.9}, "top_p=0.9"),
                                       ({"top_k": 20}, "top_k=20")])
def test_refusals_before_any_call(fake_vllm, kw, match):
    with pytest.raises(ValueError, match=match):
        ve.to_vllm_params(SamplingParams(n=2, **kw), fake_vllm, 1)


@pytest.mark.parametrize("version,ok", [("0.10.1", False), ("0.9.2", False), ("0.10.2", True), ("0.33.0", True),
                                        ("1.0.0rc1", True), ("0.10.2.dev5+g1234", True), ("", False)])
def test_version_gate(version, ok):
    if ok:
        ve.check_version(version)
    else:
        with pytest.raises(ImportError, match="0.10.2"):
            ve.check_version(version)


def test_finish_reasons():
    assert ve.finish_reason(NS(finish_reason="stop", stop_reason=None)) == "eos"
    assert ve.finish_reason(NS(finish_reason="stop", stop_reason=2)) == "eos"  # a stop token id
    assert ve.finish_reason(NS(finish_reason="stop", stop_reason="</answer>")) == "stop"
    assert ve.finish_reason(NS(finish_reason="length", stop_reason=None)) == "length"
    assert ve.finish_reason(NS(finish_reason="repetition", stop_reason=None)) == "length"  # truncated
    for bad in ("abort", "error"):
        with pytest.raises(RuntimeError, match=bad):
            ve.finish_reason(NS(finish_reason=bad, stop_reason=None))


def test_one_logprob_per_token_is_asserted():
    req = NS(prompt_token_ids=[1], outputs=[NS(token_ids=[5, 6, 7], text="x", logprobs=[{5: NS(logprob=-1.0)}] * 2,
                                               finish_reason="length", stop_reason=None)])
    with pytest.raises(RuntimeError, match="2 logprobs for 3 tokens"):
        ve.to_rollouts("p", req)


def test_engine_from_config_tiny_model_rng_and_multiprocessing(fake_vllm, monkeypatch):
    model, tok = build_model(seed=0)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    with pytest.warns(UserWarning, match="VLLM_ENABLE_V1_MULTIPROCESSING"):
        eng = ve.VLLMEngine.from_config(PolicyConfig(model="tiny", engine="vllm", seed=7), model, tok)
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want  # the run's RNG streams are untouched
    llm = FakeLLM.instances[-1]
    src = llm.kw["model"]
    assert os.path.isdir(src) and os.path.exists(os.path.join(src, "config.json"))  # saved to a folder first
    assert llm.kw["logprobs_mode"] == "processed_logprobs" and llm.kw["dtype"] == "bfloat16"
    assert llm.kw["enable_sleep_mode"] is True
    # sleep after rollouts, wake weights only for an update, then the KV cache to generate
    out = eng.generate(["hi", "yo"], SamplingParams(n=2, temperature=1.0, max_new_tokens=3, seed=1))
    assert len(out) == 2 and all(len(rs) == 2 for rs in out) and out[0][0].logprobs == (-0.5, -0.5, -0.5)
    eng.sleep()
    eng.update_weights(model)
    eng.generate(["hi"], SamplingParams(n=4, temperature=0.0, max_new_tokens=3))
    names = [c[0] if c[0] != "wake_up" else f"wake_up{c[1]}" for c in llm.calls]
    assert names == ["generate", "sleep", "wake_up('weights',)", "collective_rpc", "reset_prefix_cache",
                     "wake_up('kv_cache',)", "generate"]
    assert llm.calls[3][2] == len(list(model.named_parameters()))


def test_an_engine_core_in_another_process_is_an_error(fake_vllm, monkeypatch):
    class MPLLM(FakeLLM):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.llm_engine = NS(engine_core=type("SyncMPClient", (), {})())

    fake_vllm.LLM = MPLLM
    model, tok = build_model(seed=0)
    with pytest.raises(RuntimeError, match="another process"):
        ve.VLLMEngine.from_config(PolicyConfig(model="tiny", engine="vllm"), model, tok)


def test_old_vllm_is_refused_at_construction(fake_vllm):
    fake_vllm.__version__ = "0.10.1"
    model, tok = build_model(seed=0)
    with pytest.raises(ImportError, match="untempered"):
        ve.VLLMEngine.from_config(PolicyConfig(model="tiny", engine="vllm"), model, tok)


def test_one_vllm_floor():
    """pyproject's vllm extra, the README and the version gate state the same floor (MIN_VLLM_VERSION)."""
    import re
    import tomllib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        extra = tomllib.load(f)["project"]["optional-dependencies"]["vllm"]
    assert extra == [f"vllm>={ve.MIN_VLLM_VERSION}"]
    with open(os.path.join(root, "README.md")) as f:
        floors = set(re.findall(r"vllm>=([\d.]+\d)", f.read()))
    assert floors <= {ve.MIN_VLLM_VERSION}, floors
    below = ve.MIN_VLLM[:-1] + (ve.MIN_VLLM[-1] - 1,)
    with pytest.raises(ImportError, match=re.escape(ve.MIN_VLLM_VERSION)):
        ve.check_version(".".join(map(str, below)))
    ve.check_version(ve.MIN_VLLM_VERSION)
