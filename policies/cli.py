"""``key=value`` arguments for the policies' own commands (``python -m policies serve``), in the
style of every ``algos`` module, without importing ``algos`` (policies import no algorithm)."""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any


def _convert(raw: str, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if raw in ("null", "None") and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    if origin is typing.Literal:
        if raw not in args:
            raise SystemExit(f"error: {key}={raw!r}: choose one of {', '.join(map(str, args))}")
        return raw
    try:
        if tp is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if tp in (int, float, str):
            return tp(raw)
    except ValueError:
        raise SystemExit(f"error: {key}={raw!r} is not {'an' if tp is int else 'a'} {tp.__name__}") from None
    return raw


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(tp))) + "}"
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args and len(args) < len(typing.get_args(tp)):
        return f"{_type_name(args[0])} | None"
    return getattr(tp, "__name__", str(tp))


def parse_keys(argv: list[str], groups: dict[str, type], prog: str) -> dict[str, Any]:
    """``groups`` maps a prefix ('' for top-level keys) to a dataclass; returns one instance per prefix."""
    hints = {pfx: typing.get_type_hints(cls) for pfx, cls in groups.items()}
    names = {f"{pfx}.{f.name}" if pfx else f.name: (pfx, f.name) for pfx, cls in groups.items()
             for f in dataclasses.fields(cls)}
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {prog} [key=value ...]\n")
        for key, (pfx, name) in names.items():
            default = getattr(groups[pfx](), name)
            print(f"  {key:32s} {_type_name(hints[pfx][name]):24s} = {default!r}")
        raise SystemExit(0)
    values: dict[str, dict[str, Any]] = {pfx: {} for pfx in groups}
    for a in argv:
        if "=" not in a:
            raise SystemExit(f"error: {a!r} is not key=value (see {prog} --help)")
        key, raw = a.split("=", 1)
        if key not in names:
            import difflib

            near = difflib.get_close_matches(key, names, n=1)
            raise SystemExit(f"error: unknown key {key!r}" + (f"; did you mean {near[0]!r}?" if near else "")
                             + f" (see {prog} --help)")
        pfx, name = names[key]
        values[pfx][name] = _convert(raw, hints[pfx][name], key)
    return {pfx: cls(**values[pfx]) for pfx, cls in groups.items()}


def main_usage(commands: dict[str, str]) -> None:
    print("usage: python -m policies COMMAND [key=value ...]\n")
    for c, doc in commands.items():
        print(f"  {c:10s} {doc}")
    sys.exit(0)
