"""The shipped recipes (recipes/*.yaml) are valid before anyone spends half an hour running them:
every stage names an algos module, and its args, written as ``algos.recipe`` writes them
(``key=value``), parse with that module's config class (a misspelt key or a value out of range
is a ConfigError here, not after the first stage has trained). Running them is measured in the
README ("Real models"); nothing here trains."""

import glob
import importlib
import inspect
import os

import pytest
import yaml

from algos import config
from algos.recipe import load_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.yaml")))


def _config_class(module):
    """The module's own dataclass config (GRPOConfig, SFTConfig, ...)."""
    found = [c for n, c in inspect.getmembers(module, inspect.isclass)
             if n.endswith("Config") and c.__module__ == module.__name__ and hasattr(c, "__dataclass_fields__")]
    assert len(found) == 1, f"{module.__name__}: expected one *Config dataclass, found {[c.__name__ for c in found]}"
    return found[0]


def test_the_shipped_recipes_are_found():
    names = {os.path.basename(p) for p in RECIPES}
    assert {"smollm2-math.yaml", "smollm2-rl.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=os.path.basename)
def test_every_stage_parses_with_its_module(path):
    recipe = load_recipe(path)
    for i, st in enumerate(recipe["stages"], 1):
        module = importlib.import_module(f"algos.{st['algo']}")
        argv = [f"{k}={v}" for k, v in (st.get("args") or {}).items()]
        try:
            config.parse(_config_class(module), argv, prog=f"algos.{st['algo']}")
        except config.ConfigError as e:
            pytest.fail(f"{os.path.basename(path)} stage {i} ({st['algo']}): {e}")


def test_smollm2_rl_measures_the_rl_stage_as_the_issue_asks():
    """The RL stage trains and measures on the SFT stage's task, greedy, on >= 200 held-out tasks."""
    with open(os.path.join(ROOT, "recipes", "smollm2-rl.yaml")) as f:
        sft_stage, rl_stage = yaml.safe_load(f)["stages"]
    assert (sft_stage["algo"], rl_stage["algo"]) == ("sft", "grpo")
    assert sft_stage["args"]["policy.model"] == "smollm2-135m" and "policy.model" not in rl_stage["args"]
    assert rl_stage["args"]["env"] == sft_stage["args"]["env"] == "math"
    assert rl_stage["args"]["env.difficulty"] == sft_stage["args"]["env.difficulty"]
    assert rl_stage["args"]["heldout_size"] >= 200


def test_smollm2_mix_is_smollm2_rl_with_ifeval_mixed_in():
    """The mixture recipe changes only what the mixture needs: the same SFT stage as the math-only
    recipe, and its GRPO stage on [math, ifeval] with the same math task, hyperparameters, held-out
    size and math prompts a step, so its math figure compares with the math-only one."""
    with open(os.path.join(ROOT, "recipes", "smollm2-rl.yaml")) as f:
        rl_sft, rl = [st["args"] for st in yaml.safe_load(f)["stages"]]
    with open(os.path.join(ROOT, "recipes", "smollm2-mix.yaml")) as f:
        mix_sft, mix = [st["args"] for st in yaml.safe_load(f)["stages"]]
    assert mix_sft == rl_sft
    assert mix["env"] == ["math", "ifeval"] and len(mix["env.weights"]) == 2
    assert mix["env.math.difficulty"] == rl["env.difficulty"]
    assert mix["env.ifeval.path"]  # the IFEval prompts: its held-out split, and what the training split avoids
    for k in ("temperature", "group_size", "steps", "heldout_size"):
        assert mix[k] == rl[k], k
    # the mixture was measured at the math-only recipe's first lr (1e-5, both seeds); the math-only recipe
    # moved to 1.5e-5 afterwards (seed 1 gained +9.5 at 1e-5); the mixture at 1.5e-5 did no better (seed 0,
    # README). Either lr, never above the math-only one.
    assert 1e-5 <= mix["lr"] <= rl["lr"]
    assert mix["prompts_per_step"] * mix["env.weights"][0] / sum(mix["env.weights"]) == rl["prompts_per_step"]
