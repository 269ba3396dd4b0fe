"""``algos.evaluate judge.model=...``: an LLM judge's scores of an evaluation's samples, and the pairwise win
rate against a reference model's (``judge.reference=EVAL_DIR``, judged in both orders), into the report.

Per environment, in ``summary.json`` under ``judge``: ``score`` (mean judge score on [0, 1] over the samples
judged, errors left out) and its standard error, ``accept_rate`` (share at ``judge.accept`` or above),
``judged``, ``errors`` (unparsable judgements, endpoint down or rate-limited after the retries); with a
reference, ``win_rate`` (wins 1, ties 0.5, over pairs judged in both orders), ``wins`` / ``ties`` / ``losses``,
``pairwise_errors`` and ``unmatched`` (samples with no reference sample of the same task and index).
Each judgement is written to ``judgements.jsonl``; the judge's cache (`policies.judge`) makes a rerun free.
"""

from __future__ import annotations

import json
import os
from typing import Any

from algos.metrics import mean_se
from policies.judge import Judge, JudgeConfig


def judge_eval(cfg: JudgeConfig, rows: list[dict[str, Any]], out_dir: str) -> dict[str, dict[str, Any]]:
    judge = Judge(cfg)
    verdicts = judge.score([r["prompt"] for r in rows], [r["completion"] for r in rows])
    pair: list[Any] = [None] * len(rows)
    if cfg.reference:
        path = os.path.join(cfg.reference, "samples.jsonl")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"judge.reference={cfg.reference}: no samples.jsonl there (an algos.evaluate folder "
                                    f"of the reference model)")
        with open(path) as f:
            ref = {(x["env"], x["task_id"], x["sample"]): x["completion"] for x in map(json.loads, f) if x}
        idx = [i for i, r in enumerate(rows) if (r["env"], r["task_id"], r["sample"]) in ref]
        got = judge.pairwise([rows[i]["prompt"] for i in idx], [rows[i]["completion"] for i in idx],
                             [ref[(rows[i]["env"], rows[i]["task_id"], rows[i]["sample"])] for i in idx])
        for i, v in zip(idx, got):
            pair[i] = v
    with open(os.path.join(out_dir, "judgements.jsonl"), "w") as f:
        for r, v, p in zip(rows, verdicts, pair):
            f.write(json.dumps({"env": r["env"], "task_id": r["task_id"], "sample": r["sample"], **_row(v, "judge"),
                                **(_row(p, "pairwise") if p is not None else {})}) + "\n")
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["env"] for r in rows):
        mine = [i for i, r in enumerate(rows) if r["env"] == name]
        ok = [verdicts[i] for i in mine if not verdicts[i].is_error]
        m, se = mean_se([v.score for v in ok]) if ok else (float("nan"), float("nan"))
        s: dict[str, Any] = {"score": m, "score_se": se, "accept_rate": sum(v.correct for v in ok) / len(ok) if ok else
                             float("nan"), "judged": len(ok), "errors": len(mine) - len(ok)}
        if cfg.reference:
            ps = [pair[i] for i in mine if pair[i] is not None]
            good = [p for p in ps if not p.is_error]
            s.update({"win_rate": sum(p.score for p in good) / len(good) if good else float("nan"),
                      "wins": sum(p.score == 1.0 for p in good), "ties": sum(p.score == 0.5 for p in good),
                      "losses": sum(p.score == 0.0 for p in good), "pairwise_errors": len(ps) - len(good),
                      "unmatched": len(mine) - len(ps)})
        out[name] = s
    out["_calls"] = {"requests": judge.calls}  # type: ignore[assignment]
    return out


def _row(v: Any, key: str) -> dict[str, Any]:
    return {f"{key}_status": v.status.value, f"{key}_score": v.score,
            **({f"{key}_error": v.details["error"]} if "error" in v.details else {})}


def report_lines(res: dict[str, dict[str, Any]], cfg: JudgeConfig) -> list[str]:
    lines = ["", f"## Judge: {cfg.model} ({cfg.engine}{', ' + cfg.base_url if cfg.engine == 'openai' else ''}), "
                 f"rubric {cfg.rubric or '(built-in, 1-10)'}", "",
             "A score is the judge's rating mapped to [0, 1]; an error is a judgement that could not be parsed or a "
             "request that failed after its retries (left out of the mean)." +
             (f" Win rate: against {cfg.reference}, each pair judged in both orders (a win in both 1, a loss in both "
              f"0, else 0.5)." if cfg.reference else ""), "",
             "| env | judge score | accepted | judged | errors |" + (" win rate | W/T/L | pairwise errors |" if cfg.reference else ""),
             "|---|---|---|---|---|" + ("---|---|---|" if cfg.reference else "")]
    for name, s in res.items():
        if name.startswith("_"):
            continue
        row = f"| {name} | {s['score']:.3f} ± {s['score_se']:.3f} | {s['accept_rate']:.1%} | {s['judged']} | {s['errors']} |"
        if cfg.reference:
            row += f" {s['win_rate']:.1%} | {s['wins']}/{s['ties']}/{s['losses']} | {s['pairwise_errors']} |"
        lines.append(row)
    return lines
