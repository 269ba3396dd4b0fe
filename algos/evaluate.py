"""Evaluate any model against the verifiers.

    python -m algos.evaluate env=math policy.model=runs/grpo-math-.../checkpoints/step-300
    python -m algos.evaluate env=[math,gsm8k] env.gsm8k.path=../shared/data/gsm8k n=8 temperature=1.0
    python -m algos.evaluate env=math policy.engine=openai policy.base_url=http://localhost:8000/v1 policy.model=NAME
    python -m algos.evaluate out=DIR reverify=true      # recompute verdicts of DIR/samples.jsonl, no generation
    python -m algos.evaluate compare=RUN_A,RUN_B out=DIR # deltas between two evaluations

For each environment: ``tasks`` held-out tasks, ``n`` samples each. Metrics: pass@1 and the
unbiased pass@k for k = 1, 2, 4, ... n (Chen et al. 2021), maj@k where answers compare
(majority over the extracted answers), mean reward and each reward part, format compliance,
counts of no_answer / timeout / verifier error, each with its standard error over tasks;
breakdowns by difficulty and by source. With temperature=0 (the default) the samples of a
task are one greedy completion, so pass@1 is the greedy accuracy `algos.grpo` reports.

Every sample is appended to ``DIR/samples.jsonl`` as it is produced; a rerun with the same
``out`` skips tasks already done. ``DIR/report.md``, PNG plots and ``DIR/summary.json`` are
written at the end, and the headline table is printed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import envs
from algos import config as cfglib
from algos.cli import run_main  # the trainers' one-line errors (and exit 3 for a sandbox or server down)
from algos.evaluation import (  # noqa: F401 - the core, re-exported: algos.evaluate.X keeps working
    TAX_KEYS, EvalConfig, _load_rows, compare_runs, env_names, env_options, generate, headline_table, instruction_metrics,
    reverify, sample_row, suite, summarize, tax_deltas, write_report)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = ["reverify=true" if a == "--reverify" else a for a in argv]
    cfg: EvalConfig = cfglib.parse(EvalConfig, argv, prog="algos.evaluate")
    if cfg.compare:
        parts = [p.strip() for p in cfg.compare.split(",")]
        if len(parts) != 2:
            raise cfglib.ConfigError(f"compare={cfg.compare!r} must be two run folders, RUN_A,RUN_B")
        return compare_runs(parts[0], parts[1], cfg.out or os.path.join("runs", f"compare-{time.strftime('%Y%m%d-%H%M%S')}"))
    if cfg.n < 1:
        raise cfglib.ConfigError(f"n={cfg.n} must be >= 1")
    if cfg.n > 1 and cfg.temperature == 0 and not cfg.reverify:
        print(f"warning: n={cfg.n} at temperature=0 repeats one greedy completion per task, so pass@{cfg.n} equals "
              f"pass@1; set temperature= (e.g. temperature=1.0) to sample {cfg.n} different completions", file=sys.stderr)
    names = env_names(cfg.env)
    out_dir = cfg.out or os.path.join("runs", f"eval-{'+'.join(envs.canonical_name(n) for n in names)}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(out_dir, exist_ok=True)
    samples_path = os.path.join(out_dir, "samples.jsonl")
    if not cfg.reverify:
        claim_eval_dir(out_dir, cfg)
    env_objs = {name: envs.make(name, **env_options(name, cfg.env_kwargs, names)) for name in names}
    rows = _load_rows(samples_path)
    if cfg.reverify:
        if not rows:
            raise FileNotFoundError(f"reverify: no samples at {samples_path}")
        rows = reverify(rows, env_objs)
        with open(samples_path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    else:
        rows = generate(cfg, env_objs, rows, samples_path)
    summary = {name: summarize([r for r in rows if r["env"] == name], cfg.n) for name in names}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    write_report(out_dir, summary, rows, cfg)
    print(headline_table(summary))
    if cfg.judge.model:  # an LLM judge's scores and win rate (algos.judging), after the verifiers' report
        from algos import judging

        judged = judging.judge_eval(cfg.judge, rows, out_dir)
        with open(os.path.join(out_dir, "judge.json"), "w") as f:
            json.dump(judged, f, indent=2)
        lines = judging.report_lines(judged, cfg.judge)
        with open(os.path.join(out_dir, "report.md"), "a") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines[5:]))
        summary = {**summary, "_judge": judged}
    print(f"report: {os.path.join(out_dir, 'report.md')}")
    return summary


# what the samples in an evaluation folder depend on: a rerun into the folder must match them all
SAMPLE_KEYS = ("policy.model", "policy.engine", "policy.dtype", "policy.vllm_dtype", "policy.base_url",
               "policy.served_model", "policy.seed", "temperature", "top_p", "max_new_tokens", "seed", "split", "env_kwargs")


def claim_eval_dir(out_dir: str, cfg: EvalConfig) -> None:
    """An evaluation folder belongs to one model and one set of sampling settings (`SAMPLE_KEYS`, kept
    in ``eval_config.yaml``): a rerun with the same resumes; with others it is refused (one line
    naming what differs), or with ``overwrite=true`` its samples are deleted and it starts afresh."""
    import yaml

    path = os.path.join(out_dir, "eval_config.yaml")
    mine = {k: cfglib.get(cfg, k) for k in SAMPLE_KEYS}
    if os.path.exists(path):
        with open(path) as f:
            theirs = yaml.safe_load(f) or {}
        differ = [f"{k} ({theirs.get(k)!r} there, {v!r} now)" for k, v in mine.items() if theirs.get(k) != v]
        if differ and not cfg.overwrite:
            raise cfglib.ConfigError(f"out={out_dir} holds samples of another evaluation: {', '.join(differ)}; choose "
                                     f"another out=, or pass overwrite=true to replace them")
        if differ:
            for name in ("samples.jsonl", "summary.json", "report.md"):
                if os.path.exists(os.path.join(out_dir, name)):
                    os.remove(os.path.join(out_dir, name))
    elif cfg.overwrite and os.path.exists(os.path.join(out_dir, "samples.jsonl")):
        os.remove(os.path.join(out_dir, "samples.jsonl"))
    with open(path, "w") as f:
        yaml.safe_dump(mine, f, sort_keys=False)


if __name__ == "__main__":
    run_main(main, interrupted="interrupted: the samples so far are kept in out=/samples.jsonl; run the same command "
                               "again to continue")
