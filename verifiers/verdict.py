"""The verifier's result: a `Verdict`, never a bare float that hides an error."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any


class Status(str, Enum):
    """What a verifier concluded. Only ``CORRECT`` carries a positive score."""

    CORRECT = "correct"
    WRONG = "wrong"
    NO_ANSWER = "no_answer"  # nothing that looks like a final answer was found
    TIMEOUT = "timeout"  # the check ran past its hard time limit and was killed
    ERROR = "error"  # the verifier itself broke (bad reference, crash): not the model's fault

    def __str__(self) -> str:  # so f-strings and JSON show "correct", not "Status.CORRECT"
        return self.value


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One verification result.

    ``score`` is in [0, 1] (1 for correct; partial credit where a verifier gives it, e.g.
    the fraction of unit tests passed). ``extracted`` is what the verifier read as the
    answer (``None`` when nothing was found). ``details`` holds anything else worth logging
    (extraction method, error message, per-test results).
    """

    status: Status
    score: float
    extracted: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.status is Status.CORRECT

    @property
    def is_error(self) -> bool:
        """True when the verifier could not judge (timeout or error), as opposed to a wrong answer."""
        return self.status in (Status.TIMEOUT, Status.ERROR)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "score": self.score, "extracted": self.extracted, "details": self.details}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Verdict":
        return cls(Status(d["status"]), float(d["score"]), d.get("extracted"), dict(d.get("details") or {}))
