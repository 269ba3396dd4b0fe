"""The NCCL weight sync's protocol (issue 26 #5), against a stand-in for vLLM's
``vllm.distributed.weight_transfer`` package and a scripted replica: no GPU or vLLM here, so what is
tested is ours (the order of the routes, the version handshake after every transfer, the timeout of
joining and of the transfer, a failed transfer leaving the replica paused), not vLLM's transfer."""

from __future__ import annotations

import sys
import threading
import types

import pytest

from policies import PolicyConfig, load_model

pytestmark = pytest.mark.faults


class Replica:
    """One ``vllm serve`` replica's RLHF routes as NCCLSync uses them, recording every call."""

    def __init__(self, world_size: int = 2, keeps_version: bool = False):
        self.calls: list[str] = []
        self.version: str | None = None
        self.paused = False
        self.world_size, self.keeps_version = world_size, keeps_version

    def post(self, path: str, body: dict) -> dict:
        self.calls.append(path)
        if path == "/pause":
            self.paused = True
        elif path == "/resume":
            self.paused = False
        elif path == "/update_weight_version" and not self.keeps_version:
            self.version = body["new_version"]
        return {}

    def get(self, path: str) -> dict:
        self.calls.append(path)
        return {"/weight_info": {"weight_version": self.version},
                "/get_world_size": {"world_size": self.world_size}}[path]


@pytest.fixture
def vllm_stub(monkeypatch):
    """``vllm.distributed.weight_transfer`` as NCCLSync imports it; ``stub.send`` is what send_weights does."""
    stub = types.SimpleNamespace(inits=[], send=lambda: None)

    class Engine:
        def __init__(self, init_info, client, source):
            self.init_info, self.client, self.source = init_info, client, source

        def send_weights(self):
            return stub.send()

    class Factory:
        @staticmethod
        def trainer_init(init_info, client, source):
            stub.inits.append((init_info, client))
            return Engine(init_info, client, source)

    pkg = types.ModuleType("vllm.distributed.weight_transfer")
    pkg.WeightTransferTrainerFactory = Factory
    pkg.HTTPVLLMWeightSyncClient = lambda base_url, timeout=300: types.SimpleNamespace(base_url=base_url, timeout=timeout)
    pkg.ModuleSource = lambda module: types.SimpleNamespace(module=module)
    nccl = types.ModuleType("vllm.distributed.weight_transfer.nccl_engine")
    nccl.NCCLTrainerInitInfo = lambda **kw: types.SimpleNamespace(**kw)
    for name in ("vllm", "vllm.distributed"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "vllm.distributed.weight_transfer", pkg)
    monkeypatch.setitem(sys.modules, "vllm.distributed.weight_transfer.nccl_engine", nccl)
    return stub


def sync_for(replicas, timeout=5.0):
    from policies.weight_sync import NCCLSync

    return NCCLSync(lambda i, path, body: replicas[i].post(path, body), lambda i, path: replicas[i].get(path),
                    [f"http://r{i}:8000/v1" for i in range(len(replicas))], "10.0.0.5:29600", timeout)


def test_every_push_pauses_transfers_sets_and_reads_back_the_version(vllm_stub):
    from policies.weight_sync import weights_checksum

    model, _ = load_model(PolicyConfig(model="tiny"))
    replicas = [Replica(world_size=2), Replica(world_size=4)]
    sync = sync_for(replicas)
    assert sync.served(0) == {"version": None, "checksum": None}  # vLLM's own label before our first push
    replicas[0].calls.clear()
    assert sync.push(model, 1, [0, 1]) == weights_checksum(model)
    sync.push(model, 2, [0, 1])
    # one NCCL group per replica, joined once: the trainer is rank 0 of the replica's workers + 1, at PORT + i
    assert [(i.master_address, i.master_port, i.world_size, i.rank) for i, _ in vllm_stub.inits] == \
        [("10.0.0.5", 29600, 3, 0), ("10.0.0.5", 29601, 5, 0)]
    assert [c.base_url for _, c in vllm_stub.inits] == ["http://r0:8000", "http://r1:8000"]
    per_push = ["/pause", "/update_weight_version", "/resume", "/weight_info"]
    assert replicas[0].calls == ["/get_world_size"] + per_push + per_push
    assert [r.version for r in replicas] == ["2", "2"] and not any(r.paused for r in replicas)
    assert sync.served(1) == {"version": 2, "checksum": None}


def test_a_replica_that_does_not_take_the_version_is_an_error(vllm_stub):
    from policies.weight_sync import WeightSyncError

    model, _ = load_model(PolicyConfig(model="tiny"))
    replicas = [Replica(), Replica(keeps_version=True)]
    with pytest.raises(WeightSyncError, match=r"http://r1:8000 reports weight version None after the update to 1"):
        sync_for(replicas).push(model, 1, [0, 1])


@pytest.mark.parametrize("fault", ["raises", "hangs"])
def test_a_failed_transfer_leaves_the_replica_paused_and_says_why(vllm_stub, fault):
    from policies.weight_sync import WeightSyncError

    model, _ = load_model(PolicyConfig(model="tiny"))
    stuck = threading.Event()

    def send():
        if fault == "hangs":  # a dead peer in the NCCL group: the broadcast never returns
            stuck.wait(30)
        raise RuntimeError("NCCL error: remote process exited")

    vllm_stub.send = send
    replicas = [Replica()]
    with pytest.raises(WeightSyncError) as e:
        sync_for(replicas, timeout=0.5).push(model, 1, [0])
    stuck.set()
    msg = str(e.value)
    assert ("did not finish in 0.5 s" if fault == "hangs" else "NCCL error: remote process exited") in msg
    assert "stays paused" in msg and "restart it" in msg
    # partly transferred weights are never served: no resume, no new version
    assert replicas[0].paused and replicas[0].calls == ["/get_world_size", "/pause"] and replicas[0].version is None


def test_a_rendezvous_that_fails_is_a_weight_sync_error(vllm_stub, monkeypatch):
    from policies.weight_sync import WeightSyncError

    def refuse(**kw):
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(sys.modules["vllm.distributed.weight_transfer"].WeightTransferTrainerFactory, "trainer_init",
                        staticmethod(refuse))
    model, _ = load_model(PolicyConfig(model="tiny"))
    replicas = [Replica()]
    with pytest.raises(WeightSyncError, match=r"joining the NCCL group of http://r0:8000 at 10.0.0.5:29600 failed "
                                              r"\(ConnectionRefusedError: connection refused\)"):
        sync_for(replicas).push(model, 1, [0])
    assert not replicas[0].paused  # nothing was paused: the replica keeps serving what it served


def test_bad_settings_are_one_line_each(vllm_stub):
    from policies.server_client import ServerEngine

    with pytest.raises(ValueError, match=r"policy.nccl_master='vllm-host': give HOST:PORT"):
        sync_for([Replica()]).__class__(None, None, ["http://r0:8000/v1"], "vllm-host")
    _, tok = load_model(PolicyConfig(model="tiny"))
    with pytest.raises(ValueError, match=r"policy.weight_sync=nccl needs policy.nccl_master=HOST:PORT"):
        ServerEngine(["http://r0:8000/v1"], "m", tok, weight_sync="nccl")
    engine = ServerEngine(["http://r0:8000/v1", "http://r1:8000/v1"], "m", tok, weight_sync="nccl",
                          nccl_master="10.0.0.5:29600")
    assert engine.sync.name == "nccl" and engine.sync.urls == ["http://r0:8000", "http://r1:8000"]


def test_without_vllm_the_import_error_says_what_to_install(monkeypatch):
    from policies.weight_sync import NCCLSync

    monkeypatch.setitem(sys.modules, "vllm.distributed.weight_transfer", None)  # import fails
    with pytest.raises(ImportError, match=r"rlvr-gym\[vllm\]"):
        NCCLSync(None, None, ["http://r0:8000/v1"], "h:1")
