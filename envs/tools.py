"""Tool use over several turns: ``rlvr/ToolMath-v0`` (alias ``toolmath``).

The model solves a math problem and may call tools before it answers, inside its own reply:

    <tool name="calc">37 * 48 + 9</tool>              an arithmetic expression, evaluated exactly
    <tool name="python">print(sum(range(10)))</tool>   a Python program run in the sandbox; its stdout

Generation stops at ``</tool>``; the environment runs the tool and the result comes back as the
next observation, ``<result>...</result>``, which the model's text continues from. At most
``max_turns`` calls; the episode ends at the first reply with no call (or when the calls are
used up). The reward is the final ``<answer>``'s verdict (the math verifier, plus format),
minus ``call_cost`` per call (0 by default), never below 0. Text inside ``<result>`` blocks is
the tools', not the model's: it is removed before scoring (a program that prints
``<answer>42</answer>`` answers nothing) and trainers leave its tokens out of the loss
(``Rollout.loss_mask``). A tool's output can never close its ``<result>`` block or write a tag
of the model's: every ``<`` that would open a tag (``</result>``, ``<answer>``, ``</think>``, a chat
template's ``<|im_end|>``) is written ``&lt;`` when the result is inserted (`result_block`), in
the gym ``step`` and in the token-level turn loop (`algos.episodes`) alike, so the transcript's
tags are the model's own.

Gymnasium API: ``reset`` gives the prompt; ``step(text)`` with a tool call (and calls left)
returns the result block as the observation, ``terminated=False``, and ``info["transcript"]``;
the final ``step`` scores the whole transcript.
"""

from __future__ import annotations

import ast
import decimal
import operator
import re
from fractions import Fraction
from typing import Any, Sequence

from envs.core import EnvError, Task, TextEnv
from envs.math_procedural import ProceduralMath, math_rubric
from verifiers.rewards import RewardResult

TOOL_STOP = "</tool>"
TOOL_INSTRUCTION = (
    "Solve the problem. You may call a tool before answering, inside your reply: "
    '<tool name="calc">EXPRESSION</tool> evaluates arithmetic exactly; '
    '<tool name="python">PROGRAM</tool> runs a Python program and returns what it prints. '
    "Each result comes back as <result>...</result>. Think in <think> </think>, then give the final answer "
    "in <answer> </answer>.")
_CALL = re.compile(r'<tool\s+name\s*=\s*"?(\w+)"?\s*>(.*?)</tool>\s*$', re.S)
_RESULT = re.compile(r"<result>.*?</result>", re.S)
_RESULT_BLOCK = re.compile(r"<result>.*?</result>\n?", re.S)  # as `run_tools` returns it
_TAG_OPEN = re.compile(r"<(?=[/A-Za-z!?|])")
_MAX_BITS = 4000  # any exact value calc computes on the way (about 1,200 digits)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}


def result_block(output: str) -> str:
    """A tool's output as the ``<result>`` block the model reads next: no tag can be opened inside it."""
    return f"<result>{_TAG_OPEN.sub('&lt;', output)}</result>\n"


def _bits(v: Fraction) -> int:
    return max(v.numerator.bit_length(), v.denominator.bit_length())


def calc(expr: str, max_digits: int = 1000) -> str:
    """Exact arithmetic on integers and decimals: + - * / // % ** and parentheses, nothing else
    (no names, no calls, no attribute access: parsed, never ``eval``'d). Every value on the way is
    bounded (``_MAX_BITS``), so no expression can make it compute for long or fail to print."""
    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            v = Fraction(str(node.value))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            v = -v if isinstance(node.op, ast.USub) else v
        elif isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow):
                if b.denominator != 1 or abs(b) > 64 or _bits(a) * abs(int(b)) > _MAX_BITS:
                    raise ValueError("powers are limited to integer exponents up to 64 and results of about 1,200 digits")
                if a == 0 and b < 0:
                    raise ValueError("division by zero")
                v = a ** int(b)
            elif isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
                raise ValueError("division by zero")
            else:
                v = Fraction(_OPS[type(node.op)](a, b))
        else:  # the node's kind only: the model's text is never echoed back as a tool's output
            raise ValueError(f"not arithmetic: {type(node).__name__} is not allowed")
        if _bits(v) > _MAX_BITS:
            raise ValueError("the result is too large")
        return v

    try:
        v = ev(ast.parse(expr.strip(), mode="eval"))
    except (SyntaxError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:
        return f"error: {type(e).__name__ if isinstance(e, (RecursionError, MemoryError)) else e}"
    if v.numerator.bit_length() > max_digits * 3.33:
        return "error: the result is too large"
    if v.denominator == 1:
        return str(v.numerator)
    approx = decimal.Context(prec=10).divide(decimal.Decimal(v.numerator), decimal.Decimal(v.denominator))
    return f"{v.numerator}/{v.denominator} = {approx:.10g}"


class ToolMathEnv(TextEnv):
    """Math with a calculator and a sandboxed Python tool, over several turns.

    Args:
        difficulty, seed: the procedural math problems (`envs.math_procedural`); default 4.
        max_turns: tool calls allowed before the answer; tools: those offered (comma-separated: calc, python).
        call_cost: reward subtracted per call; python_timeout: seconds per program run;
        backend, image: the sandbox for the python tool.
    """

    def __init__(self, difficulty: int = 4, seed: int = 0, max_turns: int = 3, tools: str = "calc,python",
                 call_cost: float = 0.0, python_timeout: float = 5.0, backend: str = "docker", image: str | None = None,
                 format_weight: float = 0.1, split: str = "train", prompt_format: str = "chat",
                 system_prompt: str | None = TOOL_INSTRUCTION, render_mode: str | None = None):
        self.tools = [t.strip() for t in tools.split(",") if t.strip()]
        unknown = [t for t in self.tools if t not in ("calc", "python")]
        if unknown:
            raise EnvError(f"unknown tool(s) {unknown}; offer calc and/or python")
        if max_turns < 0:
            raise EnvError(f"max_turns must be >= 0, got {max_turns}")
        if call_cost < 0:
            raise EnvError(f"call_cost must be >= 0, got {call_cost}")
        self.max_turns, self.call_cost, self.python_timeout = max_turns, call_cost, python_timeout
        self.backend, self.image = backend, image
        super().__init__(ProceduralMath(difficulty, seed), math_rubric(1.0, format_weight), split=split,
                         prompt_format=prompt_format, system_prompt=system_prompt, render_mode=render_mode)
        self._transcript = ""
        self._calls = 0

    # ---------------------------------------------------------------- tools
    def parse_call(self, text: str) -> tuple[str, str] | None:
        """The (tool, body) call that ``text`` ends with, if any."""
        m = _CALL.search(text)
        return (m.group(1), m.group(2)) if m else None

    def run_tools(self, calls: Sequence[tuple[str, str]]) -> list[str]:
        """The ``<result>`` block of each call (python programs run in parallel in the sandbox)."""
        return [result_block(o) for o in self.tool_outputs(calls)]

    def tool_outputs(self, calls: Sequence[tuple[str, str]]) -> list[str]:
        """What each call's tool said, as it said it (`run_tools` makes it a result block)."""
        out: list[str | None] = [None] * len(calls)
        py = []
        for i, (name, body) in enumerate(calls):
            if name not in self.tools:
                out[i] = f"error: no tool {name!r}; tools: {', '.join(self.tools)}"
            elif name == "calc":
                out[i] = calc(body)
            else:
                py.append(i)
        if py:
            from sandbox import Job
            from verifiers.code import shared_sandbox

            sb = shared_sandbox(self.backend, self.image, None, self.python_timeout)
            jobs = [Job(calls[i][1], ({"input": "", "output": ""},), style="stdio", timeout=self.python_timeout,
                        checker="tokens") for i in py]
            for i, res in zip(py, sb.run_many(jobs)):
                t = res.tests[0] if res.tests else None
                if res.details.get("error"):
                    out[i] = f"error: the sandbox could not run it ({res.details['error'][:200]})"
                elif t is not None and t.status == "timeout":
                    out[i] = f"error: the program ran over {self.python_timeout:g}s"
                elif t is not None and t.status == "error":
                    out[i] = "error: " + (t.error or "the program failed")[-300:]
                else:
                    out[i] = (res.stdout or "").strip()[:2000]
        return out  # type: ignore[return-value]

    # ---------------------------------------------------------------- scoring
    def model_text(self, transcript: str) -> str:
        """The transcript without the tools' results: what the model wrote."""
        return _RESULT.sub("<result></result>", transcript)

    def score_batch(self, completions: Sequence[str], tasks: Sequence[Task]) -> list[RewardResult]:
        own = [self.model_text(c) for c in completions]
        results = super().score_batch(own, tasks)
        if self.call_cost <= 0:
            return results
        out = []
        for c, r in zip(completions, results):
            n = len(_RESULT.findall(c))
            out.append(RewardResult(max(0.0, r.reward - self.call_cost * n), {**r.parts, "calls": float(n)}, r.verdicts))
        return out

    def demonstration(self, task: Task) -> str:
        """An SFT demonstration that uses the calculator: the expression to it, its result, the answer
        (``algos.sft env=toolmath`` teaches the protocol; the worked solution when there is no expression)."""
        m = re.match(r"\s*Compute:\s*(.+?)\s*$", task.prompt if isinstance(task.prompt, str) else "")
        if not m or "calc" not in self.tools:
            return self.gold_completion(task)
        value = calc(m.group(1))
        return (f"<think>\nThe calculator computes it.\n</think>\n<tool name=\"calc\">{m.group(1)}</tool>"
                f"{result_block(value)}<answer>{task.reference}</answer>")

    def demonstration_parts(self, task: Task) -> list[tuple[str, bool]]:
        """The demonstration as (text, trained) pieces: a tool's ``<result>`` block is the
        environment's text, not the model's, so SFT takes no loss on it (as GRPO, PPO, rejection
        sampling and iterative DPO do not); the rest is the model's."""
        text, parts, last = self.demonstration(task), [], 0
        for m in _RESULT_BLOCK.finditer(text):
            parts += [(text[last:m.start()], True), (m.group(0), False)]
            last = m.end()
        parts.append((text[last:], True))
        return [(t, trained) for t, trained in parts if t]

    # ---------------------------------------------------------------- gymnasium
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self._transcript, self._calls = "", 0
        return obs, info

    def step(self, action: str):
        if self._task is None:
            raise EnvError("call reset() before step()")
        self._transcript += action
        call = self.parse_call(action) if self._calls < self.max_turns else None
        if call is not None:
            self._calls += 1
            result = self.run_tools([call])[0]
            self._transcript += result
            return result, 0.0, False, False, {"task_id": self._task.id, "transcript": self._transcript,
                                               "turn": self._calls, "tool": call[0]}
        transcript = self._transcript
        obs, reward, terminated, truncated, info = super().step(transcript)
        info.update({"transcript": transcript, "turn": self._calls})
        return obs, reward, terminated, truncated, info
