"""LoRA through peft: low-rank adapters on a transformers model, its own weights frozen.

    python -m algos.grpo env=math lora.r=16 lr=1e-3          # any algos module; lora.r=0 (default): full fine-tuning
    python -m policies merge RUN_DIR_OR_CHECKPOINT out=DIR    # a merged Hugging Face folder (no peft needed to load it)

What happens where:

* `attach` puts peft's LoRA layers into the model in place (``peft.inject_adapter_in_model``) on
  ``target_modules`` (every linear layer whose name ends so); only the adapters require
  gradients. The model keeps its transformers class, so everything that reads it (the chunked
  logprobs, the lean decoder, FSDP's decoder layers, gradient checkpointing, the PPO critic's
  copy of the body) works as before. (transformers' own ``add_adapter`` does the same but demands
  a newer peft than PyPI has.) Each layer computes ``W x + (alpha / r) B A dropout(x)``; B starts
  at zero, so the adapted model starts as the base.
* The frozen reference of KL (GRPO ``beta``, PPO ``kl_coef``) and of DPO/KTO/iterative DPO is
  the same module run with its adapters switched off (`Reference`): no second copy of the weights.
  Iterative DPO's refresh keeps a copy of the adapter alone, added back by forward hooks.
* Sampling with the transformers engine uses the adapted model: the lean decoder fuses each
  projection's merged weight ``W + (alpha / r) B A`` (`effective_weight`) at every ``generate``
  call (it re-fuses the live weights there anyway); the generic path runs the LoRA layers.
* Generation servers and vLLM get the merged weights under the model's original parameter names
  (`merged_state_dict`), through the verified weight sync; vLLM's NCCL transfer reads the module
  itself and is refused for a LoRA model.
* Checkpoints hold the adapter alone, in peft's format (``adapter_config.json`` naming the base
  model, ``adapter_model.safetensors``; `save_adapter`), so ``peft.PeftModel.from_pretrained``
  reads them too. `policies.load_model` on such a folder loads the base and then the adapter:
  kept apart and trainable with ``lora.r > 0`` (a resume; a new run from it continues that adapter,
  its reference being the base), merged into the weights otherwise (evaluation, full fine-tuning).

Left out: LoRA on embeddings or other non-linear layers, DoRA, rsLoRA, QLoRA (quantised bases),
several adapters at once, and vLLM's own LoRA serving (merged weights keep one code path for the
server and vLLM engines and cost nothing at sampling time).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Any, Iterator

import torch

from policies.base import PolicyError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
NAME = "default"  # peft's name of the one adapter
_PEFT_PREFIX = "base_model.model."  # the key prefix of peft's saved adapters (a PeftModel wraps the model twice)


@dataclasses.dataclass
class LoRAConfig:
    r: int = 0
    """LoRA rank: train rank-r adapters on target_modules with the model's own weights frozen (e.g. 16; 0: off, full fine-tuning). Raise lr with it (e.g. 1e-3 on the tiny model, 1e-4 to 2e-4 on real ones)"""
    alpha: float = 32.0
    """LoRA scale numerator: the adapter's update is (alpha / r) B A"""
    dropout: float = 0.0
    """dropout on the adapters' input while training (0 keeps the training forward equal to the sampling one, which RL's ratios assume)"""
    target_modules: list[str] = dataclasses.field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """names (the last part, or a dotted suffix) of the linear layers to adapt: by default the attention and MLP projections of Llama, Qwen2 and Mistral-style models and the built-in tiny model"""


def enabled(model: Any) -> bool:
    """Whether ``model`` carries LoRA adapters (cheap: no peft import)."""
    return bool(getattr(model, "peft_config", None))


def layers(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every LoRA layer."""
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def attach(model: Any, cfg: LoRAConfig, base: str) -> Any:
    """Fresh adapters on ``model`` (in place; returned), everything else frozen. ``base``: the name the
    model was loaded by (``policy.model``), recorded in checkpoints to load the base again."""
    if cfg.r < 0 or cfg.alpha <= 0 or not 0 <= cfg.dropout < 1:
        raise PolicyError(f"lora.r={cfg.r}, lora.alpha={cfg.alpha}, lora.dropout={cfg.dropout}: use r > 0 (0: LoRA off), "
                          f"alpha > 0 and 0 <= dropout < 1")
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    targets = list(cfg.target_modules)
    picked = [n for n in linear if any(_matches(n, t) for t in targets)]
    if not targets or not picked:
        kinds = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise PolicyError(f"lora.target_modules={','.join(targets) or '[]'} matches no linear layer of {type(model).__name__}; "
                          f"its linear layers are named {','.join(kinds)}: pick from those, e.g. "
                          f"lora.target_modules={','.join(k for k in kinds if k not in ('lm_head', 'score')) or kinds[0]}")
    others = [n for n, m in model.named_modules() if any(_matches(n, t) for t in targets) and n not in picked
              and not any(n.startswith(p + ".") for p in picked)]
    if others:  # peft would adapt embeddings and convolutions too; the merged weights here handle linear layers only
        raise PolicyError(f"lora.target_modules={','.join(targets)} also matches {others[0]} "
                          f"({type(model.get_submodule(others[0])).__name__}), not a linear layer; LoRA here adapts "
                          f"linear layers only: name the projections")
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:
        raise ImportError(f"lora.r={cfg.r} needs peft: pip install 'rlvr-gym[train]' (or pip install peft)") from e

    pc = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, bias="none")
    inject_adapter_in_model(pc, model, NAME)
    model.peft_config[NAME].base_model_name_or_path = _base_name(base)
    return model


def _base_name(model: str) -> str:
    """``policy.model`` as a checkpoint can find it again from anywhere: local paths made absolute."""
    return os.path.abspath(model) if os.path.exists(model) else model


# ---------------------------------------------------------------------- merged weights


def effective_weight(module: Any) -> torch.Tensor:
    """The weight a linear layer applies: its own, or (a LoRA layer with its adapters on) W + (alpha / r) B A."""
    base = getattr(module, "base_layer", None)
    if base is None:
        return module.weight
    w = base.weight
    if module.disable_adapters or module.merged:
        return w
    for name in module.active_adapters:
        if name in module.lora_A:
            w = w + module.get_delta_weight(name).to(w.dtype)
    return w


def merged_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The state dict of the plain model the adapted one computes: each adapted layer's merged weight
    under its original name (``...q_proj.weight``), the adapters' own tensors left out. A model
    without LoRA: its ``state_dict()``."""
    sd = model.state_dict()
    if not enabled(model):
        return sd
    out = {k.replace(".base_layer.", "."): v for k, v in sd.items() if ".lora_" not in k}
    with torch.no_grad():
        for name, m in layers(model):
            out[f"{name}.weight"] = effective_weight(m).detach()
    return out


def merged_parameters(model: Any) -> list[tuple[str, torch.Tensor]]:
    """``model.named_parameters()`` of the plain model (tied weights once), merged: what vLLM's weight loader takes."""
    if not enabled(model):
        return [(n, p.detach()) for n, p in model.named_parameters()]
    sd = merged_state_dict(model)
    names = [n.replace(".base_layer.", ".") for n, _ in model.named_parameters() if ".lora_" not in n]
    return [(n, sd[n]) for n in names]


def merge(model: Any) -> Any:
    """Fold the adapters into the weights and drop the LoRA layers, in place: a plain model again."""
    if not enabled(model):
        return model
    with torch.no_grad():
        for name, m in layers(model):
            m.get_base_layer().weight.copy_(effective_weight(m))
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, m.get_base_layer())
    del model.peft_config
    return model


def save_merged(model: Any, tokenizer: Any, out: str) -> None:
    """A Hugging Face folder of the merged model (loadable without peft), the model itself unchanged."""
    model.save_pretrained(out, state_dict=merged_state_dict(model))
    if tokenizer is not None:
        tokenizer.save_pretrained(out)


# ---------------------------------------------------------------------- the reference


@contextlib.contextmanager
def adapters_off(model: Any) -> Iterator[None]:
    """Run ``model`` as its base inside the block. peft's own switch (``enable_adapters``) also flips the
    adapters' ``requires_grad``, mid-step, on the parameters being trained; this sets the flag alone."""
    found = layers(model)
    before = [m._disable_adapters for _, m in found]
    for _, m in found:
        m._disable_adapters = True
    try:
        yield
    finally:
        for (_, m), b in zip(found, before):
            m._disable_adapters = b


class Reference:
    """The frozen reference of a LoRA policy, without a second copy of the weights: ``model`` called
    with its adapters switched off (the base: the starting weights), plus, after `load_state_dict`
    (iterative DPO's refresh, or its resume), a frozen copy of an adapter, added to each adapted
    layer's output by forward hooks. Anything else (``config``, ``parameters``, ...) is the model's.
    Build it with `reference`."""

    def __init__(self, model: Any):
        self.model = model
        self.copied: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}  # layer -> (A, B, alpha / r)

    def __getattr__(self, name: str) -> Any:
        if name in ("model", "copied"):
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        hooks = []
        for name, m in layers(self.model):
            if name in self.copied:
                a, b, scale = self.copied[name]
                hooks.append(m.register_forward_hook(
                    lambda mod, inp, out, a=a, b=b, s=scale: out + s * (inp[0].to(a.dtype) @ a.T @ b.T).to(out.dtype)))
        try:
            with adapters_off(self.model):
                return self.model(*args, **kwargs)
        finally:
            for h in hooks:
                h.remove()

    def eval(self) -> "Reference":
        return self

    def requires_grad_(self, flag: bool = True) -> "Reference":
        return self  # nothing of its own to train: the base is frozen, the copied adapter is not a parameter

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The copied adapter, keyed as in the model's state dict (empty: the reference is the base)."""
        out = {}
        for name, (a, b, _) in self.copied.items():
            out[f"{name}.lora_A.{NAME}.weight"], out[f"{name}.lora_B.{NAME}.weight"] = a, b
        return out

    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Copy the adapter out of a state dict of the model (``dist.full_state_dict(model)``, or `state_dict`)."""
        copied = {}
        for name, m in layers(self.model):
            ka, kb = f"{name}.lora_A.{NAME}.weight", f"{name}.lora_B.{NAME}.weight"
            if ka in sd and kb in sd:
                a, b = (sd[k].detach().to(m.lora_A[NAME].weight.device).clone() for k in (ka, kb))
                copied[name] = (a, b, float(m.scaling[NAME]))
        if sd and not copied:
            raise ValueError("this state dict holds no adapter of the reference's model")
        self.copied = copied


_REFERENCE_TYPES: dict[type, type] = {}


def reference(model: Any) -> Reference:
    """The `Reference` of ``model``. Its type is a subclass per model class: `policies.hf` caches a
    model's forward signature by type(model)."""
    cls = _REFERENCE_TYPES.setdefault(type(model), type(f"Reference_{type(model).__name__}", (Reference,), {}))
    return cls(model)


# ---------------------------------------------------------------------- checkpoints


def is_adapter(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ADAPTER_CONFIG))


def base_of(path: str) -> str:
    """The base model an adapter folder was trained on (as ``policy.model`` named it)."""
    with open(os.path.join(path, ADAPTER_CONFIG)) as f:
        base = json.load(f).get("base_model_name_or_path")
    if not base:
        raise FileNotFoundError(f"{path}/{ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    return base


def save_adapter(model: Any, path: str) -> None:
    """The adapter in peft's format: ``adapter_config.json`` and ``adapter_model.safetensors``."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    model.peft_config[NAME].save_pretrained(path)
    sd = get_peft_model_state_dict(model, adapter_name=NAME, save_embedding_layers=False)  # no embeddings adapted
    save_file({_PEFT_PREFIX + k: v.detach().contiguous().cpu() for k, v in sd.items()},
              os.path.join(path, ADAPTER_WEIGHTS), metadata={"format": "pt"})


def load_adapter(model: Any, path: str, trainable: bool) -> Any:
    """The adapter of ``path`` on ``model`` (its base): kept apart and trainable, or merged into the weights."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    pc = LoraConfig.from_pretrained(path)
    pc.inference_mode = False
    inject_adapter_in_model(pc, model, NAME)
    sd = {k.removeprefix(_PEFT_PREFIX): v for k, v in load_file(os.path.join(path, ADAPTER_WEIGHTS)).items()}
    result = set_peft_model_state_dict(model, sd, adapter_name=NAME)
    missing = [k for k in result.missing_keys if ".lora_" in k]
    if result.unexpected_keys or missing:
        raise FileNotFoundError(f"{path}: the adapter does not fit its base {base_of(path)} "
                                f"(unexpected {list(result.unexpected_keys)[:3]}, missing {missing[:3]})")
    return model if trainable else merge(model)


def latest_checkpoint(path: str) -> str:
    """``path`` itself (a checkpoint folder), or a run folder's last checkpoint."""
    marker = os.path.join(path, "checkpoints", "latest")
    if os.path.isfile(marker):
        with open(marker) as f:
            return os.path.join(path, "checkpoints", f.read().strip())
    return path


def export_merged(src: str, out: str, dtype: str = "float32") -> str:
    """A run folder's last checkpoint (or a checkpoint folder) as a merged Hugging Face folder ``out``."""
    from policies import PolicyConfig, load_model

    ckpt = latest_checkpoint(src)
    if not os.path.isdir(ckpt):
        raise FileNotFoundError(f"{src!r} is neither a checkpoint folder nor a run folder with checkpoints")
    model, tok = load_model(PolicyConfig(model=ckpt, device="cpu", dtype=dtype))  # an adapter comes back merged
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@dataclasses.dataclass
class MergeConfig:
    out: str = ""
    """the folder to write: config.json, model.safetensors and the tokenizer, loadable by transformers without peft"""
    dtype: str = "float32"
    """float32, bfloat16 or float16: the dtype of the weights written"""


def merge_main(argv: list[str]) -> None:
    """``python -m policies merge RUN_DIR_OR_CHECKPOINT out=DIR [dtype=bfloat16]``."""
    from policies.cli import parse_keys

    prog = "python -m policies merge RUN_DIR_OR_CHECKPOINT"
    src = [a for a in argv if "=" not in a and not a.startswith("-")]
    cfg = parse_keys([a for a in argv if a not in src], {"": MergeConfig}, prog=prog)[""]
    if len(src) != 1 or not cfg.out:
        raise SystemExit(f"error: usage: {prog} out=DIR (one run folder or checkpoint folder, and out=)")
    export_merged(src[0], cfg.out, cfg.dtype)
    print(f"merged {latest_checkpoint(src[0])} into {cfg.out}")
