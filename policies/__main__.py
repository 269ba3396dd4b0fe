"""``python -m policies serve ...``: the policies' commands."""

import sys

from policies.cli import main_usage

COMMANDS = {"serve": "an OpenAI-compatible generation server on the transformers engine (see policies/server.py)",
            "merge": "a LoRA run or checkpoint as a merged Hugging Face folder: merge RUN_DIR_OR_CHECKPOINT out=DIR"}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        main_usage(COMMANDS)
    cmd = sys.argv[1]
    if cmd == "serve":
        from policies.server import serve

        try:
            serve(sys.argv[2:])
        except (FileNotFoundError, ImportError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2)
        return
    if cmd == "merge":
        from policies.lora import merge_main

        try:
            merge_main(sys.argv[2:])
        except (FileNotFoundError, ImportError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2)
        return
    print(f"error: unknown command {cmd!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
