"""Run a recipe: stages of algos modules in order, each starting from the previous stage's model.

    python -m algos.recipe recipes/smollm2-math.yaml [out=DIR] [seed=S] [KEY=VALUE ...]

A recipe is a YAML file::

    name: smollm2-math
    stages:
      - algo: sft                      # any algos module with a main(argv)
        args: {policy.model: smollm2-135m, env: math, ...}
      - algo: grpo                     # policy.model defaults to the previous stage's checkpoint
        args: {env: math, ...}

``KEY=VALUE`` after the file applies to every stage (``seed=1``); ``out=DIR`` holds one folder per
stage (``DIR/1-sft``, ``DIR/2-grpo``) and ``DIR/recipe.json`` with each stage's summary and the
wall time of all stages together. A stage that fails stops the recipe with its error.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any

import yaml

from algos.config import ConfigError


def load_recipe(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            recipe = yaml.safe_load(f)
    except OSError as e:
        from envs.core import where

        raise ConfigError(f"recipe {where(path)}: cannot read it ({e.strerror})") from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("stages"), list) or not recipe["stages"]:
        raise ConfigError(f"recipe {path!r} needs a non-empty 'stages' list of {{algo, args}}")
    for i, st in enumerate(recipe["stages"]):
        if not isinstance(st, dict) or "algo" not in st:
            raise ConfigError(f"recipe {path!r}: stage {i + 1} needs an 'algo' (sft, grpo, ppo, ...)")
    return recipe


def run(path: str, extra: list[str]) -> dict[str, Any]:
    recipe = load_recipe(path)
    out = next((a.split("=", 1)[1] for a in extra if a.startswith("out=")), None)
    extra = [a for a in extra if not a.startswith("out=")]
    name = recipe.get("name") or os.path.splitext(os.path.basename(path))[0]
    out = out or os.path.join("runs", f"recipe-{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    model = None
    results = []
    for i, st in enumerate(recipe["stages"], 1):
        module = importlib.import_module(f"algos.{st['algo']}")
        args = {str(k): v for k, v in (st.get("args") or {}).items()}
        if model is not None and "policy.model" not in args:
            args["policy.model"] = model
        stage_dir = os.path.join(out, f"{i}-{st['algo']}")
        argv = [f"{k}={v}" for k, v in args.items()] + extra + [f"out={stage_dir}"]
        print(f"recipe {name}: stage {i}/{len(recipe['stages'])}: python -m algos.{st['algo']} {' '.join(argv)}",
              file=sys.stderr, flush=True)
        summary = module.main(argv)
        model = summary.get("checkpoint")
        results.append({"stage": i, "algo": st["algo"], "argv": argv, "summary": summary})
    report = {"recipe": path, "name": name, "wall_seconds": round(time.time() - t0, 1), "stages": results,
              "checkpoint": model}
    with open(os.path.join(out, "recipe.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    print(f"recipe {name}: {len(results)} stages in {report['wall_seconds']:.0f} s; final model {model}; "
          f"report {os.path.join(out, 'recipe.json')}", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    from algos.common import run_main

    run_main(main)
