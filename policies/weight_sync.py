"""Pushing a trainer's weights to generation servers after each update.

A sync is: pause the servers' generation, transfer, check, resume. The check is the point:
every server answers with the version it now serves and a checksum of the weights it loaded,
and a mismatch is a ``WeightSyncError``, never silence (the field's most reported RL bug is a
generation engine that quietly kept stale or half-loaded weights).

* ``filesystem`` (``FilesystemSync``): the weights as one safetensors file in a folder every
  server can read (``policy.sync_dir``; the same machine, or a shared filesystem), its checksum in the
  file's metadata (``rlvr_checksum``), then ``POST /weights/load`` with the checksum on each server. The
  server stages the file (`stage`: read whole, names and shapes checked, checksum verified) and only
  then swaps it in (`swap`), so a corrupt, partial or other file is refused with the reason and the
  old weights keep serving under their version and checksum; a refusal is a ``WeightSyncError``
  naming the replica. Works with ``python -m policies serve`` everywhere.
* ``nccl`` (``NCCLSync``): vLLM's native weight transfer (``vllm serve
  --weight-transfer-config '{"backend": "nccl"}'``): the trainer joins an NCCL group with the
  servers' workers (``/init_weight_transfer_engine``) and broadcasts every tensor on each update
  (``/start_weight_update``, ``/update_weights``, ``/finish_weight_update``), then sets and reads
  back the version (``/update_weight_version``, ``/weight_info``): the version handshake after every
  transfer, a mismatch a ``WeightSyncError``; the transfer itself is bounded by the same timeout as every
  HTTP call (`_bounded`). No checksum: vLLM's routes do not expose one. GPU only; written against
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
from policies.base import PolicyError, ServerDown, WeightSyncError


def weights_checksum(model: Any) -> str:
    """The digest of every tensor of the state dict (names sorted, as float32 bytes; a LoRA model's
    merged one): what the trainer sent and what the server loaded hash alike only if they are equal,
    bit for bit. See `_checksum` for the digest."""
    return _checksum(lora.merged_state_dict(model))


def _checksum(sd: dict[str, Any]) -> str:
    """``xxh128:`` and xxHash's XXH3-128 of the names and float32 bytes (the ``server`` extra's ``xxhash``),
    else ``blake2b:`` and BLAKE2b-128. XXH3 is not cryptographic: it guards against corrupt, partial or
    stale weights, not against someone forging a file (the API key guards the routes). It hashes at memory
    speed where BLAKE2b took ~30 s a side for a 7B model (bench/weights_checksum.py). Float32 tensors are
    hashed in place (no copy). Both sides name their digest, so a trainer and a server that differ in it
    disagree in a readable way."""
    import torch

    try:
        import xxhash

        h: Any = xxhash.xxh3_128()
        algo = "xxh128"
    except ImportError:
        h, algo = hashlib.blake2b(digest_size=16), "blake2b"
    for name, t in sorted(sd.items()):
        h.update(name.encode())
        a = t.detach().to("cpu", torch.float32).contiguous().numpy()
        h.update(memoryview(a).cast("B") if a.size else b"")
    return f"{algo}:{h.hexdigest()}"


class WeightLoadError(ValueError):
    """A weights file a server cannot serve (unreadable, other names or shapes, another checksum than
    the trainer's); the weights served before stay."""


CHECKSUM_KEY = "rlvr_checksum"  # the safetensors metadata key: the trainer's checksum of the weights in the file


def stage(model: Any, path: str, expected: str | None = None) -> tuple[dict[str, Any], str]:
    """The weights of ``path`` (safetensors) made ready to replace ``model``'s, without touching it:
    read whole, checked name by name and shape by shape against the model's state dict (tied weights:
    one copy on disk, as safetensors' ``save_model`` writes them), converted to each tensor's dtype,
    and hashed. ``expected`` (the trainer's checksum; else the file's own ``rlvr_checksum`` metadata, if
    any) must equal the checksum of the file's tensors. Returns (the staged state dict, the checksum of
    the weights as they will be served). Any problem is a `WeightLoadError` naming it."""
    from safetensors import safe_open
    from safetensors.torch import _remove_duplicate_names, load_file

    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        state = load_file(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError, ValueError...
        from envs.core import where

        raise WeightLoadError(f"cannot read {where(path)}: {type(e).__name__}: {e}") from None
    current = model.state_dict()
    aliases = _remove_duplicate_names(current, preferred_names=list(state))
    alias_of = {d: kept for kept, dropped in aliases.items() for d in dropped}
    source = {n: alias_of.get(n, n) for n in current}  # each served name -> the file's name holding it
    missing = sorted(n for n, src in source.items() if src not in state)
    unexpected = sorted(set(state) - set(source.values()))
    if missing or unexpected:
        raise WeightLoadError(f"{path} does not hold this model's weights: missing {missing[:5]}"
                              f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                              f"{'...' if len(unexpected) > 5 else ''}")
    for n, src in source.items():
        if tuple(state[src].shape) != tuple(current[n].shape):
            raise WeightLoadError(f"{path}: {src} has shape {tuple(state[src].shape)}, the model's "
                                  f"{n} {tuple(current[n].shape)}")
    want = expected or meta.get(CHECKSUM_KEY)
    on_disk = {n: state[src] for n, src in source.items()}
    if want is not None:
        got = _checksum(on_disk)
        if got != want:
            raise WeightLoadError(f"{path}'s weights hash to {got}, the trainer's to {want}: a corrupt, partly "
                                  f"written or other file")
    staged = {n: t.to(current[n].dtype) for n, t in on_disk.items()}
    same = all(t.dtype == on_disk[n].dtype for n, t in staged.items())
    return staged, (got if want is not None and same else _checksum(staged))


def swap(model: Any, staged: dict[str, Any]) -> None:
    """Copy the staged weights (`stage`: names and shapes checked) into ``model``'s tensors. The caller
    holds generation off while it runs (the server's lock), so no forward pass sees a mix."""
    import torch

    with torch.no_grad():
        for n, t in model.state_dict().items():
            t.copy_(staged[n])


class FilesystemSync:
    """safetensors into ``folder`` (``v{version}.safetensors``, written atomically; the previous
    version is removed once every server has the new one), then each server loads it. With no
    ``folder`` (``policy.sync_dir`` unset) the files go to a temporary folder of this sync's own, removed
    with its last file on ``close()``, when the sync is collected, or at exit (a model-sized file per run
    would otherwise stay in /tmp); a folder the user names is left where it is."""

    name = "filesystem"

    def __init__(self, folder: str | None, post: Any):
        self._own = None if folder else tempfile.TemporaryDirectory(prefix="rlvr-weights-")
        self.folder = folder or self._own.name
        os.makedirs(self.folder, exist_ok=True)
        self.post = post  # post(replica_index, path, body) -> dict, from the engine (timeouts, retries)
        self._last: str | None = None

    def write(self, model: Any, version: int) -> tuple[str, str, str]:
        """The weights as ``v{version}.safetensors`` (atomically; tied weights once, as safetensors'
        ``save_model`` writes them). Returns (path, the model's checksum, the checksum of the file's tensors)."""
        from safetensors.torch import _remove_duplicate_names, save_file

        path = os.path.join(self.folder, f"v{version}.safetensors")
        tmp = path + ".tmp"
        sd = lora.merged_state_dict(model)
        want = _checksum(sd)
        disk = dict(sd)
        for kept, dropped in _remove_duplicate_names(disk).items():  # tied weights: one copy on disk, as
            for name in dropped:  # safetensors' save_model writes it (the server loads with load_model)
                del disk[name]
        disk = {k: v.contiguous() for k, v in disk.items()}
        save_file(disk, tmp, metadata={"format": "pt", CHECKSUM_KEY: want})
        os.replace(tmp, path)
        return os.path.abspath(path), want, _checksum(disk)

    def done(self, path: str) -> None:
        """Every replica has ``path``: the file before it goes."""
        if self._last and self._last != path and os.path.exists(self._last):
            os.remove(self._last)
        self._last = path

    def close(self) -> None:
        """The temporary folder (and the last weights in it) goes; every server has loaded them by now."""
        if self._own is not None:
            self._own.cleanup()

    def push(self, model: Any, version: int, replicas: Sequence[int]) -> str:
        path, want, _ = self.write(model, version)
        for i in replicas:
            self.post(i, "/pause", {})
            try:
                got = self.post(i, "/weights/load", {"path": path, "version": version, "checksum": want})
            except ServerDown:
                raise
            except RuntimeError as e:  # the server refused the file (400, the reason): it serves what it served
                raise WeightSyncError(f"replica {i} did not load version {version}: {e}") from None
            finally:
                self.post(i, "/resume", {})
            if got.get("version") != version or got.get("checksum") != want:
                raise WeightSyncError(f"replica {i} serves version {got.get('version')} with checksum "
                                      f"{str(got.get('checksum'))[:19]} after loading version {version} "
                                      f"(the trainer's checksum is {want[:19]})")
        self.done(path)
        return want


class VLLMServeSync(FilesystemSync):
    """The same file, loaded by stock ``vllm serve`` (0.12+, ``VLLM_SERVER_DEV_MODE=1``, started with
    ``--worker-extension-cls policies.vllm_worker.RLVRWorkerExtension``): ``POST /pause`` (vLLM aborts the
    requests in flight; `ServerEngine` samples them again), ``POST /collective_rpc`` calling
    ``rlvr_load_weights`` on every worker (each checks the file against the checksum of what was written
    before loading it, `policies.vllm_worker`), ``POST /resume``; every worker must answer with the
    version and the trainer's checksum. ``served(i)`` reads them back (``rlvr_weights``). vLLM's responses
    carry no weights version, so a replica that restarts mid-run is caught at the next push or at
    ``attach``, not per rollout as with ``python -m policies serve``."""

    name = "vllm"

    def __init__(self, folder: str | None, post: Any, timeout: float = 300.0):
        super().__init__(folder, post)
        self.timeout = timeout

    def _rpc(self, i: int, method: str, args: list[str]) -> list[Any]:
        try:
            got = self.post(i, "/collective_rpc", {"method": method, "args": args, "timeout": self.timeout})
        except ServerDown:
            raise
        except RuntimeError as e:  # 404: not in dev mode; 500: the extension class is missing
            raise WeightSyncError(f"replica {i}: /collective_rpc {method} failed ({e}); start vllm serve with "
                                  f"VLLM_SERVER_DEV_MODE=1 and --worker-extension-cls "
                                  f"policies.vllm_worker.RLVRWorkerExtension") from None
        results = (got or {}).get("results")
        if not isinstance(results, list) or not results:
            raise WeightSyncError(f"replica {i}: /collective_rpc {method} answered {str(got)[:200]}, no worker results")
        return results

    def served(self, i: int) -> dict[str, Any]:
        """What replica i's workers serve: their common ``{version, checksum}`` (version -1 when they differ)."""
        results = self._rpc(i, "rlvr_weights", [])
        states = {(r.get("version"), r.get("checksum")) if isinstance(r, dict) else (None, None) for r in results}
        if len(states) != 1:
            return {"version": -1, "checksum": None}
        version, checksum = states.pop()
        return {"version": version, "checksum": checksum}

    def push(self, model: Any, version: int, replicas: Sequence[int]) -> str:
        path, want, file_checksum = self.write(model, version)
        for i in replicas:
            self.post(i, "/pause", {})
            try:
                results = self._rpc(i, "rlvr_load_weights", [path, str(version), file_checksum, want])
            finally:
                self.post(i, "/resume", {})
            for w, r in enumerate(results):
                r = r if isinstance(r, dict) else {"error": str(r)}
                if r.get("error") or r.get("version") != version or r.get("checksum") != want:
                    raise WeightSyncError(f"replica {i}, worker {w} did not load version {version}: "
                                          f"{r.get('error') or r}")
        self.done(path)
        return want


class NCCLSync:
    """vLLM's native NCCL weight transfer to ``vllm serve`` replicas (GPU only).

    ``post(i, path, body)`` and ``get(i, path)`` are the engine's calls to replica i's routes (its API key,
    timeout and retries: `ServerEngine._call`); ``master`` is ``HOST:PORT`` where the trainer (rank 0 of
    each replica's NCCL group) listens, replica i at ``PORT + i``. Per push and replica: ``/pause``
    (vLLM aborts the requests in flight and clears its caches), the transfer (``send_weights``, bounded
    by ``timeout``), ``/update_weight_version``, ``/resume``, then ``/weight_info`` must report the new
    version. A transfer that fails or times out leaves the replica paused: its weights are partly new,
    and generation from them would be wrong under either version; the `WeightSyncError` says so (the
    run saves and stops; a restarted replica gets the weights at ``attach``)."""

    name = "nccl"

    def __init__(self, post: Any, get: Any, urls: Sequence[str], master: str, timeout: float = 300.0):
        try:
            from vllm.distributed.weight_transfer import (HTTPVLLMWeightSyncClient, ModuleSource,
                                                          WeightTransferTrainerFactory)
            from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo
        except ImportError as e:
            raise ImportError("policy.weight_sync=nccl needs vLLM's weight transfer API "
                              "(vllm.distributed.weight_transfer: pip install 'rlvr-gym[vllm]') on the trainer") from e
        host, _, port = master.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"policy.nccl_master={master!r}: give HOST:PORT, the address vLLM's workers reach this "
                             f"trainer at (replica i uses PORT + i), e.g. policy.nccl_master=10.0.0.5:29600")
        self._client_cls, self._source_cls, self._factory, self._info_cls = (HTTPVLLMWeightSyncClient, ModuleSource,
                                                                             WeightTransferTrainerFactory, NCCLTrainerInitInfo)
        self.post, self.get = post, get
        self.urls = [u.rstrip("/").removesuffix("/v1") for u in urls]
        self.host, self.port, self.timeout = host, int(port), timeout
        self._engines: dict[int, Any] = {}

    def served(self, i: int) -> dict[str, Any]:
        """Replica i's version (``/weight_info``; vLLM's own label until the first push: None) and no checksum:
        vLLM's routes expose none cheaply, so `ServerEngine.attach` pushes to every replica at the start."""
        got = (self.get(i, "/weight_info") or {}).get("weight_version")
        return {"version": int(got) if str(got).isdigit() else None, "checksum": None}

    def _engine(self, i: int, model: Any) -> Any:
        if i not in self._engines:  # once per replica: an NCCL group of the trainer (rank 0) and its workers
            workers = int((self.get(i, "/get_world_size") or {}).get("world_size", 0))
            if workers < 1:
                raise WeightSyncError(f"{self.urls[i]}: /get_world_size answered no world size; is it vllm serve with "
                                      f"--weight-transfer-config '{{\"backend\": \"nccl\"}}' and VLLM_SERVER_DEV_MODE=1?")
            info = self._info_cls(master_address=self.host, master_port=self.port + i, world_size=workers + 1, rank=0)
            what = f"joining the NCCL group of {self.urls[i]} at {self.host}:{self.port + i}"
            try:
                self._engines[i] = _bounded(lambda: self._factory.trainer_init(
                    init_info=info, client=self._client_cls(self.urls[i], self.timeout), source=self._source_cls(model)),
                    self.timeout, what)
            except WeightSyncError:
                raise
            except Exception as e:  # noqa: BLE001 - a failed rendezvous is a sync that cannot happen: save and stop
                raise WeightSyncError(f"{what} failed ({type(e).__name__}: {e}); is policy.nccl_master an address "
                                      f"the servers can reach?") from None
        return self._engines[i]

    def push(self, model: Any, version: int, replicas: Sequence[int]) -> str:
        if lora.enabled(model):
            raise PolicyError("policy.weight_sync=nccl sends the module's own parameters, and a LoRA model's are "
                              "split into base and adapter; use policy.weight_sync=filesystem (merged weights) "
                              "with lora.r > 0")
        for i in replicas:
            eng = self._engine(i, model)
            self.post(i, "/pause", {})
            try:
                _bounded(eng.send_weights, self.timeout, f"the NCCL transfer of version {version} to {self.urls[i]}")
            except Exception as e:  # noqa: BLE001 - re-raised as what it means for the replica (Ctrl-C passes)
                raise WeightSyncError(f"{self.urls[i]}: the transfer of version {version} failed ({e}); the replica "
                                      f"holds partly transferred weights and stays paused: restart it (the run "
                                      f"pushes its weights to it on resume)") from None
            self.post(i, "/update_weight_version", {"new_version": str(version)})
            self.post(i, "/resume", {})
            got = self.served(i)["version"]
            if got != version:
                raise WeightSyncError(f"{self.urls[i]} reports weight version {got!r} after the update to {version}")
        return weights_checksum(model)


def _bounded(fn: Any, timeout: float, what: str) -> Any:
    """``fn()`` with a deadline: a collective that never returns (a dead peer in the NCCL group) becomes a
    `WeightSyncError` after ``timeout`` seconds instead of a hang (the stuck thread is left to the process's
    exit, which the trainer takes next: a checkpoint and one line)."""
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["out"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller as it is
            box["err"] = e

    t = threading.Thread(target=run, daemon=True, name="weight-sync")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise WeightSyncError(f"{what} did not finish in {timeout:g} s (policy.request_timeout)")
    if "err" in box:
        raise box["err"]
    return box.get("out")
