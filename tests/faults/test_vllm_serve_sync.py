"""Training against stock ``vllm serve`` (issue 26 #7): ``policy.weight_sync=vllm`` against a server that
speaks vLLM's dev-mode routes (/pause, /resume, /collective_rpc with string args, as vLLM 0.12+ does) and
runs `policies.vllm_worker.RLVRWorkerExtension` on two workers whose ``model_runner.model.load_weights``
loads into a real model (no vLLM or GPU here). The sync loads, verifies and reads back; a damaged file is
refused by every worker and nothing is loaded; a server without dev mode is one clear error."""

from __future__ import annotations

import json
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

pytestmark = pytest.mark.faults


class FakeVLLMModel:
    """vLLM's model as its loader sees it: ``load_weights(weights)`` with the checkpoint's (HF) names."""

    def __init__(self, hf_model):
        self.hf = hf_model

    def load_weights(self, weights):
        sd = self.hf.state_dict()
        with torch.no_grad():
            for name, t in weights:
                sd[name].copy_(t)


def fake_vllm_serve(workers, dev_mode=True):
    """A server with vLLM's routes; /collective_rpc calls the method on every worker, as vLLM does."""
    from policies.vllm_worker import RLVRWorkerExtension

    calls = []

    class Worker(RLVRWorkerExtension):
        def __init__(self, model):
            self.model_runner = types.SimpleNamespace(model=FakeVLLMModel(model))

    ws = [Worker(m) for m in workers]

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            calls.append((self.path, body))
            if self.path.startswith("/pause") or self.path == "/resume":
                return self._send(200, {"status": "ok"})
            if self.path == "/collective_rpc" and dev_mode:
                assert all(isinstance(a, str) for a in body.get("args", []))  # vLLM passes strings only
                return self._send(200, {"results": [getattr(w, body["method"])(*body.get("args", [])) for w in ws]})
            return self._send(404, {"detail": "Not Found"})

        def _send(self, code, obj):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, calls


def _engine(srv, tok, tmp_path):
    from policies.server_client import ServerEngine

    return ServerEngine([f"http://127.0.0.1:{srv.server_address[1]}/v1"], "tiny-sft", tok, timeout=30, max_retries=0,
                        weight_sync="vllm", sync_dir=str(tmp_path / "sync"))


def test_weights_reach_every_vllm_worker_checked_and_read_back(tmp_path):
    from policies import PolicyConfig, load_model
    from policies.weight_sync import weights_checksum

    model, tok = load_model(PolicyConfig(model="tiny-sft"))
    workers = [load_model(PolicyConfig(model="tiny-sft"))[0] for _ in range(2)]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    srv, calls = fake_vllm_serve(workers)
    try:
        eng = _engine(srv, tok, tmp_path)
        eng.attach(model)  # the workers serve version 0 with no checksum: they get the trainer's weights
        assert eng.version == 1 and eng.served() == [{"version": 1, "checksum": weights_checksum(model)}]
        assert all(weights_checksum(w) == weights_checksum(model) for w in workers)
        assert [c[0] for c in calls[-4:-1]] == ["/pause", "/collective_rpc", "/resume"]
        eng.update_weights(model)
        assert eng.served() == [{"version": 2, "checksum": weights_checksum(model)}]
    finally:
        srv.shutdown()


def test_a_damaged_file_is_refused_by_the_vllm_workers_and_nothing_loads(tmp_path):
    from policies import PolicyConfig, load_model
    from policies.weight_sync import WeightSyncError, weights_checksum

    model, tok = load_model(PolicyConfig(model="tiny-sft"))
    workers = [load_model(PolicyConfig(model="tiny-sft"))[0] for _ in range(2)]
    before = weights_checksum(workers[0])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    srv, calls = fake_vllm_serve(workers)
    try:
        eng = _engine(srv, tok, tmp_path)
        real = eng.sync.post

        def post(i, route, body):  # the file is damaged between the trainer's write and the workers' read
            if route == "/collective_rpc" and body["method"] == "rlvr_load_weights":
                data = bytearray(open(body["args"][0], "rb").read())
                data[-100] ^= 0xFF
                open(body["args"][0], "wb").write(bytes(data))
            return real(i, route, body)

        eng.sync.post = post
        with pytest.raises(WeightSyncError, match="worker 0 did not load version 1: .*hash to"):
            eng.attach(model)
        assert all(weights_checksum(w) == before for w in workers)  # nothing loaded, on any worker
        assert eng.served() == [{"version": 0, "checksum": None}]
        assert calls[-2][0] == "/resume" or calls[-1][0] == "/resume"  # resumed after the refusal
    finally:
        srv.shutdown()


def test_a_vllm_serve_without_dev_mode_is_one_clear_error(tmp_path):
    from policies import PolicyConfig, load_model
    from policies.weight_sync import WeightSyncError

    model, tok = load_model(PolicyConfig(model="tiny-sft"))
    srv, _ = fake_vllm_serve([model], dev_mode=False)
    try:
        with pytest.raises(WeightSyncError, match="VLLM_SERVER_DEV_MODE=1 and --worker-extension-cls "
                                                  "policies.vllm_worker.RLVRWorkerExtension"):
            _engine(srv, tok, tmp_path).attach(model)
    finally:
        srv.shutdown()
