"""Pushing a trainer's weights to generation servers after each update.

A sync is: pause the servers' generation, transfer, check, resume. The check is the point:
every server answers with the version it now serves and a checksum of the weights it loaded,
and a mismatch is a ``WeightSyncError``, never silence (the field's most reported RL bug is a
generation engine that quietly kept stale or half-loaded weights).

* ``filesystem`` (``FilesystemSync``): the weights as one safetensors file in a folder every
  server can read (``policy.sync_dir``; the same machine, or a shared filesystem), then
  ``POST /weights/load`` on each server. Works with ``python -m policies serve`` everywhere.
* ``nccl`` (``NCCLSync``): vLLM's native weight transfer (``vllm serve
  --weight-transfer-config '{"backend": "nccl"}'``): the trainer joins an NCCL group with the
  servers' workers (``/init_weight_transfer_engine``) and broadcasts every tensor on each update
  (``/start_weight_update``, ``/update_weights``, ``/finish_weight_update``), then sets and reads
  back the version (``/update_weight_version``, ``/weight_info``). GPU only; written against
  vLLM 0.33's ``vllm.distributed.weight_transfer`` API, not run here (no GPU).

A LoRA model (``lora.r > 0``) is sent merged: each adapted layer's W + (alpha / r) B A under the
plain model's parameter names (`policies.lora.merged_state_dict`), so the servers load it as the
base model they serve; the checksum is over those merged tensors. ``nccl`` refuses it (vLLM's
transfer reads the module's own parameters).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any, Sequence

from policies import lora
from policies.base import PolicyError


class WeightSyncError(RuntimeError):
    """A server does not serve the weights the trainer sent."""


def weights_checksum(model: Any) -> str:
    """BLAKE2b of every tensor of the state dict (names sorted, as float32 bytes; a LoRA model's
    merged one): what the trainer sent and what the server loaded hash alike only if they are equal,
    bit for bit."""
    return _checksum(lora.merged_state_dict(model))


def _checksum(sd: dict[str, Any]) -> str:
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(sd.items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class FilesystemSync:
    """safetensors into ``folder`` (``v{version}.safetensors``, written atomically; the previous
    version is removed once every server has the new one), then each server loads it."""

    name = "filesystem"

    def __init__(self, folder: str | None, post: Any):
        self.folder = folder or tempfile.mkdtemp(prefix="rlvr-weights-")
        os.makedirs(self.folder, exist_ok=True)
        self.post = post  # post(replica_index, path, body) -> dict, from the engine (timeouts, retries)
        self._last: str | None = None

    def push(self, model: Any, version: int, replicas: Sequence[int]) -> str:
        from safetensors.torch import _remove_duplicate_names, save_file

        path = os.path.join(self.folder, f"v{version}.safetensors")
        tmp = path + ".tmp"
        sd = lora.merged_state_dict(model)
        want = _checksum(sd)
        disk = dict(sd)
        for kept, dropped in _remove_duplicate_names(disk).items():  # tied weights: one copy on disk, as
            for name in dropped:  # safetensors' save_model writes it (the server loads with load_model)
                del disk[name]
        save_file({k: v.contiguous() for k, v in disk.items()}, tmp, metadata={"format": "pt"})
        os.replace(tmp, path)
        for i in replicas:
            self.post(i, "/pause", {})
            try:
                got = self.post(i, "/weights/load", {"path": os.path.abspath(path), "version": version})
            finally:
                self.post(i, "/resume", {})
            if got.get("version") != version or got.get("checksum") != want:
                raise WeightSyncError(f"replica {i} serves version {got.get('version')} with checksum "
                                      f"{str(got.get('checksum'))[:12]} after loading version {version} "
                                      f"(the trainer's checksum is {want[:12]})")
        if self._last and self._last != path and os.path.exists(self._last):
            os.remove(self._last)
        self._last = path
        return want


class NCCLSync:
    """vLLM's native NCCL weight transfer to ``vllm serve`` replicas (GPU only)."""

    name = "nccl"

    def __init__(self, base_urls: Sequence[str], master_address: str, master_port: int, world_size: int,
                 timeout: float = 300.0):
        try:
            from vllm.distributed.weight_transfer.clients import HTTPVLLMWeightSyncClient
            from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory
            from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo
        except ImportError as e:
            raise ImportError("policy.weight_sync=nccl needs vLLM's weight transfer API (vllm>=0.33, "
                              "pip install 'rlvr-gym[vllm]') on the trainer") from e
        self._client_cls, self._factory, self._info_cls = HTTPVLLMWeightSyncClient, WeightTransferTrainerFactory, NCCLTrainerInitInfo
        self.urls = [u.rstrip("/").removesuffix("/v1") for u in base_urls]
        self.master_address, self.master_port, self.world_size, self.timeout = master_address, master_port, world_size, timeout
        self._engines: list[Any] = []

    def push(self, model: Any, version: int, replicas: Sequence[int]) -> str:
        if lora.enabled(model):
            raise PolicyError("policy.weight_sync=nccl sends the module's own parameters, and a LoRA model's are "
                              "split into base and adapter; use policy.weight_sync=filesystem (merged weights) "
                              "with lora.r > 0")
        import requests
        from vllm.distributed.weight_transfer.base import ModuleSource

        if not self._engines:  # once: one NCCL group per replica (trainer rank 0 + that replica's workers)
            for i in replicas:
                info = self._info_cls(master_address=self.master_address, master_port=self.master_port + i,
                                      world_size=self.world_size)
                self._engines.append(self._factory.trainer_init(info, client=self._client_cls(self.urls[i], self.timeout),
                                                                source=ModuleSource(model)))
        for i, eng in zip(replicas, self._engines):
            requests.post(f"{self.urls[i]}/pause", timeout=self.timeout).raise_for_status()
            try:
                eng.send_weights()
                requests.post(f"{self.urls[i]}/update_weight_version", json={"new_version": str(version)},
                              timeout=self.timeout).raise_for_status()
            finally:
                requests.post(f"{self.urls[i]}/resume", timeout=self.timeout).raise_for_status()
            got = requests.get(f"{self.urls[i]}/weight_info", timeout=self.timeout).json().get("weight_version")
            if str(got) != str(version):
                raise WeightSyncError(f"{self.urls[i]} reports weight version {got!r} after the update to {version}")
        return weights_checksum(model)
