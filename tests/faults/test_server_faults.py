"""Faults at the generation server (`python -m policies serve`, a real process on a free port):
slowloris, a client that disconnects mid-generation, a short request behind a long one, requests
over each limit, bad bytes, a missing API key, a pause the trainer walks away from, and an abort
mid-generation. Each failed on the server before issue 26 (no deadline, no cancellation, one
request at a time, no limits, 500s, open routes, a pause forever, aborted samples labelled eos)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

pytestmark = pytest.mark.faults

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# a prompt the cold-start model has never seen, at temperature 2: 64 rows almost never all end before 400 tokens
LONG = {"model": "tiny-sft", "prompt": "zq#@!", "n": 64, "temperature": 2.0, "max_tokens": 400, "seed": 1}
SHORT = {"model": "tiny-sft", "prompt": "12+30=", "temperature": 0, "max_tokens": 4}


class ServerProc:
    def __init__(self, *args: str, key: str | None = KEY):
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("RLVR_API_KEY", None)
        if key:
            env["RLVR_API_KEY"] = key
        self.p = subprocess.Popen([sys.executable, "-m", "policies", "serve", "port=0", "policy.model=tiny-sft", *args],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = ""
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.p.stdout.readline()
            if line.startswith("serving") or self.p.poll() is not None:
                break
        m = re.search(r"at (http://\S+/v1)", line)
        if not m:
            raise RuntimeError(self.p.stderr.read()[-2000:])
        self.url = m.group(1)
        self.root = self.url.removesuffix("/v1")
        self.host, self.port = re.match(r"http://([^:]+):(\d+)", self.url).groups()

    def health(self) -> dict:
        return requests.get(self.root + "/health", timeout=10).json()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    s = ServerProc("read_timeout=2", "max_n=64", "max_tokens=400", "max_model_len=450", "max_body_bytes=65536",
                   "max_rows=200", "batch_wait_ms=5")
    yield s
    s.stop()


def post(url: str, body: dict, headers: dict | None = None, timeout: float = 120) -> requests.Response:
    return requests.post(url, json=body, headers=AUTH if headers is None else headers, timeout=timeout)


def raw(server: ServerProc, data: bytes, timeout: float = 30) -> tuple[int, dict]:
    """Send ``data`` as it is; the status and JSON body of the answer."""
    with socket.create_connection((server.host, int(server.port)), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(rest) < n:
            rest += s.recv(65536)
    return int(head.split()[1]), json.loads(rest[:n])


def request_bytes(body: bytes, path: str = "/v1/completions", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def wait_for(cond, timeout: float, every: float = 0.05) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(every)
    return False


def test_slowloris_is_disconnected_after_read_timeout(server):
    s = socket.create_connection((server.host, int(server.port)), timeout=10)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    t0, closed = time.time(), False
    try:
        while time.time() - t0 < 10:  # one header byte every 0.2 s: each read succeeds, the request never ends
            s.sendall(b"X")
            time.sleep(0.2)
    except OSError:  # the server shut the connection: broken pipe / reset
        closed = True
    if not closed:
        s.settimeout(1)
        try:
            closed = s.recv(1) == b""
        except OSError:
            closed = True
    took = time.time() - t0
    s.close()
    assert closed and took < 6, took  # read_timeout=2, not never
    assert server.health()["status"] == "ok"


def test_a_client_that_disconnects_mid_generation_is_cancelled(server):
    before = server.health()
    s = socket.create_connection((server.host, int(server.port)), timeout=30)
    s.sendall(request_bytes(json.dumps(LONG).encode()))
    assert wait_for(lambda: server.health()["decode_steps"] > before["decode_steps"] + 5, 60)
    s.close()  # the client walks away
    assert wait_for(lambda: server.health()["rows_in_flight"] == 0, 5)
    h = server.health()
    assert h["cancelled"] == before["cancelled"] + 1
    time.sleep(0.5)
    steps = server.health()["decode_steps"]
    assert steps == h["decode_steps"]  # nothing runs on for nobody
    assert steps - before["decode_steps"] < 300  # stopped well before its 400 steps


def test_a_short_request_is_not_blocked_behind_a_long_one(server):
    done: dict[str, float] = {}
    t0 = time.time()

    def long():
        r = post(server.url + "/completions", LONG)
        assert r.status_code == 200, r.text
        done["long"] = time.time() - t0

    th = threading.Thread(target=long)
    th.start()
    assert wait_for(lambda: server.health()["rows_in_flight"] == 64, 30)
    busy = post(server.url + "/completions", {**SHORT, "prompt": ["1+1=", "2+2=", "3+3="], "n": 48})
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "server_busy"  # 64 + 144 rows > max_rows=200
    assert busy.headers["Retry-After"] == "1"
    r = post(server.url + "/completions", SHORT)
    done["short"] = time.time() - t0
    assert r.status_code == 200 and r.json()["choices"][0]["text"]
    assert "long" not in done  # the short one came back while the long one still ran
    th.join()
    assert done["long"] > done["short"]


def error(r: requests.Response | tuple[int, dict], status: int = 400) -> dict:
    code, body = (r.status_code, r.json()) if isinstance(r, requests.Response) else r
    assert code == status, (code, body)
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


def test_requests_over_each_limit_are_400_naming_it(server):
    url = server.url + "/completions"
    e = error(post(url, {**SHORT, "n": 65, "temperature": 1.0}))
    assert (e["code"], e["param"], e["type"]) == ("max_n", "n", "invalid_request_error") and "max_n=64" in e["message"]
    e = error(post(url, {**SHORT, "max_tokens": 401}))
    assert (e["code"], e["param"]) == ("max_tokens", "max_tokens") and "max_tokens=400" in e["message"]
    e = error(post(url, {**SHORT, "prompt": "1+" * 40, "max_tokens": 400}))  # 80 + 400 tokens > max_model_len=450
    assert e["code"] == "context_length_exceeded" and "450" in e["message"]
    e = error(post(url, {**SHORT, "prompt": ["1+1="] * 5, "n": 41, "temperature": 1.0}))  # 205 rows > max_rows=200
    assert e["code"] == "max_rows" and "max_rows=200" in e["message"]
    e = error(post(url, {**SHORT, "prompt": "x" * 70000}))
    assert e["code"] == "max_body_bytes" and "65536" in e["message"]
    assert post(url, SHORT).status_code == 200  # and the server serves on


@pytest.mark.parametrize("body, param", [
    (b'{"prompt": "1+1=", "max_tokens": 4, "stop": "\xff\xfe"}', None),  # invalid UTF-8
    (b'{"prompt": "1+1=", "max_tokens": 4', None),  # truncated JSON
    (b'[1, 2, 3]', None),  # not an object
    (b'{"prompt": "1+1=", "temperature": NaN}', "temperature"),
    (b'{"prompt": "1+1=", "temperature": "hot"}', "temperature"),
    (b'{"prompt": "1+1=", "n": 1.5}', "n"),
    (b'{"prompt": "1+1=", "n": true}', "n"),
    (b'{"prompt": "1+1=", "stop": 5}', "stop"),
    (b'{"prompt": "1+1=", "max_tokens": -3}', None),
    (b'{"prompt": [5, 9, 1000000000]}', "prompt"),  # a token id outside the vocabulary
    (b'{"prompt": [5, -1]}', "prompt"),
    (b'{"prompt": [[5, 9], "1+1=", [true]]}', "prompt"),
    (b'{"prompt": ""}', "prompt"),
    (b'{"messages": [{"role": "user", "content": [{"type": "text"}]}]}', "messages"),
])
def test_bad_bytes_are_400_never_500(server, body, param):
    path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
    e = error(raw(server, request_bytes(body, path)))
    assert e["type"] == "invalid_request_error" and (param is None or e["param"] == param), e


def test_bad_headers_are_400(server):
    assert error(raw(server, request_bytes(b"", extra="Transfer-Encoding: chunked\r\n")))["code"] == "invalid_body"
    bad_len = request_bytes(b"{}").replace(b"Content-Length: 2", b"Content-Length: lots")
    assert error(raw(server, bad_len))["code"] == "invalid_body"
    assert server.health()["status"] == "ok"


def test_every_route_but_health_needs_the_key(server, tmp_path):
    for wrong in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
        for method, path, body in [("POST", "/v1/completions", SHORT), ("POST", "/v1/chat/completions", {}),
                                   ("GET", "/v1/models", None), ("GET", "/weights", None),
                                   ("POST", "/weights/load", {"path": str(tmp_path / "w.safetensors"), "version": 9}),
                                   ("POST", "/pause", {}), ("POST", "/resume", {})]:
            r = requests.request(method, server.root + path, json=body, headers=wrong, timeout=30)
            assert r.status_code == 401 and error(r, 401)["code"] == "invalid_api_key", (path, wrong)
    assert requests.get(server.root + "/health", timeout=10).status_code == 200  # no key for health
    h = server.health()
    assert h["paused"] is False and h["weights_version"] == 0  # the unauthorised /pause and load did nothing
    assert requests.get(server.url + "/models", headers=AUTH, timeout=10).status_code == 200


def test_the_trainers_client_sends_the_key_from_rlvr_api_key(server, monkeypatch):
    from policies import PolicyConfig, SamplingParams, load_model
    from policies.server_client import ServerEngine

    _, tok = load_model(PolicyConfig(model="tiny-sft"))
    cfg = PolicyConfig(model="tiny-sft", engine="server", base_url=server.url, api_key_env="NO_SUCH_VAR_H26",
                       max_retries=0)
    monkeypatch.setenv("RLVR_API_KEY", KEY)
    out = ServerEngine.from_config(cfg, tok).generate(["12+30="], SamplingParams(temperature=0, max_new_tokens=4))
    assert out[0][0].completion_ids
    monkeypatch.setenv("RLVR_API_KEY", "wrong")
    with pytest.raises(Exception, match="401|API key"):
        ServerEngine.from_config(cfg, tok).generate(["12+30="], SamplingParams(temperature=0, max_new_tokens=4))


def test_a_pause_the_trainer_walks_away_from_expires(server):
    r = post(server.root + "/pause", {"timeout": 1.5})
    assert r.status_code == 200 and r.json()["expires_in"] == 1.5
    h = server.health()
    assert h["paused"] is True and h["status"] == "paused" and 0 < h["pause_expires_in"] <= 1.5
    t0 = time.time()
    r = post(server.url + "/completions", SHORT, timeout=30)  # held while paused, served once it expires
    assert r.status_code == 200 and 1.0 < time.time() - t0 < 10
    assert server.health()["paused"] is False
    assert error(post(server.root + "/pause", {"timeout": -1}))["param"] == "timeout"
    assert error(post(server.root + "/pause", {"mode": "later"}))["param"] == "mode"


def test_an_abort_ends_generation_with_finish_reason_abort(server):
    out = {}
    th = threading.Thread(target=lambda: out.update(r=post(server.url + "/completions", {**LONG, "return_token_ids": True})))
    th.start()
    assert wait_for(lambda: server.health()["decode_steps"] > 0 and server.health()["rows_in_flight"] == 64, 30)
    time.sleep(0.3)
    assert post(server.root + "/pause", {"timeout": 30, "mode": "abort"}).status_code == 200
    th.join(timeout=30)
    post(server.root + "/resume", {})
    choices = out["r"].json()["choices"]
    reasons = {c["finish_reason"] for c in choices}
    assert "abort" in reasons and reasons <= {"abort", "stop"}  # never "length" (nor eos) for a cut-short sample
    cut = [c for c in choices if c["finish_reason"] == "abort"]
    assert all(0 < len(c["token_ids"]) < 400 for c in cut)  # partial, as vLLM's abort leaves them


def test_the_trainers_client_samples_aborted_rows_again(server):
    from policies import PolicyConfig, SamplingParams, load_model
    from policies.server_client import ServerEngine

    _, tok = load_model(PolicyConfig(model="tiny-sft"))
    engine = ServerEngine([server.url], "tiny-sft", tok, api_key=KEY, max_retries=2)
    out = {}
    params = SamplingParams(n=32, temperature=2.0, max_new_tokens=300, seed=2)
    th = threading.Thread(target=lambda: out.update(ro=engine.generate(["zq#@!"], params)))
    th.start()
    assert wait_for(lambda: server.health()["rows_in_flight"] == 32 and server.health()["decode_steps"] > 0, 30)
    time.sleep(0.3)
    batches = server.health()["batches"]
    post(server.root + "/pause", {"timeout": 30, "mode": "abort"})

    # the aborted batch has ended and the paused server starts nothing new; the client's resubmission (the
    # rows that were cut short, 1 to 32 of them: some may have ended on their own first) waits in the queue
    def aborted_and_held() -> bool:
        steps = server.health()["decode_steps"]
        time.sleep(0.5)
        h = server.health()
        return h["decode_steps"] == steps and h["batches"] == batches and h["rows_in_flight"] <= 32

    assert wait_for(aborted_and_held, 20)
    post(server.root + "/resume", {})
    th.join(timeout=120)
    rollouts = out["ro"][0]
    assert len(rollouts) == 32 and all(r.finish_reason in ("eos", "stop", "length") for r in rollouts)
    assert all(len(r.logprobs) == len(r.completion_ids) for r in rollouts)
    assert server.health()["batches"] > batches  # the aborted ones were sampled again
