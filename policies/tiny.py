"""The built-in tiny model: a real Llama-architecture causal LM with a character-level tokenizer.

It works offline, trains on a laptop CPU in minutes, and loads with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` like any checkpoint.

* Tokenizer: built with the `tokenizers` library: one token per character of printable
  ASCII (plus newline), and single tokens for the chat and format markers (``<|user|>``,
  ``<|assistant|>``, ``<|end|>``, ``<think>``, ``</think>``, ``<answer>``, ``</answer>``).
* Chat template: ``<|user|>{question}<|assistant|>{answer}<|end|>``. It knows the
  think/answer format, so it drops system messages (the format instruction would only
  cost tokens; the model learns the format in the SFT cold start).
* ``tiny`` is a fresh, seeded random initialisation; ``tiny-sft`` is the shipped cold-start
  checkpoint (``policies/assets/tiny-sft``), made by ``python -m algos.sft env=math``.
"""

from __future__ import annotations

import os
import string

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
SHIPPED = {"tiny-sft": os.path.join(ASSETS, "tiny-sft")}

SPECIAL = ["<pad>", "<unk>", "<|end|>", "<|user|>", "<|assistant|>"]
MARKERS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}<|user|>{{ m['content'] }}"
    "{%- elif m['role'] == 'assistant' -%}<|assistant|>{{ m['content'] }}<|end|>"
    "{%- endif -%}"  # system messages are dropped: the model knows the format
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)

# model size: ~0.8M parameters, 3 MB in fp32
TINY_CONFIG = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=4, max_position_embeddings=512, rope_theta=10000.0, tie_word_embeddings=True)


def build_tokenizer():
    """The character-level tokenizer, as a `transformers.PreTrainedTokenizerFast`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]  # printable ASCII, space and newline
    vocab = {tok: i for i, tok in enumerate(SPECIAL + MARKERS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one token per character
    tok.decoder = decoders.Fuse()  # join characters back without spaces
    tok.add_special_tokens(SPECIAL)
    tok.add_tokens(MARKERS)  # whole-tag tokens; decoded as text
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<pad>", unk_token="<unk>",
                                   padding_side="left", clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(seed: int = 0, **overrides):
    """A fresh tiny Llama (seeded), with the tokenizer it goes with."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=None, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **{**TINY_CONFIG, **overrides})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, tok


def resolve_model_path(name: str) -> str | None:
    """The local folder for a built-in name (``tiny-sft``), or None if ``name`` is not built in."""
    return SHIPPED.get(name)
