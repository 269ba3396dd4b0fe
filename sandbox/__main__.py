"""python -m sandbox image build [--name NAME] [--suite SUITE] [--mirror URL]
python -m sandbox check [--backend docker|bwrap|unsafe-process] [--image NAME]   # run one trivial job
python -m sandbox prune [--orphans]   # remove this project's sandbox containers (all, or those whose owner is gone)"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandbox", description="the code-execution sandbox")
    sub = ap.add_subparsers(dest="cmd", required=True)
    img = sub.add_parser("image", help="build the sandbox image")
    img_sub = img.add_subparsers(dest="action", required=True)
    b = img_sub.add_parser("build", help="debootstrap + docker import, no registry needed")
    b.add_argument("--name", default="rlvr-sandbox:latest")
    b.add_argument("--suite", default="bookworm")
    b.add_argument("--mirror", default=None)
    c = sub.add_parser("check", help="start the pool and run a trivial job")
    c.add_argument("--backend", default="docker")
    c.add_argument("--image", default=None)
    p = sub.add_parser("prune", help="remove this project's sandbox containers (label rlvr-gym.sandbox)")
    p.add_argument("--orphans", action="store_true", help="only those whose owner process is gone")
    args = ap.parse_args(argv)
    if args.cmd == "prune":
        from sandbox.core import prune

        try:
            n = prune(orphans_only=args.orphans)
        except Exception as e:  # noqa: BLE001 - no daemon, no SDK: one line, not a traceback
            print(f"error: cannot reach the Docker daemon to prune ({type(e).__name__}: {e})", file=sys.stderr)
            return 2
        print(f"removed {n} sandbox container{'s' if n != 1 else ''}")
        return 0
    if args.cmd == "image":
        from sandbox.image import build

        build(args.name, args.suite, args.mirror)
        return 0
    from sandbox.core import Job, Sandbox, SandboxError

    try:
        with Sandbox(args.backend, image=args.image, workers=1) as sb:
            r = sb.run(Job("x = 1", ("assert x == 1",)))
    except (SandboxError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.backend}: {r.status} in {r.seconds * 1000:.1f} ms" +
          (f" ({r.details.get('error')})" if not r.passed and r.details.get("error") else ""))
    return 0 if r.passed else 1


if __name__ == "__main__":
    sys.exit(main())
