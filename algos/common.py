"""What every training module shares, under one name: ``from algos.common import X`` and ``common.X``
keep working for every name below. The code lives where it changes together:

* `algos.lifecycle`: a run from start to finish (`RunConfig`, `Setup`, `start`, resume, the held-out
  evaluation, the alignment-tax suite, `finish`, `save_on_interrupt`);
* `algos.steps`: the pieces of a training step (`sample_and_score`, `reward_metrics`, `has_error`,
  `adamw`, `lr_at`, `update`, `reference`, `sync_engine`, `log_samples`);
* `algos.cli`: the command line (`run_main`: one-line errors and exit codes; `say`, `progress_bar`).
"""

from __future__ import annotations

from algos.cli import INTERRUPTED_BEFORE_TRAINING, progress_bar, run_main, say  # noqa: F401
from algos.lifecycle import (  # noqa: F401
    RESUME_KEYS, Progress, RunConfig, Setup, claim_run_dir, eval_metrics, evaluate, finish, heldout_before, resumed_config,
    save_on_interrupt, start, tax_suite)
from algos.steps import (  # noqa: F401
    _tool_calls, adamw, has_error, lr_at, log_samples, reduce_stats, reference, reward_metrics, sample_and_score, set_lr,
    stale, sync_engine, update)
