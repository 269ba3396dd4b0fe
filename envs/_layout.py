"""Our top-level package names are generic (``verifiers``, ``envs``, ``policies``, ``algos``,
``sandbox``), and another distribution may install a package of the same name: PyPI's
``verifiers`` (an RL environment library) does, and whichever comes first on ``sys.path`` wins.
`check` finds where Python would import each name from and raises `PackageClash`, one line
naming the package, where it comes from and the fix, when it is not this project's (a package of
ours carries ``__rlvr_gym__ = True`` in its ``__init__.py`` and lies next to this one).

It runs when ``envs`` or ``algos`` is imported (every ``python -m algos.X`` and ``python -m envs``);
a clash makes the command print that line and exit with status 1, with no traceback. It does not
rename or reorder anything: the fix is the user's (uninstall the other package, or keep it in
another virtual environment).
"""

from __future__ import annotations

import importlib.util
import os
import sys

PACKAGES = ("verifiers", "envs", "policies", "algos", "sandbox")
MARKER = "__rlvr_gym__ = True"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder holding our packages


class PackageClash(ImportError):
    """A top-level package of ours is shadowed by another distribution's package of the same name."""


def _origin(name: str) -> str | None:
    """The ``__init__.py`` Python imports (or imported) for top-level package ``name``."""
    mod = sys.modules.get(name)
    if mod is not None:
        return getattr(mod, "__file__", None)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None


def _ours(origin: str) -> bool:
    if os.path.dirname(os.path.dirname(os.path.abspath(origin))) != ROOT:
        return False
    try:
        with open(origin, encoding="utf-8") as f:
            return MARKER in f.read()
    except OSError:
        return False


def check() -> None:
    """Raise `PackageClash` if any of our top-level packages would be imported from elsewhere."""
    for name in PACKAGES:
        origin = _origin(name)
        if origin is None or _ours(origin):
            continue
        where = os.path.dirname(os.path.abspath(origin))
        raise PackageClash(
            f"the package {name!r} is imported from {where}, not from rlvr-gym ({os.path.join(ROOT, name)}): another "
            f"installed distribution has a top-level package of the same name (PyPI's {name!r}?) and comes first on "
            f"sys.path; `pip uninstall {name}` (check with `pip show {name}`) or install rlvr-gym in its own virtual "
            f"environment")


def _one_line_hook(previous):
    def hook(tp, value, tb):
        if issubclass(tp, PackageClash):
            print(f"error: {value}", file=sys.stderr)
        else:
            previous(tp, value, tb)
    return hook


def check_or_explain() -> None:
    """`check`; on a clash, an uncaught `PackageClash` prints as one line (no traceback) before it is raised."""
    try:
        check()
    except PackageClash:
        if not getattr(sys.excepthook, "_rlvr_clash", False):
            sys.excepthook = _one_line_hook(sys.excepthook)
            sys.excepthook._rlvr_clash = True  # type: ignore[attr-defined]
        raise
