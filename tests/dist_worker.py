"""One update of GRPO, SFT and DPO on a fixed global batch, in one process or under torchrun;
writes the loss, gradient norm, gradients and updated weights (rank 0) for tests/test_distributed.py.

    python tests/dist_worker.py OUT.pt
    torchrun --standalone --nproc_per_node=2 tests/dist_worker.py OUT.pt parallel=fsdp

The batch is global and the same in every run; each rank takes its share exactly as the
training modules do (whole groups for GRPO, contiguous examples for SFT, strided pairs for DPO),
through the same functions.
"""

import sys

import torch

from algos import dist, grpo, microbatch, ppo
from algos.common import update
from algos.preference import LossSettings, Pair, Thumb, kto_step, mismatched_prompts, pair_loss, pair_step
from algos.sft import sft_loss
from policies import PolicyConfig, Rollout, load_model
from policies.hf import collate, token_logprobs


def fixed_model():
    model, tok = load_model(PolicyConfig(model="tiny-sft"))
    return model, tok


def optimizer(model, lr=0.1):
    # plain SGD: the step is lr x the gradient, so the weights compare as closely as the gradients do (Adam's
    # first step, lr x sign(g), turns float noise in near-zero gradients into differences of 2 lr)
    return torch.optim.SGD(model.parameters(), lr=lr)


def full_grads_and_weights(model):
    grads, weights = {}, {}
    for name, p in model.named_parameters():
        g = p.grad
        if g is not None and hasattr(g, "full_tensor"):
            g = g.full_tensor()
        w = p.detach()
        if hasattr(w, "full_tensor"):
            w = w.full_tensor()
        grads[name] = None if g is None else g.detach().clone()
        weights[name] = w.clone()
    return grads, weights


def grpo_case(world, lr=0.1, **micro):
    """4 groups of 4 over 2 prompts' lengths; one group all-equal (left out of the pass), one truncated row."""
    model, tok = fixed_model()
    gen = torch.Generator().manual_seed(1)
    groups = []
    rewards = [[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 0.25, 0.0], [1.0, 1.0, 0.0, 0.75]]
    for g in range(4):
        prompt = torch.randint(5, 40, (3 + g,), generator=gen).tolist()
        ros = []
        for i in range(4):
            comp = torch.randint(5, 40, (2 + (g * 4 + i) % 5,), generator=gen).tolist()
            b = collate([prompt], [comp], tok.pad_token_id)
            with torch.no_grad():
                lp = (token_logprobs(model, b, temperature=0.7)[0] - 0.03 * (i + 1)).tolist()
            ros.append(Rollout(prompt="", text="", prompt_ids=tuple(prompt), completion_ids=tuple(comp), logprobs=tuple(lp),
                               finish_reason="length" if (g, i) == (0, 1) else "stop"))
        groups.append((ros, torch.tensor(rewards[g])))
    model = dist.prepare(model, world)
    opt = optimizer(model, lr)
    cfg = grpo.GRPOConfig(temperature=0.7, grad_clip=0.0, max_new_tokens=16, **micro)
    share = world.shard(len(groups), "groups", "groups")
    stats = grpo.policy_update(model, opt, groups[share], cfg, tok.pad_token_id)
    return model, stats["loss/policy"][0], stats["train/grad_norm"][0]


def sft_case(world, **micro):
    model, tok = fixed_model()
    gen = torch.Generator().manual_seed(2)
    rows = [(torch.randint(5, 40, (2 + i % 3,), generator=gen).tolist(),
             torch.randint(5, 40, (1 + (3 * i) % 7,), generator=gen).tolist()) for i in range(8)]
    model = dist.prepare(model, world)
    opt = optimizer(model)
    local = rows[world.shard(len(rows), "examples", "batch_size")]
    if micro:  # as algos.sft runs it: micro-batches, gradients accumulated
        mrows = microbatch.Rows([p for p, _ in local], [r for _, r in local], [None] * len(local))
        tokens = world.sum(mrows.tokens().sum().item())
        parts = []

        def loss_of(part):
            loss = sft_loss(model, part.collate(tok.pad_token_id, model.device)[0], tokens)
            parts.append(loss.item())
            return loss

        gn = microbatch.step(opt, model, mrows.split(microbatch.Limits(**micro)), loss_of, 0.0)
        return model, world.sum(sum(parts)), gn
    batch = collate([p for p, _ in local], [r for _, r in local], tok.pad_token_id)
    tokens = world.sum(batch.completion_mask.sum().item())
    loss = sft_loss(model, batch, tokens)
    gn = update(opt, model, loss, 0.0)
    return model, world.sum(loss.item()), gn


def dpo_case(world, **micro):
    model, tok = fixed_model()
    gen = torch.Generator().manual_seed(3)
    pairs = [Pair(torch.randint(5, 40, (2 + i % 3,), generator=gen).tolist(),
                  torch.randint(5, 40, (2 + i % 4,), generator=gen).tolist(),
                  torch.randint(5, 40, (1 + (5 * i) % 6,), generator=gen).tolist()) for i in range(7)]  # 7: uneven shares
    model = dist.prepare(model, world)
    ref = dist.frozen_copy(model, world)
    opt = optimizer(model)
    local = world.strided(pairs)
    if micro:  # as algos.dpo runs it: micro-batches of pairs, gradients accumulated
        gn, loss, _ = pair_step(opt, model, ref, local, tok.pad_token_id, LossSettings("dpo", beta=0.5), float(len(pairs)),
                                microbatch.Limits(**micro), 0.0)
        return model, world.sum(loss), gn
    loss, _ = pair_loss(model, ref, local, tok.pad_token_id, LossSettings("dpo", beta=0.5), count=float(len(pairs)))
    gn = update(opt, model, loss, 0.0)
    return model, world.sum(loss.item()), gn


def kto_case(world, **micro):
    """KTO on 5 examples (uneven: rank 1 holds 2, rank 0 3), strided as algos.dpo takes them; z over the
    minibatch's mismatched pairs (it was each rank's own)."""
    model, tok = fixed_model()
    gen = torch.Generator().manual_seed(4)
    thumbs = [Thumb(torch.randint(5, 40, (2 + i % 3,), generator=gen).tolist(),
                    torch.randint(5, 40, (2 + (3 * i) % 5,), generator=gen).tolist(), i % 3 != 1) for i in range(5)]
    model = dist.prepare(model, world)
    ref = dist.frozen_copy(model, world)
    with torch.no_grad():  # a sharper reference than the policy: z > 0 (KTO clamps it at 0), and it depends on the pairs
        ref.model.norm.weight.mul_(1.5)
    opt = optimizer(model)
    limits = microbatch.Limits(**micro) if micro else microbatch.Limits()
    gn, loss, stats = kto_step(opt, model, ref, world.strided(thumbs), tok.pad_token_id, LossSettings("kto", beta=0.5),
                               limits, 0.0, mismatched=mismatched_prompts(thumbs, world.rank, world.size))
    return model, world.sum(loss), gn


def ppo_case(world, **micro):
    """PPO's epochs over shuffled minibatches (2 epochs x 2 minibatches of 8 rows, contiguous shares as
    algos.ppo takes them): the one-process minibatches on any rank count (issue 26 #10)."""
    model, tok = fixed_model()
    gen = torch.Generator().manual_seed(5)
    data = []
    for i in range(8):
        prompt = torch.randint(5, 40, (2 + i % 3,), generator=gen).tolist()
        comp = torch.randint(5, 40, (2 + (3 * i) % 5,), generator=gen).tolist()
        with torch.no_grad():
            lp = token_logprobs(model, collate([prompt], [comp], tok.pad_token_id), temperature=0.7)[0] - 0.02 * i
        data.append((prompt, comp, lp, torch.randn(len(comp), generator=gen), torch.randn(len(comp), generator=gen)))
    model = dist.prepare(model, world)
    critic = ppo.Critic(world.full_copy if world.full_copy is not None else model)
    opt, copt = optimizer(model, 1e-3), torch.optim.SGD(critic.parameters(), lr=1e-3)
    local = data[world.shard(len(data), "rows", "rows")]
    rows = microbatch.Rows([d[0] for d in local], [d[1] for d in local], [None] * len(local),
                           {"old_logp": [d[2] for d in local], "adv": [d[3] for d in local], "returns": [d[4] for d in local],
                            "old_values": [torch.zeros(len(d[1])) for d in local]})
    cfg = ppo.PPOConfig(minibatches=2, ppo_epochs=2, grad_clip=0.0, temperature=0.7, **micro)
    stats = ppo.ppo_epochs(model, critic, opt, copt, rows, cfg, tok.pad_token_id, torch.Generator().manual_seed(7))
    return model, stats[0]["loss/policy"], stats[-1]["loss/value"]


def rs_case(world, **micro):
    """Rejection sampling's fine-tuning of a round (algos.rejection_sampling.finetune): 2 epochs over 7 accepted
    completions (one with a tool-result mask) in minibatches of 3, shuffled per round: uneven strided shares
    (2 and 1 rows; 1 and 0 in the last minibatch), each minibatch's gradient taken after the last one's update."""
    from algos.rejection_sampling import RejectionSamplingConfig, finetune

    model, tok = fixed_model()
    gen = torch.Generator().manual_seed(6)
    rows = []
    for i in range(7):
        prompt = torch.randint(5, 40, (2 + i % 3,), generator=gen).tolist()
        comp = torch.randint(5, 40, (2 + (3 * i) % 5,), generator=gen).tolist()
        rows.append((prompt, comp, [1, 0] + [1] * (len(comp) - 2) if i == 3 else None))
    model = dist.prepare(model, world)
    opt = optimizer(model, 0.01)
    cfg = RejectionSamplingConfig(epochs=2, batch_size=3, lr=0.01, warmup_steps=0, grad_clip=0.0, rounds=1, **micro)
    losses, updates = finetune(model, opt, rows, cfg, world, 0, 0, tok.pad_token_id)
    assert updates == 6, updates
    return model, losses[-1], losses[0]


def idpo_case(world, **micro):
    """Iterative DPO's training of a round (algos.iterative_dpo.train_round): 2 epochs over 7 pairs in minibatches
    of 3 against a frozen reference, shuffled per round; uneven strided shares as in rs_case."""
    from algos.iterative_dpo import IterativeDPOConfig, train_round

    model, tok = fixed_model()
    gen = torch.Generator().manual_seed(7)
    pairs = [Pair(torch.randint(5, 40, (2 + i % 3,), generator=gen).tolist(),
                  torch.randint(5, 40, (2 + i % 4,), generator=gen).tolist(),
                  torch.randint(5, 40, (1 + (5 * i) % 6,), generator=gen).tolist()) for i in range(7)]
    model = dist.prepare(model, world)
    ref = dist.frozen_copy(model, world)
    opt = optimizer(model, 1e-3)
    cfg = IterativeDPOConfig(epochs=2, batch_size=3, lr=1e-3, warmup_steps=0, grad_clip=0.0, rounds=1, beta=0.5)
    stats, updates = train_round(model, ref, opt, pairs, cfg, LossSettings("dpo", beta=0.5),
                                 microbatch.Limits(**micro) if micro else microbatch.Limits(), world, 0, 0, tok.pad_token_id)
    assert updates == 6, updates
    return model, stats["loss/dpo"][-1], stats["loss/dpo"][0]


def main():
    out = sys.argv[1]
    parallel = dict(a.split("=", 1) for a in sys.argv[2:]).get("parallel", "auto")
    world = dist.init(parallel)
    torch.manual_seed(0)
    results = {}
    # "/micro": the same update in micro-batches (rank 1 has fewer of them than rank 0 for grpo and dpo: under fsdp it
    # runs an empty pass to match), gradients accumulated and reduced over ranks once
    for name, case, micro in (("grpo", grpo_case, {}), ("sft", sft_case, {}), ("dpo", dpo_case, {}),
                              ("grpo/micro", grpo_case, {"micro_batch_size": 2, "micro_batch_tokens": 40}),
                              ("sft/micro", sft_case, {"rows": 1}), ("dpo/micro", dpo_case, {"tokens": 24}),
                              # issue 26 #10: KTO's z over every rank's examples, GRPO's minibatches the one-process split
                              ("kto", kto_case, {}), ("kto/micro", kto_case, {"tokens": 12}),
                              # (a small step: the second minibatch's gradient is taken after the first's update)
                              ("grpo/minibatches", grpo_case, {"minibatches": 2, "lr": 1e-3}),
                              ("grpo/minibatches/micro", grpo_case, {"minibatches": 2, "micro_batch_size": 2, "lr": 1e-3}),
                              ("ppo", ppo_case, {}), ("ppo/micro", ppo_case, {"micro_batch_size": 1}),
                              # rejection sampling's and iterative DPO's round of minibatches ("grad_norm": the first loss)
                              ("rs", rs_case, {}), ("rs/micro", rs_case, {"micro_batch_size": 1}),
                              ("idpo", idpo_case, {}), ("idpo/micro", idpo_case, {"tokens": 24})):
        model, loss, gn = case(world, **micro)
        grads, weights = full_grads_and_weights(model)
        # every rank holds the same weights after the update (replicas in step; under fsdp, the same gathered model)
        sums = world.gather([float(sum(w.double().sum() for w in weights.values()))])
        results[name] = {"loss": loss, "grad_norm": gn, "grads": grads, "weights": weights, "rank_weight_sums": sums}
    from policies.vllm_engine import launcher_kwargs

    ranks_kwargs = world.gather([launcher_kwargs(5)])  # what each rank's vLLM engine would be given
    if world.is_main:
        torch.save({"world_size": world.size, "parallel": world.parallel, "results": results,
                    "vllm_kwargs": ranks_kwargs}, out)
    world.close()


if __name__ == "__main__":
    main()
