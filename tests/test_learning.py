"""RL learns on the real model: the check that fails when GRPO stops teaching (issue 29, item 5).

SmolLM2-135M-Instruct, untouched, on procedural math at difficulty 1 with a budget of 32 new tokens:
it knows the sums (90% greedy with 128 tokens) but talks first ("To compute 0 + 4, we simply add
...") and runs out of budget before the answer, so its greedy held-out accuracy starts at 0%, while
a fifth to two fifths of its samples at temperature 1 state the sum early. GRPO's group-relative reward
(the library's math verifier, nothing written for this test) has to turn those into the greedy habit
("7 + 0 = 7."): held-out greedy accuracy on the same 100 tasks, measured by the run itself before and
after its 8 steps, must rise by at least 25 points and 3 standard errors. Measured with these settings
(2026-12-07, 2 cores shared with another run): seed 0 0% -> 63%, seed 1 0% -> 83% (completions 31 ->
17 and 30 -> 9 tokens, training accuracy 22% -> 75% and 44% -> 97%), 7-8 minutes wall beside another
run, 430-450 CPU-seconds. A run that does not learn ends where it started: greedy decoding of
unchanged weights gives the same 0%.
"""

import math

from algos import grpo

N = 100  # held-out tasks, greedy, the same before and after
ARGS = ["policy.model=smollm2-135m", "env=math", "env.difficulty=1", "max_new_tokens=32", "steps=8",
        "prompts_per_step=4", "group_size=8", "temperature=1.0", "lr=2e-5", f"heldout_size={N}",
        "gradient_checkpointing=false", "save_every=1000", "seed=0"]


def rise_and_noise(summary):
    before, after = summary["heldout_accuracy_before"], summary["heldout_accuracy_after"]
    se = math.sqrt(before * (1 - before) / N + after * (1 - after) / N)  # two binomial errors, unpaired (conservative)
    return before, after, se


def test_grpo_lifts_smollm2_held_out_accuracy(tmp_path):
    s = grpo.main(ARGS + [f"out={tmp_path / 'run'}"])
    before, after, se = rise_and_noise(s)
    need = max(0.25, 3 * se)
    assert after - before >= need, (f"GRPO did not teach SmolLM2: held-out greedy accuracy {before:.0%} -> {after:.0%} "
                                    f"on {N} tasks (+{after - before:.0%}; this check needs +{need:.0%}, 3 standard "
                                    f"errors and at least 25 points)")
