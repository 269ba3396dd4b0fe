"""IFEval: each instruction type on hand-written responses that pass and fail, strict and loose,
edge cases; the environment (check_env, disjoint splits); evaluation end to end."""

import pytest

import envs
from verifiers import Status
from verifiers import ifeval as ifv

LOREM = "The quick brown fox jumps over the lazy dog. It was a sunny day. Everyone was happy."

# (instruction, kwargs, a response that follows, a response that does not)
CASES = [
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "This is VERY IMPORTANT news.", "This is Very important news."),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "This is VERY calm news.", "This is VERY VERY loud."),
    ("change_case:english_capital", {}, "THIS IS ALL WRITTEN IN CAPITAL LETTERS FOR YOU TO READ.",
     "THIS IS ALMOST ALL CAPITALS but not quite."),
    ("change_case:english_lowercase", {}, "this is all lowercase english text about the weather today.",
     "This Is Not lowercase english text."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem about the sea."},
     "Write a poem about the sea. The sea is wide and deep.", "Here is a poem: the sea is wide."),
    ("combination:two_responses", {}, "First answer here.\n******\nSecond, different answer.",
     "Same answer.\n******\nSame answer."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], I live at [address].",
     "Dear [name], I live nearby."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello there.\nP.S. See you soon.",
     "Hello there. See you soon."),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\nP.P.S. One more thing.", "Hi.\nP.S. x"),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Yes, definitely."),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nIntro text.\nSection 2\nMore text.", "Section 1\nOnly one section."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* first point\n* second point",
     "* first point\n* second point\n- third point"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two** are here.",
     "*one* and ** ** are here."),
    ("detectable_format:title", {}, "<<A Title>>\nBody text.", "<< >>\nBody text."),
    ("keywords:existence", {"keywords": ["apple", "pear"]}, "An Apple and a pear.", "An apple only."),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "This is badminton, not that word.", "This is Bad."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "Cat and cat.", "A cat."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "A cat.", "Cat, cat, CAT."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "at least"}, "Zzz... zoo",
     "zero"),
    ("language:response_language", {"language": "fr"},
     "Le matin la lumière tombe doucement sur la rue tranquille et les enfants jouent dans le parc.",
     "The morning light falls softly on the quiet street and the children play in the park."),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "First paragraph.\n\nThen, the second one.", "First paragraph.\n\nAfter that, the second."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "Para one.\n***\nPara two.",
     "Para one.\n***\n\n***\nPara two."),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"}, LOREM, "One sentence only."),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"}, "Dr. Smith met Mr. Jones.",
     LOREM),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two three four five",
     "one two three four"),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "one two three", "a b c d e f"),
    ("punctuation:no_comma", {}, "No commas here.", "Commas, here."),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?",
     "Any other questions? Done."),
    ("startend:quotation", {}, '"Quoted text."', 'Quoted text."'),
]


@pytest.mark.parametrize("iid,kwargs,good,bad", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_checker_pass_and_fail(iid, kwargs, good, bad):
    assert ifv.follows(iid, good, kwargs), (iid, good)
    assert not ifv.follows(iid, bad, kwargs), (iid, bad)


def test_all_25_instruction_types_are_covered():
    assert len(ifv.CHECKERS) == 25
    assert {c[0] for c in CASES} == set(ifv.CHECKERS)


def test_loose_mode_tries_without_first_last_lines_and_asterisks():
    # strict fails because of a chatty first line; loose drops it
    resp = "Sure, here you go:\nthis is all lowercase english text about a quiet day."
    assert not ifv.follows("change_case:english_lowercase", resp)
    assert ifv.follows("change_case:english_lowercase", resp, loose=True)
    # markdown asterisks hide the end phrase; loose removes them
    resp = "Some text.\n**Any other questions?**"
    assert not ifv.follows("startend:end_checker", resp, {"end_phrase": "Any other questions?"})
    assert ifv.follows("startend:end_checker", resp, {"end_phrase": "Any other questions?"}, loose=True)
    # a trailing sign-off line breaks the quotation; loose drops the last line
    assert ifv.follows("startend:quotation", '"A quote."\nHope this helps!', loose=True)


@pytest.mark.parametrize("resp", ["", "   \n  ", "🙂" * 50, "x" * 200_000])
def test_edge_cases_never_crash(resp):
    for iid, kwargs, _, _ in CASES:
        ifv.follows(iid, resp, kwargs)
        ifv.follows(iid, resp, kwargs, loose=True)
    assert not ifv.follows("punctuation:no_comma", "   ")  # an empty response follows nothing


def test_sentences_and_words_are_ours_and_documented():
    assert ifv.count_words("Hello, world! It's 3.14 o'clock.") == 8  # \w+ runs, as the reference
    assert ifv.count_sentences("Dr. Smith arrived. He saw J. R. R. Tolkien! Pi is 3.14 today?") == 3
    # a line break does not end a sentence (NLTK's punkt, which lm-eval counts with, splits only at . ! ?)
    assert ifv.count_sentences("* item one\n* item two\nA real sentence.") == 1
    assert ifv.count_sentences("This sentence is\nhard wrapped across\nthree lines. And one more.") == 2
    assert ifv.count_sentences("1. 2. 3.") == 3  # as punkt: numbers with periods end sentences
    assert ifv.count_sentences("") == 0


def test_language_detection_is_deterministic():
    text = "Ceci est un texte court."
    assert len({ifv.detect_language(text) for _ in range(20)}) == 1


def test_verifier_reward_modes_think_stripping_and_statuses():
    ref = {"instruction_id_list": ["punctuation:no_comma", "startend:quotation"], "kwargs": [{}, {}]}
    both = '<think>a, b, c</think><answer>"no commas here"</answer>'
    one = '<think>x</think><answer>"a, b"</answer>'
    v = ifv.IFEvalVerifier("all", mode="benchmark")
    assert v.verify(both, ref).status is Status.CORRECT and v.verify(both, ref).score == 1.0
    r = v.verify(one, ref)
    assert r.status is Status.WRONG and r.score == 0.0 and r.details["strict"] == [False, True]
    assert ifv.IFEvalVerifier("fraction", mode="benchmark").verify(one, ref).score == 0.5
    assert v.verify("<think>unfinished, no answer", ref).status is Status.NO_ANSWER
    assert v.verify("x", {"nonsense": 1}).status is Status.ERROR
    with pytest.raises(ValueError):
        ifv.IFEvalVerifier("most")
    with pytest.raises(ValueError, match="mode"):
        ifv.IFEvalVerifier("all", mode="lenient")
    # the training mode (the default) also wants a response that says something: three words are too few
    t = ifv.IFEvalVerifier("all")
    r = t.verify(both, ref)
    assert r.status is Status.WRONG and r.score == 0.0 and "words of its own" in r.details["degenerate"]
    assert ifv.IFEvalVerifier("fraction").verify(both, ref).score == 0.0
    long = '<think>x</think><answer>"no commas here and the rest of the answer says enough to count"</answer>'
    assert t.verify(long, ref).status is Status.CORRECT and t.verify(long, ref).details["mode"] == "train"


def test_agrees_with_the_reference_on_unambiguous_types():
    """Behaviour of the published implementation on the same inputs (its documented rules)."""
    # bullets: '*' or '-' lines; '**bold**' lines are not bullets
    assert ifv.follows("detectable_format:number_bullet_lists", "**bold line**\n* one\n- two", {"num_bullets": 2})
    # highlights: single and double asterisks both count, empty ones do not
    assert ifv.follows("detectable_format:number_highlighted_sections", "*a* **b** * *", {"num_highlights": 2})
    assert not ifv.follows("detectable_format:number_highlighted_sections", "*a* * *", {"num_highlights": 2})
    # paragraphs: *** separators; empty leading/trailing ones do not count
    assert ifv.follows("length_constraints:number_paragraphs", "***\nA\n***\nB\n***", {"num_paragraphs": 2})
    # json: fenced or bare
    assert ifv.follows("detectable_format:json_format", '  {"k": [1, 2]}  ')
    # end phrase: case-insensitive, surrounding quotes ignored
    assert ifv.follows("startend:end_checker", '"text. ANY OTHER QUESTIONS?"', {"end_phrase": "Any other questions?"})
    # placeholders: non-greedy brackets
    assert ifv.follows("detectable_content:number_placeholders", "[a][b] [c]", {"num_placeholders": 3})


# ------------------------------------------------------------------------------------ the environment


@pytest.fixture(scope="module")
def env(ifeval_path):
    return envs.make("ifeval", path=ifeval_path)


def test_check_env_ifeval(env):
    envs.check_env(env)
    assert env.unwrapped.source.size("heldout") == 541


def test_training_split_never_overlaps_the_test_prompts(env):
    src = env.unwrapped.source
    test = {t.prompt.strip() for t in src.tasks(541, "heldout")}
    train = src.tasks(3000, "train")
    assert not {t.prompt.strip() for t in train} & test
    blob = "\n".join(test).lower()
    assert all(s.lower().rstrip(".") not in blob for s in src.stems)  # no test stem
    assert len({i for t in train for i in t.reference["instruction_id_list"]}) == 25
    # every gold response follows its instructions, strictly
    v = env.unwrapped.rubric.parts[0].verifier
    assert all(r.correct for r in v.verify_batch([env.unwrapped.gold_completion(t) for t in train[:500]],
                                                 [t.reference for t in train[:500]]))


def test_instruction_metrics_on_hand_built_rows():
    from algos.evaluate import instruction_metrics

    def row(strict, loose, ids):
        return {"details": {"instructions": ids, "strict": strict, "loose": loose}}
    a, b = "punctuation:no_comma", "startend:quotation"
    rows = [row([True, True], [True, True], [a, b]), row([True, False], [True, True], [a, b]),
            row([False], [False], [a]), row([False, False], [True, False], [b, a])]
    m = instruction_metrics(rows)
    assert m["ifeval/prompt_strict"] == pytest.approx(1 / 4) and m["ifeval/prompt_loose"] == pytest.approx(2 / 4)
    assert m["ifeval/instruction_strict"] == pytest.approx(3 / 7) and m["ifeval/instruction_loose"] == pytest.approx(5 / 7)
    assert m["by_instruction"][a] == {"strict": pytest.approx(2 / 4), "loose": pytest.approx(2 / 4), "n": 4}
    assert m["by_instruction"][b] == {"strict": pytest.approx(1 / 3), "loose": pytest.approx(1.0), "n": 3}
    assert m["ifeval/prompt_strict_se"] > 0


def test_evaluate_ifeval_end_to_end_writes_the_four_numbers(tmp_path, ifeval_path):
    from algos import evaluate

    s = evaluate.main(["env=ifeval", f"env.path={ifeval_path}", "policy.model=tiny-sft", "tasks=12",
                       "max_new_tokens=16", f"out={tmp_path}"])
    for k in ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose"):
        assert 0.0 <= s["ifeval"][f"ifeval/{k}"] <= 1.0
    report = (tmp_path / "report.md").read_text()
    assert "instruction following" in report and (tmp_path / "ifeval_by_instruction.png").exists()


def test_tax_suite_in_a_training_run(tmp_path, ifeval_path):
    import json

    from algos import grpo

    out = tmp_path / "g"
    s = grpo.main(["env=math", "steps=1", "prompts_per_step=4", "group_size=4", "heldout_size=8", "max_new_tokens=32",
                   "lr=1e-2", "tax_envs=[math,ifeval]", f"tax_options={{ifeval.path: {ifeval_path}}}", "tax_tasks=8",
                   f"out={out}"])
    tax = s["alignment_tax"]
    assert set(tax["deltas"]) == {"math", "ifeval"} and "ifeval/prompt_strict" in tax["deltas"]["ifeval"]
    before = json.load(open(out / "tax-before" / "summary.json"))
    after = json.load(open(out / "tax-after" / "summary.json"))
    assert tax["deltas"]["math"]["pass@1"] == pytest.approx(after["math"]["pass@1"] - before["math"]["pass@1"])
    assert (out / "tax" / "compare.png").exists() and "B - A" in (out / "tax" / "compare.md").read_text()


def test_compare_marks_significant_changes(tmp_path):
    import json

    from algos import evaluate

    for name, p, se in (("a", 0.2, 0.02), ("b", 0.5, 0.02)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"math": {"pass@1": p, "pass@1_se": se,
                                                                           "mean_reward": 0.5, "mean_reward_se": 0.1}}))
    d = evaluate.main([f"compare={tmp_path / 'a'},{tmp_path / 'b'}", f"out={tmp_path / 'c'}"])
    assert d["math"]["pass@1"] == pytest.approx(0.3)
    md = (tmp_path / "c" / "compare.md").read_text()
    assert "| math | pass@1 | 0.200 | 0.500 | +0.300 ± 0.028 | * |" in md
    assert "| math | mean_reward | 0.500 | 0.500 | +0.000 ± 0.141 |  |" in md
