"""An OpenAI-compatible generation server on our transformers engine.

    python -m policies serve policy.model=tiny-sft port=8000
    RLVR_API_KEY=secret python -m policies serve policy.model=smollm2-135m host=0.0.0.0 port=8000

The same protocol as ``vllm serve``, so CPU users, tests and evaluation talk to it exactly as
they would to vLLM, and a trainer can use either (``policy.engine=server``):

* ``POST /v1/completions``: ``prompt`` a string, a list of strings, token ids, or a list of
  token-id lists; ``n``, ``temperature``, ``top_p``, ``top_k``, ``max_tokens``, ``stop``, ``seed``,
  ``logprobs``; ``return_token_ids`` (vLLM's: each choice carries ``prompt_token_ids`` and
  ``token_ids``) and ``return_tokens_as_token_ids`` (logprob tokens written ``token_id:N``).
  Choice ``i * n + j`` is sample j of prompt i.
* ``POST /v1/chat/completions``: ``messages`` through the model's chat template; the same options.
* ``GET /v1/models``, ``GET /health`` (status, whether paused and for how long, weights version,
  rows in flight, decode steps run, requests cancelled).
* Weight sync (``policies.weight_sync``): ``GET /weights`` (version and checksum of the weights
  being served), ``POST /weights/load`` ``{"path": FILE.safetensors, "version": N, "checksum": C}``
  (reads and checks the file into a staging copy: names, shapes, and the trainer's checksum ``C``, else
  the file's ``rlvr_checksum`` metadata; then waits for the generation in flight and swaps the weights
  in; answers with the new version and the checksum of what it serves. A file that fails any check is
  a 400 naming why, and the weights, version and checksum served before stay: never half-loaded),
  ``POST /pause`` ``{"timeout": S, "mode": "wait"|"abort"}`` and ``POST /resume``. A pause
  holds new generation; ``mode=abort`` also ends the generation in flight at its next step, its
  choices answered with what they have and ``finish_reason: "abort"`` (vLLM's). A pause expires
  after ``timeout`` seconds (default ``pause_timeout``), so a trainer that pauses and dies does not
  stop the server for good. Every response of a generation route carries ``weights_version``.

Limits (each a key at start; a request over one is answered 400 with an OpenAI-style body
``{"error": {"message", "type": "invalid_request_error", "param", "code"}}`` whose ``code`` names the
limit): ``max_n``, ``max_tokens``, ``max_model_len`` (prompt + max_tokens; default the model's
context), ``max_body_bytes``, ``max_rows`` (prompts x n of one request). A request that fits but
would take the rows in flight over ``max_rows`` is answered 429 (``code: server_busy``, with
``Retry-After``), which OpenAI clients retry with backoff. Every client error is a 400 (bad JSON,
invalid UTF-8, wrong types, token ids outside the vocabulary, an empty prompt), a missing or wrong
API key a 401, an unknown route 404; 500 is left for the server's own bugs.

Scheduling: requests interleave one decode step at a time. Concurrent requests with the same
sampling options that arrive within ``batch_wait_ms`` of the first run as one batch (at most
``policy.max_batch_size`` rows per forward pass); seeded requests batch only with the same seed
(greedy ones ignore the seed). The batches in flight take turns step by step, the one with the
fewest steps left first, and none waits more than ``MAX_SKIP`` (3) turns: a short request finishes
in about its own number of steps while a long one runs, and a long one keeps at least a quarter of
the steps under a stream of short ones. Not implemented: continuous batching
(rows of different requests in one forward pass) and prefix caching; a batch's rows share a
forward pass only with rows of the requests it started with.

Faults: a client that disconnects while its request waits or runs is cancelled (its batch stops
when all the requests in it are gone); a client that does not finish sending its request
(headers and body) within ``read_timeout`` seconds is disconnected; an API key (``api_key`` /
``--api-key`` / ``RLVR_API_KEY``, sent as ``Authorization: Bearer KEY``, the ``vllm serve``
convention) is checked, in constant time, on every route but ``/health``.

Logprobs: those of the tempered, untruncated distribution, ``log_softmax(logits / temperature)``
(raw logits when greedy), also when ``top_p`` < 1 or ``top_k`` > 0 truncate what is sampled: the
quantity ``hf.token_logprobs`` recomputes in the loss. Responses say so
(``"logprobs_distribution": "tempered"``) and the trainer's client (`ServerEngine`) refuses
truncated sampling against a server that does not.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import math
import os
import queue
import select
import socket
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from policies.base import PolicyError, SamplingParams

MAX_SKIP = 3  # a batch in flight gets at least one decode step in MAX_SKIP + 1
LOGPROBS_DISTRIBUTION = "tempered"  # log_softmax(logits / T) before top-k/top-p truncation


@dataclasses.dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    """address to listen on (0.0.0.0: every interface)"""
    port: int = 8000
    """port to listen on (0: a free one, printed at start)"""
    batch_wait_ms: float = 5.0
    """how long the first request of a batch waits for others with the same options"""
    served_model_name: str = ""
    """the model name clients send and /v1/models lists (default: policy.model)"""
    api_key: str = ""
    """the key clients must send (Authorization: Bearer KEY) on every route but /health; also --api-key KEY or the RLVR_API_KEY environment variable (preferred: a command line is visible to every user of the machine); empty: no key"""
    max_n: int = 256
    """most samples per prompt (n) one request may ask for"""
    max_tokens: int = 4096
    """most completion tokens (max_tokens) one request may ask for"""
    max_model_len: int = 0
    """longest prompt + max_tokens a request may ask for (0: the model's max_position_embeddings)"""
    max_body_bytes: int = 16 << 20
    """largest request body (Content-Length) in bytes"""
    max_rows: int = 2048
    """most rows (prompts x n) of one request (400 above it) and of all requests in flight (429 above it)"""
    read_timeout: float = 30.0
    """seconds a client has to send a whole request (headers and body); an idle kept-alive connection is closed after it"""
    pause_timeout: float = 300.0
    """seconds a /pause lasts when it names no timeout (a pause always expires)"""


class ApiError(Exception):
    """A request the server refuses: ``status`` and an OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class BadRequest(ApiError):
    """A client error: 400."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(400, message, param, code)


class Cancelled(Exception):
    """The request's client went away; its generation was stopped."""


# ---------------------------------------------------------------------- request parsing
def _get(body: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """``body[key]`` of type ``kind`` (``null`` or absent: ``default``); booleans are not numbers here."""
    v = body.get(key)
    if v is None:
        return default
    ok = isinstance(v, kind) and not (isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)))
    if not ok:
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise BadRequest(f"{key} must be {names.replace('int or float', 'a number')}, got {json.dumps(v)[:80]}", key,
                         "invalid_type")
    if isinstance(v, float) and not math.isfinite(v):
        raise BadRequest(f"{key} must be finite, got {v}", key, "invalid_value")
    return v


def parse_params(body: dict[str, Any], cfg: ServeConfig) -> SamplingParams:
    n = _get(body, "n", int, 1)
    max_tokens = _get(body, "max_tokens", int, 16)
    if n > cfg.max_n:
        raise BadRequest(f"n={n} is above this server's limit max_n={cfg.max_n}", "n", "max_n")
    if max_tokens > cfg.max_tokens:
        raise BadRequest(f"max_tokens={max_tokens} is above this server's limit max_tokens={cfg.max_tokens}",
                         "max_tokens", "max_tokens")
    stop = _get(body, "stop", (str, list), [])
    stop = [stop] if isinstance(stop, str) else stop
    if not all(isinstance(s, str) for s in stop):
        raise BadRequest("stop must be a string or a list of strings", "stop", "invalid_type")
    temperature = float(_get(body, "temperature", (int, float), 1.0))
    seed = _get(body, "seed", int, None)
    top_k = _get(body, "top_k", int, 0)
    _get(body, "logprobs", (int, bool), None)
    try:
        return SamplingParams(n=n, temperature=temperature, top_p=float(_get(body, "top_p", (int, float), 1.0)),
                              top_k=max(0, top_k), max_new_tokens=max_tokens, stop=tuple(stop),
                              seed=None if temperature == 0 else seed)
    except ValueError as e:  # SamplingParams' own checks: n >= 1, 0 < top_p <= 1, ...
        raise BadRequest(str(e).replace("max_new_tokens", "max_tokens"), None, "invalid_value") from None


def parse_prompts(body: dict[str, Any]) -> list[Any]:
    """The request's prompts: strings, token-id lists, or one chat (a list of messages)."""
    if "messages" in body:
        msgs = body["messages"]
        if not isinstance(msgs, list) or not msgs or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs):
            raise BadRequest("messages must be a non-empty list of {role, content} objects with string values",
                             "messages", "invalid_type")
        return [msgs]
    p = body.get("prompt")
    if isinstance(p, str):
        return [p]
    if isinstance(p, list) and p and all(isinstance(x, int) and not isinstance(x, bool) for x in p):
        return [list(p)]
    if isinstance(p, list) and p and all(isinstance(x, str) or (isinstance(x, list) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in x)) for x in p):
        return list(p)
    raise BadRequest("prompt must be a string, a list of strings, a list of token ids, or a list of token-id lists",
                     "prompt", "invalid_type")


def check_key(header: str | None, key: str) -> bool:
    """``Authorization: Bearer KEY`` against the server's key, in constant time."""
    sent = (header or "").removeprefix("Bearer ").strip() if (header or "").startswith("Bearer ") else ""
    return hmac.compare_digest(sent.encode(), key.encode())


# ---------------------------------------------------------------------- the engine's side
@dataclasses.dataclass
class Request:
    params: SamplingParams
    prompts: list[list[int]]
    future: Future
    arrived: float
    cancelled: bool = False

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.params.n


@dataclasses.dataclass
class Job:
    """One batch in flight: the requests it serves and its step generator (`TransformersEngine.generate_steps`)."""

    requests: list[Request]
    steps: Any
    left: int  # decode steps it may still take (max_tokens per chunk of rows): its place in the queue
    skipped: int = 0  # scheduler turns since its last step


class Server:
    """The engine behind the routes: the requests waiting, the batches in flight (stepped in turn by
    one scheduler thread), the weights' version, pause state and counters."""

    def __init__(self, engine: Any, model: Any, tokenizer: Any, name: str, batch_wait_ms: float = 5.0,
                 cfg: ServeConfig | None = None):
        self.engine, self.model, self.tokenizer, self.name = engine, model, tokenizer, name
        self.cfg = cfg or ServeConfig(batch_wait_ms=batch_wait_ms)
        self.batch_wait = batch_wait_ms / 1000.0
        self.context = self.cfg.max_model_len or int(getattr(model.config, "max_position_embeddings", 0) or 0) or 1 << 30
        self.vocab = int(model.get_input_embeddings().num_embeddings)
        self.lock = threading.Lock()  # a decode step and a weight load never overlap
        self.state = threading.Condition()  # guards everything below
        self.pending: list[Request] = []
        self.active: list[Job] = []
        self.rows = 0  # rows of requests waiting or in flight
        self.paused_until: float | None = None
        self.abort = False
        self.loading = 0
        self.version = 0
        self.batches = self.steps = self.cancelled = 0
        from policies.weight_sync import weights_checksum

        self.checksum = weights_checksum(model)
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._worker, daemon=True, name="scheduler").start()

    # ------------------------------------------------------------------ pause
    def paused(self) -> bool:
        """Whether a pause holds; an expired one ends here (and says so on stderr)."""
        with self.state:
            if self.paused_until is not None and time.monotonic() >= self.paused_until:
                print("pause expired: generation resumes (no /resume came)", file=sys.stderr, flush=True)
                self.paused_until, self.abort = None, False
                self.state.notify_all()
            return self.paused_until is not None

    def pause(self, timeout: float, abort: bool = False) -> None:
        with self.state:
            self.paused_until, self.abort = time.monotonic() + timeout, abort

    def resume(self) -> None:
        with self.state:
            self.paused_until, self.abort = None, False
            self.state.notify_all()

    def health(self) -> dict[str, Any]:
        paused = self.paused()
        left = None if self.paused_until is None else max(0.0, self.paused_until - time.monotonic())
        return {"status": "paused" if paused else "ok", "paused": paused, "pause_expires_in": left,
                "weights_version": self.version, "batches": self.batches, "rows_in_flight": self.rows,
                "decode_steps": self.steps, "cancelled": self.cancelled}

    # ------------------------------------------------------------------ scheduling
    def submit(self, prompts: list[list[int]], params: SamplingParams) -> Request:
        req = Request(params, prompts, Future(), time.monotonic())
        with self.state:
            if self.rows + req.rows > self.cfg.max_rows:
                raise ApiError(429, f"the server is busy: {self.rows} rows in flight, this request's {req.rows} would "
                                    f"pass max_rows={self.cfg.max_rows}; retry later", None, "server_busy",
                               "rate_limit_error")
            self.rows += req.rows
        self.queue.put(req)
        return req

    def wait(self, req: Request, gone: Callable[[], bool]) -> tuple[list[list[Any]], int]:
        """The request's result; if ``gone()`` turns true first (the client left), it is cancelled."""
        while True:
            try:
                return req.future.result(timeout=0.05)
            except FutureTimeout:
                if gone():
                    req.cancelled = True
                    raise Cancelled() from None

    def _done(self, reqs: list[Request]) -> None:
        with self.state:
            self.rows -= sum(r.rows for r in reqs)
            self.state.notify_all()

    def _start(self, now: float) -> None:
        """Start a batch from the oldest waiting request once it has waited ``batch_wait`` (with every
        waiting request of the same options), unless paused or a weight load waits."""
        while True:
            try:
                self.pending.append(self.queue.get_nowait())
            except queue.Empty:
                break
        gone = [r for r in self.pending if r.cancelled]
        if gone:
            self.pending = [r for r in self.pending if not r.cancelled]
            self.cancelled += len(gone)
            for r in gone:
                r.future.set_exception(Cancelled())
            self._done(gone)
        if not self.pending or self.paused() or self.loading or now - self.pending[0].arrived < self.batch_wait:
            return
        key = self.pending[0].params
        batch = [r for r in self.pending if r.params == key]
        self.pending = [r for r in self.pending if r.params != key]
        steps = self.engine.generate_steps([p for r in batch for p in r.prompts], key, abort=lambda: self.abort)
        chunks = -(-sum(r.rows for r in batch) // max(1, getattr(self.engine, "max_batch_size", 1 << 30)))
        with self.state:
            self.active.append(Job(batch, steps, (key.max_new_tokens + 1) * chunks))
        self.batches += 1

    def _step(self, job: Job) -> None:
        """One decode step of ``job``; at its end, the answers go back to its requests."""
        if all(r.cancelled for r in job.requests):  # every client left: stop computing
            job.steps.close()
            self.cancelled += len(job.requests)
            for r in job.requests:
                r.future.set_exception(Cancelled())
            return self._finish(job)
        try:
            with self.lock:
                next(job.steps)
            self.steps += 1
            return
        except StopIteration as done:
            outs, i = done.value, 0
            for r in job.requests:
                r.future.set_result((outs[i:i + len(r.prompts)], self.version))
                i += len(r.prompts)
        except PolicyError as e:  # a request the engine's settings cannot take (a row above policy.max_batch_tokens)
            for r in job.requests:
                r.future.set_exception(BadRequest(str(e), "prompt", "max_batch_tokens"))
        except Exception as e:  # noqa: BLE001 - the error goes back to each waiting request, as a 500
            for r in job.requests:
                r.future.set_exception(e)
        self._finish(job)

    def _finish(self, job: Job) -> None:
        with self.state:
            self.active.remove(job)
        self._done(job.requests)

    def _worker(self) -> None:
        while True:
            now = time.monotonic()
            self._start(now)
            if not self.active:
                wait = self.batch_wait - (now - self.pending[0].arrived) if self.pending else 0.05
                try:
                    self.pending.append(self.queue.get(timeout=min(max(wait, 0.001), 0.05)))
                except queue.Empty:
                    pass
                continue
            self._step(self._next())

    def _next(self) -> Job:
        """The batch to step: the one with the fewest steps left (shortest remaining first, so a short
        request is not held behind a long one), unless one has waited ``MAX_SKIP`` turns (no starvation:
        every batch gets at least one step in ``MAX_SKIP + 1``)."""
        starved = [j for j in self.active if j.skipped >= MAX_SKIP]
        job = starved[0] if starved else min(self.active, key=lambda j: j.left)
        for j in self.active:
            j.skipped = 0 if j is job else j.skipped + 1
        job.left -= 1
        return job

    # ------------------------------------------------------------------ weights
    def load_weights(self, path: str, version: int, checksum: str | None = None) -> dict[str, Any]:
        """Stage, verify, swap (`policies.weight_sync.stage` / `swap`): the file is read and checked before
        generation is held, so a bad file costs the requests in flight nothing and changes nothing."""
        from policies.weight_sync import WeightLoadError, stage, swap

        try:
            staged, served = stage(self.model, path, checksum)
        except WeightLoadError as e:
            raise BadRequest(f"{e}; still serving version {self.version} (checksum {self.checksum})", "path",
                             "load_failed") from None
        with self.state:  # after the generation in flight, before the next
            self.loading += 1
            while self.active:
                self.state.wait(0.05)
        try:
            with self.lock:
                swap(self.model, staged)
                self.version, self.checksum = int(version), served
                return {"version": self.version, "checksum": self.checksum}
        finally:
            with self.state:
                self.loading -= 1

    # ------------------------------------------------------------------ responses
    def encode(self, prompts: list[Any], params: SamplingParams) -> list[list[int]]:
        """Token ids of each prompt, checked against the vocabulary and the context."""
        from policies.hf import encode_prompt

        out = []
        for p in prompts:
            ids = list(p) if isinstance(p, list) and (not p or isinstance(p[0], int)) else encode_prompt(self.tokenizer, p)
            if not ids:
                raise BadRequest("a prompt is empty: send at least one token", "prompt", "empty_prompt")
            bad = next((t for t in ids if not 0 <= t < self.vocab), None)
            if bad is not None:
                raise BadRequest(f"token id {bad} is outside the vocabulary [0, {self.vocab})", "prompt", "invalid_token_id")
            if len(ids) + params.max_new_tokens > self.context:
                raise BadRequest(f"this model's maximum context length is {self.context} tokens (max_model_len); this "
                                 f"request asks for {len(ids) + params.max_new_tokens} ({len(ids)} in the prompt, "
                                 f"{params.max_new_tokens} in the completion): shorten the prompt or lower max_tokens",
                                 "max_tokens", "context_length_exceeded")
            out.append(ids)
        return out

    def completion(self, body: dict[str, Any], chat: bool, gone: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        prompts, params = parse_prompts(body), parse_params(body, self.cfg)
        rows = len(prompts) * params.n
        if rows > self.cfg.max_rows:
            raise BadRequest(f"{len(prompts)} prompts x n={params.n} = {rows} rows is above this server's limit "
                             f"max_rows={self.cfg.max_rows}", "n", "max_rows")
        want_ids = bool(body.get("return_token_ids"))
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        want_lp = body.get("logprobs") not in (None, False, 0) or (chat and body.get("logprobs") is True)
        outs, version = self.wait(self.submit(self.encode(prompts, params), params), gone)
        choices = []
        n_prompt = n_completion = 0
        for i, rs in enumerate(outs):
            for j, r in enumerate(rs):
                stop_reason = None
                if r.finish_reason == "stop":
                    stop_reason = next((s for s in params.stop), None)
                reason = r.finish_reason if r.finish_reason in ("length", "abort") else "stop"
                toks = [f"token_id:{t}" if as_ids else self.tokenizer.decode([t]) for t in r.completion_ids]
                lps = list(r.logprobs or ())
                ch: dict[str, Any] = {"index": i * params.n + j, "finish_reason": reason, "stop_reason": stop_reason}
                if chat:
                    ch["message"] = {"role": "assistant", "content": r.text}
                    ch["logprobs"] = {"content": [{"token": t, "logprob": lp} for t, lp in zip(toks, lps)]} if want_lp else None
                else:
                    ch["text"] = r.text
                    ch["logprobs"] = {"tokens": toks, "token_logprobs": lps} if want_lp else None
                if want_ids:
                    ch["prompt_token_ids"], ch["token_ids"] = list(r.prompt_ids), list(r.completion_ids)
                choices.append(ch)
                n_completion += len(r.completion_ids)
            n_prompt += len(rs[0].prompt_ids) if rs else 0
        return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:16]}",
                "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": self.name, "choices": choices, "weights_version": version,
                "logprobs_distribution": LOGPROBS_DISTRIBUTION,
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                          "total_tokens": n_prompt + n_completion}}


def send_json(handler: BaseHTTPRequestHandler, obj: Any, code: int = 200, headers: dict[str, str] | None = None) -> None:
    """One JSON response with its length (the connection stays open: HTTP/1.1)."""
    data = json.dumps(obj).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(data)


def client_gone(sock: socket.socket) -> bool:
    """Whether the peer closed its side: readable with nothing to read (a pipelined request is data)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    cfg = server.cfg

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = cfg.read_timeout  # each read; the watchdog below bounds the whole request

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per request is noise here
            return

        def handle_one_request(self) -> None:
            # slowloris: the request (headers and body) must arrive within read_timeout, however slowly it trickles
            self.watchdog = threading.Timer(cfg.read_timeout, self._too_slow)
            self.watchdog.daemon = True
            self.watchdog.start()
            try:
                super().handle_one_request()
            finally:
                self.watchdog.cancel()

        def _too_slow(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _send(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            send_json(self, obj, code, headers)

        def _fail(self, e: ApiError) -> None:
            self._send(e.status, e.body(), {"Retry-After": "1"} if e.status == 429 else None)

        def _authorised(self) -> bool:
            if not cfg.api_key or check_key(self.headers.get("Authorization"), cfg.api_key):
                return True
            self.watchdog.cancel()
            self._fail(ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY' with the "
                                     "server's key (its api_key / --api-key / RLVR_API_KEY)", None, "invalid_api_key"))
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.watchdog.cancel()
            if self.path == "/health":
                return self._send(200, server.health())
            if not self._authorised():
                return
            if self.path == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model",
                                                                   "owned_by": "rlvr-gym",
                                                                   "max_model_len": server.context}]})
            if self.path == "/weights":
                return self._send(200, {"version": server.version, "checksum": server.checksum})
            return self._fail(ApiError(404, f"no route GET {self.path}", None, "not_found"))

        def _body(self) -> dict[str, Any]:
            if self.headers.get("Transfer-Encoding"):
                raise BadRequest("chunked bodies are not supported: send Content-Length", None, "invalid_body")
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise BadRequest(f"Content-Length {self.headers.get('Content-Length')!r} is not a number", None,
                                 "invalid_body") from None
            if n > cfg.max_body_bytes or n < 0:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                raise BadRequest(f"the body ({n} bytes) is above this server's limit max_body_bytes={cfg.max_body_bytes}",
                                 None, "max_body_bytes")
            raw = self.rfile.read(n) if n else b"{}"
            self.watchdog.cancel()  # the whole request is in
            if len(raw) < n:
                self.close_connection = True
                raise BadRequest(f"the body ended after {len(raw)} of {n} bytes", None, "invalid_body")
            try:
                body = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise BadRequest(f"the body is not valid UTF-8 ({e.reason} at byte {e.start})", None, "invalid_body") from None
            except json.JSONDecodeError as e:
                raise BadRequest(f"the body is not valid JSON: {e}", None, "invalid_json") from None
            except RecursionError:
                raise BadRequest("the body's JSON is nested too deeply", None, "invalid_json") from None
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object", None, "invalid_body")
            return body

        def do_POST(self) -> None:  # noqa: N802
            try:
                if not self._authorised():
                    return
                body = self._body()
                gone = lambda: client_gone(self.connection)  # noqa: E731
                if self.path == "/v1/completions":
                    return self._send(200, server.completion(body, chat=False, gone=gone))
                if self.path == "/v1/chat/completions":
                    return self._send(200, server.completion(body, chat=True, gone=gone))
                if self.path == "/weights/load":
                    if not isinstance(body.get("path"), str) or not isinstance(body.get("version"), int):
                        raise BadRequest("/weights/load needs {path: string, version: integer}", "path", "invalid_type")
                    checksum = _get(body, "checksum", str, None)
                    return self._send(200, server.load_weights(body["path"], body["version"], checksum))
                if self.path == "/pause":
                    timeout = float(_get(body, "timeout", (int, float), cfg.pause_timeout))
                    mode = _get(body, "mode", str, "wait")
                    if timeout <= 0 or mode not in ("wait", "abort"):
                        raise BadRequest(f"/pause takes timeout > 0 (seconds, got {timeout}) and mode 'wait' or 'abort' "
                                         f"(got {mode!r})", "timeout" if timeout <= 0 else "mode", "invalid_value")
                    server.pause(timeout, abort=mode == "abort")
                    return self._send(200, {"paused": True, "expires_in": timeout, "mode": mode})
                if self.path == "/resume":
                    server.resume()
                    return self._send(200, {"paused": False})
                return self._fail(ApiError(404, f"no route POST {self.path}", None, "not_found"))
            except Cancelled:
                self.close_connection = True  # nobody to answer
            except ApiError as e:
                return self._fail(e)
            except (ConnectionError, TimeoutError):
                self.close_connection = True  # the client went away or stalled mid-body
            except Exception as e:  # noqa: BLE001 - our bug: a 500 with its reason, the traceback on stderr, the server lives on
                traceback.print_exc(file=sys.stderr)
                return self._fail(ApiError(500, f"{type(e).__name__}: {e}", None, "internal_error", "server_error"))

    return Handler


def _argv_keys(argv: list[str]) -> list[str]:
    """``--api-key KEY`` / ``--api-key=KEY`` (vllm serve's spelling) as ``api_key=KEY``."""
    out, it = [], iter(argv)
    for a in it:
        if a == "--api-key":
            key = next(it, None)
            if key is None:
                raise SystemExit("error: --api-key needs a value: --api-key KEY (or set RLVR_API_KEY)")
            out.append(f"api_key={key}")
        elif a.startswith("--api-key="):
            out.append("api_key=" + a.split("=", 1)[1])
        else:
            out.append(a)
    return out


def check_config(cfg: ServeConfig) -> None:
    for key in ("max_n", "max_tokens", "max_body_bytes", "max_rows"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"{key}={getattr(cfg, key)}: use a value >= 1")
    for key in ("read_timeout", "pause_timeout"):
        if not getattr(cfg, key) > 0:
            raise ValueError(f"{key}={getattr(cfg, key)}: use a number of seconds > 0")
    if cfg.max_model_len < 0:
        raise ValueError(f"max_model_len={cfg.max_model_len}: use a token count >= 1, or 0 for the model's context")


def serve(argv: list[str] | None = None) -> None:
    from policies import PolicyConfig, load
    from policies.cli import parse_keys

    keys = parse_keys(_argv_keys(argv if argv is not None else sys.argv[2:]), {"policy": PolicyConfig, "": ServeConfig},
                      prog="python -m policies serve")
    pcfg, scfg = keys["policy"], keys[""]
    if pcfg.engine not in ("transformers",):
        raise SystemExit(f"error: policy.engine={pcfg.engine}: the server runs the transformers engine "
                         f"(for vLLM use `vllm serve`)")
    scfg.api_key = scfg.api_key or os.environ.get("RLVR_API_KEY", "")
    check_config(scfg)
    engine, model, tok = load(pcfg)
    server = Server(engine, model, tok, scfg.served_model_name or pcfg.model, scfg.batch_wait_ms, scfg)
    httpd = ThreadingHTTPServer((scfg.host, scfg.port), make_handler(server))
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    print(f"serving {server.name} at http://{host}:{port}/v1 (weights version 0, checksum {server.checksum[:server.checksum.find(':') + 13]}, "
          f"context {server.context}, {'API key required' if scfg.api_key else 'no API key'})", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
