"""OpenAI-compatible client engine (``policy.engine=openai policy.base_url=...``), for evaluation.

Talks to any server that speaks the OpenAI protocol (vLLM's ``vllm serve``, SGLang, hosted
APIs, ``python -m policies serve``) through the ``openai`` SDK: chat prompts go to
``/chat/completions``, text prompts to ``/completions``. Requests run concurrently (at most
``max_concurrency`` in flight); the SDK bounds each with a timeout and retries connection errors,
429 and 5xx with exponential backoff. Logprobs are kept when the server returns them;
token ids are not available over this protocol (they are empty tuples), so this engine
cannot feed a trainer.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from policies.base import Prompt, Rollout, SamplingParams, truncate_at_stop


class OpenAIError(RuntimeError):
    """The server refused a request for a reason retrying cannot fix (4xx other than 429)."""


class PooledClients:
    """Engines holding ``openai`` SDK clients (``self.clients``): their pooled connections are closed on
    ``close()`` and when the engine is collected, so no socket is left open."""

    clients: list[Any]

    def close(self) -> None:
        for c in getattr(self, "clients", []):
            c.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the sockets go with the process
            pass


class OpenAIEngine(PooledClients):
    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_concurrency: int = 16,
                 max_retries: int = 5, timeout: float = 120.0):
        if not base_url:
            raise ValueError("policy.engine=openai needs policy.base_url, e.g. http://localhost:8000/v1")
        try:
            import openai
        except ImportError as e:
            raise ImportError("policy.engine=openai needs the openai SDK: pip install openai "
                              "(or pip install 'rlvr-gym[server]')") from e
        self._openai = openai
        self.base_url = base_url.rstrip("/")
        self.model, self.max_concurrency, self.max_retries = model, max_concurrency, max_retries
        self._attempts = self._calls = 0
        self._lock = threading.Lock()

        def count(request: Any) -> None:  # every attempt, first tries and the SDK's retries alike
            with self._lock:
                self._attempts += 1

        http = openai.DefaultHttpxClient(event_hooks={"request": [count]})
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY", timeout=timeout,
                                    max_retries=max_retries, http_client=http)
        self.clients = [self.client]

    @property
    def n_retries(self) -> int:
        """Requests the SDK sent again (429, 5xx, connection errors), with its exponential backoff."""
        return self._attempts - self._calls

    @classmethod
    def from_config(cls, cfg: Any) -> "OpenAIEngine":
        return cls(cfg.base_url or "", getattr(cfg, "served_model", "") or cfg.model, os.environ.get(cfg.api_key_env),
                   cfg.max_concurrency)

    def _create(self, chat: bool, **body: Any) -> Any:
        openai = self._openai
        with self._lock:
            self._calls += 1
        try:
            api = self.client.chat.completions if chat else self.client.completions
            return api.create(**body)
        except openai.APIStatusError as e:
            raise OpenAIError(f"{self.base_url} answered {e.status_code}: {str(e.message)[:300]}") from None
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise ConnectionError(f"{self.base_url} failed after {self.max_retries + 1} attempts: {e}") from None

    def _one(self, prompt: Prompt, params: SamplingParams, seed: int | None) -> list[Rollout]:
        body: dict[str, Any] = {"model": self.model, "n": params.n, "temperature": params.temperature,
                                "top_p": params.top_p, "max_tokens": params.max_new_tokens}
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        if params.top_k:
            body["extra_body"] = {"top_k": params.top_k}  # vLLM/SGLang extension
        chat = not isinstance(prompt, str)
        if chat:
            resp = self._create(True, messages=prompt, logprobs=True, **body)
        else:
            resp = self._create(False, prompt=prompt, logprobs=1, **body)
        out = []
        for ch in sorted(resp.choices, key=lambda c: c.index or 0):
            text = (ch.message.content if chat else ch.text) or ""
            lps = _logprobs(ch.logprobs)
            ext = ch.model_extra or {}
            reason = {"length": "length", "stop": "stop"}.get(ch.finish_reason or "", "stop")
            if reason == "stop" and not ext.get("stop_reason") and not any(s in text for s in params.stop):
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
    content = getattr(lp, "content", None)
    if content is not None:  # chat format
        return tuple(float(t.logprob) for t in content)
    tlp = getattr(lp, "token_logprobs", None)
    if tlp is not None:  # completions format
        return tuple(float(x) for x in tlp)
    return None
