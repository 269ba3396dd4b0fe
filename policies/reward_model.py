"""Learned reward models: a causal LM with a one-output value head, scoring (prompt, response) pairs.

    rm = RewardModel.load("runs/rm")                       # a folder written by python -m algos.reward_model
    rm.score([prompt], ["<think>...</think><answer>4</answer>"])   # -> [1.73]

A reward model here is transformers' ``AutoModelForSequenceClassification`` with ``num_labels=1``
(``LlamaForSequenceClassification``, ``Qwen2ForSequenceClassification``, ...) on a causal LM's
body. The sequence is the prompt (through the tokenizer's chat template when it is chat messages,
as the policy sees it) followed by the response's tokens and the end-of-sequence token; the score
is the head applied to the final hidden state of the last token (the end-of-sequence token).
Batches are left-padded with position ids counted from each row's first real token, so the last
token is always the last column and padding never moves a score (`scores` computes it itself
rather than through transformers' pooling, which looks for the last non-pad token and would skip
an end-of-sequence token that doubles as the pad token, as SmolLM2's does).

Centring (``algos.reward_model center=true``): the mean score on the training responses is stored in
the folder's config.json as ``rlvr_reward_offset`` and subtracted by `RewardModel.score`.

Left out: multi-objective heads (num_labels > 1), per-token (process) rewards.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import torch

from policies.base import PolicyError, Prompt

OFFSET_KEY = "rlvr_reward_offset"  # config.json: subtracted from every score (centring)


def check_folder(path: str, key: str = "env.model") -> str:
    """``path`` as a folder holding a reward model (config.json naming a ...ForSequenceClassification with one
    label), or a `PolicyError` in one line: missing, a plain causal LM (no value head), several labels.
    Reads config.json only (no torch work). Returns the folder."""
    from policies.tiny import resolve_model_path

    folder = resolve_model_path(path) or path
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.isfile(cfg_path):
        full = os.path.abspath(os.path.expanduser(folder))
        raise PolicyError(f"{key}={path}: no reward-model folder there ({full} has no config.json); train one with "
                          f"python -m algos.reward_model data=pairs.jsonl out=DIR")
    with open(cfg_path) as f:
        conf = json.load(f)
    archs = conf.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise PolicyError(f"{key}={path} is a {', '.join(archs) or 'model'} without a value head (not a reward model: "
                          f"no ...ForSequenceClassification with num_labels=1); train one from it with python -m "
                          f"algos.reward_model data=pairs.jsonl policy.model={path} out=DIR")
    labels = conf.get("num_labels", len(conf.get("id2label") or {}) or 1)
    if labels != 1:
        raise PolicyError(f"{key}={path} has a value head with {labels} outputs; a reward model has one "
                          f"(num_labels=1), e.g. one written by python -m algos.reward_model")
    return folder


def from_causal_lm(name: str, device: str = "auto", dtype: str = "float32") -> tuple[Any, Any]:
    """A fresh reward model (value head initialised by transformers, the body from ``name``: a causal LM
    checkpoint, the shipped tiny-sft, or an existing reward model to train further) and its tokenizer."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from policies import check_local_model
    from policies.hf import resolve_device, resolve_dtype
    from policies.tiny import resolve_model_path

    if name == "tiny":
        raise PolicyError("policy.model=tiny is an untrained model: start a reward model from tiny-sft or a checkpoint folder")
    path = resolve_model_path(name) or name
    check_local_model(path, name)
    try:
        conf = AutoConfig.from_pretrained(path)
        conf.num_labels = 1
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, config=conf, dtype=resolve_dtype(dtype))
    except ValueError as e:  # no ...ForSequenceClassification for this architecture
        raise PolicyError(f"policy.model={name}: transformers has no sequence-classification head for this "
                          f"architecture ({str(e).splitlines()[0][:200]})") from None
    except OSError as e:
        raise PolicyError(f"cannot load policy.model={name!r}: {str(e).splitlines()[0][:200]}") from None
    _pad(model, tok)
    return model.to(resolve_device(device)), tok


def _pad(model: Any, tok: Any) -> None:
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model.config.pad_token_id = tok.pad_token_id


def _head(model: Any) -> Any:
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if head is None:
        raise PolicyError(f"{type(model).__name__} has no 'score' or 'classifier' head; reward models here are "
                          f"transformers' ...ForSequenceClassification of decoder models")
    return head


def _body(model: Any) -> Any:
    return getattr(model, model.base_model_prefix)


def scores(model: Any, rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> torch.Tensor:
    """The value head's output at the last token of each (prompt ids, response ids) row, [N], with the
    graph when gradients are on (training)."""
    seqs = [list(p) + list(r) for p, r in rows]
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = torch.tensor(s, dtype=torch.long)
        att[i, T - len(s):] = 1
    dev = next(model.parameters()).device
    ids, att = ids.to(dev), att.to(dev)
    pos = (att.cumsum(-1) - 1).clamp(min=0)
    hidden = _body(model)(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=False).last_hidden_state
    head = _head(model)
    return head(hidden[:, -1].to(head.weight.dtype)).squeeze(-1).float()


def response_ids(tok: Any, text: str) -> list[int]:
    """A response's tokens as the reward model reads them: the text, then the end-of-sequence token."""
    return tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


class RewardModel:
    """A trained reward model, for scoring: ``score(prompts, responses) -> list[float]`` (the offset
    subtracted), in batches of ``batch_size`` rows, without gradients."""

    def __init__(self, model: Any, tokenizer: Any, offset: float = 0.0, batch_size: int = 16, max_length: int = 0):
        self.model, self.tok, self.offset, self.batch_size = model.eval(), tokenizer, offset, batch_size
        self.max_length = max_length  # 0: no cut; else the prompt's first tokens are cut to fit

    @classmethod
    def load(cls, path: str, device: str = "auto", dtype: str = "float32", batch_size: int = 16,
             key: str = "env.model") -> "RewardModel":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from policies.hf import resolve_device, resolve_dtype

        folder = check_folder(path, key)
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=resolve_dtype(dtype))
        _pad(model, tok)
        offset = float(getattr(model.config, OFFSET_KEY, 0.0) or 0.0)
        return cls(model.to(resolve_device(device)), tok, offset, batch_size)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        from policies.hf import encode_prompt

        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        rows = [(encode_prompt(self.tok, p), response_ids(self.tok, r)) for p, r in zip(prompts, responses)]
        out: list[float] = []
        with torch.no_grad():
            for lo in range(0, len(rows), self.batch_size):
                out += (scores(self.model, rows[lo:lo + self.batch_size], self.tok.pad_token_id) - self.offset).tolist()
        return out
