"""vLLM engine for GPUs (``policy.engine=vllm``), colocated in the training process.

Written against vLLM's public API (checked line by line against vLLM 0.33.0's source): `vllm.LLM`
(``enable_sleep_mode``, ``logprobs_mode="processed_logprobs"``), `vllm.SamplingParams` (one per
prompt: ``n``, ``logprobs=0`` for the sampled token's logprob, ``stop``, ``seed``), ``LLM.generate``
on token-id prompts (so the trainer sees exactly the ids we tokenized), ``LLM.collective_rpc`` to
load the training model's weights into the engine, and ``LLM.sleep`` / ``LLM.wake_up`` to hand GPU
memory to the optimizer step.

What it guarantees, and why:

* **Per-prompt seeds.** With ``seed=s`` and ``n>1`` vLLM seeds sample j with s+j, for every prompt
  of a call, so one shared seed correlates the samples of all prompts (and of all steps when the
  base seed repeats). Each prompt i gets its own `SamplingParams` with seed
  ``((s mod 2^31) * 2^20 + i) * n``: the ranges [seed, seed+n) of two prompts, or of two steps with
  different s, never overlap.
* **Logprobs of the distribution we sample from.** ``processed_logprobs`` includes the temperature
  only from vLLM 0.10.2 on; older versions return untempered logprobs, which are wrong for GRPO at
  T != 1: vLLM < 0.10.2 is refused, never silently accepted. With top_p < 1 or top_k > 0 the
  processed logprobs are those of the truncated, renormalised distribution, while `token_logprobs`
  recomputes the full tempered one: such settings are **refused** (ValueError), so the importance
  ratio in the loss is never computed between two different distributions.
* **In process.** ``VLLM_ENABLE_V1_MULTIPROCESSING`` is set to 0 (a user's 1 is overridden with a
  warning), and after ``LLM()`` the engine core is checked to run in this process, since
  ``collective_rpc`` with a function otherwise fails or copies every weight through the CPU.
* **No RNG side effect.** ``LLM(seed=...)`` reseeds Python's, NumPy's and torch's global RNGs; their
  states are saved before and restored after, so the run's own seed stays in force.
* **A model with no folder** (``policy.model=tiny``) is saved to a temporary folder first and
  loaded from there (vLLM loads from a path or hub name only).
* **Sleep mode in training** (level 1: weights offloaded to CPU, KV cache dropped): the trainer
  calls `sleep()` after its rollouts; `update_weights` empties torch's cache, wakes the weights
  only, loads the new ones and resets the prefix cache; `generate` wakes the KV cache (and the
  weights if no update happened). The order is the one TRL and vLLM's docs use to avoid OOM.
* **Smaller:** temperature > 2 is refused before calling; greedy with n > 1 generates once and
  copies; finish reasons ``abort``/``error`` raise, ``repetition`` counts as truncated; each
  completion must carry exactly one logprob per token (no silent ``zip`` truncation); vLLM runs in
  ``policy.vllm_dtype`` (bfloat16 by default, whatever the trainer's dtype).

vLLM is imported lazily; without it, building the engine raises an ImportError naming the extra to
install (``pip install 'rlvr-gym[vllm]'``). Everything here but the GPU itself is tested with
vLLM-shaped objects (tests/test_vllm_engine.py); `bench/gpu_check.py` runs it on a GPU.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import warnings
from typing import Any, Sequence

from policies.base import Prompt, Rollout, SamplingParams, truncate_at_stop

MIN_VLLM_VERSION = "0.10.2"  # temperature is part of processed_logprobs from this version on; pyproject's
# vllm extra states the same floor (tests/test_vllm_engine.py checks that they agree)
MIN_VLLM = tuple(int(x) for x in MIN_VLLM_VERSION.split("."))
MAX_PROMPTS_PER_CALL = 1 << 20


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError("policy.engine=vllm needs vLLM on a CUDA machine: pip install 'rlvr-gym[vllm]' "
                          "(or use policy.engine=transformers)") from e
    return vllm


def check_version(version: str) -> None:
    """Refuse a vLLM whose processed logprobs are untempered (below MIN_VLLM_VERSION)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    if not m:
        raise ImportError(f"cannot read vLLM's version {version!r}; policy.engine=vllm needs vllm>={MIN_VLLM_VERSION}")
    got = tuple(int(x or 0) for x in m.groups())
    if got < MIN_VLLM:
        raise ImportError(f"vLLM {version} returns untempered logprobs, which are wrong for training at temperature "
                          f"!= 1: policy.engine=vllm needs vllm>={MIN_VLLM_VERSION} (pip install -U 'rlvr-gym[vllm]')")


def check_params(params: SamplingParams) -> None:
    """Settings whose sampling logprobs would not match `token_logprobs`, or that vLLM rejects."""
    if params.temperature > 2:
        raise ValueError(f"temperature={params.temperature} is above 2, which vLLM rejects")
    if params.top_p < 1 or params.top_k > 0:
        k = f" and SamplingParams.top_k={params.top_k}" if params.top_k else ""  # top_k: the Python API's, no key
        raise ValueError(f"top_p={params.top_p}{k}: with truncation vLLM's sampling logprobs are those of the "
                         f"truncated distribution, while the trainer recomputes the full tempered one; use top_p=1"
                         f"{' and SamplingParams.top_k=0' if k else ''} with policy.engine=vllm")


def prompt_seeds(seed: int | None, n_prompts: int, n: int) -> list[int | None]:
    """One seed per prompt; prompt i's samples use [seed_i, seed_i + n), disjoint across prompts and
    across calls with different base seeds."""
    if seed is None:
        return [None] * n_prompts
    if n_prompts > MAX_PROMPTS_PER_CALL:
        raise ValueError(f"at most {MAX_PROMPTS_PER_CALL} prompts per call with a seed, got {n_prompts}")
    base = (seed % (1 << 31)) * MAX_PROMPTS_PER_CALL
    return [(base + i) * max(n, 1) for i in range(n_prompts)]


def to_vllm_params(params: SamplingParams, vllm: Any, n_prompts: int = 1) -> list[Any]:
    """vLLM `SamplingParams`, one per prompt (seeds from `prompt_seeds`). Greedy asks for one sample:
    the caller copies it ``params.n`` times."""
    check_params(params)
    n = 1 if params.temperature == 0 else params.n
    return [vllm.SamplingParams(n=n, temperature=params.temperature, top_p=1.0, top_k=-1,
                                max_tokens=params.max_new_tokens, stop=list(params.stop) or None, seed=s, logprobs=0)
            for s in prompt_seeds(params.seed, n_prompts, n)]


def finish_reason(output: Any) -> str:
    """vLLM's finish reasons as ours: 'stop' is EOS or a stop string (``stop_reason`` tells which);
    'length' and 'repetition' are truncations; 'abort' and 'error' are failures, raised."""
    reason = output.finish_reason
    if reason in ("length", "repetition"):
        return "length"
    if reason == "stop":
        return "stop" if isinstance(output.stop_reason, str) else "eos"
    raise RuntimeError(f"vLLM ended a completion with finish_reason={reason!r}"
                       + (f" ({output.stop_reason})" if getattr(output, "stop_reason", None) else ""))


def to_rollouts(prompt: Prompt, request_output: Any, stop: Sequence[str] = ()) -> list[Rollout]:
    """One vLLM ``RequestOutput`` (n completions of one prompt) as `Rollout`s."""
    prompt_ids = tuple(request_output.prompt_token_ids)
    out = []
    for o in request_output.outputs:
        ids = tuple(o.token_ids)
        lps = None
        if o.logprobs is not None:  # one {token_id: Logprob} dict per generated token
            if len(o.logprobs) != len(ids):
                raise RuntimeError(f"vLLM returned {len(o.logprobs)} logprobs for {len(ids)} tokens")
            lps = tuple(float(step[t].logprob) for step, t in zip(o.logprobs, ids))
        reason = finish_reason(o)
        text = o.text
        if reason == "stop" and stop:
            text, _ = truncate_at_stop(text, stop)  # vLLM already drops the stop string; harmless if so
        out.append(Rollout(prompt, text, prompt_ids, ids, lps, reason))  # type: ignore[arg-type]
    return out


def _load_weights(worker: Any, weights: list[tuple[str, Any]]) -> None:  # runs inside each vLLM worker
    worker.model_runner.model.load_weights(weights=weights)


class _KeepRNG:
    """Save Python's, NumPy's and torch's global RNG states; restore them on exit."""

    def __enter__(self) -> "_KeepRNG":
        import numpy as np
        import torch

        self.py, self.np, self.torch = random.getstate(), np.random.get_state(), torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        return self

    def __exit__(self, *exc: Any) -> None:
        import numpy as np
        import torch

        random.setstate(self.py)
        np.random.set_state(self.np)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def model_source(cfg: Any, model: Any, tokenizer: Any) -> tuple[str, Any]:
    """A path or hub name vLLM can load ``model`` from; a model with no folder, or with LoRA adapters
    (merged), is saved to a temporary one first. Returns (source, temporary directory or None)."""
    from policies import lora

    src = getattr(model, "name_or_path", None) or ""
    if os.path.isdir(src) and not lora.enabled(model):
        return src, None
    if src and cfg.model != "tiny" and not os.path.exists(src) and not lora.enabled(model):
        return src, None  # a hub name
    tmp = tempfile.TemporaryDirectory(prefix="rlvr-vllm-model-")
    lora.save_merged(model, tokenizer, tmp.name)
    return tmp.name, tmp


def _check_in_process(llm: Any) -> None:
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and "Inproc" not in type(core).__name__:
        raise RuntimeError(f"vLLM's engine core runs in another process ({type(core).__name__}): weight sync needs it in "
                           f"this one; unset VLLM_ENABLE_V1_MULTIPROCESSING or set it to 0")


def launcher_kwargs(seed: int) -> dict[str, Any]:
    """Under torchrun (a process group of several ranks already up): one engine per rank on its own
    GPU, in this process, through vLLM's ``external_launcher`` (as TRL's colocate mode does), each
    rank seeded apart. Nothing in one process."""
    try:
        import torch.distributed as tdist
    except ImportError:
        return {}
    if not (tdist.is_available() and tdist.is_initialized()) or tdist.get_world_size() == 1:
        return {}
    return {"distributed_executor_backend": "external_launcher", "tensor_parallel_size": 1,
            "seed": seed + tdist.get_rank()}


class VLLMEngine:
    def __init__(self, llm: Any, tokenizer: Any, sleep_between: bool = True, vllm: Any = None):
        self.llm, self.tokenizer, self.sleep_between = llm, tokenizer, sleep_between
        self._vllm = vllm or _import_vllm()
        self._weights_asleep = self._kv_asleep = False
        self._tmp = None  # the temporary model folder, kept alive with the engine

    @classmethod
    def from_config(cls, cfg: Any, model: Any, tokenizer: Any) -> "VLLMEngine":
        vllm = _import_vllm()
        check_version(getattr(vllm, "__version__", ""))
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0") != "0":
            warnings.warn("VLLM_ENABLE_V1_MULTIPROCESSING is set to 0 for policy.engine=vllm: weight sync needs the "
                          "engine in this process", stacklevel=2)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        src, tmp = model_source(cfg, model, tokenizer)
        kwargs = dict(model=src, tokenizer=src, dtype=getattr(cfg, "vllm_dtype", "bfloat16"),
                      gpu_memory_utilization=cfg.gpu_memory_utilization, enable_sleep_mode=True, seed=cfg.seed,
                      enable_prefix_caching=True, logprobs_mode="processed_logprobs")
        if getattr(cfg, "max_model_len", 0):
            kwargs["max_model_len"] = cfg.max_model_len
        kwargs.update(launcher_kwargs(cfg.seed))
        with _KeepRNG():
            try:
                llm = vllm.LLM(**kwargs)
            except TypeError as e:
                if "logprobs_mode" in str(e):
                    raise ImportError(f"this vLLM has no logprobs_mode: policy.engine=vllm needs vllm>={MIN_VLLM_VERSION}") from e
                raise
        _check_in_process(llm)
        engine = cls(llm, tokenizer, vllm=vllm)
        engine._tmp = tmp
        return engine

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Rollout]]:
        from policies.hf import encode_prompt

        vparams = to_vllm_params(params, self._vllm, len(prompts))  # refusals before any GPU work
        self.wake()
        ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        outs = self.llm.generate([{"prompt_token_ids": x} for x in ids], vparams, use_tqdm=False)
        rollouts = [to_rollouts(p, o, params.stop) for p, o in zip(prompts, outs)]
        if params.temperature == 0 and params.n > 1:  # greedy: one sample, copied
            rollouts = [(rs * params.n)[:params.n] for rs in rollouts]
        return rollouts

    def update_weights(self, model: Any) -> None:
        """Copy the training model's current weights into the engine."""
        import torch

        from policies import lora

        if self._weights_asleep:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
            self._weights_asleep = False
        weights = lora.merged_parameters(model)  # a LoRA model's merged weights, under the plain model's names
        self.llm.collective_rpc(_load_weights, args=(weights,))
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """After rollouts: offload the weights and drop the KV cache, so the optimizer step has the memory."""
        if self.sleep_between and not (self._weights_asleep and self._kv_asleep):
            self.llm.sleep(level=1)
            self._weights_asleep = self._kv_asleep = True

    def wake(self) -> None:
        if self._weights_asleep:
            self.llm.wake_up(tags=["weights"])
            self._weights_asleep = False
        if self._kv_asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._kv_asleep = False

