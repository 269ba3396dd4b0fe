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


# ---------------------------------------------------------------------- replicas that restart (issue 26 #6)
GRPO = ["env=math", "steps=4", "prompts_per_step=4", "group_size=4", "max_new_tokens=32", "heldout_size=8",
        "temperature=1.0", "lr=2e-4", "warmup_steps=1", "save_every=1"]


def _engine(n: int):
    from policies import PolicyConfig, load_model
    from policies.server_client import ServerEngine

    model, tok = load_model(PolicyConfig(model="tiny-sft"))
    engine = ServerEngine([f"http://127.0.0.1:{9 + i}/v1" for i in range(n)], "tiny-sft", tok)
    pushes = []
    engine.sync.push = lambda m, version, replicas: pushes.append((version, list(replicas)))
    return engine, model, pushes


def test_attach_brings_every_replica_to_one_version_whatever_its_own():
    from policies.weight_sync import weights_checksum

    engine, model, pushes = _engine(3)
    want = weights_checksum(model)
    # one replica has the weights (version 3), one restarted (version 0, other weights), one serves them at 2
    engine.served = lambda: [{"version": 3, "checksum": want}, {"version": 0, "checksum": "xxh128:0"},
                             {"version": 2, "checksum": want}]
    engine.attach(model)
    assert engine.version == 3 and pushes == [(3, [1, 2])]  # was: version 4 to replica 1 only, then a mismatch
    # none has them: a new version for all
    engine2, _, pushes2 = _engine(2)
    engine2.served = lambda: [{"version": 5, "checksum": "xxh128:a"}, {"version": 5, "checksum": "xxh128:a"}]
    engine2.attach(model)
    assert engine2.version == 6 and pushes2 == [(6, [0, 1])]
    # mid-run (the trainer has a version): a restarted replica gets the trainer's version, not a new one
    engine.served = lambda: [{"version": 3, "checksum": want}, {"version": 0, "checksum": "xxh128:0"},
                             {"version": 3, "checksum": want}]
    engine.resync()
    assert engine.version == 3 and pushes[-1] == (3, [1])


@pytest.mark.parametrize("off_policy", [0, 1])
def test_a_server_restarted_mid_run_is_brought_back_and_the_run_goes_on(tmp_path, monkeypatch, off_policy):
    """After step 2 the server loses the trained weights (what a restart leaves: version 0, the starting
    model). The synchronous path raised WeightSyncError with a traceback, the off-policy one divided by zero."""
    from algos import grpo
    from algos.runs import Run
    from policies import PolicyConfig, load_model
    from policies.weight_sync import weights_checksum

    base, _ = load_model(PolicyConfig(model="tiny-sft"))
    start = _save({k: v for k, v in base.state_dict().items() if k != "lm_head.weight"}, tmp_path / "start.safetensors")
    s = ServerProc(key=None)
    real_log = Run.log

    def log(self, step, metrics):
        real_log(self, step, metrics)
        if step == 2 and "loss/policy" in metrics:
            r = requests.post(s.root + "/weights/load", json={"path": start, "version": 0}, timeout=60)
            assert r.json()["version"] == 0

    monkeypatch.setattr(Run, "log", log)
    try:
        grpo.main(GRPO + ["policy.engine=server", f"policy.base_url={s.url}", f"max_off_policy_steps={off_policy}",
                          f"out={tmp_path / 'r'}"])
        w = requests.get(s.root + "/weights", timeout=10).json()
    finally:
        s.stop()
    final, _ = load_model(PolicyConfig(model=str(tmp_path / "r" / "checkpoints" / "step-4")))
    assert w == {"version": 4, "checksum": weights_checksum(final)}
    import json

    rows = [json.loads(x) for x in open(tmp_path / "r" / "metrics.jsonl") if "loss/policy" in x]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_a_server_that_cannot_be_synced_ends_the_run_with_a_checkpoint_and_one_line(tmp_path, monkeypatch, capsys):
    """A replica that keeps answering with old weights after step 2: one line, exit 3, the last finished step
    saved (was a WeightSyncError traceback, nothing saved)."""
    import sys

    from algos import common, grpo
    from algos.runs import Run
    from policies.server_client import ServerEngine

    s = ServerProc(key=None)
    real_post, real_log = ServerEngine._post, Run.log
    broken = []

    def post(self, i, path, body):
        got = real_post(self, i, path, body)
        if broken and path == "/weights/load":
            requests.post(s.root + "/weights/load", json={**body, "version": 0}, timeout=60)  # a replica that lags
            return {**got, "version": 0}
        return got

    def log(self, step, metrics):
        real_log(self, step, metrics)
        if step == 2 and "loss/policy" in metrics:
            broken.append(True)

    monkeypatch.setattr(ServerEngine, "_post", post)
    monkeypatch.setattr(Run, "log", log)
    out = tmp_path / "r"
    monkeypatch.setattr(sys, "argv", ["grpo", *GRPO, "policy.engine=server", f"policy.base_url={s.url}", f"out={out}"])
    try:
        with pytest.raises(SystemExit) as e:
            common.run_main(grpo.main)
    finally:
        s.stop()
    err = capsys.readouterr().err
    assert e.value.code == 3, err[-2000:]
    assert "a generation server cannot be synced" in err and "Traceback" not in err
    assert f"resume={out}" in err
    # step 3 trained, then its push failed: the checkpoint is step 3's weights (the last finished update)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-3"
