"""Many processes: data parallel and FSDP2 under ``torchrun``, with no launcher of our own.

    torchrun --nproc_per_node=2 -m algos.grpo env=math                  # 2 processes, data parallel
    torchrun --nproc_per_node=8 -m algos.grpo ... parallel=fsdp         # weights sharded per decoder layer
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 -m algos.grpo ...

A plain ``python -m algos.X`` is one process: ``world()`` is then a world of one and every
function here is the identity (no process group, no collective, the code paths of before).

What a rank does (``parallel=ddp``, the default under torchrun):

* it samples and scores its share of the step's prompts (whole groups, never split), and
  trains on its share of the rows;
* every loss is normalised by the count of the *whole step* (tokens, rows or pairs summed
  over ranks, ``World.sum``), and gradients are summed over ranks with one bucketed
  all-reduce per optimizer step: the update is that of one process holding the whole batch;
* rewards and metrics are gathered before logging; held-out evaluation is split over ranks.

``parallel=fsdp`` shards the trained model with ``torch.distributed.fsdp.fully_shard``, one
unit per decoder layer plus the root (mixed precision bf16/fp32 on GPU). Generation runs on a
full, unsharded copy of the weights per rank (as vLLM would receive them), refreshed after
every update: ranks sample different lengths, and a sharded model needs every rank in every
forward pass. Checkpoints are gathered into an ordinary Hugging Face folder.

Backends: gloo on CPU, NCCL on GPU (``dist_backend=auto``). Every collective has the timeout
``dist_timeout``; a rank that dies makes torchrun stop the others. Rank 0 alone writes the run
folder, the logs, the progress bar and the checkpoints; every rank restores its own RNG.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import os
from typing import Any, Sequence

import torch

from algos.config import ConfigError


class DistError(ConfigError):
    """A bad multi-process setup, named with its fix (every rank sees it; rank 0 says it)."""


@dataclasses.dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: str | None = None
    parallel: str = "none"  # none (one process) | ddp | fsdp
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    full_copy: Any = None  # fsdp: the unsharded model generation and checkpoints use
    updates: int = 0  # optimizer steps taken in this process (algos.common.update)
    main_only_calls: int = 0  # `main_only` calls so far (each its own key in the store)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ collectives (identities in one process)
    def _comm_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def sum(self, x: Any) -> Any:
        """Sum of a number (or tensor) over ranks; the same type back."""
        if not self.distributed:
            return x
        import torch.distributed as tdist

        is_tensor = isinstance(x, torch.Tensor)
        t = (x.detach().clone() if is_tensor else torch.tensor(float(x), dtype=torch.float64)).to(self._comm_device())
        tdist.all_reduce(t)
        if is_tensor:
            return t.to(x.device)
        return t.item()

    def mean(self, x: float) -> float:
        return self.sum(x) / self.size

    def any(self, flag: bool) -> bool:
        return self.sum(float(bool(flag))) > 0

    def gather(self, items: Sequence[Any]) -> list[Any]:
        """Every rank's list, concatenated in rank order (on every rank)."""
        if not self.distributed:
            return list(items)
        import torch.distributed as tdist

        out: list[Any] = [None] * self.size
        tdist.all_gather_object(out, list(items))
        return [x for part in out for x in part]

    def gather_counts(self, n: int) -> list[int]:
        return [int(c) for c in self.gather([n])]

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's object, on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as tdist

        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as tdist

            tdist.barrier()

    def main_only(self, what: str, fn: Any, timeout: float) -> Any:
        """``fn()`` on rank 0 alone (the alignment-tax suite), the other ranks waiting for it explicitly:
        each says on stderr what it waits for and for how long at most, again every minute, and stops
        with a `DistError` (one line, every rank) when rank 0 has not finished within ``timeout``
        (``dist_timeout``) or failed (its error in a word). The wait goes through the process group's
        store, not a collective, so it is its own bound. Returns ``fn()``'s result on rank 0, None on the
        others; one process: ``fn()``."""
        if not self.distributed:
            return fn()
        import sys
        import time

        import torch.distributed as tdist

        store = tdist.distributed_c10d._get_default_store()
        key = f"rlvr/main_only/{self.main_only_calls}"
        self.main_only_calls += 1
        if self.is_main:
            try:
                out = fn()
            except BaseException as e:
                store.set(key, f"error: {type(e).__name__}: {e}"[:500])
                raise
            store.set(key, "ok")
            return out
        t0 = time.monotonic()
        print(f"[rank {self.rank}] waiting for rank 0's {what} (at most {timeout:.0f} s: dist_timeout)", file=sys.stderr,
              flush=True)
        while True:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                e = DistError(f"rank 0's {what} did not finish in {timeout:.0f} s (dist_timeout); raise dist_timeout or "
                              f"make it shorter")
                e.rank_local = True  # type: ignore[attr-defined]  # every rank says it
                raise e
            try:
                store.wait([key], datetime.timedelta(seconds=min(60.0, left)))
                break
            except tdist.DistStoreError as err:
                if "timeout" not in str(err).lower() and "timed out" not in str(err).lower():
                    e = DistError(f"lost rank 0 while waiting for its {what}: {str(err).splitlines()[0]}")
                    e.rank_local = True  # type: ignore[attr-defined]
                    raise e from None
                print(f"[rank {self.rank}] still waiting for rank 0's {what} ({time.monotonic() - t0:.0f} s of at most "
                      f"{timeout:.0f} s)", file=sys.stderr, flush=True)
        got = store.get(key).decode()
        if got != "ok":
            e = DistError(f"rank 0's {what} failed ({got.removeprefix('error: ')}); see rank 0's error")
            e.rank_local = True  # type: ignore[attr-defined]
            raise e
        return None

    def shard(self, n: int, what: str, key: str) -> slice:
        """This rank's contiguous share of ``n`` items; ``n`` must divide evenly."""
        if n % self.size:
            raise DistError(f"{key}={n} does not divide over {self.size} processes ({what} are split evenly over ranks); "
                            f"use a multiple of {self.size}, e.g. {key}={max(self.size, n - n % self.size)}")
        k = n // self.size
        return slice(self.rank * k, (self.rank + 1) * k)

    def strided(self, items: Sequence[Any]) -> list[Any]:
        """This rank's rows of a minibatch (rows rank, rank + size, ...; may be empty)."""
        return list(items[self.rank::self.size])

    # ------------------------------------------------------------------ gradients
    def reduce_grads(self, module: Any) -> None:
        """Data parallel: sum every gradient over ranks (one bucketed all-reduce); a missing
        gradient counts as zeros. A module sharded by FSDP reduces in its own backward."""
        if not self.distributed or _is_fsdp(module):
            return
        import torch.distributed as tdist

        params = [p for p in module.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket_elems = 32 * 1024 * 1024
        i = 0
        while i < len(params):
            group, n = [], 0
            while i < len(params) and (not group or n + params[i].numel() <= bucket_elems) and params[i].dtype == (group[0].dtype if group else params[i].dtype):
                group.append(params[i])
                n += params[i].numel()
                i += 1
            flat = torch.cat([p.grad.reshape(-1) for p in group]).to(self._comm_device())
            tdist.all_reduce(flat)
            flat = flat.to(group[0].grad.device)
            o = 0
            for p in group:
                p.grad.copy_(flat[o:o + p.numel()].view_as(p.grad))
                o += p.numel()

    def empty_loss(self, module: Any) -> torch.Tensor | None:
        """The loss of a rank with no rows this time: nothing in data parallel (its gradients count as zeros),
        a zero-weighted forward pass under FSDP (every rank must take part in every sharded pass)."""
        if not _is_fsdp(module):
            return None
        dev = next(iter(module.parameters())).device
        out = module(input_ids=torch.zeros(1, 1, dtype=torch.long, device=dev), use_cache=False)
        return out.logits.sum() * 0.0

    def close(self) -> None:
        """All ranks meet, then the process group ends (gloo aborts at exit without the barrier)."""
        if self.distributed:
            import torch.distributed as tdist

            if tdist.is_initialized():
                try:
                    tdist.barrier()
                finally:
                    tdist.destroy_process_group()


_WORLD = World()


def world() -> World:
    """The current world (a world of one until ``init`` runs under torchrun)."""
    return _WORLD


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(parallel: str = "auto", backend: str = "auto", timeout_s: float = 600.0, device: str = "auto") -> World:
    """Join torchrun's process group (when WORLD_SIZE > 1) and return the world.

    ``parallel``: auto (ddp under torchrun), ddp or fsdp; ``backend``: auto (nccl when this
    rank's device is a GPU, else gloo), gloo or nccl; ``timeout_s`` bounds every collective."""
    global _WORLD
    if parallel not in ("auto", "ddp", "fsdp"):
        raise DistError(f"parallel={parallel!r}: use ddp (replicated weights, gradients summed over ranks) or fsdp (sharded)")
    if backend not in ("auto", "gloo", "nccl"):
        raise DistError(f"dist_backend={backend!r}: use auto, gloo (CPU) or nccl (GPU)")
    if not under_torchrun():
        _WORLD = World()
        return _WORLD
    import torch.distributed as tdist

    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
    _WORLD = World(rank, size, local_rank, local_size)  # known before any check, so rank 0 alone reports a bad setup
    use_gpu = torch.cuda.is_available() and device != "cpu" and not device.startswith("cpu")
    if backend == "nccl" and not torch.cuda.is_available():
        raise DistError("dist_backend=nccl needs GPUs and this machine has none; use dist_backend=gloo (or auto)")
    if backend == "auto":
        backend = "nccl" if use_gpu else "gloo"
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise DistError(f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                            f"use --nproc_per_node={torch.cuda.device_count()} or policy.device=cpu")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count())) if use_gpu else torch.device("cpu")
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    _WORLD = World(rank, size, local_rank, local_size, backend, "ddp" if parallel == "auto" else parallel, dev)
    return _WORLD


def _is_fsdp(module: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def decoder_layers(model: Any) -> list[Any]:
    """The model's repeated blocks (what transformers calls ``_no_split_modules``), the FSDP units."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers and hasattr(getattr(model, "model", None), "layers"):
        layers = list(model.model.layers)
    if not layers:
        raise DistError(f"parallel=fsdp: found no decoder layers in {type(model).__name__} to shard; use parallel=ddp")
    return layers


def prepare(model: Any, w: World | None = None) -> Any:
    """The model to train on this rank: the same module (one process, ddp: weights made equal
    to rank 0's), or a sharded copy (fsdp; ``w.full_copy`` keeps the unsharded model)."""
    w = w or world()
    if not w.distributed:
        return model
    import torch.distributed as tdist

    with torch.no_grad():  # every rank starts from rank 0's weights
        for t in list(model.parameters()) + list(model.buffers()):
            buf = t.data.to(w._comm_device())
            tdist.broadcast(buf, src=0)
            t.data.copy_(buf.to(t.device))
    if w.parallel != "fsdp":
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # an explicit mesh on the model's device type: with gloo on a machine that has GPUs, the default would be cuda
    mesh = init_device_mesh(w.device.type, (w.size,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if w.device.type == "cuda" else None
    kw = {"mesh": mesh, **({"mp_policy": mp} if mp is not None else {})}
    w.full_copy = model  # the engine keeps generating with this one
    sharded = copy.deepcopy(model)
    for layer in decoder_layers(sharded):
        fully_shard(layer, **kw)
    fully_shard(sharded, **kw)
    for m in sharded.modules():  # sum, not average: losses are normalised by the whole step's count
        if _is_fsdp(m):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)  # plain SUM collectives (gloo has no PREMUL_SUM)
    w.full_copy.requires_grad_(False)
    return sharded


def full_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The whole model's weights on every rank (gathered from the shards under fsdp)."""
    if not _is_fsdp(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def full_model(model: Any, w: World | None = None) -> Any:
    """An unsharded module with the current weights: ``model`` itself, or (fsdp) the full copy
    refreshed from the shards. Collective under fsdp: every rank calls it."""
    w = w or world()
    if not _is_fsdp(model):
        return model
    sd = full_state_dict(model)
    with torch.no_grad():
        w.full_copy.load_state_dict(sd)
    return w.full_copy


def optimizer_state(model: Any, opt: Any) -> dict[str, Any]:
    """The optimizer state to save: its own state_dict, or (fsdp) the full state keyed by parameter names."""
    if not _is_fsdp(model):
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return {"__fqn_full__": get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))}


def load_optimizer_state(model: Any, opt: Any, state: dict[str, Any]) -> None:
    if "__fqn_full__" in state:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, opt, state["__fqn_full__"], options=StateDictOptions(full_state_dict=True))
    elif _is_fsdp(model):
        raise DistError("this checkpoint's optimizer state was saved without parallel=fsdp; resume it with parallel=ddp "
                        "(or one process)")
    else:
        opt.load_state_dict(state)


def frozen_copy(model: Any, w: World | None = None) -> Any:
    """A frozen, unsharded copy of the model's current weights (a reference model). A LoRA model is not
    copied: its reference is the same module with the adapters switched off, its frozen base
    (`policies.lora.Reference`; under fsdp the unsharded full copy's, so no rank waits on another)."""
    from policies import lora

    if lora.enabled(model):
        w = w or world()
        return lora.reference(w.full_copy if _is_fsdp(model) else model)
    return copy.deepcopy(full_model(model, w)).eval().requires_grad_(False)


def threads_per_rank() -> int:
    """CPU threads for this process: the cores shared among the ranks on this machine, or
    OMP_NUM_THREADS when it is set outside torchrun (which sets it to 1 on its own)."""
    if not under_torchrun() and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if under_torchrun() else 1
    return max(1, (os.cpu_count() or 1) // local)
