"""An OpenAI-compatible generation server on our transformers engine.

    python -m policies serve policy.model=tiny-sft port=8000
    python -m policies serve policy.model=smollm2-135m host=0.0.0.0 port=8000 batch_wait_ms=10

The same protocol as ``vllm serve``, so CPU users, tests and evaluation talk to it exactly as
they would to vLLM, and a trainer can use either (``policy.engine=server``):

* ``POST /v1/completions``: ``prompt`` a string, a list of strings, token ids, or a list of
  token-id lists; ``n``, ``temperature``, ``top_p``, ``top_k``, ``max_tokens``, ``stop``, ``seed``,
  ``logprobs``; ``return_token_ids`` (vLLM's: each choice carries ``prompt_token_ids`` and
  ``token_ids``) and ``return_tokens_as_token_ids`` (logprob tokens written ``token_id:N``).
  Choice ``i * n + j`` is sample j of prompt i.
* ``POST /v1/chat/completions``: ``messages`` through the model's chat template; the same options.
* ``GET /v1/models``, ``GET /health``.
* Weight sync (``policies.weight_sync``): ``GET /weights`` (version and checksum of the weights
  being served), ``POST /weights/load`` ``{"path": FILE.safetensors, "version": N}`` (waits for
  the generation in flight, loads, answers with the new version and the checksum of what it
  loaded), ``POST /pause`` and ``POST /resume`` (hold new generation while a trainer transfers).
  Every response of a generation route carries ``weights_version``: the version that produced it.

Concurrent requests with the same sampling options are batched: the first one waits at most
``batch_wait_ms`` for others, then all run as one ``generate`` call (at most ``max_batch_size``
rows per forward pass). Requests with a ``seed`` batch only with the same seed (a seeded request
alone is reproducible); greedy requests ignore the seed and batch freely.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from policies.base import SamplingParams


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


class BadRequest(ValueError):
    """A request the server cannot serve: answered 400 with this message."""


def _params(body: dict[str, Any]) -> SamplingParams:
    try:
        stop = body.get("stop") or ()
        temperature = float(body.get("temperature", 1.0))
        seed = body.get("seed")
        return SamplingParams(n=int(body.get("n", 1)), temperature=temperature, top_p=float(body.get("top_p", 1.0)),
                              top_k=max(0, int(body.get("top_k", 0) or 0)), max_new_tokens=int(body.get("max_tokens", 16)),
                              stop=(stop,) if isinstance(stop, str) else tuple(stop),
                              seed=None if seed is None or temperature == 0 else int(seed))
    except (TypeError, ValueError) as e:
        raise BadRequest(f"bad sampling options: {e}") from None


def _prompts(body: dict[str, Any]) -> list[Any]:
    """The request's prompts: strings, token-id lists, or one chat (a list of messages)."""
    if "messages" in body:
        msgs = body["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m for m in msgs):
            raise BadRequest("messages must be a list of {role, content} objects")
        return [msgs]
    p = body.get("prompt")
    if isinstance(p, str):
        return [p]
    if isinstance(p, list) and p and all(isinstance(x, int) for x in p):
        return [list(p)]
    if isinstance(p, list) and p and all(isinstance(x, str) or (isinstance(x, list) and all(isinstance(t, int) for t in x))
                                         for x in p):
        return list(p)
    raise BadRequest("prompt must be a string, a list of strings, a list of token ids, or a list of token-id lists")


class Server:
    """The engine behind the routes: a batching queue, the weights' version, and the lock that
    keeps generation and weight loading apart."""

    def __init__(self, engine: Any, model: Any, tokenizer: Any, name: str, batch_wait_ms: float = 5.0):
        self.engine, self.model, self.tokenizer, self.name = engine, model, tokenizer, name
        self.batch_wait = batch_wait_ms / 1000.0
        self.lock = threading.Lock()  # generation and weight loads take turns
        self.paused = threading.Event()
        self.resumed = threading.Condition()
        self.version = 0
        from policies.weight_sync import weights_checksum

        self.checksum = weights_checksum(model)
        self.queue: queue.Queue = queue.Queue()
        self.batches = 0
        threading.Thread(target=self._worker, daemon=True, name="batcher").start()

    # ------------------------------------------------------------------ batching
    def submit(self, prompts: list[Any], params: SamplingParams) -> tuple[list[list[Any]], int]:
        fut: Future = Future()
        self.queue.put((params, prompts, fut))
        return fut.result()

    def _worker(self) -> None:
        pending: list[tuple[SamplingParams, list[Any], Future]] = []
        while True:
            if not pending:
                pending.append(self.queue.get())
            deadline = time.monotonic() + self.batch_wait
            while (left := deadline - time.monotonic()) > 0:
                try:
                    pending.append(self.queue.get(timeout=left))
                except queue.Empty:
                    break
            key = pending[0][0]
            batch = [x for x in pending if x[0] == key]
            pending = [x for x in pending if x[0] != key]
            with self.resumed:
                while self.paused.is_set():
                    self.resumed.wait()
            try:
                with self.lock:
                    outs = self.engine.generate([p for _, ps, _ in batch for p in ps], key)
                    version = self.version
                self.batches += 1
                i = 0
                for _, ps, fut in batch:
                    fut.set_result((outs[i:i + len(ps)], version))
                    i += len(ps)
            except Exception as e:  # noqa: BLE001 - the error goes back to each waiting request, as a 500
                for _, _, fut in batch:
                    fut.set_exception(e)

    # ------------------------------------------------------------------ weights
    def load_weights(self, path: str, version: int) -> dict[str, Any]:
        from safetensors.torch import load_model

        from policies.weight_sync import weights_checksum

        with self.lock:  # after the generation in flight, before the next
            try:
                load_model(self.model, path, strict=True)
            except (OSError, RuntimeError, ValueError) as e:
                raise BadRequest(f"cannot load {path}: {e}") from None
            self.version = int(version)
            self.checksum = weights_checksum(self.model)
            return {"version": self.version, "checksum": self.checksum}

    def pause(self) -> None:
        self.paused.set()

    def resume(self) -> None:
        with self.resumed:
            self.paused.clear()
            self.resumed.notify_all()

    # ------------------------------------------------------------------ responses
    def completion(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        prompts, params = _prompts(body), _params(body)
        outs, version = self.submit(prompts, params)
        want_ids = bool(body.get("return_token_ids"))
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        want_lp = body.get("logprobs") not in (None, False, 0) or (chat and body.get("logprobs") is True)
        choices = []
        n_prompt = n_completion = 0
        for i, rs in enumerate(outs):
            for j, r in enumerate(rs):
                stop_reason = None
                if r.finish_reason == "stop":
                    stop_reason = next((s for s in params.stop), None)
                reason = "length" if r.finish_reason == "length" else "stop"
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
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                          "total_tokens": n_prompt + n_completion}}


def send_json(handler: BaseHTTPRequestHandler, obj: Any, code: int = 200) -> None:
    """One JSON response with its length (the connection stays open: HTTP/1.1)."""
    data = json.dumps(obj).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per request is noise here
            return

        def _send(self, code: int, obj: Any) -> None:
            send_json(self, obj, code)

        def _error(self, code: int, msg: str) -> None:
            self._send(code, {"error": {"message": msg, "type": "invalid_request_error" if code < 500 else "server_error",
                                        "code": code}})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                return self._send(200, {"status": "ok", "weights_version": server.version, "batches": server.batches})
            if self.path == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model",
                                                                   "owned_by": "rlvr-gym"}]})
            if self.path == "/weights":
                return self._send(200, {"version": server.version, "checksum": server.checksum})
            return self._error(404, f"no route GET {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            try:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                if self.path == "/v1/completions":
                    return self._send(200, server.completion(body, chat=False))
                if self.path == "/v1/chat/completions":
                    return self._send(200, server.completion(body, chat=True))
                if self.path == "/weights/load":
                    if "path" not in body or "version" not in body:
                        raise BadRequest("/weights/load needs {path, version}")
                    return self._send(200, server.load_weights(body["path"], body["version"]))
                if self.path == "/pause":
                    server.pause()
                    return self._send(200, {"paused": True})
                if self.path == "/resume":
                    server.resume()
                    return self._send(200, {"paused": False})
                return self._error(404, f"no route POST {self.path}")
            except (BadRequest, json.JSONDecodeError) as e:
                return self._error(400, str(e))
            except Exception as e:  # noqa: BLE001 - a failed generation is a 500 with its reason, the server lives on
                return self._error(500, f"{type(e).__name__}: {e}")

    return Handler


def serve(argv: list[str] | None = None) -> None:
    from policies import PolicyConfig, load
    from policies.cli import parse_keys

    keys = parse_keys(argv if argv is not None else sys.argv[2:], {"policy": PolicyConfig, "": ServeConfig},
                      prog="python -m policies serve")
    pcfg, scfg = keys["policy"], keys[""]
    if pcfg.engine not in ("transformers",):
        raise SystemExit(f"error: policy.engine={pcfg.engine}: the server runs the transformers engine "
                         f"(for vLLM use `vllm serve`)")
    engine, model, tok = load(pcfg)
    server = Server(engine, model, tok, scfg.served_model_name or pcfg.model, scfg.batch_wait_ms)
    httpd = ThreadingHTTPServer((scfg.host, scfg.port), make_handler(server))
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    print(f"serving {server.name} at http://{host}:{port}/v1 (weights version 0, checksum {server.checksum[:12]})",
          flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
