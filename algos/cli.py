"""The command line of every algos module: one-line errors and exit codes (`run_main`), rank-0 output
(`say`, `progress_bar`)."""

from __future__ import annotations

import sys
from typing import Any, Callable

from tqdm import tqdm

import envs
from algos import config as cfglib
from algos import dist
from policies.base import PolicyError, ServerDown, WeightSyncError
from verifiers.code import SandboxDown


def say(msg: str) -> None:
    """A line on stderr, from rank 0 only under torchrun."""
    if dist.world().is_main:
        print(msg, file=sys.stderr)


def progress_bar(it: Any, **kw: Any) -> tqdm:
    """tqdm on rank 0 (the others stay quiet)."""
    return tqdm(it, disable=not dist.world().is_main, dynamic_ncols=True, **kw)


INTERRUPTED_BEFORE_TRAINING = ("interrupted before the first training step (loading the model or the first held-out "
                               "evaluation): nothing was trained, nothing saved")


def run_main(main: Callable[[list[str] | None], Any], interrupted: str = INTERRUPTED_BEFORE_TRAINING) -> None:
    """Entry point: a bad config, env or model is a one-line error and exit code 2, not a traceback.
    Ctrl-C outside the training loop (which saves: `save_on_interrupt`) prints ``interrupted`` and exits
    with 130. (Ctrl-C while Python is still importing torch, before this runs, is Python's own traceback.)"""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C is KeyboardInterrupt again (see algos/__init__)
    try:
        main(None)
        dist.world().close()
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        raise SystemExit(130)
    except (cfglib.ConfigError, envs.EnvError, PolicyError, FileNotFoundError, ImportError, dist.DistError) as e:
        if dist.world().is_main or not isinstance(e, cfglib.ConfigError) or getattr(e, "rank_local", False):
            # every rank sees the same bad config (not a row too long for micro_batch_tokens: that one rank's data)
            print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except SandboxDown as e:
        print(f"error: the sandbox is down: {e}. Start the Docker daemon and run the same command again "
              f"(finished work is kept)", file=sys.stderr)
        raise SystemExit(3)
    except ServerDown as e:
        print(f"error: a generation server is down: {e}. Start it and run the same command again "
              f"(finished work is kept)", file=sys.stderr)
        raise SystemExit(3)
    except WeightSyncError as e:
        print(f"error: the generation servers cannot be brought to the trainer's weights: {e}. Restart them "
              f"and run the same command again (finished work is kept)", file=sys.stderr)
        raise SystemExit(3)
