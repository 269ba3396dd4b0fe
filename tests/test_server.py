"""The generation server (`python -m policies serve`) as a real process on a free port: its
protocol, evaluation through it, GRPO against it with a weight sync each step, and a server
that dies mid-run."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    return e


class ServerProc:
    def __init__(self, *args):
        self.p = subprocess.Popen([sys.executable, "-m", "policies", "serve", "port=0", *args], cwd=ROOT, env=env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline:
            line = self.p.stdout.readline()
            if line.startswith("serving"):
                break
            if self.p.poll() is not None:
                raise RuntimeError(self.p.stderr.read()[-2000:])
        m = re.search(r"at (http://\S+/v1)", line)
        assert m, line
        self.url = m.group(1)
        self.root = self.url.removesuffix("/v1")

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    s = ServerProc("policy.model=tiny-sft", "batch_wait_ms=50")
    yield s
    s.stop()


def post(url, body, timeout=60):
    return requests.post(url, json=body, timeout=timeout)


def test_completions_take_token_ids_and_return_them(server):
    from policies import PolicyConfig, SamplingParams, load

    engine, _, tok = load(PolicyConfig(model="tiny-sft"))
    ids = [tok("12+30=", add_special_tokens=False)["input_ids"], tok("7*6=", add_special_tokens=False)["input_ids"]]
    r = post(server.url + "/completions", {"model": "tiny-sft", "prompt": ids, "n": 2, "temperature": 1.0, "seed": 3,
                                           "max_tokens": 12, "logprobs": 1, "return_token_ids": True,
                                           "return_tokens_as_token_ids": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3] and body["weights_version"] == 0
    local = engine.generate(ids, SamplingParams(n=2, temperature=1.0, seed=3, max_new_tokens=12))
    for k, c in enumerate(body["choices"]):
        ro = local[k // 2][k % 2]
        assert c["prompt_token_ids"] == ids[k // 2]
        assert c["token_ids"] == list(ro.completion_ids)  # the same samples as the engine in this process
        assert c["logprobs"]["tokens"] == [f"token_id:{t}" for t in ro.completion_ids]
        assert c["logprobs"]["token_logprobs"] == pytest.approx(list(ro.logprobs), abs=1e-6)
        assert c["text"] == ro.text
    chat = post(server.url + "/chat/completions", {"model": "tiny-sft", "temperature": 0, "max_tokens": 8, "logprobs": True,
                                                   "messages": [{"role": "user", "content": "2+2"}]}).json()
    assert chat["choices"][0]["message"]["role"] == "assistant" and chat["choices"][0]["logprobs"]["content"]
    assert requests.get(server.url + "/models", timeout=10).json()["data"][0]["id"] == "tiny-sft"


def test_bad_requests_are_400_and_the_server_lives_on(server):
    r = post(server.url + "/completions", {"model": "tiny-sft", "prompt": [{"x": 1}]})
    assert r.status_code == 400 and "prompt must be" in r.json()["error"]["message"]
    r = post(server.url + "/completions", {"model": "tiny-sft", "prompt": "1+1", "n": 0})
    assert r.status_code == 400 and "n must be" in r.json()["error"]["message"]
    assert post(server.root + "/nope", {}).status_code == 404
    assert post(server.root + "/weights/load", {"path": "/no/such.safetensors", "version": 9}).status_code == 400
    assert requests.get(server.root + "/weights", timeout=10).json()["version"] == 0  # a failed load changed nothing
    assert requests.get(server.root + "/health", timeout=10).json()["status"] == "ok"


def test_concurrent_requests_are_batched(server):
    before = requests.get(server.root + "/health", timeout=10).json()["batches"]
    out = [None] * 8

    def one(i):
        out[i] = post(server.url + "/completions", {"model": "tiny-sft", "prompt": f"{i}+{i}=", "temperature": 0,
                                                    "max_tokens": 6}).json()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batches = requests.get(server.root + "/health", timeout=10).json()["batches"] - before
    assert all(o["choices"][0]["text"] is not None for o in out)
    assert batches < 8  # 8 concurrent greedy requests ran in fewer generate calls


def test_evaluate_through_the_server_matches_the_transformers_engine(server, tmp_path):
    from algos import evaluate

    common = ["env=math", "tasks=24", "max_new_tokens=64"]
    evaluate.main(common + [f"out={tmp_path / 'local'}"])
    evaluate.main(common + ["policy.engine=openai", f"policy.base_url={server.url}", f"out={tmp_path / 'served'}"])

    def rows(d):
        return {r["task_id"]: (r["completion"], r["status"]) for r in map(json.loads, open(d / "samples.jsonl"))}

    a, b = rows(tmp_path / "local"), rows(tmp_path / "served")
    assert len(a) == 24 and a == b


GRPO = ["env=math", "steps=4", "prompts_per_step=8", "group_size=4", "max_new_tokens=48", "heldout_size=32",
        "temperature=1.0", "lr=2e-4", "warmup_steps=1", "save_every=1"]


def test_grpo_against_a_server_syncs_weights_every_step_and_learns_alike(tmp_path, monkeypatch):
    import tempfile

    from algos import grpo
    from policies import PolicyConfig, load_model
    from policies.weight_sync import weights_checksum

    s = ServerProc("policy.model=tiny-sft")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the unnamed sync folder goes
    try:
        served = grpo.main(GRPO + ["policy.engine=server", f"policy.base_url={s.url}", f"out={tmp_path / 's'}"])
        w = requests.get(s.root + "/weights", timeout=10).json()
    finally:
        s.stop()
    assert not list(scratch.glob("rlvr-weights-*"))  # the run's temporary weights folder went with it
    local = grpo.main(GRPO + [f"out={tmp_path / 'l'}"])
    assert w["version"] == 4  # one push per step
    final, _ = load_model(PolicyConfig(model=str(tmp_path / "s" / "checkpoints" / "step-4")))
    assert w["checksum"] == weights_checksum(final)  # the server serves exactly the trained weights
    a = [json.loads(x) for x in open(tmp_path / "s" / "metrics.jsonl")]
    b = [json.loads(x) for x in open(tmp_path / "l" / "metrics.jsonl")]
    for ra, rb in zip(a, b):  # same seeds, same engine behind the protocol: the same run
        for k in ("reward/mean", "loss/policy", "eval/accuracy"):
            if k in ra:
                assert ra[k] == pytest.approx(rb[k], abs=1e-6), (k, ra["step"])
    assert abs(served["heldout_accuracy_after"] - local["heldout_accuracy_after"]) <= 0.05


@pytest.mark.faults
def test_a_server_that_dies_mid_run_ends_it_with_an_error_and_a_checkpoint(tmp_path):
    s = ServerProc("policy.model=tiny-sft")
    out = tmp_path / "run"
    args = [arg for arg in GRPO if not arg.startswith("steps=")] + ["steps=200", "policy.engine=server",
                                                                    f"policy.base_url={s.url}", "policy.max_retries=1",
                                                                    "policy.request_timeout=20", f"out={out}"]
    p = subprocess.Popen([sys.executable, "-m", "algos.grpo", *args], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (out / "checkpoints" / "latest").exists():
            time.sleep(0.1)
        s.p.send_signal(signal.SIGKILL)
        t0 = time.time()
        _, err = p.communicate(timeout=120)
    finally:
        s.stop()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 3, err[-2000:]
    assert time.time() - t0 < 60  # bounded: no hang
    assert "a generation server is down" in err and "Traceback" not in err
    latest = (out / "checkpoints" / "latest").read_text().strip()
    assert "saved" in err and f"resume={out}" in err
    steps = [json.loads(x)["step"] for x in open(out / "metrics.jsonl") if "loss/policy" in x]
    assert latest == f"step-{steps[-1]}"  # the checkpoint is the last finished step


def test_weight_sync_refuses_a_server_that_did_not_load_the_weights(tmp_path):
    from policies import PolicyConfig, load_model
    from policies.weight_sync import FilesystemSync, WeightSyncError

    model, _ = load_model(PolicyConfig(model="tiny-sft"))

    def lying_server(i, path, body):
        return {"version": body.get("version"), "checksum": "0" * 32} if path == "/weights/load" else {}

    with pytest.raises(WeightSyncError, match="checksum"):
        FilesystemSync(str(tmp_path), lying_server).push(model, 1, [0])

    def stale_server(i, path, body):
        from policies.weight_sync import weights_checksum

        return {"version": 0, "checksum": weights_checksum(model)} if path == "/weights/load" else {}

    with pytest.raises(WeightSyncError, match="version 0"):
        FilesystemSync(str(tmp_path), stale_server).push(model, 1, [0])


def test_the_sync_keeps_one_weights_file_and_removes_its_own_folder_on_close(tmp_path, monkeypatch):
    import tempfile

    from policies import PolicyConfig, load_model
    from policies.weight_sync import FilesystemSync, weights_checksum

    model, _ = load_model(PolicyConfig(model="tiny-sft"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def server(i, path, body):
        return {"version": body["version"], "checksum": weights_checksum(model)} if path == "/weights/load" else {}

    own = FilesystemSync(None, server)
    own.push(model, 1, [0])
    own.push(model, 2, [0])
    assert [p.name for p in Path(own.folder).iterdir()] == ["v2.safetensors"]  # the previous version went
    assert Path(own.folder).parent == tmp_path
    own.close()
    assert not Path(own.folder).exists()  # no model-sized file left behind in /tmp
    named = FilesystemSync(str(tmp_path / "mine"), server)
    named.push(model, 1, [0])
    named.close()
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["v1.safetensors"]  # the user's folder stays


def test_one_step_off_policy_grpo_overlaps_and_stays_within_one_step(tmp_path):
    from algos import grpo

    s = ServerProc("policy.model=tiny-sft")
    try:
        grpo.main(GRPO + ["policy.engine=server", f"policy.base_url={s.url}", "max_off_policy_steps=1",
                          f"out={tmp_path / 'a'}"])
        version = requests.get(s.root + "/weights", timeout=10).json()["version"]
    finally:
        s.stop()
    rows = [json.loads(x) for x in open(tmp_path / "a" / "metrics.jsonl") if "loss/policy" in x]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and version == 4
    assert rows[0]["rollout/staleness"] == 0  # the first batch is made before any update
    assert all(0 <= r["rollout/staleness"] <= 1 for r in rows) and any(r["rollout/staleness"] == 1 for r in rows[1:])
    assert all(r["rollout/dropped_stale_groups"] == 0 for r in rows)
    assert all("policy/is_weight" in r for r in rows)


def test_off_policy_needs_a_server_and_refuses_what_it_cannot_do(tmp_path):
    from algos import grpo
    from algos.config import ConfigError

    with pytest.raises(ConfigError, match="needs policy.engine=server"):
        grpo.main(["steps=1", "max_off_policy_steps=1", "heldout_size=4", f"out={tmp_path / 'x'}"])


def test_stale_groups_are_dropped_and_counted():
    from algos.grpo import drop_stale
    from policies import Rollout

    def ro(v):
        return Rollout("p", "t", (1,), (2,), (-0.1,), "eos", v)

    rollouts = [ro(5), ro(5), ro(4), ro(4), ro(3), ro(4)]  # 3 groups of 2; the last has a rollout 2 updates old
    kept, results, tasks, staleness, dropped = drop_stale(rollouts, list("abcdef"), ["t0", "t1", "t2"], 2, 5, 1)
    assert staleness == [0, 0, 1, 1, 2, 1] and dropped == 1
    assert kept == rollouts[:4] and results == list("abcd") and tasks == ["t0", "t1"]
    assert drop_stale(rollouts, list("abcdef"), ["t0", "t1", "t2"], 2, 5, 0)[4] == 2


def test_off_policy_update_weights_tokens_by_the_truncated_importance_ratio():
    import torch

    from algos import grpo, losses
    from policies import PolicyConfig, Rollout, load_model
    from policies.hf import collate, token_logprobs

    model, tok = load_model(PolicyConfig(model="tiny-sft"))
    g = torch.Generator().manual_seed(0)
    prompt = [5, 9, 12]
    comps = [torch.randint(5, 40, (4 + i,), generator=g).tolist() for i in range(4)]
    batch = collate([prompt] * 4, comps, tok.pad_token_id)
    with torch.no_grad():
        cur = token_logprobs(model, batch, temperature=0.7)
    shift = torch.linspace(-1.0, 1.0, cur.shape[1])  # the sampler's logprobs differ: some ratios above the cap
    behav = [(cur[i, :len(c)] - shift[:len(c)]).tolist() for i, c in enumerate(comps)]
    rollouts = [Rollout("p", "", tuple(prompt), tuple(c), tuple(b), "eos", 0) for c, b in zip(comps, behav)]
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    cfg = grpo.GRPOConfig(temperature=0.7, grad_clip=0.0, max_off_policy_steps=1, is_cap=1.5, max_new_tokens=16)

    def grads(c):
        m, _ = load_model(PolicyConfig(model="tiny-sft"))
        stats = grpo.policy_update(m, torch.optim.SGD(m.parameters(), lr=0.0), [(rollouts, rewards)], c, tok.pad_token_id)
        return [p.grad.clone() for p in m.parameters()], stats

    got, stats = grads(cfg)
    # by hand: the ratio against the current weights (1 in value), each token weighted by min(pi / pi_sampler, cap)
    m, _ = load_model(PolicyConfig(model="tiny-sft"))
    adv = losses.group_advantages(rewards[None], "group").flatten()
    logp = token_logprobs(m, batch, temperature=0.7)
    old = torch.zeros_like(logp)
    for i, b in enumerate(behav):
        old[i, :len(b)] = torch.tensor(b)
    wts = torch.exp(logp.detach() - old).clamp(max=1.5) * batch.completion_mask
    loss = (-(torch.exp(logp - logp.detach()) * adv[:, None]) * wts * batch.completion_mask).sum() / batch.completion_mask.sum()
    loss.backward()
    for a, b in zip(got, [p.grad for p in m.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert 0 < stats["policy/is_truncated"][0] < 1  # the cap was active on some tokens, not all
    plain, _ = grads(grpo.GRPOConfig(temperature=0.7, grad_clip=0.0, max_new_tokens=16))
    assert any(not torch.allclose(a, b) for a, b in zip(got, plain))  # and it is not the on-policy update


def test_truncated_sampling_logprobs_are_those_the_loss_recomputes(server, monkeypatch):
    """top_p < 1 / top_k > 0: the logprobs are of the tempered, untruncated distribution, the one
    `token_logprobs` recomputes (the ratio in the loss is 1 on-policy); the server says so, and the
    trainer's client refuses truncated sampling from a server that does not."""
    from http.server import ThreadingHTTPServer

    from policies import PolicyConfig, SamplingParams, load
    from policies import server as srv
    from policies.server_client import ServerEngine

    local, model, tok = load(PolicyConfig(model="tiny-sft"))
    params = SamplingParams(n=4, temperature=0.8, top_p=0.5, top_k=5, max_new_tokens=16, seed=5)
    rollouts = [r for g in ServerEngine([server.url], "tiny-sft", tok).generate(["12+30=", "7*6="], params) for r in g]
    again = local.logprobs(rollouts, temperature=0.8)
    assert all(r.logprobs == pytest.approx(a, abs=1e-5) for r, a in zip(rollouts, again))
    monkeypatch.setattr(srv, "LOGPROBS_DISTRIBUTION", None)  # a server that does not say (vllm serve)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), srv.make_handler(srv.Server(local, model, tok, "tiny-sft")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        other = ServerEngine([f"http://127.0.0.1:{httpd.server_address[1]}/v1"], "tiny-sft", tok, max_retries=0)
        with pytest.raises(ValueError, match="untruncated tempered"):
            other.generate(["1+1="], params)
        assert other.generate(["1+1="], SamplingParams(n=2, temperature=0.8, max_new_tokens=4))  # no truncation: fine
    finally:
        httpd.shutdown()
