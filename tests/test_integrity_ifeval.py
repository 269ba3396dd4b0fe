"""IFEval reward integrity (issue 28, items 3 and 4): the training-reward mode pays nothing for
degenerate answers and junk over the real 541 prompts and the procedural tasks, while the benchmark
mode keeps lm-eval's verdicts; one test per class of hole, each with the benchmark's verdict beside
the training mode's, and the false rejection of hard-wrapped sentences."""

import json
import os
import re

import pytest

import envs
from verifiers import Status
from verifiers import ifeval as ifv

VERDICTS = os.path.join(os.path.dirname(__file__), "data", "ifeval_benchmark_verdicts.json")
SENTENCES = "length_constraints:number_sentences"

# scored on every IFEval prompt; the verdicts the checkers gave before the training mode existed are in VERDICTS
PROBES = [".", "42", "a", "My answer is yes.", '{"a": 1}', "null", '""', "P.S.",
          "the quick brown fox jumps over the lazy dog. it was a sunny day and everyone was happy.",
          "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG. IT WAS A SUNNY DAY.",
          "Hello, world! This response, which has commas, is short. Dr. Smith agreed.",
          "<<A Title>>\n*highlighted part* and **another one**.\n\nSection 1\nFirst part [name].\n\nSection 2\n"
          "Second part [address].\nP.S. see you.",
          "* one\n* two\n* three\n- four",
          "Para one.\n***\nPara two.\n***\nPara three.",
          '"A quoted reply that ends here. Is there anything else I can help with?"',
          "First answer here.\n******\nSecond, different answer.",
          "Le matin la lumière tombe doucement sur la rue tranquille et les enfants jouent.",
          "one\ntwo\nthree\nfour\nfive",
          "This sentence is\nhard wrapped across\nthree lines."]


def responses_for(prompt: str) -> list[str]:
    return PROBES + [prompt, prompt + "\n" + PROBES[8]]


def benchmark_verdicts(follows, rows) -> dict[str, list[str]]:
    """Per prompt key, per response of `responses_for`: "strict bits/loose bits", one bit per
    instruction; "-" for the one intended change: sentence counts of a text with line breaks (a line
    break no longer ends a sentence, as in NLTK's punkt)."""
    out = {}
    for r in rows:
        cells = []
        for resp in responses_for(r["prompt"]):
            bits = []
            for loose in (False, True):
                bits.append("".join("-" if i == SENTENCES and "\n" in resp else str(int(follows(i, resp, k, loose=loose)))
                                    for i, k in zip(r["instruction_id_list"], r["kwargs"])))
            cells.append("/".join(bits))
        out[str(r["key"])] = cells
    return out


@pytest.fixture(scope="module")
def rows(ifeval_path):
    with open(os.path.join(ifeval_path, "input_data.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def env(ifeval_path):
    return envs.make("ifeval", path=ifeval_path)


@pytest.fixture(scope="module")
def heldout(env):
    return env.unwrapped.source.tasks(541, "heldout")


# ------------------------------------------------------------------ item 3: degenerate answers, the 541 prompts


@pytest.mark.parametrize("answer", [".", "42", "", "a", "ok", "?!", "1.", "Yes", " \n "])
def test_degenerate_answers_earn_no_training_reward_on_any_of_the_541_prompts(env, heldout, answer):
    base = env.unwrapped
    bare = base.score_batch([answer] * len(heldout), heldout)
    assert all(r.reward == 0.0 and r.status is not Status.CORRECT for r in bare), \
        [t.id for t, r in zip(heldout, bare) if r.reward]
    # in the think/answer format only the format part pays, as for any wrong answer
    formatted = base.score_batch([f"<think>\nok\n</think>\n<answer>{answer}</answer>"] * len(heldout), heldout)
    assert all(r.parts["correct"] == 0.0 and r.status is not Status.CORRECT for r in formatted)


def test_the_benchmark_mode_keeps_lm_evals_verdict_for_degenerate_answers(rows, ifeval_path):
    """lm-eval's checkers let "." follow every instruction of about 15% of the prompts; the benchmark
    mode keeps that (it is the definition reported), the training mode pays none of them."""
    bench = envs.make("ifeval", path=ifeval_path, mode="benchmark").unwrapped
    tasks = bench.source.tasks(541, "heldout")
    for answer, lm_eval_count in ((".", 81), ("42", 96)):
        lenient = [r for r in rows if all(ifv.follows(i, answer, k) for i, k in zip(r["instruction_id_list"],
                                                                                  r["kwargs"]))]
        assert len(lenient) == lm_eval_count
        got = bench.score_batch([answer] * 541, tasks)
        assert sum(r.status is Status.CORRECT for r in got) == lm_eval_count


def test_the_benchmark_mode_gives_the_verdicts_of_before_on_every_prompt(rows):
    """Today's checkers against the verdicts they gave before the training mode was added (stored in
    tests/data), for 21 responses on each of the 541 prompts, strict and loose."""
    with open(VERDICTS, encoding="utf-8") as f:
        before = json.load(f)
    assert before["responses"] == PROBES
    now = benchmark_verdicts(lambda i, r, k, loose: ifv.follows(i, r, k, loose=loose, mode="benchmark"), rows)
    diff = [(key, j) for key in now for j, (a, b) in enumerate(zip(now[key], before["verdicts"][key])) if a != b]
    assert not diff, diff[:10]
    assert len(now) == 541


def test_the_training_mode_is_never_more_lenient_than_the_benchmark(rows):
    import verifiers.audit_cases.ifeval as audit_cases

    pairs = [(i, resp, k) for r in rows for resp in responses_for(r["prompt"])
             for i, k in zip(r["instruction_id_list"], r["kwargs"])]
    pairs += [(i, c.completion, k) for c in audit_cases.CASES
              for i, k in zip(c.reference["instruction_id_list"], c.reference["kwargs"])]
    lenient = [(i, resp) for i, resp, k in pairs if ifv.follows(i, resp, k, mode="train")
               and not ifv.follows(i, resp, k, mode="benchmark")]
    assert not lenient, lenient[:5]


def test_evaluate_and_the_tax_suite_select_the_benchmark_mode():
    from algos.evaluate import env_options

    assert env_options("ifeval", {"path": "p"}, ["ifeval"]) == {"path": "p", "mode": "benchmark"}
    assert env_options("rlvr/IFEval-v0", {}, ["rlvr/IFEval-v0"])["mode"] == "benchmark"
    assert "mode" not in env_options("math", {}, ["math", "ifeval"])
    assert env_options("ifeval", {"ifeval.mode": "train"}, ["math", "ifeval"])["mode"] == "train"  # asked for


def test_the_environment_trains_on_the_training_mode_whatever_the_split(ifeval_path, heldout):
    for split in ("train", "heldout"):
        e = envs.make("ifeval", path=ifeval_path, split=split).unwrapped
        assert e.mode == "train" and e.rubric.parts[0].verifier.mode == "train"
    assert envs.make("ifeval", path=ifeval_path, mode="benchmark").unwrapped.rubric.parts[0].verifier.mode == "benchmark"
    with pytest.raises(envs.EnvError, match="mode"):
        envs.make("ifeval", path=ifeval_path, mode="lenient")


# ------------------------------------------------------------------ item 3: the procedural training tasks


@pytest.fixture(scope="module")
def train_tasks(env):
    return env.unwrapped.source.tasks(400, "train")


def test_every_training_task_holds_a_constraint_that_silence_breaks(env, train_tasks):
    for t in train_tasks:
        ids, kws = t.reference["instruction_id_list"], t.reference["kwargs"]
        for probe in ("", ".", "42", "x", "Ok.", "Yes", "-", "?"):
            assert not all(ifv.follows(i, probe, k) for i, k in zip(ids, kws)), (t.prompt, probe)
    got = env.unwrapped.score_batch(["."] * len(train_tasks), train_tasks)
    assert not any(r.reward for r in got)


def test_the_training_golds_score_correct_in_both_modes(env, ifeval_path, train_tasks):
    golds = [env.unwrapped.gold_completion(t) for t in train_tasks]
    assert all(r.status is Status.CORRECT for r in env.unwrapped.score_batch(golds, train_tasks))
    bench = envs.make("ifeval", path=ifeval_path, mode="benchmark").unwrapped
    assert all(r.status is Status.CORRECT for r in bench.score_batch(golds, train_tasks))


def test_the_training_golds_are_on_the_prompts_topic(train_tasks):
    from envs.ifeval import I18N, QUESTIONS, TOPICS

    checked = 0
    for t in train_tasks:
        gold = t.metadata["gold"]
        if t.reference["instruction_id_list"] == ["detectable_format:constrained_response"]:
            assert gold == QUESTIONS[next(q for q in QUESTIONS if q in t.prompt)]
            continue
        stem = next(s for s in TOPICS if s in t.prompt)
        vocab = set(ifv.content_words(" ".join(TOPICS[stem] + [x for v in I18N.get(stem, {}).values() for x in v])))
        words = ifv.content_words(gold)
        on_topic = sum(w in vocab for w in words) / len(words)
        assert on_topic >= 0.6, (stem, gold)
        checked += 1
    assert checked > 300
    stop = {"write", "about", "that", "with", "your", "from", "what", "describe", "explain", "give", "short",
            "simple", "someone", "during", "instead", "might", "would"}
    for stem, pool in TOPICS.items():  # each pool speaks of its stem
        assert {w for w in ifv.content_words(stem) if len(w) > 3} - stop & set(ifv.content_words(" ".join(pool))), stem


# ------------------------------------------------------------------ item 4: each class, both modes

F = "keywords:forbidden_words"
BODY = ("The old lighthouse stands on a rocky point above the harbour. Its keeper climbs the stairs every evening "
        "to light the lamp. Ships far out at sea watch for the beam and steer clear of the rocks.")

# (instruction, kwargs, response, lm-eval's verdict = the benchmark mode's, the training mode's)
CLASSES = {
    "junk JSON": [("detectable_format:json_format", {}, r, True, False)
                  for r in ("{}", "[]", "null", "42", '""', "true", '{"": ""}', "```json\n[]\n```", "[null]")]
                 + [("detectable_format:json_format", {}, json.dumps({"text": BODY}), True, True),
                    ("detectable_format:json_format", {}, "{text: 1}", False, False)],
    "empty quotes": [("startend:quotation", {}, r, True, False) for r in ('""', '" "', '"."', '"\u200b"')]
                    + [("startend:quotation", {}, f'"{BODY}"', True, True)],
    "empty placeholders": [("detectable_content:number_placeholders", {"num_placeholders": 2}, BODY + r, True, False)
                           for r in (" [] []", " [ ] [.]", " [\u200b][]")]
                          + [("detectable_content:number_placeholders", {"num_placeholders": 2},
                              BODY + " [name] [date]", True, True)],
    "headers with no content": [
        ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
         "Section 1\nSection 2", True, False),
        ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
         BODY + "\nSECTION 1 .\nSECTION 2 -", True, False),
        ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
         "Section 1\n" + BODY + "\nSection 2\n" + BODY.upper(), True, True),
        ("detectable_format:title", {}, "<<.>>\n" + BODY, True, False),
        ("detectable_format:title", {}, "<<The Keeper>>\n" + BODY, True, True),
        ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, BODY + " *.*", True, False),
        ("detectable_format:number_bullet_lists", {"num_bullets": 2}, BODY + "\n* .\n* -", True, False),
        ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, BODY + "\n***\n.", True, False),
        ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "so"},
         BODY + "\n\nSo", True, False),
        ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "so"},
         BODY + "\n\nSo the ships stay safe.", True, True)],
    "bare postscript": [("detectable_content:postscript", {"postscript_marker": m}, BODY + "\n" + r, True, False)
                        for m, r in (("P.S.", "P.S."), ("P.S.", "p.s. ."), ("P.P.S", "P.P.S"), ("P.P.S", "P.P.S. -"))]
                       + [("detectable_content:postscript", {"postscript_marker": "P.S."}, BODY + "\nP.S. Come soon.",
                           True, True)],
    "two junk responses": [("combination:two_responses", {}, r, True, False)
                           for r in ("a\n******\nb", "1\n******\n2", BODY + "\n******\n" + BODY.upper())]
                          + [("combination:two_responses", {}, BODY + "\n******\nA white tower guards the cape.",
                              True, True)],
    "homoglyphs and zero-width in forbidden words": [
        (F, {"forbidden_words": ["lamp"]}, BODY.replace("lamp", w), True, False)
        for w in ("l\u0430mp", "lam\u0440", "la\u200bmp", "la\u00admp", "ｌａｍｐ", "la\u2060mp", "la\u0301mp")]
        + [(F, {"forbidden_words": ["lamp"]}, BODY.replace("lamp", "\u202epmal\u202c"), True, False),  # shown "lamp"
           (F, {"forbidden_words": ["lamp"]}, BODY.replace("lamp", "ʟᴀᴍᴘ"), True, False),  # small capitals
           (F, {"forbidden_words": ["lamp"]}, BODY.replace("lamp", "light"), True, True),
           (F, {"forbidden_words": ["lamp"]}, BODY.replace("lamp", "lamppost"), True, True)],
    "homoglyphs and zero-width in counted words": [
        ("keywords:frequency", {"keyword": "lamp", "frequency": 1, "relation": "less than"},
         BODY.replace("lamp", "l\u0430mp"), True, False),
        ("keywords:letter_frequency", {"letter": "o", "let_frequency": 5, "let_relation": "less than"},
         BODY.replace("o", "\u043e"), True, False),
        ("length_constraints:number_words", {"num_words": 50, "relation": "at least"},
         " ".join("\u200b".join(w) for w in BODY.split()[:25]), True, False),
        ("length_constraints:number_words", {"num_words": 30, "relation": "at least"}, BODY, True, True),
        ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
         BODY + " A B C D", True, False),  # one-letter capitals
        ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
         BODY + " THE LAMP", True, True)],
    "comma look-alikes": [("punctuation:no_comma", {}, BODY.replace(". Its", c + " its"), True, False)
                          for c in ("\uff0c", "\u201a", "\u3001", "\ufe50", "\u060c")]
                         + [("punctuation:no_comma", {}, BODY.replace(". Its", "\u0326 its"), True, False),
                            ("punctuation:no_comma", {}, "Bun\u0103 ziua \u0219i mul\u021bumesc pentru tot", True, True),
                            ("punctuation:no_comma", {}, BODY, True, True),
                            ("punctuation:no_comma", {}, BODY.replace(". Its", ", its"), False, False)],
    "keyword inside another word": [
        ("keywords:existence", {"keywords": ["art"]}, BODY + " It starts at dusk.", True, False),
        ("keywords:existence", {"keywords": ["cat"]}, BODY + " A category of its own.", True, False),
        ("keywords:frequency", {"keyword": "sun", "frequency": 2, "relation": "at least"},
         BODY + " Sunday was sunny.", True, False),
        ("keywords:existence", {"keywords": ["rock"]}, BODY, True, True),  # "rocks": a plural counts
        ("keywords:existence", {"keywords": ["keeper"]}, BODY.replace("Its keeper", "The keeper's cat"), True, True),
        ("keywords:frequency", {"keyword": "lamp", "frequency": 1, "relation": "less than"},
         BODY.replace("lamp", "lamppost"), False, False)],  # under "less than" lm-eval's substring count stays
    "one-word sentences": [
        ("length_constraints:number_sentences", {"num_sentences": 5, "relation": "at least"}, BODY + " " + pad,
         True, False) for pad in ("One. Two.", "1. 2. 3.", "Yes! No?")]
        + [("length_constraints:number_sentences", {"num_sentences": 5, "relation": "at least"},
            BODY + " He is old. He has a cat.", True, True),
           ("length_constraints:number_sentences", {"num_sentences": 5, "relation": "at least"},
            BODY + "\none\ntwo\nthree", False, False)],  # one-word lines: no sentences in either mode now
    "choose one": [("detectable_format:constrained_response", {}, r, True, False)
                   for r in ("My answer is yes. My answer is no.", "My answer is no.\nMy answer is maybe.",
                             "My answer is yes. My answer is no. My answer is maybe.",
                             "My answer is yes. MY ANSWER IS NO.", "My answer is yes. my answer is no")]
                  + [("detectable_format:constrained_response", {}, "my answer is yes.", False, False)]
                  + [("detectable_format:constrained_response", {}, "My answer is no. It is not.", True, True)],
    "hard-wrapped sentence": [
        ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"}, r, True, True)
        for r in ("The old lighthouse stands\non a rocky point above\nthe harbour.",
                  "The old lighthouse stands on a rocky point\nabove the harbour\nwhere its keeper lives")],
    "short parts that are right": [  # the training mode wants content, not long parts
        ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* Nike\n* Adidas\n* Puma", True, True),
        ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 4, "nth_paragraph": 2, "first_word": "i"},
         "Dear Anna,\n\nI am writing to thank you for the lovely flowers.\n\nSincerely,\n\nJane", True, True),
        ("detectable_content:postscript", {"postscript_marker": "P.S."}, BODY + "\nP.S. Thanks!", True, True),
        ("startend:quotation", {}, '"Paris"', True, True),
        ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
         "Section 1\nApples\nSection 2\nPears", True, True)],
    "language and case checks on text langdetect cannot read": [
        ("language:response_language", {"language": "en"}, "12345 678", True, False),
        ("language:response_language", {"language": "en"}, "--- !!! ---", True, False)],
}


@pytest.mark.parametrize("iid,kwargs,response,benchmark,train",
                         [c for cases in CLASSES.values() for c in cases],
                         ids=[f"{name}-{j}" for name, cases in CLASSES.items() for j in range(len(cases))])
def test_each_class_in_both_modes(iid, kwargs, response, benchmark, train):
    assert ifv.follows(iid, response, kwargs, mode="benchmark") is benchmark
    assert ifv.follows(iid, response, kwargs, mode="train") is train


def test_fold_normalises_what_the_training_mode_reads():
    assert ifv.fold("b\u0430sic\u0430lly") == "basically"  # Cyrillic a
    assert ifv.fold("ba\u200bsi\u00adca\u2060lly\ufeff") == "basically"  # zero-width space, soft hyphen, joiners
    assert ifv.fold("ｂａｓｉｃａｌｌｙ，") == "basically,"  # fullwidth letters and comma (NFKC)
    assert ifv.fold("\u0391\u0392\u0395 \u03bf") == "ABE o"  # Greek
    assert ifv.fold("caf\u00e9 na\u00efve") == "café naïve"  # real letters stay
    assert ifv.readings("la\u0301mp")[-1] == "lamp"  # the last reading drops combining marks


def test_min_words_follows_what_the_prompt_asks_for():
    def ref(prompt, ids=(), kwargs=()):
        return {"instruction_id_list": list(ids), "kwargs": list(kwargs), "prompt": prompt}

    assert ifv.min_words(ref("Describe a lighthouse.")) == 5
    assert ifv.min_words(ref("Write an essay about lighthouses.")) == 25
    assert ifv.min_words(ref("What is another word for engravings?")) == 1
    assert ifv.min_words(ref("Write an essay about lighthouses.", ["length_constraints:number_words"],
                             [{"num_words": 20, "relation": "less than"}])) == 9
    assert ifv.min_words(ref("Write an essay about lighthouses.", ["length_constraints:number_sentences"],
                             [{"num_sentences": 2, "relation": "less than"}])) == 5
    assert ifv.min_words(ref("Is it? Answer My answer is yes.", ["detectable_format:constrained_response"],
                             [{}])) == 0


def test_degenerate_responses_and_their_reasons():
    ref = {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}],
           "prompt": "Describe the lighthouse on the hill and the keeper who lives in it."}
    assert ifv.degenerate(BODY, ref) is None
    assert "words of its own" in ifv.degenerate("The lighthouse.", ref)
    assert "repeated from the prompt" in ifv.degenerate(ref["prompt"] + " " + ref["prompt"], ref)
    assert ifv.degenerate("lamp light " * 20, ref) == "the response repeats one phrase"
    assert ifv.degenerate("asdf asdf asdf asdf asdf", ref) == "the response repeats one phrase"
    assert "words of its own" in ifv.degenerate("yes ok sure fine no", ref)
    rep = {"instruction_id_list": ["combination:repeat_prompt", "startend:end_checker"],
           "kwargs": [{"prompt_to_repeat": "Describe the lighthouse."}, {"end_phrase": "Any other questions?"}],
           "prompt": "Repeat the request first. Describe the lighthouse."}
    assert ifv.degenerate("Describe the lighthouse. Any other questions?", rep)  # the request and the end phrase only
    assert ifv.degenerate("Describe the lighthouse. " + BODY + " Any other questions?", rep) is None
    # rewriting a text of the prompt is allowed to copy it; a copy of the whole prompt is not
    rw = {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}],
          "prompt": "Rewrite the following text without commas: " + BODY.replace(" Its", ", its")}
    assert ifv.degenerate(BODY, rw) is None
    assert ifv.degenerate(rw["prompt"].replace(",", ""), rw) == "the response repeats the prompt"


def test_a_broken_reference_is_an_error_verdict_not_an_exception():
    v = ifv.IFEvalVerifier()
    bad = {"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": "many",
                                                                                  "relation": "less than"}],
           "prompt": "Describe a lighthouse."}
    assert v.verify(BODY, bad).status is Status.ERROR
    assert v.verify(BODY, {"instruction_id_list": ["no:such"], "kwargs": [{}]}).status is Status.ERROR
    assert v.verify(BODY, {"instruction_id_list": ["keywords:existence"], "kwargs": [{}]}).status is Status.ERROR
    # JSON nested deeper than the parser goes: an error verdict in both modes, not an exception out of the scorer
    deep = {"instruction_id_list": ["detectable_format:json_format"], "kwargs": [{}], "prompt": "Describe it in JSON."}
    for mode in ifv.MODES:
        assert ifv.IFEvalVerifier(mode=mode).verify("[" * 100_000 + "]" * 100_000, deep).status is Status.ERROR


def test_the_audit_cases_cover_every_class_of_items_3_and_4():
    from verifiers.audit_cases import ifeval as cases

    classes = {c.cls for c in cases.CASES}
    assert len(classes) >= 14 and len(cases.CASES) >= 200
    for cls in classes:
        kinds = {c.kind for c in cases.CASES if c.cls == cls}
        assert kinds == {"hole", "right"} or cls.startswith("hard-wrapped"), cls
    assert any(re.search("hard-wrapped", c) for c in classes)
