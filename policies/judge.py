"""An LLM judge: scores a response with a rubric, or picks the better of two, through any engine.

    judge = Judge(JudgeConfig(model="gpt-4o-mini", base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY"))
    judge.score([prompt], [response])            # -> [Verdict(correct|wrong|error, score in [0, 1], details)]
    judge.pairwise([prompt], [ours], [theirs])   # -> [win 1 / tie 0.5 / loss 0, or an error verdict]

* Engines: ``engine=openai`` (any OpenAI-compatible endpoint: ``python -m policies serve``, vLLM, a hosted
  API; the key is read from the environment variable ``api_key_env`` at call time and never written to a
  run's config, which holds the variable's name only) or ``engine=transformers`` (a local model).
* Rubric: a text file with ``{prompt}`` and ``{response}`` and the score format: a line that asks for
  ``Score: <LO-HI>`` (e.g. ``Score: <1-10>``). A rubric without the score format, or without the two
  placeholders, is one `JudgeError` line. The default rubric (`DEFAULT_RUBRIC`) rates helpfulness and
  correctness 1-10.
* Parsing is strict: the judgement must hold a line ``Score: N`` (N a number in [LO, HI]; markdown bold
  allowed); none, several that disagree, or one out of range is an ``error`` verdict with the judgement in
  its details, never a 0. The score is mapped to [0, 1] as (N - LO) / (HI - LO); the verdict is
  ``correct`` at ``accept`` or above (on that [0, 1] scale), else ``wrong``.
* Pairwise (`pairwise`): the judge sees both responses as A and B (``PAIRWISE_RUBRIC``, answer ``Winner:
  A``, ``B`` or ``tie``) in both orders (as AlpacaEval and MT-Bench do, against position bias): a win in
  both orders is a win (1), a loss in both a loss (0), anything else a tie (0.5); an unparsable answer in
  either order is an ``error`` verdict.
* Cache: every judgement that came back (parsed or not) is stored in ``cache`` (a JSON-lines file), keyed by
  a hash of (prompt, response(s), rubric text, judge: engine, model, base_url, temperature, max_new_tokens),
  so judging the same again makes no call. Transport failures are not cached.
* Failures: each request is tried ``retries`` + 1 times with exponential backoff (``backoff`` seconds, doubled;
  the SDK's own retries of 429 / 5xx / connection errors count as these), each bounded by ``timeout``;
  then the item is an ``error`` verdict saying why (endpoint down, rate-limited, refused), and the rest go on.

Left out: logprob-weighted scores (G-Eval), reference-guided grading, multi-turn judging, judge ensembles.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Sequence

from policies.base import PolicyError, Prompt, SamplingParams
from verifiers.verdict import Status, Verdict

DEFAULT_RUBRIC = """You are grading a response to a user's request.

Request:
{prompt}

Response:
{response}

Rate how helpful, correct and clear the response is. Explain briefly, then end with one line of the form
Score: <1-10>
"""

PAIRWISE_RUBRIC = """You are comparing two responses to the same request.

Request:
{prompt}

Response A:
{response_a}

Response B:
{response_b}

Which response is more helpful, correct and clear? Explain briefly, then end with one line of the form
Winner: <A|B|tie>
"""

_SCALE = re.compile(r"Score:\s*<\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*>")
_SCORE_LINE = re.compile(r"^\W*score\W*:\W*(-?\d+(?:\.\d+)?)\s*(?:/\s*\d+(?:\.\d+)?)?\W*$", re.IGNORECASE)
_WINNER_LINE = re.compile(r"^\W*winner\W*:\W*(A|B|tie)\W*$", re.IGNORECASE)


class JudgeError(PolicyError):
    """A judge that cannot be used as configured (rubric, engine)."""


@dataclasses.dataclass
class JudgeConfig:
    model: str = ""
    """the judge model: a served model name (engine=openai) or a local model (engine=transformers); empty: no judge"""
    engine: Literal["openai", "transformers"] = "openai"
    """openai: any OpenAI-compatible endpoint (base_url); transformers: a local model"""
    base_url: str = "http://localhost:8000/v1"
    """engine=openai: the endpoint, e.g. python -m policies serve's or a hosted API's"""
    api_key_env: str = "OPENAI_API_KEY"
    """engine=openai: the environment variable that holds the API key (its name is stored, never the key)"""
    rubric: str = ""
    """a rubric file with {prompt}, {response} and a line asking for 'Score: <LO-HI>' (empty: the built-in 1-10 rubric)"""
    accept: float = 0.7
    """the score, on [0, 1], from which a judgement is 'correct' (0.7: 7.3 of 10)"""
    cache: str = ""
    """JSON-lines file of past judgements (empty: runs/judge-cache.jsonl)"""
    max_new_tokens: int = 512
    """length of a judgement"""
    temperature: float = 0.0
    """judge sampling temperature"""
    retries: int = 2
    """retries of a failed request (connection, 429, 5xx, timeout) with exponential backoff before its error verdict"""
    backoff: float = 1.0
    """seconds before the first retry (doubled each time)"""
    timeout: float = 60.0
    """seconds one request may take"""
    max_concurrency: int = 8
    """engine=openai: requests in flight"""
    reference: str = ""
    """algos.evaluate: an evaluation folder of a reference model: pairwise win rate against its responses (both orders)"""


def load_rubric(path: str) -> tuple[str, float, float]:
    """(template, LO, HI) of a rubric file ('' : the default); a `JudgeError` line when it lacks the score format."""
    if not path:
        text = DEFAULT_RUBRIC
    else:
        if not os.path.isfile(path):
            raise JudgeError(f"judge.rubric={path}: no such file ({os.path.abspath(path)})")
        with open(path) as f:
            text = f.read()
    m = _SCALE.search(text)
    if m is None:
        raise JudgeError(f"judge.rubric={path or '(default)'} has no score format: add a line asking the judge to end "
                         f"with 'Score: <1-10>' (any LO-HI), which is what its answer is parsed by")
    lo, hi = float(m.group(1)), float(m.group(2))
    if hi <= lo:
        raise JudgeError(f"judge.rubric={path}: the score format 'Score: <{m.group(1)}-{m.group(2)}>' needs LO < HI")
    missing = [p for p in ("{prompt}", "{response}") if p not in text]
    if missing:
        raise JudgeError(f"judge.rubric={path} lacks {' and '.join(missing)}: the judge must see the request and the response")
    return text, lo, hi


def parse_score(text: str, lo: float, hi: float) -> tuple[float | None, str]:
    """(score in [lo, hi], '') from a judgement's 'Score: N' line, or (None, why it cannot be read)."""
    found = [float(m.group(1)) for line in text.splitlines() if (m := _SCORE_LINE.match(line.strip()))]
    if not found:
        return None, "no 'Score: N' line in the judgement"
    if len(set(found)) > 1:
        return None, f"several different scores {found}"
    if not lo <= found[0] <= hi:
        return None, f"score {found[0]:g} outside {lo:g}-{hi:g}"
    return found[0], ""


def parse_winner(text: str) -> str | None:
    """'A', 'B' or 'tie' from a 'Winner: X' line (one, or several that agree); None otherwise."""
    found = {m.group(1).upper() if m.group(1).lower() != "tie" else "tie"
             for line in text.splitlines() if (m := _WINNER_LINE.match(line.strip()))}
    return found.pop() if len(found) == 1 else None


def _fill(template: str, **kw: str) -> str:
    out = template
    for k, v in kw.items():
        out = out.replace("{" + k + "}", v)
    return out


def _prompt_text(p: Prompt) -> str:
    if isinstance(p, str):
        return p
    return "\n".join(f"{m['role']}: {m['content']}" for m in p)


class Judge:
    """See the module docstring. ``calls`` counts requests sent (cache hits send none)."""

    def __init__(self, cfg: JudgeConfig, engine: Any = None):
        if not cfg.model:
            raise JudgeError("the judge needs judge.model= (a served model name, or a local model with "
                             "judge.engine=transformers)")
        self.cfg = cfg
        self.template, self.lo, self.hi = load_rubric(cfg.rubric)
        self.ident = json.dumps({"engine": cfg.engine, "model": cfg.model, "base_url": cfg.base_url if cfg.engine == "openai"
                                 else None, "temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens})
        self.cache_path = cfg.cache or os.path.join("runs", "judge-cache.jsonl")
        self._cache: dict[str, str] = {}
        if os.path.exists(self.cache_path):
            with open(self.cache_path) as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        self._cache[row["key"]] = row["judgement"]
        self._lock = threading.Lock()
        self.calls = 0
        self._engine = engine

    # ------------------------------------------------------------------ the engine, with bounded retries
    def engine(self) -> Any:
        if self._engine is None:
            if self.cfg.engine == "openai":
                from policies.openai_client import OpenAIEngine

                self._engine = OpenAIEngine(self.cfg.base_url, self.cfg.model, os.environ.get(self.cfg.api_key_env),
                                            self.cfg.max_concurrency, max_retries=0, timeout=self.cfg.timeout)
            else:
                from policies import PolicyConfig, load

                self._engine = load(PolicyConfig(model=self.cfg.model))[0]
        return self._engine

    def _ask(self, texts: Sequence[str]) -> list[tuple[str | None, str]]:
        """(judgement, '') or (None, why it failed) per judge prompt; cached ones without a call."""
        keys = [hashlib.sha256(json.dumps([self.ident, t]).encode()).hexdigest() for t in texts]
        out: list[tuple[str | None, str]] = [(self._cache[k], "") if k in self._cache else (None, "") for k in keys]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if not todo:
            return out
        params = SamplingParams(n=1, temperature=self.cfg.temperature, max_new_tokens=self.cfg.max_new_tokens, seed=0)
        eng = self.engine()
        if self.cfg.engine == "transformers":  # local: one batched call, nothing to retry
            self.calls += len(todo)
            gens = eng.generate([[{"role": "user", "content": texts[i]}] for i in todo], params)
            got = {i: (g[0].text, "") for i, g in zip(todo, gens)}
        else:
            with ThreadPoolExecutor(max_workers=self.cfg.max_concurrency) as pool:
                got = dict(zip(todo, pool.map(lambda i: self._one(eng, texts[i], params), todo)))
        new = []
        for i in todo:
            out[i] = got[i]
            if got[i][0] is not None:
                self._cache[keys[i]] = got[i][0]
                new.append({"key": keys[i], "judgement": got[i][0]})
        if new:
            os.makedirs(os.path.dirname(os.path.abspath(self.cache_path)), exist_ok=True)
            with self._lock, open(self.cache_path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in new)
        return out

    def _one(self, eng: Any, text: str, params: SamplingParams) -> tuple[str | None, str]:
        from policies.openai_client import OpenAIError

        why, wait = "", self.cfg.backoff
        for attempt in range(self.cfg.retries + 1):
            with self._lock:
                self.calls += 1
            try:
                return eng.generate([[{"role": "user", "content": text}]], params)[0][0].text, ""
            except OpenAIError as e:  # a 4xx (429 included) or 5xx answer
                why = str(e)
                if not any(f" {c}:" in why for c in ("429", "500", "502", "503", "504")):
                    return None, f"the judge refused the request: {why}"
            except (ConnectionError, TimeoutError, OSError) as e:
                why = f"the judge endpoint is unreachable: {e}"
            if attempt < self.cfg.retries:
                time.sleep(wait)
                wait *= 2
        return None, f"{why} (after {self.cfg.retries + 1} attempts)"

    # ------------------------------------------------------------------ scoring
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[Verdict]:
        """One verdict per response: its score on [0, 1] in ``score`` and ``details['value']``, or an error."""
        texts = [_fill(self.template, prompt=_prompt_text(p), response=r) for p, r in zip(prompts, responses)]
        out = []
        for judgement, failed in self._ask(texts):
            if judgement is None:
                out.append(Verdict(Status.ERROR, 0.0, details={"value": 0.0, "error": failed}))
                continue
            raw, why = parse_score(judgement, self.lo, self.hi)
            if raw is None:
                out.append(Verdict(Status.ERROR, 0.0, details={"value": 0.0, "error": f"unparsable judgement: {why}",
                                                              "judgement": judgement[-500:]}))
                continue
            value = (raw - self.lo) / (self.hi - self.lo)
            ok = value >= self.cfg.accept
            out.append(Verdict(Status.CORRECT if ok else Status.WRONG, value, extracted=f"{raw:g}",
                               details={"value": value, "judgement": judgement[-500:]}))
        return out

    def pairwise(self, prompts: Sequence[Prompt], ours: Sequence[str], theirs: Sequence[str]) -> list[Verdict]:
        """Ours against theirs, judged in both orders: score 1 (a win in both), 0 (a loss in both) or 0.5; or an error."""
        n = len(prompts)
        texts = [_fill(PAIRWISE_RUBRIC, prompt=_prompt_text(p), response_a=a, response_b=b)
                 for p, a, b in zip(prompts, ours, theirs)]
        texts += [_fill(PAIRWISE_RUBRIC, prompt=_prompt_text(p), response_a=b, response_b=a)
                  for p, a, b in zip(prompts, ours, theirs)]
        got = self._ask(texts)
        out = []
        for i in range(n):
            (j1, e1), (j2, e2) = got[i], got[n + i]
            if j1 is None or j2 is None:
                out.append(Verdict(Status.ERROR, 0.0, details={"value": 0.0, "error": e1 or e2}))
                continue
            w1, w2 = parse_winner(j1), parse_winner(j2)
            if w1 is None or w2 is None:
                out.append(Verdict(Status.ERROR, 0.0, details={"value": 0.0, "error": "unparsable judgement: no single "
                                                              "'Winner: A|B|tie' line", "judgement": (j1 if w1 is None else j2)[-500:]}))
                continue
            ours_first, ours_second = w1 == "A", w2 == "B"  # ours is A in the first order, B in the second
            theirs_first, theirs_second = w1 == "B", w2 == "A"
            value = 1.0 if ours_first and ours_second else 0.0 if theirs_first and theirs_second else 0.5
            out.append(Verdict(Status.CORRECT if value == 1.0 else Status.WRONG, value, extracted=f"{w1}/{w2}",
                               details={"value": value, "orders": [w1, w2]}))
        return out
