"""One LoRA update of GRPO (with the KL term, so the reference is used) and of DPO on a fixed global
batch, in one process or under torchrun; writes the loss, gradient norm, gradients and weights (rank 0)
for tests/test_distributed.py. The reference is the base with the adapters off (`policies.lora.Reference`).

    python tests/dist_lora_worker.py OUT.pt
    torchrun --standalone --nproc_per_node=2 tests/dist_lora_worker.py OUT.pt parallel=fsdp
"""

import sys

import torch

from algos import dist, grpo
from algos.common import update
from algos.preference import LossSettings, Pair, pair_loss
from policies import PolicyConfig, Rollout, load_model, lora
from policies.hf import collate, token_logprobs
from tests.dist_worker import full_grads_and_weights


def lora_model():
    """tiny-sft with rank-4 adapters whose A and B are drawn from a fixed seed (B non-zero: the adapted model
    differs from its base, so the reference and the policy differ)."""
    model, tok = load_model(PolicyConfig(model="tiny-sft"), lora.LoRAConfig(r=4, alpha=8))
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for _, layer in lora.layers(model):
            for p in (layer.lora_A[lora.NAME].weight, layer.lora_B[lora.NAME].weight):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model, tok


def optimizer(model):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)


def grpo_case(world):
    model, tok = lora_model()
    gen = torch.Generator().manual_seed(1)
    rewards = [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.25, 0.0]]
    groups = []
    for g in range(2):
        prompt = torch.randint(5, 40, (3 + g,), generator=gen).tolist()
        ros = []
        for i in range(4):
            comp = torch.randint(5, 40, (2 + (g * 4 + i) % 5,), generator=gen).tolist()
            with torch.no_grad():
                lp = (token_logprobs(model, collate([prompt], [comp], tok.pad_token_id), temperature=0.7)[0] - 0.02).tolist()
            ros.append(Rollout(prompt="", text="", prompt_ids=tuple(prompt), completion_ids=tuple(comp), logprobs=tuple(lp),
                               finish_reason="stop"))
        groups.append((ros, torch.tensor(rewards[g])))
    model = dist.prepare(model, world)
    ref = dist.frozen_copy(model, world)
    assert isinstance(ref, lora.Reference)
    opt = optimizer(model)
    cfg = grpo.GRPOConfig(temperature=0.7, grad_clip=0.0, max_new_tokens=16, beta=0.1)
    stats = grpo.policy_update(model, opt, groups[world.shard(len(groups), "groups", "groups")], cfg, tok.pad_token_id, ref)
    return model, stats["loss/policy"][0], stats["train/grad_norm"][0]


def dpo_case(world):
    model, tok = lora_model()
    gen = torch.Generator().manual_seed(3)
    pairs = [Pair(torch.randint(5, 40, (2 + i % 3,), generator=gen).tolist(),
                  torch.randint(5, 40, (2 + i % 4,), generator=gen).tolist(),
                  torch.randint(5, 40, (1 + (5 * i) % 6,), generator=gen).tolist()) for i in range(6)]
    model = dist.prepare(model, world)
    ref = dist.frozen_copy(model, world)
    opt = optimizer(model)
    local = world.strided(pairs)
    loss, _ = pair_loss(model, ref, local, tok.pad_token_id, LossSettings("dpo", beta=0.5), count=float(len(pairs)))
    gn = update(opt, model, loss, 0.0)
    return model, world.sum(loss.item()), gn


def main():
    out = sys.argv[1]
    parallel = dict(a.split("=", 1) for a in sys.argv[2:]).get("parallel", "auto")
    world = dist.init(parallel)
    torch.manual_seed(0)
    results = {}
    for name, case in (("grpo", grpo_case), ("dpo", dpo_case)):
        model, loss, gn = case(world)
        grads, weights = full_grads_and_weights(model)
        sums = world.gather([float(sum(w.double().sum() for w in weights.values()))])
        results[name] = {"loss": loss, "grad_norm": gn, "grads": grads, "weights": weights, "rank_weight_sums": sums}
    if world.is_main:
        torch.save({"world_size": world.size, "parallel": world.parallel, "results": results}, out)
    world.close()


if __name__ == "__main__":
    main()
