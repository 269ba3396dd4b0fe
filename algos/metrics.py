"""Evaluation metrics: unbiased pass@k (Chen et al. 2021, the Codex paper), maj@k and standard errors."""

from __future__ import annotations

import collections
import math
from typing import Hashable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples (drawn without replacement from n, c of them
    correct) is correct: 1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def majority_correct(answers: Sequence[Hashable | None], correct: Sequence[bool], k: int) -> float:
    """maj@k for one task: 1 if the most frequent answer among the first k samples is a correct one.
    Samples without an answer (None) do not vote; ties go to the answer seen first."""
    votes = collections.Counter(a for a in answers[:k] if a is not None)
    if not votes:
        return 0.0
    best = max(votes.values())
    winner = next(a for a in answers[:k] if a is not None and votes[a] == best)
    return float(any(c for a, c in zip(answers[:k], correct[:k]) if a == winner))


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n); 0 for fewer than two values)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def ks_for(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]
