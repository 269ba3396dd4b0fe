"""Environments: Gymnasium envs that pose tasks; their registry; the conformance check.

>>> import envs
>>> env = envs.make("math")
>>> prompt, info = env.reset(seed=0)
>>> _, reward, terminated, truncated, info = env.step("<think>...</think><answer>0</answer>")
>>> terminated
True
"""

__rlvr_gym__ = True  # marks rlvr-gym's package (envs/_layout.py tells it from a same-named one)

from envs import _layout

_layout.check_or_explain()  # before anything imports verifiers

from envs.checker import EnvCheckError, check_env
from envs.core import FORMAT_INSTRUCTION, SPLITS, EnvError, Task, TaskSource, TextEnv, content_split, item_rng
from envs.math_dataset import DatasetMath, DatasetMathEnv
from envs.math_procedural import MathEnv, ProceduralMath
from envs.registry import (ALIASES, ENTRY_POINT_GROUP, UnknownEnvError, canonical_name, known_names, list_envs, make,
                           register, register_envs, resolve)

register_envs()
list = list_envs  # envs.list(): every environment env= takes, with one line each

__all__ = [
    "ALIASES", "ENTRY_POINT_GROUP", "FORMAT_INSTRUCTION", "SPLITS", "DatasetMath", "DatasetMathEnv", "EnvCheckError",
    "EnvError", "MathEnv", "ProceduralMath", "Task", "TaskSource", "TextEnv", "UnknownEnvError", "canonical_name",
    "check_env", "content_split", "item_rng", "known_names", "list_envs", "make", "register", "register_envs", "resolve",
]
