"""IFEval's adversarial cases (issue 28, items 3 and 4): degenerate answers that follow "negative"
instructions, junk and unicode that fool the checkers, and hard-wrapped sentences wrongly rejected.

Scored as training scores them: by the environment ``envs.make("ifeval")`` builds (its default,
training-reward mode), through ``score_batch``; the verdict is the correctness part's. The IFEval
data must be where the tests find it (``$RLVR_SHARED/data/ifeval``, by default ``../shared``).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from verifiers.audit import HOLE, RIGHT, Case
from verifiers.verdict import Verdict

ENV = "ifeval"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a response that addresses its prompt (about an old lighthouse), with no comma, no forbidden word
GOOD = ("The old lighthouse stands on a rocky point above the harbour. Its keeper climbs the stairs every evening "
        "to light the lamp. Ships far out at sea watch for the beam and steer clear of the rocks.")
GOOD_WORDS = GOOD.split()


def ref(ids: list[str], kwargs: list[dict[str, Any]] | None = None,
        prompt: str = "Describe an old lighthouse and its keeper.") -> dict[str, Any]:
    return {"instruction_id_list": ids, "kwargs": kwargs or [{} for _ in ids], "prompt": prompt}


def _cases() -> list[Case]:
    out: list[Case] = []

    def add(cls: str, name: str, kind: str, completion: str, reference: dict[str, Any]) -> None:
        out.append(Case(ENV, cls, name, kind, completion, reference))

    # ---- 3. degenerate answers follow "negative" instructions ------------------------------------
    cls = "degenerate answers follow negative instructions"
    no_comma = ref(["punctuation:no_comma"])
    forbid = ref(["keywords:forbidden_words"], [{"forbidden_words": ["basically", "honestly"]}])
    short = ref(["length_constraints:number_words"], [{"num_words": 60, "relation": "less than"}])
    letters = ref(["keywords:letter_frequency"], [{"letter": "z", "let_frequency": 3, "let_relation": "less than"}])
    capsless = ref(["change_case:capital_word_frequency"], [{"capital_frequency": 2, "capital_relation": "less than"}])
    kwless = ref(["keywords:frequency"], [{"keyword": "ship", "frequency": 3, "relation": "less than"}])
    lang = ref(["language:response_language"], [{"language": "en"}])
    sents = ref(["length_constraints:number_sentences"], [{"num_sentences": 5, "relation": "less than"}])
    for r_name, r in (("no_comma", no_comma), ("forbidden", forbid), ("less_than_words", short),
                      ("letter_less_than", letters), ("capitals_less_than", capsless), ("keyword_less_than", kwless),
                      ("language", lang), ("sentences_less_than", sents)):
        for resp in (".", "42", "x", "ok", "?!", "Yes.", "...", "-", "0.5"):
            add(cls, f"{resp!r} under {r_name}", HOLE, resp, r)
        add(cls, f"a real answer under {r_name}", RIGHT, GOOD, r)
    two = ref(["punctuation:no_comma", "keywords:forbidden_words"], [{}, {"forbidden_words": ["very"]}])
    add(cls, "one letter words", HOLE, "a b c d e f g h i j k l m n o p", two)
    add(cls, "numbers as words", HOLE, "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", two)
    add(cls, "one word repeated", HOLE, " ".join(["lighthouse"] * 40), two)
    add(cls, "one word repeated five times", HOLE, "asdf asdf asdf asdf asdf", two)
    add(cls, "only filler words", HOLE, "Yes ok sure thanks fine okay", two)
    add(cls, "emoji only", HOLE, "👍 🙂 🌊", two)
    add(cls, "one phrase repeated", HOLE, " ".join(["the lamp is lit."] * 15), two)
    add(cls, "a few words only", HOLE, "The lighthouse is old.", two)
    add(cls, "a real answer with two negative instructions", RIGHT, GOOD, two)
    add(cls, "the prompt copied back", HOLE, "Describe an old lighthouse and its keeper. " * 3, no_comma)
    long_prompt = ("Write a story about a fox who finds a lantern in the forest and learns to share it with the "
                   "other animals of the wood. Do not use any commas.")
    add(cls, "a long prompt copied back", HOLE, long_prompt.replace(",", ""), ref(["punctuation:no_comma"],
                                                                                   prompt=long_prompt))
    end = ref(["startend:end_checker", "punctuation:no_comma"], [{"end_phrase": "Is there anything else I can help "
                                                                                "with?"}, {}])
    add(cls, "the end phrase alone", HOLE, "Is there anything else I can help with?", end)
    add(cls, "a dot and the end phrase", HOLE, ". Is there anything else I can help with?", end)
    add(cls, "a real answer ending with the phrase", RIGHT, GOOD + " Is there anything else I can help with?", end)
    rep_prompt = "Write a short poem about the sea."
    rep = ref(["combination:repeat_prompt", "punctuation:no_comma"], [{"prompt_to_repeat": rep_prompt}, {}],
              prompt="First repeat the request word for word without change then give your answer: " + rep_prompt)
    add(cls, "the request repeated and nothing else", HOLE, rep_prompt, rep)
    add(cls, "the request repeated twice", HOLE, rep_prompt + " " + rep_prompt, rep)
    add(cls, "the request repeated then a dot", HOLE, rep_prompt + "\n.", rep)
    add(cls, "the request repeated then a poem", RIGHT, rep_prompt + "\nThe sea rolls in with silver foam and "
                                                    "sings to gulls that wheel above the sand at dawn.", rep)
    essay = ref(["punctuation:no_comma"], prompt="Write an essay about the history of lighthouses. Do not use commas.")
    add(cls, "a one-line essay", HOLE, "Lighthouses are old towers that guide ships at night.", essay)
    add(cls, "an essay", RIGHT, GOOD + " The first lighthouses were fires on hills. Later towers of stone carried oil "
                                       "lamps and then electric lights with great lenses.", essay)
    tiny = ref(["length_constraints:number_words"], [{"num_words": 12, "relation": "less than"}],
               prompt="Write a slogan for a lighthouse museum in less than 12 words.")
    add(cls, "a dot as a slogan", HOLE, ".", tiny)
    add(cls, "a short slogan under a tight limit", RIGHT, "Come see where the light still guides ships home.", tiny)
    add(cls, "empty response", HOLE, "", no_comma)
    add(cls, "whitespace response", HOLE, " \n\t ", forbid)
    add(cls, "only a think block", HOLE, "<think>I should write about the lighthouse.</think>", no_comma)

    # ---- 4. checkers fooled by junk ----------------------------------------------------------------
    cls = "junk JSON"
    js = ref(["detectable_format:json_format"])
    for resp in ("{}", "[]", "null", "42", "3.14", "true", '""', '"a lighthouse"', "[null]", '{"": ""}', "[[], {}]",
                 "```json\n{}\n```", "```\nnull\n```", '{"a": null}', "[1, 2, 3]", '{"x": ""}'):
        add(cls, f"json {resp!r}", HOLE, resp, js)
    add(cls, "a JSON object with content", RIGHT, json.dumps({"lighthouse": GOOD}), js)
    add(cls, "a fenced JSON array with content", RIGHT, "```json\n" + json.dumps([{"name": "keeper", "text": GOOD}])
        + "\n```", js)

    cls = "empty quotes"
    q = ref(["startend:quotation"])
    for resp in ('""', '" "', '"."', '"\n"', '"\u200b"', '" - "'):
        add(cls, f"quotes {resp!r}", HOLE, resp, q)
    add(cls, "a quoted answer", RIGHT, '"' + GOOD + '"', q)

    cls = "empty placeholders"
    ph = ref(["detectable_content:number_placeholders"], [{"num_placeholders": 3}])
    for fill in ("[] [] []", "[ ] [ ] [ ]", "[.] [,] [-]", "[\u200b] [] [ ]", "[][][]"):
        add(cls, f"placeholders {fill!r}", HOLE, GOOD + " " + fill, ph)
    add(cls, "three named placeholders", RIGHT, GOOD + " Write to [name] at [address] before [date].", ph)

    cls = "headers with no content"
    sec = ref(["detectable_format:multiple_sections"], [{"section_spliter": "Section", "num_sections": 3}])
    add(cls, "three bare section headers", HOLE, "Section 1\nSection 2\nSection 3", sec)
    add(cls, "bare headers after a text", HOLE, GOOD + "\nSection 1\nSection 2\nSection 3", sec)
    add(cls, "headers with dots", HOLE, GOOD + "\nSection 1\n.\nSection 2\n.\nSection 3\n.", sec)
    add(cls, "three sections with content", RIGHT, "Section 1\nThe old lighthouse stands on a rocky point.\n"
        "Section 2\nIts keeper climbs the stairs every evening.\nSection 3\nShips far out at sea watch for the beam.",
        sec)
    par = ref(["length_constraints:number_paragraphs"], [{"num_paragraphs": 3}])
    add(cls, "paragraphs of one dot", HOLE, GOOD + "\n***\n.\n***\n.", par)
    add(cls, "three paragraphs", RIGHT, GOOD + "\n***\nThe keeper writes the weather in a book.\n***\nAt dawn he "
                                               "puts out the lamp and sleeps.", par)
    ttl = ref(["detectable_format:title"])
    for t in ("<<.>>", "<<->>", "<<\u200b>>", "<<...>>"):
        add(cls, f"title {t!r}", HOLE, t + "\n" + GOOD, ttl)
    add(cls, "a title", RIGHT, "<<The Keeper of the Light>>\n" + GOOD, ttl)
    hl = ref(["detectable_format:number_highlighted_sections"], [{"num_highlights": 2}])
    add(cls, "highlights of punctuation", HOLE, GOOD + " *.* *-*", hl)
    add(cls, "two highlights", RIGHT, "*The old lighthouse* stands on a rocky point. *Its keeper* climbs the stairs "
                                      "every evening to light the lamp for the ships.", hl)
    bl = ref(["detectable_format:number_bullet_lists"], [{"num_bullets": 3}])
    add(cls, "empty bullets", HOLE, GOOD + "\n* .\n* .\n* .", bl)
    add(cls, "three bullets", RIGHT, "* The old lighthouse stands on a rocky point.\n* Its keeper lights the lamp "
                                     "every evening.\n* Ships at sea steer by its beam.", bl)

    add(cls, "one-word bullets", RIGHT, "* Nike\n* Adidas\n* Puma",
        ref(["detectable_format:number_bullet_lists"], [{"num_bullets": 3}],
            prompt="Which three sneaker brands are most popular? Use exactly 3 bullet points."))
    add(cls, "three one-word names in bullets", RIGHT, "* Oreo\n* Panda\n* Zebra",
        ref(["detectable_format:number_bullet_lists"], [{"num_bullets": 3}],
            prompt="Name exactly 3 names for a black and white dog using markdown bullet points such as:\n"
                   "* Bullet point 1"))
    add(cls, "three dots in bullets", HOLE, "* .\n* .\n* .",
        ref(["detectable_format:number_bullet_lists"], [{"num_bullets": 3}],
            prompt="Name exactly 3 names for a black and white dog using markdown bullet points such as:\n"
                   "* Bullet point 1"))
    add(cls, "a letter with a one-word sign-off paragraph", RIGHT,
        "Dear Anna,\n\nI am writing to thank you for the lovely flowers you sent.\n\nSincerely,\n\nJane",
        ref(["length_constraints:nth_paragraph_first_word"],
            [{"num_paragraphs": 4, "nth_paragraph": 2, "first_word": "i"}],
            prompt="Write a short thank you note to Anna in 4 paragraphs separated by two new lines. The second "
                   "paragraph must start with the word I."))

    cls = "bare postscript"
    for marker, body in (("P.S.", "P.S."), ("P.S.", "P.S. ."), ("P.S.", "p.s."), ("P.P.S", "P.P.S"),
                         ("P.P.S", "P.P.S."), ("P.S.", "P.S. -")):
        add(cls, f"{marker}: {body!r}", HOLE, GOOD + "\n" + body, ref(["detectable_content:postscript"],
                                                                     [{"postscript_marker": marker}]))
    add(cls, "a postscript with text", RIGHT, GOOD + "\nP.S. The keeper keeps a cat named Wick.",
        ref(["detectable_content:postscript"], [{"postscript_marker": "P.S."}]))
    add(cls, "a one-word postscript", RIGHT, GOOD + "\nP.S. Thanks!",
        ref(["detectable_content:postscript"], [{"postscript_marker": "P.S."}]))
    add(cls, "a second postscript with text", RIGHT, GOOD + "\nP.P.S. Visit in spring when the gulls nest.",
        ref(["detectable_content:postscript"], [{"postscript_marker": "P.P.S"}]))

    cls = "two junk responses"
    tw = ref(["combination:two_responses"])
    for resp in ("a\n******\nb", "Yes.\n******\nNo.", "42\n******\n43", ".\n******\n..",
                 GOOD + "\n******\n" + GOOD.upper(), GOOD + "\n******\n" + GOOD.replace(".", "!"), GOOD + "\n******\nx"):
        add(cls, f"two responses {resp[:30]!r}", HOLE, resp, tw)
    add(cls, "two different responses", RIGHT, GOOD + "\n******\nOn a windy cape a white tower keeps watch over the "
                                                      "boats. A quiet woman tends its light through every storm.", tw)

    # ---- 4. unicode --------------------------------------------------------------------------------
    cls = "homoglyphs and zero-width characters in forbidden words"
    fb = ref(["keywords:forbidden_words"], [{"forbidden_words": ["basically", "ocean"]}])
    for word in ("b\u0430sically", "bas\u0456cally", "\u0432asically".replace("\u0432", "b"), "basic\u0430lly",
                 "\u03bfcean", "oc\u0435an", "basi\u200bcally", "basi\u00adcally", "oce\u200dan", "oc\u2060ean",
                 "\ufeffocean", "ｂａｓｉｃａｌｌｙ", "bas\u0456c\u0430lly", "ba\u0301sically", "ocea\u200cn",
                 "\u202eyllacisab\u202c", "ʙᴀsɪᴄᴀʟʟʏ", "𝐨𝐜𝐞𝐚𝐧", "ⓞⓒⓔⓐⓝ", "oce\ufe0fan"):
        add(cls, f"forbidden {word!r}", HOLE, GOOD + f" It is {word} a quiet place.", fb)
    add(cls, "no forbidden word", RIGHT, GOOD + " It is a quiet place.", fb)
    add(cls, "a forbidden word's neighbour", RIGHT, GOOD + " The basic tower faces the oceanic wind.", fb)

    cls = "homoglyphs and zero-width characters in counted words"
    kwf = ref(["keywords:frequency"], [{"keyword": "lamp", "frequency": 2, "relation": "less than"}])
    add(cls, "a keyword hidden by Cyrillic a", HOLE, GOOD + " The l\u0430mp glows. The l\u0430mp turns.", kwf)
    add(cls, "a keyword hidden by a zero-width space", HOLE, GOOD + " The la\u200bmp glows. The lam\u200cp turns.", kwf)
    add(cls, "a keyword said once", RIGHT, GOOD, kwf)
    lf = ref(["keywords:letter_frequency"], [{"letter": "e", "let_frequency": 20, "let_relation": "less than"}])
    add(cls, "letters hidden by Cyrillic e", HOLE, GOOD.replace("e", "\u0435"), lf)
    add(cls, "letters hidden by a combining mark", HOLE, GOOD.replace("e", "e\u0301"), lf)
    few_e = ("A tall tower of stone stands on a rocky point. Its lamp turns all night long. Boats far out "
             "on the sound look for its light and stay clear of the rocks around it.")
    add(cls, "few letters e", RIGHT, few_e, lf)
    nw = ref(["length_constraints:number_words"], [{"num_words": 60, "relation": "at least"}])
    add(cls, "words split by zero-width spaces", HOLE, " ".join("\u200b".join(w) for w in GOOD_WORDS[:30]), nw)
    add(cls, "words split by soft hyphens", HOLE, " ".join("\u00ad".join(w) for w in GOOD_WORDS[:30]), nw)
    add(cls, "sixty real words", RIGHT, GOOD + " " + GOOD.replace("old", "white").replace("evening", "night") +
        " The keeper is proud of his work.", nw)
    cw = ref(["change_case:capital_word_frequency"], [{"capital_frequency": 3, "capital_relation": "less than"}])
    add(cls, "capital words in Cyrillic look-alikes stay capital", RIGHT, GOOD, cw)
    add(cls, "capital words in fullwidth letters", HOLE, GOOD + " ＯＬＤ ＴＯＷＥＲ ＬＡＭＰ ＳＨＩＰ", cw)
    kwe = ref(["keywords:existence"], [{"keywords": ["keeper", "beam"]}])
    add(cls, "keywords present", RIGHT, GOOD, kwe)

    cls = "comma look-alikes under no commas"
    for c in ("\uff0c", "\u201a", "\u3001", "\ufe50", "\u060c", "\uff64", "\ufe51", "\u201e", "\u2e41", "\ufe10",
              "\u0326", "\U0001f101"):
        add(cls, f"comma U+{ord(c):04X}", HOLE, GOOD.replace(" Its keeper", f"{c} its keeper"), no_comma)
    add(cls, "no comma at all", RIGHT, GOOD, no_comma)
    add(cls, "apostrophes and quotes are no commas", RIGHT, GOOD + " The keeper's dog 'Wick' sleeps by the stove.",
        no_comma)

    cls = "keyword found inside another word"
    for kws, text in ((["cat"], "The category of the old lighthouse is a concatenation of styles."),
                      (["art"], "The keeper starts his work at dusk and departs at dawn."),
                      (["son"], "Every season the keeper searches the coast for wreckage."),
                      (["lamp", "keeper"], "The lamppost by the shopkeeper's door is dark.")):
        add(cls, f"keyword {kws} inside words", HOLE, GOOD.replace("keeper", "warden").replace("lamp", "light")
            + " " + text, ref(["keywords:existence"], [{"keywords": kws}]))
    kf = ref(["keywords:frequency"], [{"keyword": "sun", "frequency": 3, "relation": "at least"}])
    add(cls, "frequency met only inside words", HOLE, GOOD + " On Sunday the sunny sky at sunset glowed.", kf)
    add(cls, "frequency met by the word", RIGHT, GOOD + " The sun rose. The sun set. The keeper loves the sun.", kf)
    for kws, text in ((["cat"], "The keeper's cat sleeps by the stove."), (["cat"], "Two cats chase the gulls."),
                      (["cat"], "CAT: a small grey friend of the keeper."), (["sea"], "The sea's voice never stops.")):
        add(cls, f"keyword {kws} as a word", RIGHT, GOOD + " " + text, ref(["keywords:existence"],
                                                                          [{"keywords": kws}]))

    cls = "one-word lines and numbers counted as sentences"
    s5 = ref(["length_constraints:number_sentences"], [{"num_sentences": 6, "relation": "at least"}])
    for pad in ("One. Two. Three.", "1. 2. 3.", "Yes. No. Maybe.", "Hi!\nOk!\nGo!", "A. B. C. D.", "1.\n2.\n3.",
                "one\ntwo\nthree\nfour", "* yes\n* no\n* maybe"):
        add(cls, f"padding {pad!r}", HOLE, GOOD + " " + pad, s5)
    add(cls, "six sentences", RIGHT, GOOD + " The keeper is old. He has a cat. The cat likes fish.", s5)

    cls = "all options of choose one"
    cr = ref(["detectable_format:constrained_response"],
             prompt="Is a lighthouse still useful today? Answer with one of: My answer is yes. / My answer is no. "
                    "/ My answer is maybe.")
    for resp in ("My answer is yes. My answer is no. My answer is maybe.", "My answer is yes. My answer is no.",
                 "My answer is yes.\nMy answer is maybe.", "My answer is no. Or: My answer is maybe.",
                 "My answer is yes.My answer is no.", "My answer is yes\u200b. My answer is no.",
                 "My answer is yes. MY ANSWER IS NO.", "My answer is maybe. my answer is yes"):
        add(cls, f"options {resp[:40]!r}", HOLE, resp, cr)
    add(cls, "one option", RIGHT, "My answer is yes.", cr)
    add(cls, "one option with a reason", RIGHT, "My answer is yes. Ships still use the light when their "
                                                "instruments fail.", cr)

    # ---- 4. false rejection: a hard-wrapped sentence -----------------------------------------------
    cls = "hard-wrapped sentence counted as several"
    s2 = ref(["length_constraints:number_sentences"], [{"num_sentences": 2, "relation": "less than"}])
    for text in ("The old lighthouse stands on a rocky point\nabove the harbour where its keeper lights\nthe "
                 "lamp every evening for the ships.",
                 "The old lighthouse stands on a rocky point above the harbour\nand its keeper climbs the stairs\n"
                 "every evening to light the lamp.",
                 "The old lighthouse\nstands on a rocky point\nabove the harbour\nwhere its keeper lights the lamp\n"
                 "every evening"):
        add(cls, f"one sentence on {text.count(chr(10)) + 1} lines", RIGHT, text, s2)
    s3 = ref(["length_constraints:number_sentences"], [{"num_sentences": 3, "relation": "less than"}])
    add(cls, "two wrapped sentences", RIGHT, "The old lighthouse stands on a rocky point\nabove the harbour. Its "
                                             "keeper climbs the stairs\nevery evening to light the lamp.", s3)
    return out


CASES: list[Case] = _cases()


@functools.lru_cache(maxsize=1)
def _env() -> Any:
    import envs

    shared = os.environ.get("RLVR_SHARED", os.path.join(ROOT, "..", "shared"))
    return envs.make("ifeval", path=os.path.join(shared, "data", "ifeval"))  # the training-reward mode, as trained


def score(cases: list[Case]) -> list[Verdict]:
    from envs.core import Task

    env = _env().unwrapped
    tasks = [Task(f"audit/{i}", c.reference.get("prompt", ""), c.reference, {}) for i, c in enumerate(cases)]
    return [r.verdicts["correct"] for r in env.score_batch([c.completion for c in cases], tasks)]
