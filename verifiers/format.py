"""Format verification: reasoning in ``<think>...</think>``, then the result in ``<answer>...</answer>``.

* ``strict``: the whole completion is exactly ``<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>``
  (newlines around the content optional, nothing before or after but whitespace).
* ``soft``: a closed think block followed (anywhere later) by a closed, non-empty answer block.

A missing closing tag means no answer (``no_answer``), in both modes: an answer block that is never
closed, and a think block opened last and never closed (the completion was cut off mid-thought, as
``<answer>5</answer><think>and then`` was; the math verifier reads it the same way), earn nothing,
whatever came before. A present answer in the wrong structure is ``wrong``. Tags are configurable.
"""

from __future__ import annotations

import re
from typing import Literal, Sequence

from verifiers.math import unfinished_think
from verifiers.verdict import Status, Verdict


class FormatVerifier:
    def __init__(self, mode: Literal["strict", "soft"] = "soft", think: tuple[str, str] = ("<think>", "</think>"),
                 answer: tuple[str, str] = ("<answer>", "</answer>")):
        if mode not in ("strict", "soft"):
            raise ValueError(f"format mode must be 'strict' or 'soft', got {mode!r}")
        self.mode = mode
        (to, tc), (ao, ac) = think, answer
        self.answer_tags, self.think_tags = (ao, ac), (to, tc)
        q = re.escape
        if mode == "strict":
            body = r"(?:(?!{to}|{tc}|{ao}|{ac}).)*"
            self._re = re.compile(
                (r"\s*{to}" + body + r"{tc}\s*{ao}(?P<ans>" + body + r"){ac}\s*").format(to=q(to), tc=q(tc), ao=q(ao), ac=q(ac)),
                re.DOTALL)
        else:
            self._re = re.compile(
                r"{to}.*?{tc}.*?{ao}(?P<ans>(?:(?!{ao}).)*?){ac}".format(to=q(to), tc=q(tc), ao=q(ao), ac=q(ac)), re.DOTALL)

    def verify(self, completion: str, reference: object = None) -> Verdict:
        if not isinstance(completion, str):
            return Verdict(Status.ERROR, 0.0, None, {"error": f"completion must be a string, got {type(completion).__name__}"})
        ao, ac = self.answer_tags
        if unfinished_think(completion, *self.think_tags):
            return Verdict(Status.NO_ANSWER, 0.0, None, {"mode": self.mode, "reason": "unclosed think block: cut off"})
        k = completion.rfind(ao)
        if k < 0 or completion.find(ac, k) < 0:
            return Verdict(Status.NO_ANSWER, 0.0, None, {"mode": self.mode, "reason": "no closed answer block"})
        m = self._re.fullmatch(completion) if self.mode == "strict" else self._re.search(completion)
        if m and m.group("ans").strip():
            return Verdict(Status.CORRECT, 1.0, m.group("ans").strip(), {"mode": self.mode})
        return Verdict(Status.WRONG, 0.0, None, {"mode": self.mode, "reason": "answer block present but not in think-then-answer form"})

    def verify_batch(self, completions: Sequence[str], references: Sequence[object] | None = None) -> list[Verdict]:
        return [self.verify(c) for c in completions]

    __call__ = verify
