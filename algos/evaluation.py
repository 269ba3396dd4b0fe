"""The evaluation core, used by `python -m algos.evaluate` and by the training modules' alignment-tax
suite (``tax_envs``): generate and score samples of an engine on environments (`generate`, `suite`),
their metrics (`summarize`: pass@k, maj@k, reward parts, verdict counts, IFEval's four numbers), the
report with its plots (`write_report`), and comparisons of two evaluations (`compare_runs`, `tax_deltas`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import time
from typing import Any, ClassVar

from tqdm import tqdm

import envs
from algos import config as cfglib
from algos import episodes, mixture
from algos.config import AT_LEAST_1, POLICY_RANGES, Range
from algos.metrics import ks_for, majority_correct, mean_se, pass_at_k
from policies import PolicyConfig, SamplingParams
from policies.judge import JudgeConfig
from verifiers.code import raise_if_sandbox_down


@dataclasses.dataclass
class EvalConfig:
    RANGES: ClassVar[dict] = {**POLICY_RANGES, "tasks": AT_LEAST_1, "n": AT_LEAST_1, "top_p": Range(0, 1, lo_open=True),
                              "max_new_tokens": AT_LEAST_1, "batch_size": AT_LEAST_1}  # algos.config.check_ranges
    env: str = "math"
    """environment, or several as [math,gsm8k] (aliases, Gymnasium ids or module:Class)"""
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    """options: env.KEY=VALUE for every environment, env.NAME.KEY=VALUE for one of several"""
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """the model (see policy.* keys); default the shipped cold-start checkpoint tiny-sft"""
    tasks: int = 500
    """held-out tasks per environment (all of them if fewer)"""
    n: int = 1
    """samples per task"""
    temperature: float = 0.0
    """sampling temperature; 0 is greedy (one completion, repeated n times)"""
    top_p: float = 1.0
    """nucleus sampling"""
    max_new_tokens: int = 96
    """completion length limit"""
    batch_size: int = 64
    """tasks generated together"""
    split: str = "heldout"
    """which split to evaluate: heldout (default) or train"""
    seed: int = 0
    """sampling seed"""
    out: str | None = None
    """output folder (default runs/eval-<envs>-<time>); rerunning with the same folder, model and sampling settings resumes; another model or settings are refused"""
    overwrite: bool = False
    """out= holds samples of another model or other sampling settings: delete them and evaluate afresh"""
    reverify: bool = False
    """recompute the verdicts of out/samples.jsonl with the current verifiers, without generating"""
    compare: str | None = None
    """RUN_A,RUN_B: two evaluation folders to compare (writes deltas per environment and metric)"""
    examples: int = 2
    """example completions per outcome in the report"""
    judge: JudgeConfig = dataclasses.field(default_factory=JudgeConfig)
    """an LLM judge of the samples (judge.model=NAME; see judge.* keys): scores, and with judge.reference=EVAL_DIR the pairwise win rate, in report.md and judge.json (algos.judging)"""


def env_names(spec: str) -> list[str]:
    """The environments of ``env=`` (the training modules' mixture syntax: `algos.mixture.env_names`)."""
    try:
        return mixture.env_names(spec)
    except envs.EnvError as e:
        raise cfglib.ConfigError(str(e)) from None


def env_options(name: str, kwargs: dict[str, Any], names: list[str]) -> dict[str, Any]:
    out = mixture.env_options(name, kwargs, names)  # env.KEY for every environment, env.NAME.KEY for one
    if envs.canonical_name(name) == "ifeval":
        out.setdefault("mode", "benchmark")  # IFEval is reported under lm-eval's definition, not the training reward
    return out


def summarize(rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Headline metrics of one environment's samples (rows of samples.jsonl)."""
    by_task: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rows:
        by_task[r["task_id"]].append(r)
    tasks = [sorted(v, key=lambda r: r["sample"]) for v in by_task.values()]
    tasks = [t for t in tasks if len(t) >= n]
    out: dict[str, Any] = {"n_tasks": len(tasks), "n_samples": n}
    if not tasks:
        return out
    for k in ks_for(n):
        m, se = mean_se([pass_at_k(n, sum(r["status"] == "correct" for r in t[:n]), k) for t in tasks])
        out[f"pass@{k}"], out[f"pass@{k}_se"] = m, se
    # maj@k needs comparable final answers: the math verifier's (its details say how it extracted them)
    comparable = all("method" in (r.get("details") or {}) or r["status"] != "correct" for t in tasks for r in t)
    if comparable:
        for k in ks_for(n):
            m, se = mean_se([majority_correct([r.get("extracted") for r in t], [r["status"] == "correct" for r in t], k)
                             for t in tasks])
            out[f"maj@{k}"], out[f"maj@{k}_se"] = m, se
    flat = [r for t in tasks for r in t[:n]]
    out["mean_reward"], out["mean_reward_se"] = mean_se([sum(r["reward"] for r in t[:n]) / n for t in tasks])
    for part in flat[0].get("parts", {}):
        out[f"reward/{part}"], out[f"reward/{part}_se"] = mean_se([sum(r["parts"][part] for r in t[:n]) / n for t in tasks])
    if "format" in flat[0].get("parts", {}):
        out["format_compliance"], out["format_compliance_se"] = out["reward/format"], out["reward/format_se"]
    for s in ("correct", "wrong", "no_answer", "timeout", "error"):
        out[f"count/{s}"] = sum(r["status"] == s for r in flat)
    out["mean_tokens"] = sum(r.get("tokens", 0) for r in flat) / len(flat)
    if any("strict" in (r.get("details") or {}) for r in flat):
        out.update(instruction_metrics(flat))
    for key in ("difficulty", "source"):
        groups: dict[str, list[float]] = collections.defaultdict(list)
        for t in tasks:
            if t[0].get(key) is not None:
                groups[str(t[0][key])].append(sum(r["status"] == "correct" for r in t[:n]) / n)
        if len(groups) > 0:
            out[f"by_{key}"] = {g: {"pass@1": mean_se(v)[0], "pass@1_se": mean_se(v)[1], "n_tasks": len(v)}
                                for g, v in sorted(groups.items())}
    return out


def instruction_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """IFEval's four standard numbers over samples (prompt-level: every instruction followed;
    instruction-level: the share of instructions followed; strict and loose), each with a standard
    error, and a breakdown per instruction type."""
    out: dict[str, Any] = {}
    rows = [r for r in rows if "strict" in (r.get("details") or {})]
    for mode in ("strict", "loose"):
        m, se = mean_se([float(bool(r["details"][mode]) and all(r["details"][mode])) for r in rows])
        out[f"ifeval/prompt_{mode}"], out[f"ifeval/prompt_{mode}_se"] = m, se
        flags = [float(x) for r in rows for x in r["details"][mode]]
        m, se = mean_se(flags) if flags else (0.0, 0.0)
        out[f"ifeval/instruction_{mode}"], out[f"ifeval/instruction_{mode}_se"] = m, se
    by: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: {"strict": [], "loose": []})
    for r in rows:
        d = r["details"]
        for iid, s, lo in zip(d["instructions"], d["strict"], d["loose"]):
            by[iid]["strict"].append(float(s))
            by[iid]["loose"].append(float(lo))
    out["by_instruction"] = {iid: {"strict": sum(v["strict"]) / len(v["strict"]), "loose": sum(v["loose"]) / len(v["loose"]),
                                   "n": len(v["strict"])} for iid, v in sorted(by.items())}
    return out


def write_report(out_dir: str, summary: dict[str, dict[str, Any]], rows: list[dict[str, Any]], cfg: EvalConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [f"# Evaluation: {cfg.policy.model}", "",
             f"engine {cfg.policy.engine}, n={cfg.n}, temperature={cfg.temperature}, max_new_tokens={cfg.max_new_tokens}, "
             f"split {cfg.split}", "", headline_table(summary, markdown=True), ""]
    # pass@k against k
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in summary.items():
        ks = [k for k in ks_for(cfg.n) if f"pass@{k}" in s]
        if ks:
            ax.errorbar(ks, [100 * s[f"pass@{k}"] for k in ks], yerr=[100 * s[f"pass@{k}_se"] for k in ks], marker="o",
                        capsize=3, label=f"{name} pass@k")
            if f"maj@{ks[-1]}" in s:
                ax.plot(ks, [100 * s[f"maj@{k}"] for k in ks], linestyle="--", marker="x", label=f"{name} maj@k")
    ax.set_xscale("log", base=2)
    ks_all = ks_for(cfg.n)
    ax.set_xticks(ks_all, [str(k) for k in ks_all])
    ax.set_ylim(0, 105)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("pass@k and maj@k (± 1 s.e.)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "pass_at_k.png"), dpi=110)
    plt.close(fig)
    lines += ["![pass@k](pass_at_k.png)", ""]
    # accuracy by difficulty / source
    for key in ("difficulty", "source"):
        items = [(name, s[f"by_{key}"]) for name, s in summary.items() if len(s.get(f"by_{key}", {})) > 1 or
                 (key == "difficulty" and s.get(f"by_{key}"))]
        if not items:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.8 / len(items)
        for j, (name, groups) in enumerate(items):
            labels = list(groups)
            ax.bar([i + j * width for i in range(len(labels))], [100 * groups[g]["pass@1"] for g in labels], width,
                   yerr=[100 * groups[g]["pass@1_se"] for g in labels], capsize=3, label=name)
            ax.set_xticks([i + (len(items) - 1) * width / 2 for i in range(len(labels))], labels)
        ax.set_xlabel(key)
        ax.set_ylim(0, 105)
        ax.set_ylabel("pass@1 (%)")
        ax.set_title(f"pass@1 by {key} (± 1 s.e.)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"by_{key}.png"), dpi=110)
        plt.close(fig)
        lines += [f"![by {key}](by_{key}.png)", ""]
    # IFEval: per instruction type
    for name, s in summary.items():
        by = s.get("by_instruction")
        if not by:
            continue
        ids = list(by)
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(ids) + 1.5))
        ax.barh([i + 0.2 for i in range(len(ids))], [100 * by[i]["strict"] for i in ids], 0.4, label="strict")
        ax.barh([i - 0.2 for i in range(len(ids))], [100 * by[i]["loose"] for i in ids], 0.4, label="loose")
        ax.set_yticks(range(len(ids)), [f"{i} ({by[i]['n']})" for i in ids], fontsize=7)
        ax.set_xlim(0, 100)
        ax.set_xlabel("instructions followed (%)")
        ax.set_title(f"{name}: by instruction type (count)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"{name}_by_instruction.png"), dpi=110)
        plt.close(fig)
        lines += [f"## {name}: instruction following", "",
                  "| | strict | loose |", "| --- | --- | --- |"] + \
                 [f"| {lvl}-level | {100 * s[f'ifeval/{lvl}_strict']:.1f}% ± {100 * s[f'ifeval/{lvl}_strict_se']:.1f} | "
                  f"{100 * s[f'ifeval/{lvl}_loose']:.1f}% ± {100 * s[f'ifeval/{lvl}_loose_se']:.1f} |"
                  for lvl in ("prompt", "instruction")] + ["", f"![by instruction]({name}_by_instruction.png)", ""]
    # reward parts
    parts = sorted({k for s in summary.values() for k in s if k.startswith("reward/") and not k.endswith("_se")})
    if parts:
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.8 / len(summary)
        for j, (name, s) in enumerate(summary.items()):
            ax.bar([i + j * width for i in range(len(parts))], [s.get(p, 0) for p in parts], width,
                   yerr=[s.get(p + "_se", 0) for p in parts], capsize=3, label=name)
        ax.set_xticks([i + (len(summary) - 1) * width / 2 for i in range(len(parts))], [p.split("/", 1)[1] for p in parts])
        ax.set_ylabel("mean score (0-1)")
        ax.set_xlabel("reward part")
        ax.set_title("reward parts (± 1 s.e.)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "reward_parts.png"), dpi=110)
        plt.close(fig)
        lines += ["![reward parts](reward_parts.png)", ""]
    # examples per outcome
    lines += ["## Example completions", ""]
    for name in summary:
        for status in ("correct", "wrong", "no_answer", "timeout", "error"):
            ex = [r for r in rows if r["env"] == name and r["status"] == status][:cfg.examples]
            for r in ex:
                lines += [f"**{name} / {status}** (task `{r['task_id']}`, reference `{r['reference']}`, "
                          f"extracted `{r.get('extracted')}`)", "", "```", str(r["prompt"])[-300:], "---",
                          r["completion"][:800], "```", ""]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines))


def headline_table(summary: dict[str, dict[str, Any]], markdown: bool = False) -> str:
    cols = ["n_tasks", "pass@1"] + sorted({k for s in summary.values() for k in s if k.startswith("pass@")
                                           and not k.endswith("_se") and k != "pass@1"}, key=lambda k: int(k[5:]))
    cols += [c for c in ("maj@" + str(max([int(k[5:]) for k in cols if k.startswith("pass@")] or [1])), "mean_reward",
                         "format_compliance", "ifeval/prompt_strict", "ifeval/prompt_loose", "ifeval/instruction_strict",
                         "ifeval/instruction_loose", "count/no_answer", "count/timeout", "count/error")
             if any(c in s for s in summary.values())]

    def cell(s: dict[str, Any], c: str) -> str:
        if c not in s:
            return "-"
        v = s[c]
        if c.startswith(("pass@", "maj@", "ifeval/")) or c in ("format_compliance",):
            se = s.get(c + "_se")
            return f"{100 * v:.1f}%" + (f" ± {100 * se:.1f}" if se is not None else "")
        if c == "mean_reward":
            return f"{v:.3f} ± {s.get('mean_reward_se', 0):.3f}"
        return str(v)

    rows = [["env"] + cols] + [[name] + [cell(s, c) for c in cols] for name, s in summary.items()]
    if markdown:
        return "\n".join(["| " + " | ".join(r) + " |" for r in rows[:1]] + ["|" + " --- |" * len(cols + [0])] +
                         ["| " + " | ".join(r) + " |" for r in rows[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths)) for r in rows)


def compare_runs(a: str, b: str, out_dir: str) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sa, sb = (json.load(open(os.path.join(d, "summary.json"))) for d in (a, b))
    deltas, ses = tax_deltas(sa, sb)
    if not deltas:
        raise cfglib.ConfigError(f"compare: {a} and {b} share no environment")
    os.makedirs(out_dir, exist_ok=True)
    keys = sorted({k for d in deltas.values() for k in d})
    fig, ax = plt.subplots(figsize=(max(6, len(keys) * 0.8), 4))
    width = 0.8 / len(deltas)
    for j, (name, d) in enumerate(deltas.items()):
        ax.bar([i + j * width for i in range(len(keys))], [100 * d.get(k, 0) for k in keys], width,
               yerr=[196 * ses[name].get(k, 0) for k in keys], capsize=3, label=name)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([i + (len(deltas) - 1) * width / 2 for i in range(len(keys))], keys, rotation=30, ha="right")
    ax.set_ylabel("B - A (percentage points, ± 95% CI)")
    ax.set_title(f"B = {os.path.basename(b.rstrip('/'))} vs A = {os.path.basename(a.rstrip('/'))}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "compare.png"), dpi=110)
    plt.close(fig)
    with open(os.path.join(out_dir, "compare.json"), "w") as f:
        json.dump({"a": a, "b": b, "deltas": deltas, "se": ses}, f, indent=2)
    lines = [f"# {b} vs {a}", "", "Deltas B - A with their standard error (independent samples); * marks a change "
             "larger than 1.96 standard errors (significant at about 5%).", "",
             "| env | metric | A | B | B - A | |", "| --- | --- | --- | --- | --- | --- |"]
    for name, d in deltas.items():
        for k, v in d.items():
            se = ses[name][k]
            sig = "*" if se > 0 and abs(v) > 1.96 * se else ("*" if se == 0 and v != 0 else "")
            lines.append(f"| {name} | {k} | {sa[name][k]:.3f} | {sb[name][k]:.3f} | {v:+.3f} ± {se:.3f} | {sig} |")
    lines += ["", "![deltas](compare.png)"]
    with open(os.path.join(out_dir, "compare.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines[:-2]))
    return deltas


TAX_KEYS = ("pass@", "maj@", "reward/", "ifeval/")


def tax_deltas(sa: dict[str, Any], sb: dict[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Per environment shared by two evaluation summaries: B - A of every headline metric, and its
    standard error sqrt(se_A^2 + se_B^2)."""
    deltas: dict[str, dict[str, float]] = {}
    ses: dict[str, dict[str, float]] = {}
    for name in sorted(set(sa) & set(sb)):
        keys = [k for k in sa[name] if isinstance(sa[name][k], (int, float)) and k in sb[name] and not k.endswith("_se")
                and (k.startswith(TAX_KEYS) or k in ("mean_reward", "format_compliance"))]
        deltas[name] = {k: sb[name][k] - sa[name][k] for k in keys}
        ses[name] = {k: (sa[name].get(k + "_se", 0.0) ** 2 + sb[name].get(k + "_se", 0.0) ** 2) ** 0.5 for k in keys}
    return deltas, ses


def _load_rows(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a crash: that task is redone
                    pass
    return rows


def suite(engine: Any, env_spec: str, env_kwargs: dict[str, Any], out_dir: str, tasks: int, max_new_tokens: int,
          model_label: str = "") -> dict[str, Any]:
    """Evaluate an engine already in memory (greedy) on ``env_spec`` (``[math,gsm8k,ifeval]``) into ``out_dir``:
    the same samples, summary and report as the command. Used by the training modules' ``tax_envs``."""
    cfg = EvalConfig(env=env_spec, env_kwargs=dict(env_kwargs), tasks=tasks, max_new_tokens=max_new_tokens, out=out_dir)
    cfg.policy = dataclasses.replace(cfg.policy, model=model_label or "in-memory model")
    names = env_names(cfg.env)
    os.makedirs(out_dir, exist_ok=True)
    env_objs = {name: envs.make(name, **env_options(name, cfg.env_kwargs, names)) for name in names}
    rows = generate(cfg, env_objs, _load_rows(os.path.join(out_dir, "samples.jsonl")),
                    os.path.join(out_dir, "samples.jsonl"), engine=engine)
    summary = {name: summarize([r for r in rows if r["env"] == name], cfg.n) for name in names}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    write_report(out_dir, summary, rows, cfg)
    return summary


def generate(cfg: EvalConfig, env_objs: dict[str, Any], rows: list[dict[str, Any]], samples_path: str,
             engine: Any = None) -> list[dict[str, Any]]:
    from policies import load

    done = collections.Counter((r["env"], r["task_id"]) for r in rows)
    complete = {k for k, c in done.items() if c >= cfg.n}
    rows = [r for r in rows if (r["env"], r["task_id"]) in complete]  # partial tasks are redone
    with open(samples_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    todo = []
    for name, env in env_objs.items():
        base = env.unwrapped
        size = base.source.size(cfg.split)
        tasks = base.tasks(min(cfg.tasks, size) if size else cfg.tasks, cfg.split)
        todo += [(name, t) for t in tasks if (name, t.id) not in complete]
    if not todo:
        print(f"all {len(complete)} tasks already evaluated in {samples_path}", file=sys.stderr)
        return rows
    if engine is None:
        engine, _, _ = load(cfg.policy)
    greedy = cfg.temperature == 0
    params = SamplingParams(n=1 if greedy else cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
                            max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    bar = tqdm(total=len(todo), desc="evaluate", dynamic_ncols=True)
    n_correct = n_samples = n_tokens = 0
    t0 = time.time()
    with open(samples_path, "a") as f:
        for s in range(0, len(todo), cfg.batch_size):
            chunk = todo[s:s + cfg.batch_size]
            for name in dict.fromkeys(n for n, _ in chunk):
                base = env_objs[name].unwrapped
                tasks = [t for n, t in chunk if n == name]
                outs = episodes.generate(engine, base, tasks, params)  # one turn, or several with tools
                if greedy:
                    outs = [rs * cfg.n for rs in outs]
                flat_tasks = [t for t, rs in zip(tasks, outs) for _ in rs]
                flat = [r for rs in outs for r in rs]
                results = base.score_batch([r.text for r in flat], flat_tasks)
                raise_if_sandbox_down(results)  # nothing of this chunk is written: a rerun does it again
                for j, (t, r, res) in enumerate(zip(flat_tasks, flat, results)):
                    row = sample_row(name, t, j % cfg.n, base.prompt_of(t), r.text, len(r.completion_ids),
                                     r.finish_reason, res)
                    rows.append(row)
                    f.write(json.dumps(row) + "\n")
                    n_correct += row["status"] == "correct"
                    n_samples += 1
                    n_tokens += len(r.completion_ids)
                f.flush()
            bar.update(len(chunk))
            bar.set_postfix(acc=f"{n_correct / max(n_samples, 1):.1%}", tok_s=f"{n_tokens / (time.time() - t0):.0f}")
    bar.close()
    return rows


def sample_row(env: str, task: Any, sample: int, prompt: Any, completion: str, tokens: int, finish: str, res: Any) -> dict[str, Any]:
    v = next(iter(res.verdicts.values()), None)  # the correctness part's first (TextEnv.with_correctness)
    return {"env": env, "task_id": task.id, "sample": sample, "prompt": prompt, "completion": completion,
            "reference": task.reference if isinstance(task.reference, (str, int, float)) else str(task.reference),
            "reward": res.reward, "parts": res.parts, "status": v.status.value if v else None,
            "extracted": v.extracted if v else None, "details": v.details if v else {},
            "difficulty": task.metadata.get("difficulty"), "source": task.metadata.get("source"),
            "split": task.metadata.get("split"), "index": task.metadata.get("index"),
            "tokens": tokens, "finish_reason": finish}


def reverify(rows: list[dict[str, Any]], env_objs: dict[str, Any]) -> list[dict[str, Any]]:
    """Recompute rewards and verdicts from stored completions (tasks rebuilt from their ids)."""
    out = []
    for name, env in env_objs.items():
        base = env.unwrapped
        mine = [r for r in rows if r["env"] == name]
        if not mine:
            continue
        try:
            tasks = [base.source.task(int(r["index"]), r["split"]) for r in mine]
        except KeyError as k:
            raise cfglib.ConfigError(f"reverify: stored samples lack {k}; they were not written by algos.evaluate") from None
        moved = [(r["task_id"], t.id) for r, t in zip(mine, tasks) if r["task_id"] != t.id]
        if moved:
            raise cfglib.ConfigError(f"reverify: task {moved[0][0]!r} rebuilds as {moved[0][1]!r}; pass the same env "
                                     f"options as the original evaluation")
        results = base.score_batch([r["completion"] for r in mine], tasks)
        for r, t, res in zip(mine, tasks, results):
            out.append(sample_row(name, t, r["sample"], r["prompt"], r["completion"], r.get("tokens", 0),
                                  r.get("finish_reason", ""), res))
    return out
