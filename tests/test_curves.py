"""curves.png has one panel per quantity, each on its own axis; TensorBoard gets the samples as a
markdown table and W&B (when on) a wandb.Table, next to the scalars."""

import glob
import json
import sys
import types

import pytest

from algos.runs import SAMPLE_COLUMNS, plot_panels, samples_markdown


def test_panels_by_hand():
    logged = ["reward/mean", "reward/correct", "reward/format", "train/accuracy", "eval/accuracy", "loss/policy",
              "loss/value", "train/grad_norm", "policy/entropy", "policy/approx_kl", "policy/kl_ref", "loss/kl",
              "policy/clip_frac", "rollout/length", "perf/tokens_per_second", "train/lr", "pref/accuracy",
              "verdict/correct"]
    panels = plot_panels(logged, {"preference": ["pref/accuracy", "pref/reward_margin"], "reward": ["reward/mean"]})
    assert panels == [
        ("reward per part", ["reward/mean", "reward/correct", "reward/format"]),
        ("accuracy (held-out eval/, sampled train/)", ["train/accuracy", "eval/accuracy"]),
        ("loss/policy", ["loss/policy"]), ("loss/value", ["loss/value"]), ("loss/kl", ["loss/kl"]),
        ("grad norm", ["train/grad_norm"]), ("entropy", ["policy/entropy"]),
        ("KL", ["policy/approx_kl", "policy/kl_ref"]), ("clip fraction", ["policy/clip_frac"]),
        ("completion length (tokens)", ["rollout/length"]), ("tokens/s", ["perf/tokens_per_second"]),
        ("learning rate", ["train/lr"]),
        ("pref/accuracy", ["pref/accuracy"]),  # the algorithm's own key, not drawn above; verdict/* is not plotted
    ]


def test_samples_markdown_escapes_cells():
    md = samples_markdown(3, [{"task_id": "t/1", "reward": 0.5, "status": "wrong", "completion": "a|b\nc"}])
    assert md.splitlines()[2] == "| task | reward | status | completion |"
    assert md.splitlines()[-1] == "| t/1 | 0.5 | wrong | a\\|b<br>c |"


class _FakeWandb(types.ModuleType):
    """Records what the run hands to wandb (the real package is not installed here)."""

    def __init__(self):
        super().__init__("wandb")
        import importlib.machinery

        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # transformers' find_spec checks look at it
        self.logged = []
        outer = self

        class Table:
            def __init__(self, columns, data):
                self.columns, self.data = columns, data

        class RunObj:
            def log(self, row, step=None):
                outer.logged.append((step, row))

            def finish(self):
                pass

        self.Table = Table
        self.init = lambda **kw: RunObj()


def test_a_short_run_writes_panels_tensorboard_text_and_wandb_table(tmp_path, monkeypatch):
    import matplotlib.image

    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    from algos import grpo

    out = tmp_path / "run"
    grpo.main(["env=math", "prompts_per_step=2", "group_size=2", "max_new_tokens=16", "heldout_size=4", "steps=2",
               "samples_every=1", "wandb=true", f"out={out}"])
    logged = {k for line in open(out / "metrics.jsonl") for k in json.loads(line) if k != "step"}
    n = len(plot_panels(sorted(logged), {}))
    assert n >= 8  # reward, accuracy, loss, grad norm, entropy, clip fraction, length, tokens/s, lr
    h, w = matplotlib.image.imread(out / "curves.png").shape[:2]
    # a grid of 3 columns, 520 x 340 pixels a panel, with a row for every 3 panels (GRPO adds its own)
    assert w == 1560 and h % 340 == 0 and h // 340 >= -(-n // 3)
    # TensorBoard: the samples table in the text tab
    events = b"".join(open(p, "rb").read() for p in glob.glob(str(out / "events.out.tfevents.*")))
    assert b"| task | reward | status | completion |" in events
    # W&B: scalars and a samples table at the steps samples were written
    tables = [(step, row["samples"]) for step, row in fake.logged if "samples" in row]
    assert [s for s, _ in tables] == [1, 2]
    assert tables[0][1].columns == list(SAMPLE_COLUMNS) and len(tables[0][1].data) == 4  # group_size x 2 rows
    assert any("reward/mean" in row for _, row in fake.logged)
