"""Faults in weight sync (issue 26 #5, #6): a weights file that is corrupt, partial, of another shape or
another checksum leaves the server serving exactly what it served (it loaded the tensors it could
and kept the old version and checksum: half-loaded weights); a trainer is told why."""

from __future__ import annotations

import pytest
import requests
import torch

from tests.faults.test_server_faults import AUTH, ServerProc

pytestmark = pytest.mark.faults


def _save(sd: dict, path, meta: dict | None = None) -> str:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt", **(meta or {})})
    return str(path)


def test_a_bad_weights_file_leaves_the_served_weights_as_they_were(tmp_path):
    from policies import PolicyConfig, load_model
    from policies.weight_sync import CHECKSUM_KEY, FilesystemSync, WeightSyncError, weights_checksum

    model, _ = load_model(PolicyConfig(model="tiny-sft"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    new = weights_checksum(model)
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to the embeddings: one copy
    names = sorted(sd)
    good = _save(sd, tmp_path / "good.safetensors")
    bad = {
        # half the tensors: the old load copied these in, then failed on the missing ones
        "partial": (_save({k: sd[k] for k in names[: len(names) // 2]}, tmp_path / "half.safetensors"), None, "missing"),
        "truncated": (str(tmp_path / "cut.safetensors"), None, "cannot read"),
        "shape": (_save({**sd, names[-1]: torch.zeros(3, 3)}, tmp_path / "shape.safetensors"), None, "shape"),
        # the trainer's checksum is not that of the file (a stale or other file)
        "checksum": (good, "xxh128:" + "0" * 32, "hash to"),
    }
    raw = open(good, "rb").read()
    open(tmp_path / "cut.safetensors", "wb").write(raw[: len(raw) // 2])
    flipped = bytearray(open(_save(sd, tmp_path / "flip.safetensors", {CHECKSUM_KEY: new}), "rb").read())
    flipped[-100] ^= 0xFF  # a bit-rotted tensor byte: the file's own checksum catches it
    open(tmp_path / "flip.safetensors", "wb").write(bytes(flipped))
    bad["bitrot"] = (str(tmp_path / "flip.safetensors"), None, "hash to")

    s = ServerProc()
    try:
        before = requests.get(s.root + "/weights", headers=AUTH, timeout=10).json()
        ask = {"model": "tiny-sft", "prompt": "12+30=", "temperature": 0, "max_tokens": 8}
        text = requests.post(s.url + "/completions", json=ask, headers=AUTH, timeout=60).json()["choices"][0]["text"]
        for label, (path, checksum, why) in bad.items():
            r = requests.post(s.root + "/weights/load", json={"path": path, "version": 7, "checksum": checksum},
                              headers=AUTH, timeout=60)
            assert r.status_code == 400, (label, r.text)
            err = r.json()["error"]
            assert why in err["message"] and err["code"] == "load_failed", (label, err)
            assert f"still serving version {before['version']}" in err["message"]
            assert requests.get(s.root + "/weights", headers=AUTH, timeout=10).json() == before, label
            again = requests.post(s.url + "/completions", json=ask, headers=AUTH, timeout=60).json()
            assert again["choices"][0]["text"] == text and again["weights_version"] == before["version"], label

        # a trainer is told which replica refused and why (a WeightSyncError, not a bare HTTP error): here the
        # file is damaged between the trainer's write and the server's read
        def post(i, route, body):
            if route == "/weights/load":
                data = bytearray(open(body["path"], "rb").read())
                data[-100] ^= 0xFF
                open(body["path"], "wb").write(bytes(data))
            r = requests.post(s.root + route, json=body, headers=AUTH, timeout=60)
            if r.status_code != 200:
                raise RuntimeError(f"answered {r.status_code}: {r.json()['error']['message']}")
            return r.json()

        with pytest.raises(WeightSyncError, match="replica 0 did not load version 3: .*hash to"):
            FilesystemSync(str(tmp_path / "sync"), post).push(model, 3, [0])
        assert requests.get(s.root + "/weights", headers=AUTH, timeout=10).json() == before
        assert not requests.get(s.root + "/health", timeout=10).json()["paused"]  # resumed after the failure

        # the good file loads whole, under the new version, with the trainer's checksum
        r = requests.post(s.root + "/weights/load", json={"path": good, "version": 7, "checksum": new}, headers=AUTH,
                          timeout=60)
        assert r.status_code == 200 and r.json() == {"version": 7, "checksum": new}
    finally:
        s.stop()


def test_a_transfer_that_never_returns_is_a_weight_sync_error_not_a_hang():
    """The NCCL path's broadcast (vLLM's send_weights, not runnable here) runs under the sync timeout."""
    import threading
    import time

    from policies.weight_sync import WeightSyncError, _bounded

    stuck = threading.Event()
    t0 = time.time()
    with pytest.raises(WeightSyncError, match="did not finish in 0.5 s"):
        _bounded(lambda: stuck.wait(60), 0.5, "the NCCL transfer of version 2")
    assert time.time() - t0 < 5
    stuck.set()
    with pytest.raises(KeyError):  # the transfer's own error reaches the caller as it is
        _bounded(lambda: {}["x"], 5, "a transfer")
