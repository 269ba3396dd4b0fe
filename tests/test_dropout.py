"""Dropout is off in the training forward passes of the losses that compare logprobs (GRPO, PPO, DPO, KTO,
iterative DPO): the loss's logprobs are the sampler's, so the first ratio of an update is exactly 1."""

import torch

from algos import grpo
from policies import PolicyConfig, Rollout, load_model
from policies.hf import collate, token_logprobs, train_without_dropout


def dropout_model():
    """tiny-sft with attention dropout 0.5 (transformers applies it in training mode only)."""
    model, tok = load_model(PolicyConfig(model="tiny-sft"))
    model.config.attention_dropout = 0.5
    n = 0
    for m in model.modules():
        if isinstance(getattr(m, "attention_dropout", None), float):
            m.attention_dropout = 0.5
            n += 1
    assert n == model.config.num_hidden_layers
    return model, tok


def test_train_without_dropout_forward_equals_the_sampling_one():
    model, tok = dropout_model()
    b = collate([[5, 6, 7, 8, 9, 10]], [[11, 12, 13, 14, 15, 16, 17, 18]], tok.pad_token_id)
    with torch.no_grad():
        model.eval()
        want = token_logprobs(model, b, temperature=0.7)
        model.train()
        torch.manual_seed(0)
        noisy = token_logprobs(model, b, temperature=0.7)
        assert not torch.allclose(noisy, want, atol=1e-4)  # the model really has dropout in training mode
        train_without_dropout(model)
        assert model.training  # activation checkpointing (training mode only) stays available
        torch.testing.assert_close(token_logprobs(model, b, temperature=0.7), want, rtol=0, atol=0)


def test_grpo_update_ratio_is_one_on_a_model_with_dropout():
    model, tok = dropout_model()
    gen = torch.Generator().manual_seed(1)
    groups = []
    for g in range(2):
        prompt = torch.randint(5, 40, (4,), generator=gen).tolist()
        ros = []
        for i in range(4):
            comp = torch.randint(5, 40, (6,), generator=gen).tolist()
            model.eval()
            with torch.no_grad():  # the sampler's logprobs: eval mode, as every engine samples
                lp = token_logprobs(model, collate([prompt], [comp], tok.pad_token_id), temperature=0.7)[0].tolist()
            ros.append(Rollout(prompt="", text="", prompt_ids=tuple(prompt), completion_ids=tuple(comp),
                               logprobs=tuple(lp), finish_reason="stop"))
        groups.append((ros, torch.tensor([1.0, 0.0, 0.0, 1.0])))
    cfg = grpo.GRPOConfig(temperature=0.7, grad_clip=0.0, eps_low=1e-4, eps_high=1e-4, max_new_tokens=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    torch.manual_seed(0)
    stats = grpo.policy_update(model, opt, groups, cfg, tok.pad_token_id)
    assert stats["policy/clip_frac"] == [0.0]  # every ratio is 1 to within 1e-4 (batching noise is ~1e-5): no token clipped
