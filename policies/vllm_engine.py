"""vLLM engine for GPUs (``policy.engine=vllm``), colocated in the training process.

Written against vLLM's public API: `vllm.LLM` (with ``enable_sleep_mode``), `vllm.SamplingParams`
(``n``, ``logprobs=0`` for the sampled token's logprob, ``stop``, ``seed``), ``LLM.generate``
on token-id prompts (so the trainer sees exactly the ids we tokenized), ``LLM.collective_rpc``
to load the training model's weights into the engine, and ``LLM.sleep`` / ``LLM.wake_up`` to
hand GPU memory to the optimizer step between generations.

vLLM is imported lazily; without it, building the engine raises an ImportError naming the
extra to install (``pip install 'rlvr-gym[vllm]'``). Turning vLLM's outputs into `Rollout`s
(finish reasons, stop strings, logprobs) is `to_rollouts`, tested without a GPU.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from policies.base import Prompt, Rollout, SamplingParams, truncate_at_stop


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError("policy.engine=vllm needs vLLM on a CUDA machine: pip install 'rlvr-gym[vllm]' "
                          "(or use policy.engine=transformers)") from e
    return vllm


def finish_reason(output: Any) -> str:
    """vLLM says 'stop' for both EOS and a stop string (``stop_reason`` tells which) and 'length'."""
    if output.finish_reason == "length":
        return "length"
    return "stop" if isinstance(output.stop_reason, str) else "eos"


def to_rollouts(prompt: Prompt, request_output: Any, stop: Sequence[str] = ()) -> list[Rollout]:
    """One vLLM ``RequestOutput`` (n completions of one prompt) as `Rollout`s."""
    prompt_ids = tuple(request_output.prompt_token_ids)
    out = []
    for o in request_output.outputs:
        ids = tuple(o.token_ids)
        lps = None
        if o.logprobs is not None:  # one {token_id: Logprob} dict per generated token
            lps = tuple(float(step[t].logprob) for step, t in zip(o.logprobs, ids))
        reason = finish_reason(o)
        text = o.text
        if reason == "stop" and stop:
            text, _ = truncate_at_stop(text, stop)  # vLLM already drops the stop string; harmless if so
        out.append(Rollout(prompt, text, prompt_ids, ids, lps, reason))  # type: ignore[arg-type]
    return out


def to_vllm_params(params: SamplingParams, vllm: Any) -> Any:
    return vllm.SamplingParams(
        n=params.n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k if params.top_k > 0 else -1,
        max_tokens=params.max_new_tokens, stop=list(params.stop) or None, seed=params.seed, logprobs=0)


def _load_weights(worker: Any, weights: list[tuple[str, Any]]) -> None:  # runs inside each vLLM worker
    worker.model_runner.model.load_weights(weights=weights)


class VLLMEngine:
    def __init__(self, llm: Any, tokenizer: Any, sleep_between: bool = True):
        self.llm, self.tokenizer, self.sleep_between = llm, tokenizer, sleep_between
        self._vllm = _import_vllm()
        self._asleep = False

    @classmethod
    def from_config(cls, cfg: Any, model: Any, tokenizer: Any) -> "VLLMEngine":
        vllm = _import_vllm()
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # same process: weight sync by reference
        src = getattr(model, "name_or_path", None) or cfg.model
        kwargs = dict(model=src, tokenizer=src, dtype=cfg.dtype, gpu_memory_utilization=cfg.gpu_memory_utilization,
                      enable_sleep_mode=True, seed=cfg.seed, enable_prefix_caching=True,
                      # logprobs of the tempered distribution we sample from (what `token_logprobs` recomputes);
                      # vLLM's default is the raw model's
                      logprobs_mode="processed_logprobs")
        try:
            llm = vllm.LLM(**kwargs)
        except TypeError:  # a vLLM without logprobs_mode: raw logprobs, exact only at temperature 1
            kwargs.pop("logprobs_mode")
            llm = vllm.LLM(**kwargs)
        return cls(llm, tokenizer)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Rollout]]:
        from policies.hf import encode_prompt

        self.wake()
        ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        outs = self.llm.generate([{"prompt_token_ids": x} for x in ids], to_vllm_params(params, self._vllm),
                                 use_tqdm=False)
        return [to_rollouts(p, o, params.stop) for p, o in zip(prompts, outs)]

    def update_weights(self, model: Any) -> None:
        """Copy the training model's current weights into the engine."""
        self.wake()
        weights = [(n, p.detach()) for n, p in model.named_parameters()]
        self.llm.collective_rpc(_load_weights, args=(weights,))
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        if self.sleep_between and not self._asleep:
            self.llm.sleep(level=1)  # offload weights, free the KV cache for the training step
            self._asleep = True

    def wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False
