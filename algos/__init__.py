"""Algorithms: one runnable module per algorithm, and what they share.

Entry points (``python -m algos.NAME``): ``sft``, ``grpo``, ``ppo``, ``rejection_sampling``,
``iterative_dpo``, ``dpo`` (offline DPO/ORPO/SimPO/KTO), ``preference`` (build preference data),
``reward_model`` (a Bradley-Terry reward model), ``evaluate`` (with ``judging``: an LLM judge's scores and
win rate) and ``recipe`` (stages in order).

Shared: ``config`` (dataclass configs, ``key=value`` parsing, ``--help``), ``lifecycle`` (a run from
start to finish: setup, resume, held-out evaluation before and after, the alignment-tax suite, the final
checkpoint and summary, Ctrl-C saving), ``steps`` (the pieces of a training step: sampling and scoring,
reward metrics, the optimizer and learning-rate schedule, the reference), ``cli`` (one-line errors and
exit codes), ``common`` (all of those under one name), ``evaluation`` (the evaluation core that
``evaluate``, the command, and the tax suite share), ``runs`` (the run folder,
logs, checkpoints, curves), ``heldout`` (the held-out evaluation core), ``episodes`` (one or more
turns per task), ``losses`` and ``metrics`` (pure functions), ``microbatch`` (gradient
accumulation), ``dist`` (torchrun: DDP/FSDP2), ``preference`` (what both DPO modules share),
``mixture`` (``env=[A,B]``: a mixture of environments, per-environment metrics, self-correction
markers), ``filtering`` (GRPO's dynamic sampling per environment and online difficulty filter).

Importing ``algos`` first checks that ``verifiers``, ``envs``, ``policies`` and ``sandbox`` are this
project's packages and not same-named ones from another distribution (``envs/_layout.py``).
"""

__rlvr_gym__ = True  # marks rlvr-gym's package (envs/_layout.py tells it from a same-named one)

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # python -m algos.NAME, still importing (torch takes seconds): Ctrl-C is one line
    import signal as _signal

    def _interrupted_while_starting(signum, frame):  # algos.common.run_main puts Python's own handler back
        print("\ninterrupted while starting (importing): nothing was trained, nothing saved", file=_sys.stderr)
        raise SystemExit(130)

    _signal.signal(_signal.SIGINT, _interrupted_while_starting)

from envs import _layout  # noqa: E402  (importing envs runs the check before anything imports verifiers)

_layout.check_or_explain()  # also when envs was imported before a shadowing package came first
