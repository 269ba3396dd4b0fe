"""Environments from the command line.

    python -m envs new NAME [--dir D]     # write NAME.py and test_NAME.py: a working environment skeleton
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from envs.core import EnvError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    pn = sub.add_parser("new", help="write a working environment skeleton (source, reward, system prompt, test)",
                        description="Write NAME.py (a procedural task source, a TRL-style reward, a format part, the "
                                    "system prompt, the environment class) and test_NAME.py (check_env and scores by "
                                    "hand). It passes envs.check_env and trains as written.")
    pn.add_argument("name", metavar="NAME", help="the module name, e.g. my_task (the class is MyTaskEnv)")
    pn.add_argument("--dir", default=".", help="where to write the two files (default: the current directory)")
    args = parser.parse_args(argv)

    from envs import new

    try:
        module_path, test_path, ref = new.write(args.name, args.dir)
    except (EnvError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    d = os.path.dirname(module_path)
    here = os.path.abspath(os.getcwd()) == d
    env_prefix = "" if here else f"PYTHONPATH={shlex.quote(d)} "
    print(f"wrote {module_path} and {test_path}\nnext:\n"
          f"  python -m pytest -q {shlex.quote(test_path)}\n"
          f"  {env_prefix}python -m algos.grpo env={ref}" + ("" if here else "   # the folder must be importable"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
