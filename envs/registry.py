"""Finding environments by name: short aliases, Gymnasium ids, entry points, ``module:Class``.

``make(name, **kwargs)`` accepts, in this order:

1. ``package.module:ClassName`` (or ``:factory``): imported and called with the kwargs;
2. a short alias (``math``, ``gsm8k``, ...), ours or one a third-party package declares in
   the ``rlvr_gym.envs`` entry-point group (``mytask = "my_pkg.env:MyEnv"``);
3. any id registered with Gymnasium (``rlvr/Math-v0``).

An unknown name raises `UnknownEnvError` listing the nearest names.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any, Callable

import gymnasium

from envs.core import EnvError, TextEnv

ENTRY_POINT_GROUP = "rlvr_gym.envs"

# our environments: gymnasium id -> entry point, and the short aliases
ENVS = {
    "rlvr/Math-v0": "envs.math_procedural:MathEnv",
    "rlvr/GSM8K-v0": "envs.math_dataset:DatasetMathEnv",
    "rlvr/IFEval-v0": "envs.ifeval:IFEvalEnv",
    "rlvr/HumanEval-v0": "envs.code:CodeEnv",
    "rlvr/Stdio-v0": "envs.stdio:StdioEnv",
    "rlvr/ToolMath-v0": "envs.tools:ToolMathEnv",
    "rlvr/RG-v0": "envs.rg:RGEnv",  # reasoning-gym's generators, as env=rg:NAME
}
# environments whose reward is a model's (a learned reward model, an LLM judge): by name only, not registered with
# Gymnasium, since the conformance check (gold scores 1, junk 0) holds for verifiable environments alone
MODEL_SCORED = {"rm": "envs.rm:RewardModelEnv", "judge": "envs.judge:JudgeEnv"}
ALIASES = {"math": "rlvr/Math-v0", "gsm8k": "rlvr/GSM8K-v0", "humaneval": "rlvr/HumanEval-v0", "ifeval": "rlvr/IFEval-v0",
           "stdio": "rlvr/Stdio-v0", "toolmath": "rlvr/ToolMath-v0"}


class UnknownEnvError(EnvError, KeyError):
    """No environment has this name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_envs() -> None:
    """Register ours with Gymnasium (idempotent). Called when `envs` is imported."""
    for env_id, entry in ENVS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry, disable_env_checker=True, order_enforce=False)


def register(alias: str, env_id: str, entry_point: str | Callable[..., Any]) -> None:
    """Add an environment at runtime: ``register("mytask", "me/MyTask-v0", MyEnv)``."""
    if env_id not in gymnasium.registry:
        gymnasium.register(id=env_id, entry_point=entry_point, disable_env_checker=True, order_enforce=False)
    ALIASES[alias] = env_id


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import_ref(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise UnknownEnvError(f"cannot import module {module!r} for environment {ref!r}: {e}") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            near = difflib.get_close_matches(part, names, n=3)
            raise UnknownEnvError(f"module {module!r} has no {part!r}" + (f"; did you mean {near}?" if near else ""))
        obj = getattr(obj, part)
    if not callable(obj):
        raise UnknownEnvError(f"{ref!r} is not a class or factory (got {type(obj).__name__})")
    return obj


def known_names() -> list[str]:
    return sorted(set(ALIASES) | set(MODEL_SCORED) | set(_plugins()) | set(gymnasium.registry))


def resolve(name: str) -> Callable[..., Any]:
    """A callable that builds the environment named ``name`` from keyword options."""
    if not isinstance(name, str) or not name:
        raise UnknownEnvError(f"environment name must be a non-empty string, got {name!r}")
    if name.startswith("rg:"):  # reasoning-gym's generator NAME
        return lambda **kw: gymnasium.make("rlvr/RG-v0", name=name[3:], **kw)
    if ":" in name and "/" not in name.split(":", 1)[0]:
        return _import_ref(name)
    if name in MODEL_SCORED:
        return _import_ref(MODEL_SCORED[name])
    if name in ALIASES:
        env_id = ALIASES[name]
        return lambda **kw: gymnasium.make(env_id, **kw)
    plugins = _plugins()
    if name in plugins:
        obj = plugins[name].load()
        if isinstance(obj, str):  # the entry point names a gymnasium id
            return lambda **kw: gymnasium.make(obj, **kw)
        return obj
    if name in gymnasium.registry:
        return lambda **kw: gymnasium.make(name, **kw)
    near = difflib.get_close_matches(name, known_names(), n=5, cutoff=0.4)
    near += [n for n in known_names() if name.lower() in n.lower() and n not in near][:3]
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    raise UnknownEnvError(f"unknown environment {name!r}.{hint} Known short names: {', '.join(sorted(ALIASES))}; "
                          f"or give a registered id or 'package.module:ClassName'.")


def _entry_class(name: str) -> Any:
    """The class (or factory) behind a name, to check options against its signature."""
    env_id = ALIASES.get(name, name)
    if name.startswith("rg:"):
        return None  # the generator checks its own options (envs.rg.RGSource)
    if ":" in name and "/" not in name.split(":", 1)[0]:
        return _import_ref(name)
    if name in MODEL_SCORED:
        return _import_ref(MODEL_SCORED[name])
    if env_id in gymnasium.registry:
        ep = gymnasium.registry[env_id].entry_point
        return _import_ref(ep) if isinstance(ep, str) else ep
    plugins = _plugins()
    return plugins[name].load() if name in plugins else None


def check_options(name: str, kwargs: dict[str, Any]) -> None:
    """Raise EnvError for an option the environment does not take, naming the nearest valid one."""
    import inspect

    target = _entry_class(name)
    if target is None or not kwargs:
        return
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [p for p in params if p != "self"]
    for k in kwargs:
        if k not in params:
            near = difflib.get_close_matches(k, valid, n=1)
            raise EnvError(f"environment {name!r} has no option {k!r}" + (f"; did you mean {near[0]!r}?" if near else "")
                           + f" Its options: {', '.join(valid)}")


def make(name: str, **kwargs: Any) -> TextEnv:
    """Build an environment by alias, Gymnasium id, entry point or ``module:Class``."""
    factory = resolve(name)
    check_options(name, kwargs)
    env = factory(**kwargs)
    base = getattr(env, "unwrapped", env)
    if not isinstance(base, TextEnv):
        raise EnvError(f"{name!r} built a {type(base).__name__}, which is not an envs.TextEnv subclass")
    return env


def canonical_name(name: str) -> str:
    """A short, file-name-safe label for run folders: ``rlvr/Math-v0`` -> ``math``."""
    for alias, env_id in ALIASES.items():
        if name in (alias, env_id):
            return alias
    return name.replace("/", "_").replace(":", "_").replace(".", "_")


def list_envs(with_rg: bool = True) -> dict[str, str]:
    """Every environment ``env=`` takes: short name -> one line on what it is (reasoning-gym's
    generators as ``rg:NAME`` when the extra is installed)."""
    def first_line(obj: Any) -> str:
        return ((getattr(obj, "__doc__", None) or "").strip().splitlines() or ["(no description)"])[0]

    out = {alias: f"{env_id}: {first_line(_entry_class(alias))}" for alias, env_id in ALIASES.items()}
    out.update({name: f"{ref}: {first_line(_import_ref(ref))}" for name, ref in MODEL_SCORED.items()})
    for name in _plugins():
        out.setdefault(name, "third-party (entry point)")
    if with_rg:
        try:
            from envs import rg

            for g in rg.available():
                out[f"rg:{g}"] = "reasoning-gym generator (options: " + ", ".join(rg.generator_options(g)) + ")"
        except EnvError:
            pass
    return out

