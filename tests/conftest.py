import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("RLVR_SHARED", os.path.join(ROOT, "..", "shared"))
GSM8K = os.path.join(SHARED, "data", "gsm8k")
CASES = os.path.join(SHARED, "bench", "math_equivalence", "cases.jsonl")


@pytest.fixture(scope="session")
def gsm8k_path():
    if not os.path.isdir(GSM8K):
        pytest.fail(f"GSM8K data not found at {GSM8K}; set RLVR_SHARED to the shared folder")
    return GSM8K


IFEVAL = os.path.join(SHARED, "data", "ifeval")


@pytest.fixture(scope="session")
def ifeval_path():
    if not os.path.isdir(IFEVAL):
        pytest.fail(f"IFEval data not found at {IFEVAL}; set RLVR_SHARED to the shared folder")
    return IFEVAL
