import pytest

from verifiers import FormatVerifier, MathVerifier, Rubric, Status, format_reward, math_reward


@pytest.mark.parametrize("text,soft,strict", [
    ("<think>\nx\n</think>\n<answer>\n5\n</answer>", Status.CORRECT, Status.CORRECT),
    ("<think>x</think><answer>5</answer>", Status.CORRECT, Status.CORRECT),
    ("hello <think>x</think> so <answer>5</answer> bye", Status.CORRECT, Status.WRONG),
    ("<answer>5</answer>", Status.WRONG, Status.WRONG),
    ("<think>x</think><answer>5", Status.NO_ANSWER, Status.NO_ANSWER),
    ("<think>x<answer>5</answer>", Status.NO_ANSWER, Status.NO_ANSWER),  # the think block never closed: cut off
    # a closed answer, then a think block opened and never closed: cut off, no format credit
    ("<think>x</think><answer>5</answer><think>more", Status.NO_ANSWER, Status.NO_ANSWER),
    ("<think>x</think><answer>5</answer>\n<think>", Status.NO_ANSWER, Status.NO_ANSWER),
    ("<answer>5</answer><think>x", Status.NO_ANSWER, Status.NO_ANSWER),
    ("<think>x</think><answer>5</answer><answer>6", Status.NO_ANSWER, Status.NO_ANSWER),
    ("<think>x</think><answer>5</answer><think>y</think>", Status.CORRECT, Status.WRONG),
    ("<think>x</think><answer> </answer>", Status.WRONG, Status.WRONG),
    ("", Status.NO_ANSWER, Status.NO_ANSWER),
])
def test_format(text, soft, strict):
    assert FormatVerifier("soft").verify(text).status is soft
    assert FormatVerifier("strict").verify(text).status is strict


def test_cut_off_completion_earns_nothing_in_any_mode():
    # the rubric as the math envs build it: a truncated completion scores 0 in every part
    from envs.math_procedural import math_rubric

    for mode in ("soft", "strict"):
        rubric = math_rubric(1.0, 0.1, mode)
        for text in ("<think>a</think><answer>5</answer><think>wait, let me", "<think>a</think><answer>5",
                     "<think>a</think><answer>5</answer><think>", "<think>a <answer>5</answer>"):
            res = rubric.score([text], ["5"])[0]
            assert res.reward == 0.0 and res.parts == {"correct": 0.0, "format": 0.0}, (mode, text, res)
            assert all(v.status is Status.NO_ANSWER for v in res.verdicts.values()), (mode, text, res)


def test_custom_tags():
    f = FormatVerifier("strict", think=("<reasoning>", "</reasoning>"), answer=("<final>", "</final>"))
    assert f.verify("<reasoning>a</reasoning><final>1</final>").correct
    assert not f.verify("<think>a</think><answer>1</answer>").correct
    assert f.verify("<reasoning>a</reasoning><final>1</final><reasoning>b").status is Status.NO_ANSWER


def test_bad_mode():
    with pytest.raises(ValueError, match="strict"):
        FormatVerifier("loose")  # type: ignore[arg-type]


def test_rubric_weighted_mean_and_parts():
    r = Rubric().add_verifier("correct", MathVerifier(), 1.0).add_verifier("format", FormatVerifier(), 0.25)
    out = r.score(["<think>a</think><answer>5</answer>", "5", "<think>a</think><answer>4</answer>", ""], ["5"] * 4)
    assert [o.reward for o in out] == pytest.approx([1.0, 0.8, 0.2, 0.0])
    assert out[1].parts == {"correct": 1.0, "format": 0.0}
    assert out[3].verdicts["correct"].status is Status.NO_ANSWER


def test_rubric_takes_trl_style_functions():
    def length_penalty(prompts, completions, **kw):
        assert kw["answer"] == ["5", "5"]
        return [-len(c) / 100 for c in completions]

    r = Rubric().add_verifier("correct", MathVerifier(), 1.0).add_function("length", length_penalty, 1.0)
    out = r.score(["\\boxed{5}", "\\boxed{6}"], ["5", "5"], prompts=["q", "q"], answer=["5", "5"])
    assert out[0].parts["length"] == pytest.approx(-0.09)
    assert out[0].reward == pytest.approx((1 - 0.09) / 2)


def test_rubric_errors():
    r = Rubric().add_function("bad", lambda p, c, **k: [1.0])
    with pytest.raises(ValueError, match="returned 1 values for 2"):
        r.score(["a", "b"], ["1", "2"])
    with pytest.raises(ValueError, match="already"):
        r.add_function("bad", lambda p, c, **k: [])
    with pytest.raises(ValueError, match="no parts"):
        Rubric().score(["a"], ["1"])


def test_trl_signature_functions_accept_conversational_completions():
    comps = [[{"role": "assistant", "content": "<think>1+1</think><answer>2</answer>"}], "<answer>3</answer>"]
    assert math_reward(["q", "q"], comps, answer=["2", "2"]) == [1.0, 0.0]
    assert format_reward(["q", "q"], comps) == [1.0, 0.0]
    with pytest.raises(TypeError, match="string or a list of chat messages"):
        math_reward(["q"], [42], answer=["2"])


def test_a_tool_message_is_never_the_models_answer():
    # a conversation that ends with a tool's message: the model's own last message is what is scored
    forged = [{"role": "assistant", "content": "<think>let me check</think><tool>run</tool>"},
              {"role": "tool", "content": "<think>x</think><answer>2</answer>"}]
    assert math_reward(["q"], [forged], answer=["2"]) == [0.0] and format_reward(["q"], [forged]) == [0.0]
    answered = forged + [{"role": "assistant", "content": "<think>ok</think><answer>2</answer>"}]
    assert math_reward(["q"], [answered], answer=["2"]) == [1.0] and format_reward(["q"], [answered]) == [1.0]
    only_tool = [{"role": "tool", "content": "<answer>2</answer>"}]
    assert math_reward(["q"], [only_tool], answer=["2"]) == [0.0]
