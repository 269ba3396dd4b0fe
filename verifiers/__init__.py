"""Verifiers: pure functions of (completion, reference) that return a `Verdict`.

They know nothing of prompts, models or algorithms, and import no torch.
"""

__rlvr_gym__ = True  # marks rlvr-gym's package (envs/_layout.py tells it from a same-named one)

from verifiers.format import FormatVerifier
from verifiers.math import MathVerifier, extract_answer, verify_math, verify_math_batch
from verifiers.rewards import RewardResult, Rubric, format_reward, math_reward
from verifiers.verdict import Status, Verdict

__all__ = [
    "FormatVerifier", "MathVerifier", "RewardResult", "Rubric", "Status", "Verdict",
    "extract_answer", "format_reward", "math_reward", "verify_math", "verify_math_batch",
]
