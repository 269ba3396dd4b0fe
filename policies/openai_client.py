"""OpenAI-compatible client engine (``policy.engine=openai policy.base_url=...``), for evaluation.

Talks to any server that speaks the OpenAI protocol (vLLM's ``vllm serve``, SGLang, hosted
APIs): chat prompts go to ``/chat/completions``, text prompts to ``/completions``. Requests
run concurrently (at most ``max_concurrency`` in flight), and are retried with exponential
backoff on connection errors, 429 and 5xx. Logprobs are kept when the server returns them;
token ids are not available over this protocol (they are empty tuples), so this engine
cannot feed a trainer.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from policies.base import Prompt, Rollout, SamplingParams, truncate_at_stop


class OpenAIError(RuntimeError):
    """The server refused a request for a reason retrying cannot fix (4xx other than 429)."""


class OpenAIEngine:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_concurrency: int = 16,
                 max_retries: int = 5, timeout: float = 120.0, backoff: float = 0.5):
        if not base_url:
            raise ValueError("policy.engine=openai needs policy.base_url, e.g. http://localhost:8000/v1")
        self.base_url = base_url.rstrip("/")
        self.model, self.api_key = model, api_key
        self.max_concurrency, self.max_retries, self.timeout, self.backoff = max_concurrency, max_retries, timeout, backoff
        self.n_retries = 0

    @classmethod
    def from_config(cls, cfg: Any) -> "OpenAIEngine":
        return cls(cfg.base_url or "", cfg.model, os.environ.get(cfg.api_key_env), cfg.max_concurrency)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as e:
                if e.code != 429 and e.code < 500:
                    raise OpenAIError(f"{self.base_url + path} answered {e.code}: {e.read()[:300]!r}") from None
                err: Exception = e
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                err = e
            if attempt == self.max_retries:
                raise ConnectionError(f"{self.base_url + path} failed after {self.max_retries + 1} attempts: {err}")
            self.n_retries += 1
            time.sleep(self.backoff * (2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _one(self, prompt: Prompt, params: SamplingParams, seed: int | None) -> list[Rollout]:
        body: dict[str, Any] = {"model": self.model, "n": params.n, "temperature": params.temperature,
                                "top_p": params.top_p, "max_tokens": params.max_new_tokens, "logprobs": True}
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        if params.top_k:
            body["top_k"] = params.top_k  # vLLM/SGLang extension
        if isinstance(prompt, str):
            body["prompt"] = prompt
            body["logprobs"] = 1
            resp = self._post("/completions", body)
        else:
            body["messages"] = prompt
            resp = self._post("/chat/completions", body)
        out = []
        for ch in sorted(resp["choices"], key=lambda c: c.get("index", 0)):
            text = ch["text"] if "text" in ch else (ch.get("message") or {}).get("content") or ""
            lps = _logprobs(ch.get("logprobs"))
            reason = {"length": "length", "stop": "stop"}.get(ch.get("finish_reason"), "stop")
            if reason == "stop" and not ch.get("stop_reason") and not any(s in text for s in params.stop):
                reason = "eos"
            text, _ = truncate_at_stop(text, params.stop)
            out.append(Rollout(prompt, text, (), (), lps, reason))  # type: ignore[arg-type]
        return out

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Rollout]]:
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = [pool.submit(self._one, p, params, None if params.seed is None else params.seed + i)
                       for i, p in enumerate(prompts)]
            return [f.result() for f in futures]


def _logprobs(lp: Any) -> tuple[float, ...] | None:
    if not lp:
        return None
    if isinstance(lp, dict) and lp.get("content") is not None:  # chat format
        return tuple(float(t["logprob"]) for t in lp["content"])
    if isinstance(lp, dict) and lp.get("token_logprobs") is not None:  # completions format
        return tuple(float(x) for x in lp["token_logprobs"])
    return None
