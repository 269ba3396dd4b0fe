"""Loading our weight files inside stock ``vllm serve`` (``policy.weight_sync=vllm``).

    VLLM_SERVER_DEV_MODE=1 vllm serve MODEL --worker-extension-cls policies.vllm_worker.RLVRWorkerExtension

vLLM's workers take this class as a mixin (``--worker-extension-cls``; rlvr-gym must be importable in
the server's environment), so its methods can be called through vLLM's dev-mode route
``POST /collective_rpc {"method": NAME, "args": [str, ...], "timeout": S}`` on every worker. The trainer
(`policies.weight_sync.VLLMServeSync`) writes the weights as one safetensors file, pauses the server
(``POST /pause``: vLLM aborts the requests in flight, and our client samples those again), calls
``rlvr_load_weights`` and resumes (``POST /resume``). Tested against vLLM-shaped fakes here (no GPU);
written against vLLM 0.12+'s routes (/pause and /resume are from 0.12) and its worker's
``model_runner.model.load_weights``, the same call `policies.vllm_engine` makes in process.

What a worker checks before it touches the weights: the file reads whole, and its tensors hash to the
checksum the trainer computed of what it wrote (``file_checksum``: `policies.weight_sync._checksum` of
the file's tensors, names sorted). A file that fails is refused with the reason and nothing is loaded:
the worker keeps its weights, version and checksum. Not checked here: that each name maps onto one of
vLLM's (fused) parameters, which vLLM's own ``load_weights`` does as it loads.
"""

from __future__ import annotations

from typing import Any


def load_checked(path: str, file_checksum: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the file's tensors, None) when it reads whole and hashes to ``file_checksum``; (None, why) otherwise."""
    from safetensors.torch import load_file

    from policies.weight_sync import _checksum

    try:
        state = load_file(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one refusal, named (SafetensorError, OSError...)
        return None, f"cannot read {path}: {type(e).__name__}: {e}"
    got = _checksum(state)
    if got != file_checksum:
        return None, f"{path}'s tensors hash to {got}, the trainer's to {file_checksum}: a corrupt, partly written or other file"
    return state, None


class RLVRWorkerExtension:
    """Methods vLLM adds to each of its workers (``self`` is the worker: ``self.model_runner.model``)."""

    def rlvr_load_weights(self, path: str, version: str, file_checksum: str, checksum: str) -> dict[str, Any]:
        """Load ``path`` if it is the file the trainer wrote; answer ``{"version", "checksum"}`` now served
        (``checksum``: the trainer's checksum of its model, which the file holds), or ``{"error"}`` and keep
        the weights served before. Arguments are strings: /collective_rpc passes nothing else."""
        state, why = load_checked(path, file_checksum)
        if state is None:
            return {"error": why, **self.rlvr_weights()}
        self.model_runner.model.load_weights(weights=list(state.items()))
        self._rlvr_served = {"version": int(version), "checksum": checksum}
        return dict(self._rlvr_served)

    def rlvr_weights(self) -> dict[str, Any]:
        """The version and checksum this worker serves (version 0 and no checksum: the model it started with)."""
        return dict(getattr(self, "_rlvr_served", None) or {"version": 0, "checksum": None})
