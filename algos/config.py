"""Configuration for every ``algos`` module: a dataclass with a docstring under each field.

    python -m algos.grpo env=math train.lr=1e-5 config=my.yaml --help

* ``key=value`` sets a field; nested fields use dotted paths (``policy.model=...``);
* ``config=FILE.yaml`` loads a (nested) YAML mapping first; later ``key=value`` win;
* ``env=NAME`` picks an environment (alias, Gymnasium id or ``module:Class``) and
  ``env.KEY=VALUE`` passes its options (checked against the environment's signature);
* ``--help`` lists every key with its type, default and doc.

An unknown key or a bad value raises `ConfigError` naming the key and the nearest valid one. A
config class may keep an old key name in ``KEY_ALIASES`` (old -> new): it is read as the new key with
a one-line warning, on the command line, in a config file and in a resumed run's config.yaml.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import math
import sys
import textwrap
import types
import typing
from typing import Any, Literal, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A bad command line or config file: the message names the key, the value and the fix."""


# Defaults that depend on the model. The built-in tiny models (0.8M parameters) learn at learning
# rates that wreck a real pretrained model in a few steps (SmolLM2-135M: 93.8% -> 68.8% held-out
# accuracy after 3 GRPO steps at lr 5e-5). A config class lists in ``REAL_MODEL_DEFAULTS`` the
# values that replace its defaults when ``policy.model`` is anything but a built-in tiny model and
# the key was not set on the command line or in the config file. `--help` shows both.
TINY_MODELS = ("tiny", "tiny-sft")


def apply_model_defaults(cls: type, cfg: Any, explicit: set[str]) -> None:
    policy = getattr(cfg, "policy", None)
    if policy is None or policy.model in TINY_MODELS:
        return
    for k, v in getattr(cls, "REAL_MODEL_DEFAULTS", {}).items():
        if k not in explicit:
            _set(cfg, k.split("."), v, k)
    # the default token budget grows with long completions (a budget set by hand is checked instead):
    # room for one completion of max_new_tokens and a prompt of up to 1024 tokens, in whole KiB of tokens
    budget, longest = getattr(cfg, "micro_batch_tokens", 0), getattr(cfg, "max_new_tokens", None)
    if budget and longest is not None and "micro_batch_tokens" not in explicit and budget < longest + 1024:
        cfg.micro_batch_tokens = -(-(longest + 1024) // 1024) * 1024


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric key may take. A config class declares its keys' ranges in ``RANGES``
    (``{field name: Range}``, merged over base classes); a numeric key with none declared must be
    >= 0. `check_ranges` checks every numeric key at start (and a resumed run's overrides)."""

    lo: float = 0.0
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""
    """what goes wrong outside the range, said after it"""

    def __contains__(self, v: float) -> bool:
        return (v > self.lo if self.lo_open else v >= self.lo) and (v < self.hi if self.hi_open else v <= self.hi)

    def __str__(self) -> str:
        if self.lo == -math.inf and self.hi == math.inf:
            return "any number"
        if self.hi == math.inf:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


AT_LEAST_1 = Range(1)
POSITIVE = Range(0, lo_open=True)
ANY = Range(-math.inf)
DEFAULT_RANGE = Range(0)


def ranges(cls: type) -> dict[str, Range]:
    out: dict[str, Range] = {}
    for klass in reversed(cls.__mro__):
        out.update(klass.__dict__.get("RANGES", {}))
    return out


def _nested_ranges(cls: type, prefix: str = "") -> dict[str, Range]:
    """Declared ranges of nested configs' keys, by dotted name."""
    out: dict[str, Range] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update({f"{prefix}{f.name}.{k}": r for k, r in ranges(hints[f.name]).items()})
            out.update(_nested_ranges(hints[f.name], f"{prefix}{f.name}."))
    return out


# the model's keys (policies.PolicyConfig, which imports nothing of algos): every config with a policy declares them
POLICY_RANGES = {"policy.max_batch_size": AT_LEAST_1, "policy.max_concurrency": AT_LEAST_1,
                 "policy.gpu_memory_utilization": Range(0, 1, lo_open=True), "policy.request_timeout": POSITIVE}


def check_ranges(cfg: Any, prefix: str = "", outer: dict[str, Range] | None = None) -> None:
    """Raise `ConfigError` for the first numeric key outside its declared range (``RANGES``; >= 0 where
    none is declared), naming the key, the value and the allowed range. An outer config may declare
    a nested one's keys by their dotted name (``"policy.max_batch_size"``)."""
    outer = {**(outer or {}), **{prefix + k: r for k, r in ranges(type(cfg)).items()}}
    declared = {k[len(prefix):]: r for k, r in outer.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            check_ranges(v, prefix + f.name + ".", outer)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            r = declared.get(f.name, DEFAULT_RANGE)
            if v not in r:
                raise ConfigError(f"{prefix}{f.name}={v!r} is out of range: it must be {r}" + (f" ({r.why})" if r.why else ""))


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass (CleanRL / tyro style)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for a, b in zip(body, body[1:]):
            if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr) \
                    and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
                docs[a.target.id] = " ".join(b.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "{" + ",".join(str(a) for a in get_args(tp)) + "}"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return " | ".join(_type_name(a) for a in args) + (" | None" if len(args) < len(get_args(tp)) else "")
    if origin in (list, tuple):
        return f"list[{_type_name(get_args(tp)[0])}]"
    if origin is dict:
        return "dict"
    return getattr(tp, "__name__", str(tp))


def _convert(key: str, raw: Any, tp: Any) -> Any:
    """Convert a command-line string (or YAML value) to the field's type, or raise ConfigError."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and (raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", ""))):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(key, raw, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {raw!r}")
    if origin is Literal:
        choices = get_args(tp)
        value = raw
        if isinstance(raw, str) and not all(isinstance(c, str) for c in choices):
            value = yaml.safe_load(raw)
        if value not in choices:
            near = difflib.get_close_matches(str(raw), [str(c) for c in choices], n=1)
            raise ConfigError(f"{key}={raw!r} is not one of {list(choices)}" + (f"; did you mean {near[0]!r}?" if near else ""))
        return value
    if origin in (list, tuple):
        (inner,) = get_args(tp)[:1] or (str,)
        if isinstance(raw, str):
            raw = yaml.safe_load(raw) if raw.strip().startswith("[") else [s for s in raw.split(",") if s.strip()]
        if not isinstance(raw, (list, tuple)):
            raw = [raw]
        return [_convert(f"{key}[{i}]", v, inner) for i, v in enumerate(raw)]
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        s = str(raw).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={raw!r} is not a boolean; use true or false")
    if tp in (int, float):
        if isinstance(raw, bool):
            raise ConfigError(f"{key}={raw!r} must be {tp.__name__}, not a boolean")
        try:
            if tp is int:
                f = float(raw)
                if not f.is_integer():
                    raise ValueError
                return int(f)
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={raw!r} is not {'an integer' if tp is int else 'a number'}") from None
    if tp is str:
        if isinstance(raw, list) and all(isinstance(x, (str, int, float)) for x in raw):
            return "[" + ",".join(str(x) for x in raw) + "]"  # a YAML list of names: env: [math, gsm8k]
        if isinstance(raw, (dict, list)):
            raise ConfigError(f"{key} must be a string, got {type(raw).__name__}")
        return str(raw)
    if tp is dict or origin is dict:
        if isinstance(raw, str):
            try:
                raw = yaml.safe_load(raw)
            except yaml.YAMLError:
                pass
        if not isinstance(raw, dict):
            raise ConfigError(f"{key} must be a mapping, e.g. {key}={{name.key: value}}")
        return dict(raw)
    return raw


def all_keys(cls: type, prefix: str = "") -> dict[str, tuple[Any, Any, str]]:
    """Flattened ``{dotted key: (type, default, doc)}`` of a config dataclass."""
    out: dict[str, tuple[Any, Any, str]] = {}
    hints, docs = _hints(cls), field_docs(cls)
    default_obj = cls()
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(all_keys(tp, prefix + f.name + "."))
        else:
            out[prefix + f.name] = (tp, getattr(default_obj, f.name), docs.get(f.name, ""))
    return out


def _set(obj: Any, path: list[str], value: Any, full: str) -> None:
    for p in path[:-1]:
        obj = getattr(obj, p)
    setattr(obj, path[-1], value)


def _flatten_yaml(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in ("env_kwargs",) and not (key == "env" and "name" in v):
            items += _flatten_yaml(v, key + ".")
        else:
            items.append((key, v))
    return items


def help_text(cls: type, prog: str) -> str:
    doc = (sys.modules[cls.__module__].__doc__ or "").strip().split("\n\n")[0]
    lines = [f"usage: python -m {prog} [key=value ...] [config=FILE.yaml] [--help]", "", doc, "", "keys:"]
    keys = all_keys(cls)
    width = max(len(k) for k in keys) + 2
    real = getattr(cls, "REAL_MODEL_DEFAULTS", {})
    bounds = {**{k: r for k, r in ranges(cls).items()}, **_nested_ranges(cls)}
    for k, (tp, default, doc) in keys.items():
        numeric = tp in (int, float) or any(a in (int, float) for a in get_args(tp))
        lines.append(f"  {k:<{width}}{_type_name(tp)} = {default!r}" +
                     (f"   (real models: {real[k]!r})" if k in real else "") +
                     (f"   ({bounds.get(k, DEFAULT_RANGE)})" if numeric else ""))
        if doc:
            lines += ["      " + line for line in textwrap.wrap(doc, 90)]
    if "env" in keys:
        lines += ["", "  env.KEY=VALUE       an option of the chosen environment (e.g. env.difficulty=3)"]
    lines += ["", "  config=FILE.yaml    load keys from a YAML file first (nested or dotted keys)"]
    if real:
        lines += ["", f"  (real models: ...) is the default when policy.model is not one of {', '.join(TINY_MODELS)}: "
                      f"the tiny models' settings damage a real pretrained model"]
    return "\n".join(lines)


def parse(cls: type, argv: list[str] | None = None, prog: str | None = None) -> Any:
    """Build a ``cls`` config from ``argv`` (default ``sys.argv[1:]``). Prints help and exits on --help."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or cls.__module__
    if any(a in ("-h", "--help", "help") for a in argv):
        print(help_text(cls, prog))
        raise SystemExit(0)
    keys = all_keys(cls)
    cfg = cls()
    has_env = "env" in keys and hasattr(cfg, "env_kwargs")
    items: list[tuple[str, Any, str]] = []  # (key, raw value, origin)
    for a in argv:
        if "=" not in a:
            raise ConfigError(f"argument {a!r} is not key=value; run `python -m {prog} --help` for the keys")
        k, v = a.split("=", 1)
        if k == "config":
            try:
                with open(v) as fh:
                    data = yaml.safe_load(fh) or {}
            except OSError as e:
                raise ConfigError(f"config={v!r}: cannot read the file ({e.strerror})") from None
            except yaml.YAMLError as e:
                raise ConfigError(f"config={v!r}: not valid YAML ({e})") from None
            if not isinstance(data, dict):
                raise ConfigError(f"config={v!r} must hold a mapping of keys to values")
            items += [(kk, vv, f"config file {v}") for kk, vv in _flatten_yaml(data)]
        else:
            items.append((k, v, "command line"))
    aliases = getattr(cls, "KEY_ALIASES", {})  # old name -> key: still read, with a one-line warning
    for i, (k, v, origin) in enumerate(items):
        if k in aliases:
            print(f"warning: {k}= (from {origin}) is the old name of {aliases[k]}=; read as {aliases[k]}={v}",
                  file=sys.stderr)
            items[i] = (aliases[k], v, origin)
    for k, v, origin in items:
        if has_env and k.startswith("env.") and k not in keys:
            cfg.env_kwargs[k[4:]] = yaml.safe_load(v) if isinstance(v, str) else v
            continue
        if has_env and k == "env" and isinstance(v, dict):  # YAML: env: {name: math, difficulty: 3}
            v = dict(v)
            cfg.env = str(v.pop("name"))
            cfg.env_kwargs.update(v)
            continue
        if k not in keys:
            near = difflib.get_close_matches(k, list(keys), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise ConfigError(f"unknown key {k!r} (from {origin}){hint} Run `python -m {prog} --help` for every key.")
        tp = keys[k][0]
        _set(cfg, k.split("."), _convert(k, v, tp), k)
    apply_model_defaults(cls, cfg, {k for k, _, _ in items})
    check_ranges(cfg)  # every numeric key in its declared range (RANGES), at start
    cfg._explicit = {"env_kwargs" if has_env and k.startswith("env.") and k not in keys else k
                     for k, _, _ in items}  # what the user set (explicit_keys): a resumed run compares these
    if hasattr(cfg, "__post_init__"):
        cfg.__post_init__()
    return cfg


def explicit_keys(cfg: Any) -> set[str]:
    """The keys set on the command line or in a config file when ``cfg`` was parsed (env options as
    ``env_kwargs``)."""
    return set(getattr(cfg, "_explicit", ()))


def get(cfg: Any, key: str) -> Any:
    """The value of a dotted key."""
    for p in key.split("."):
        cfg = getattr(cfg, p)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild a config saved with `to_dict` (used by resume)."""
    cfg = cls()
    hints = _hints(cls)
    d = {getattr(cls, "KEY_ALIASES", {}).get(k, k): v for k, v in d.items()}  # a run saved under an old key name
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            setattr(cfg, f.name, from_dict(tp, d[f.name]))
        else:
            setattr(cfg, f.name, d[f.name])
    return cfg
