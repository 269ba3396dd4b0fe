"""Training against generation servers: ``policy.engine=server policy.base_url=URL[,URL...]``.

The servers are ``python -m policies serve`` or ``vllm serve`` (any OpenAI-compatible server
that takes token-id prompts and returns token ids, vLLM's ``return_token_ids``). Training against
stock ``vllm serve`` (0.12+): ``policy.weight_sync=vllm``, the servers started with
``VLLM_SERVER_DEV_MODE=1 vllm serve MODEL --worker-extension-cls policies.vllm_worker.RLVRWorkerExtension``
(`policies.weight_sync.VLLMServeSync`: the safetensors file of ``filesystem``, checked and loaded by
each vLLM worker through ``/collective_rpc``, between ``/pause`` and ``/resume``). The trainer
sends token ids, never text it would have to re-tokenize, and reads back the completion's ids
and sampling logprobs, so a rollout from a server is the same record as one made in-process.

* The step's prompts are split over the replicas in contiguous chunks, one request per replica,
  sent at once; each replica gets its own seed (``seed + 7919 * replica``).
* The ``openai`` SDK carries the requests: connection pooling, a bounded timeout on every call
  (``policy.request_timeout``), retries with exponential backoff (``policy.max_retries``). A
  replica still unreachable after that raises ``ServerDown``: a trainer saves a checkpoint and
  stops with a one-line error (exit 3).
* ``update_weights(model)`` pushes the new weights to every replica through the configured
  ``WeightSync`` (``policy.weight_sync``: filesystem, vllm or nccl) and checks each replica's version and
  checksum; ``attach(model)`` does it at the start for every replica that does not serve the
  trainer's weights under one version, and ``resync()`` again mid-run when a replica restarted (the
  trainer calls it when rollouts come back from other weights: `algos.common.sample_and_score`, and
  GRPO's off-policy path when every group was stale). Every rollout carries ``version``: the weights
  version that produced it.
* The API key (a server started with ``--api-key`` / ``RLVR_API_KEY``): the variable named by
  ``policy.api_key_env``, else ``RLVR_API_KEY``, sent as ``Authorization: Bearer KEY``.
* A sample the server aborted (``finish_reason: abort``, a ``/pause`` with ``mode=abort``) is partial:
  it is sampled again, never handed to the trainer (`_redo_aborted`).
* ``top_p`` < 1 or ``top_k`` > 0 only against a server whose responses say their logprobs are of the
  untruncated tempered distribution (``"logprobs_distribution": "tempered"``, as ``python -m policies
  serve`` does), the one the loss recomputes; otherwise a ValueError.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from policies.base import Prompt, Rollout, SamplingParams, ServerDown, truncate_at_stop
from policies.openai_client import PooledClients


def split_urls(base_url: str | None) -> list[str]:
    urls = [u.strip().rstrip("/") for u in (base_url or "").split(",") if u.strip()]
    if not urls:
        raise ValueError("policy.engine=server needs policy.base_url=URL[,URL...], e.g. http://localhost:8000/v1 "
                         "(start one with: python -m policies serve policy.model=... port=8000)")
    return urls


class ServerEngine(PooledClients):
    def __init__(self, base_urls: Sequence[str], model_name: str, tokenizer: Any, api_key: str | None = None,
                 timeout: float = 300.0, max_retries: int = 3, weight_sync: str = "filesystem",
                 sync_dir: str | None = None, nccl_master: str = ""):
        try:
            import openai
        except ImportError as e:
            raise ImportError("policy.engine=server needs the openai SDK: pip install openai "
                              "(or pip install 'rlvr-gym[server]')") from e
        self._openai = openai
        self.urls = list(base_urls)
        self.model_name, self.tokenizer = model_name, tokenizer
        self.timeout, self.max_retries = timeout, max_retries
        self.clients = [openai.OpenAI(base_url=u, api_key=api_key or "EMPTY", timeout=timeout, max_retries=max_retries)
                        for u in self.urls]
        self.version = 0
        self.checksum: str | None = None
        if weight_sync == "filesystem":
            from policies.weight_sync import FilesystemSync

            self.sync: Any = FilesystemSync(sync_dir, self._post)
        elif weight_sync == "vllm":  # stock vllm serve with our worker extension (policies.vllm_worker)
            from policies.weight_sync import VLLMServeSync

            self.sync = VLLMServeSync(sync_dir, self._post, timeout)
        elif weight_sync == "nccl":  # vLLM's NCCL weight transfer (GPU)
            from policies.weight_sync import NCCLSync

            if not nccl_master:
                raise ValueError("policy.weight_sync=nccl needs policy.nccl_master=HOST:PORT, the address vLLM's "
                                 "workers reach this trainer at (replica i uses PORT + i)")
            self.sync = NCCLSync(self._post, lambda i, path: self._call(i, "GET", path),
                                 [self._root(i) for i in range(len(self.urls))], nccl_master, timeout)
        else:
            raise ValueError(f"policy.weight_sync={weight_sync!r}: use filesystem (python -m policies serve), vllm "
                             f"(stock vllm serve) or nccl (vLLM's NCCL transfer)")

    @classmethod
    def from_config(cls, cfg: Any, tokenizer: Any) -> "ServerEngine":
        import os

        # the key: policy.api_key_env's variable, else RLVR_API_KEY (the server's own); never a config key, which
        # every run would write to its config.json
        key = os.environ.get(cfg.api_key_env) or os.environ.get("RLVR_API_KEY")
        return cls(split_urls(cfg.base_url), cfg.served_model or cfg.model, tokenizer, key,
                   cfg.request_timeout, cfg.max_retries, cfg.weight_sync, cfg.sync_dir, cfg.nccl_master)

    # ------------------------------------------------------------------ weight routes
    def _root(self, i: int) -> str:
        return self.urls[i].removesuffix("/v1")

    def _post(self, i: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(i, "POST", path, body)

    def _call(self, i: int, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A weight route of replica i (outside /v1), through the same client: its timeout and retries."""
        openai, url = self._openai, self._root(i) + path
        try:
            if method == "GET":
                return self.clients[i].get(url, cast_to=object)
            return self.clients[i].post(url, cast_to=object, body=body or {})
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise ServerDown(f"{url}: {type(e).__name__}: {e} (after {self.max_retries} retries)") from None
        except openai.APIStatusError as e:
            raise RuntimeError(f"{url} answered {e.status_code}: {e.message}") from None

    def close(self) -> None:
        super().close()
        if hasattr(getattr(self, "sync", None), "close"):
            self.sync.close()

    def served(self) -> list[dict[str, Any]]:
        """Each replica's ``{version, checksum}`` (``vllm serve``: its workers', through /collective_rpc)."""
        if getattr(self.sync, "name", "") in ("vllm", "nccl"):
            return [self.sync.served(i) for i in range(len(self.urls))]
        return [self._call(i, "GET", "/weights") for i in range(len(self.urls))]

    def attach(self, model: Any) -> None:
        """The replicas must serve the trainer's weights under one version: at the start of training (they
        do not after a resume, or when started from another checkpoint) and whenever one restarted. Every
        replica that does not serve (that version, this checksum), whatever its version, gets the
        weights. The version: the trainer's once it has one (`resync`, mid-run); at the start the highest a
        replica serves if one already serves these weights under it, else one more."""
        from policies.weight_sync import weights_checksum

        self._model = model  # resync() pushes it again
        want = weights_checksum(model)
        served = self.served()
        if self.checksum is None:  # the start: no version of ours yet
            self.version = max((s.get("version") or 0) for s in served)
            if not any(s.get("version") == self.version and s.get("checksum") == want for s in served):
                self.version += 1
        stale = [i for i, s in enumerate(served) if (s.get("version"), s.get("checksum")) != (self.version, want)]
        if stale:
            self.sync.push(model, self.version, stale)
        self.checksum = want

    def resync(self) -> None:
        """Bring every replica that lost the trainer's weights (a restart: version 0, the model it was started
        with) back to them, under the trainer's version (`attach` with the model it was given)."""
        if getattr(self, "_model", None) is None:
            raise RuntimeError("ServerEngine.resync() before attach(model)")
        self.attach(self._model)

    def update_weights(self, model: Any) -> None:
        self.version += 1
        self.checksum = self.sync.push(model, self.version, range(len(self.urls)))

    # ------------------------------------------------------------------ generation
    def _request(self, i: int, ids: list[list[int]], prompts: list[Prompt], params: SamplingParams,
                 seed: int | None) -> list[list[Rollout]]:
        openai = self._openai
        extra: dict[str, Any] = {"return_token_ids": True, "skip_special_tokens": False}
        if params.top_k:
            extra["top_k"] = params.top_k
        try:
            resp = self.clients[i].completions.create(
                model=self.model_name, prompt=ids, n=params.n, temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_new_tokens, stop=list(params.stop) or None, seed=seed, logprobs=1, extra_body=extra)
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise ServerDown(f"{self.urls[i]}: {type(e).__name__}: {e} (after {self.max_retries} retries)") from None
        version = (resp.model_extra or {}).get("weights_version")
        if (params.top_p < 1 or params.top_k > 0) and (resp.model_extra or {}).get("logprobs_distribution") != "tempered":
            k = f" and SamplingParams.top_k={params.top_k}" if params.top_k else ""  # top_k: the Python API's, no key
            raise ValueError(f"top_p={params.top_p}{k}: {self.urls[i]} does not say its logprobs are of the untruncated "
                             f"tempered distribution that the loss recomputes (vllm serve's are raw or truncated); use "
                             f"top_p=1{' and SamplingParams.top_k=0' if k else ''}, or python -m policies serve")
        choices = sorted(resp.choices, key=lambda c: c.index)
        if len(choices) != len(ids) * params.n:
            raise RuntimeError(f"{self.urls[i]} returned {len(choices)} choices for {len(ids)} prompts x n={params.n}")
        out: list[list[Rollout]] = []
        for k, (p, pid) in enumerate(zip(prompts, ids)):
            group = []
            for c in choices[k * params.n:(k + 1) * params.n]:
                ext = c.model_extra or {}
                comp = ext.get("token_ids")
                if comp is None:
                    raise RuntimeError(f"{self.urls[i]} returned no token ids: it must support return_token_ids "
                                       f"(python -m policies serve, or vllm serve >= 0.10.2)")
                lps = tuple(float(x) for x in (c.logprobs.token_logprobs if c.logprobs else []) or [])
                reason = c.finish_reason if c.finish_reason in ("length", "abort") else (
                    "stop" if ext.get("stop_reason") else "eos")
                text, _ = truncate_at_stop(c.text, params.stop)
                group.append(Rollout(p, text, tuple(pid), tuple(comp), lps or None, reason, version))  # type: ignore[arg-type]
            out.append(group)
        return out

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Rollout]]:
        from policies.hf import encode_prompt

        ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        k = len(self.urls)
        bounds = [(len(ids) * r // k, len(ids) * (r + 1) // k) for r in range(k)]
        jobs = [(r, lo, hi) for r, (lo, hi) in enumerate(bounds) if hi > lo]
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futs = [pool.submit(self._request, r, ids[lo:hi], list(prompts[lo:hi]), params,
                                None if params.seed is None else params.seed + 7919 * r) for r, lo, hi in jobs]
            out = [g for f in futs for g in f.result()]
        return self._redo_aborted(out, ids, prompts, params)

    def _redo_aborted(self, out: list[list[Rollout]], ids: list[list[int]], prompts: Sequence[Prompt],
                      params: SamplingParams) -> list[list[Rollout]]:
        """Samples a server ended early (``finish_reason: abort``: a ``/pause`` with ``mode=abort``, vLLM's
        abort) are partial: neither the model's end nor a real truncation, so no trainer may score them.
        Each is sampled again (one sample, a fresh seed; the request waits out the pause and carries
        the version that made it), at most ``max_retries + 1`` rounds; then an error."""
        for attempt in range(self.max_retries + 1):
            todo = [(k, j) for k, group in enumerate(out) for j, r in enumerate(group) if r.finish_reason == "abort"]
            if not todo:
                return out
            one = dataclasses.replace(params, n=1, seed=None if params.seed is None
                                      else params.seed + 104729 * (attempt + 1))
            redone = self._request(attempt % len(self.urls), [ids[k] for k, _ in todo], [prompts[k] for k, _ in todo],
                                   one, one.seed)
            for (k, j), (r,) in zip(todo, redone):
                out[k][j] = r
        left = sum(r.finish_reason == "abort" for group in out for r in group)
        if left:
            raise RuntimeError(f"{left} samples were aborted by the servers {self.max_retries + 1} times in a row "
                               f"(a /pause mode=abort that keeps coming?); none is used as a rollout")
        return out
