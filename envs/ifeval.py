"""``rlvr/IFEval-v0`` (alias ``ifeval``): verifiable instruction following.

* **held-out split**: the 541 IFEval prompts (Zhou et al. 2023, Apache-2.0), from a local file or
  folder (``path=../shared/data/ifeval``) or the hub name ``google/IFEval`` (the default);
* **training split**: procedural prompts that never overlap IFEval: a task stem written for this
  project (`STEMS`) followed by 1 to 3 sampled instructions with their arguments, compatible
  combinations only; a prompt belongs to the training split only if a hash of its text says so
  (``content_split``), and no prompt equal to a test prompt, or built on a stem that occurs in a
  test prompt, is ever emitted. Each training task carries a gold response built together with its
  instructions (so the gold demonstrably follows them: the numeric arguments are read off it), used
  by SFT and by ``check_env``.

Reward: ``reward="all"`` (1 when every instruction is followed, strict) or ``"fraction"``; the
format part is the math envs' (``<think>...</think>`` then ``<answer>...</answer>``), and the
checkers read the response inside ``<answer>`` (or after ``</think>``; see `verifiers.ifeval`).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from envs.core import EnvError, Task, TaskSource, TextEnv, content_split, item_rng, quiet_hub
from verifiers import ifeval as ifv
from verifiers.format import FormatVerifier
from verifiers.rewards import Rubric

IFEVAL_INSTRUCTION = ("Think inside <think> </think>, then give your whole response inside <answer> </answer>. "
                      "Follow every instruction in the request exactly.")

STEMS = [
    "Write a short note to a neighbour about a parcel that was left at your door.",
    "Describe how a lighthouse keeper might spend a quiet winter evening.",
    "Explain to a child why the sky looks blue during the day.",
    "Write a product description for a reusable water bottle made of glass.",
    "Give advice to someone who is starting to learn the violin as an adult.",
    "Summarize the benefits of walking to work instead of driving.",
    "Write a welcome message for new members of a community gardening club.",
    "Describe the smell and sound of a bakery early in the morning.",
    "Write a thank you message to a teacher who helped you with mathematics.",
    "Explain how to care for a small cactus on a sunny windowsill.",
    "Write a short story about a robot that learns to paint.",
    "Describe a train journey through snowy mountains.",
    "Write an announcement that the town library will open on Sundays.",
    "Give three reasons to keep a paper notebook in a digital age.",
    "Explain what a budget is to a teenager getting their first job.",
    "Write a review of an imaginary cafe that serves only soup.",
    "Describe the life cycle of a butterfly in simple words.",
    "Write a message inviting friends to a picnic by the river.",
    "Explain why sleep matters for learning new skills.",
    "Write a letter to a future self to be opened in ten years.",
    "Describe a busy market in a coastal town at noon.",
    "Write instructions for making a simple paper boat.",
    "Explain how rain forms in clouds.",
    "Write a short speech for the opening of a small museum of old clocks.",
    "Describe what makes a good team captain.",
    "Write a postcard from a holiday on a windy island.",
    "Explain the rules of a made up board game called Lantern.",
    "Write a complaint to a shop about a kettle that stopped working.",
    "Describe an old oak tree in a city park.",
    "Give tips for staying focused while studying at home.",
    "Write a job advertisement for a night guard at an aquarium.",
    "Explain why bees are important for farmers.",
    "Write a diary entry of a cat watching birds from a window.",
    "Describe the first day of spring in a small village.",
    "Write a short biography of an imaginary inventor named Ada Quill.",
    "Explain how a bicycle gear helps when climbing a hill.",
    "Write a message to a colleague who is moving to another city.",
    "Describe a storm at sea from the deck of a fishing boat.",
    "Write a recipe for a simple vegetable soup.",
    "Explain what recycling does with old glass jars.",
]

_POOL = {  # comma-free sentences in plain words, one pool per language
    "en": ["the morning light falls softly on the quiet street", "people walk slowly with warm cups in their hands",
           "a small dog waits patiently by the bakery door", "the river moves past the old stone bridge",
           "every evening the lamps come on one by one", "children laugh as they run across the green park",
           "the wind carries the smell of fresh bread", "an old man reads his newspaper on a wooden bench",
           "clouds drift over the hills in the late afternoon", "the market opens early and closes before dusk"],
    "fr": ["le matin la lumière tombe doucement sur la rue tranquille",
           "les enfants jouent dans le parc après l'école", "le vieux pont de pierre traverse la rivière calme",
           "nous buvons du café chaud près de la fenêtre", "la ville se réveille lentement sous le soleil"],
    "de": ["am morgen fällt das licht sanft auf die stille straße", "die kinder spielen nach der schule im park",
           "die alte brücke aus stein führt über den ruhigen fluss", "wir trinken warmen kaffee am fenster",
           "die stadt erwacht langsam unter der sonne"],
    "es": ["por la mañana la luz cae suavemente sobre la calle tranquila",
           "los niños juegan en el parque después de la escuela", "el viejo puente de piedra cruza el río tranquilo",
           "bebemos café caliente junto a la ventana", "la ciudad despierta lentamente bajo el sol"],
}
_LANG_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}
_KEYWORDS = ["harbor", "lantern", "meadow", "compass", "velvet", "orchard", "granite", "whistle"]
_FORBIDDEN = ["obviously", "basically", "literally", "honestly", "actually"]
_END_PHRASES = ["Is there anything else I can help with?", "Any other questions?", "That is all for now."]

# instruction families: at most one from each group; "alone" ones combine with nothing else
_LAYOUT = {"length_constraints:number_paragraphs", "length_constraints:nth_paragraph_first_word",
           "detectable_format:multiple_sections", "detectable_format:number_bullet_lists"}
_CASE = {"change_case:english_capital", "change_case:english_lowercase", "change_case:capital_word_frequency"}
_LENGTH = {"length_constraints:number_words", "length_constraints:number_sentences"}
_ALONE = {"detectable_format:json_format", "detectable_format:constrained_response", "combination:two_responses",
          "combination:repeat_prompt"}
TRAIN_INSTRUCTIONS = sorted(ifv.CHECKERS)


def _compatible(chosen: list[str], cand: str) -> bool:
    if cand in chosen:
        return False
    if cand in _ALONE:
        return not chosen
    if any(c in _ALONE for c in chosen):
        return False
    for group in (_LAYOUT, _CASE, _LENGTH):
        if cand in group and any(c in group for c in chosen):
            return False
    if cand == "language:response_language" and any(c in _CASE for c in chosen):
        return False
    if cand in _CASE and "language:response_language" in chosen:
        return False
    if cand == "detectable_format:multiple_sections" and any(c in _CASE for c in chosen):
        return False
    if cand in _CASE and "detectable_format:multiple_sections" in chosen:
        return False
    return True


def build_example(rng: Any, stem: str, ids: list[str]) -> tuple[str, str, list[dict[str, Any]]] | None:
    """(prompt, gold response, kwargs per instruction) for a stem and instruction ids, or None."""
    lang = rng.choice(["en", "en", "fr", "de", "es"]) if "language:response_language" in ids else "en"
    pool = _POOL[lang]
    sentences = [rng.choice(pool) for _ in range(rng.randint(4, 7))]
    kw: dict[str, dict[str, Any]] = {i: {} for i in ids}
    words_in = []  # extra sentences to weave in
    if "keywords:existence" in ids:
        ks = rng.sample(_KEYWORDS, 2)
        kw["keywords:existence"] = {"keywords": ks}
        words_in.append(f"the {ks[0]} and the {ks[1]} are part of this story")
    if "keywords:frequency" in ids:
        k = rng.choice(_KEYWORDS)
        reps = rng.randint(2, 4)
        kw["keywords:frequency"] = {"keyword": k}
        words_in += [f"the {k} stays in view"] * reps
    if "keywords:forbidden_words" in ids:
        kw["keywords:forbidden_words"] = {"forbidden_words": rng.sample(_FORBIDDEN, 2)}
    sentences += words_in
    rng.shuffle(sentences)
    caps = lambda s: s[0].upper() + s[1:]  # noqa: E731
    body_sents = [caps(s) + "." for s in sentences]
    if "detectable_content:number_placeholders" in ids:
        n = rng.randint(1, 3)
        body_sents.append("Please write to " + " and ".join(f"[{p}]" for p in ["name", "address", "date"][:n]) + ".")
        kw["detectable_content:number_placeholders"] = {"num_placeholders": n}
    if "detectable_format:number_highlighted_sections" in ids:
        n = rng.randint(1, 3)
        for j in range(n):
            body_sents[j] = "*" + body_sents[j] + "*"
        kw["detectable_format:number_highlighted_sections"] = {"num_highlights": n}
    # layout
    if "detectable_format:number_bullet_lists" in ids:
        n = rng.randint(2, 4)
        text = "\n".join("* " + s for s in body_sents[:n])
        kw["detectable_format:number_bullet_lists"] = {"num_bullets": n}
    elif "length_constraints:number_paragraphs" in ids:
        n = rng.randint(2, 3)
        chunks = [body_sents[i::n] for i in range(n)]
        text = "\n***\n".join(" ".join(c) for c in chunks)
        kw["length_constraints:number_paragraphs"] = {"num_paragraphs": n}
    elif "length_constraints:nth_paragraph_first_word" in ids:
        n = rng.randint(2, 3)
        chunks = [body_sents[i::n] for i in range(n)]
        nth = rng.randint(1, n)
        first = chunks[nth - 1][0].strip("*").split()[0].strip(".").lower()
        text = "\n\n".join(" ".join(c) for c in chunks)
        kw["length_constraints:nth_paragraph_first_word"] = {"num_paragraphs": n, "nth_paragraph": nth,
                                                             "first_word": first}
    elif "detectable_format:multiple_sections" in ids:
        n = rng.randint(2, 3)
        spl = rng.choice(["Section", "SECTION"])
        chunks = [body_sents[i::n] for i in range(n)]
        text = "\n\n".join(f"{spl} {j + 1}\n" + " ".join(c) for j, c in enumerate(chunks))
        kw["detectable_format:multiple_sections"] = {"section_spliter": spl, "num_sections": n}
    else:
        text = " ".join(body_sents)
    if "detectable_format:title" in ids:
        text = "<<" + caps(rng.choice(pool)) + ">>\n" + text
    if "detectable_content:postscript" in ids:
        marker = rng.choice(["P.S.", "P.P.S"])
        text += f"\n{marker} " + caps(rng.choice(pool)) + "."
        kw["detectable_content:postscript"] = {"postscript_marker": marker}
    if "startend:end_checker" in ids:
        phrase = rng.choice(_END_PHRASES)
        text += "\n" + phrase
        kw["startend:end_checker"] = {"end_phrase": phrase}
    if "change_case:english_lowercase" in ids:
        text = text.lower()
    if "change_case:english_capital" in ids:
        text = text.upper()
    if "change_case:capital_word_frequency" in ids:
        up = rng.randint(1, 3)
        text = " ".join(w.upper() if i < up * 3 and w.isalpha() else w for i, w in enumerate(text.split(" ")))
    if "startend:quotation" in ids:
        text = '"' + text + '"'
    # the "alone" instructions
    if "detectable_format:json_format" in ids:
        text = "```json\n" + json.dumps({"text": " ".join(body_sents[:3])}, indent=2) + "\n```"
    if "detectable_format:constrained_response" in ids:
        text = rng.choice(ifv.CONSTRAINED_OPTIONS)
    if "combination:two_responses" in ids:
        text = " ".join(body_sents[:2]) + "\n******\n" + " ".join(body_sents[2:4])
    # numeric arguments read off the finished response, so that it follows them
    for i in ids:
        if i == "keywords:frequency":
            c = len(re.findall(re.escape(kw[i]["keyword"]), text, flags=re.IGNORECASE))
            rel = rng.choice(ifv.RELATIONS)
            kw[i].update(relation=rel, frequency=c if rel == "at least" else c + rng.randint(1, 2))
        elif i == "keywords:letter_frequency":
            letter = rng.choice("aeiostnr")
            c = text.lower().count(letter)
            rel = rng.choice(ifv.RELATIONS)
            kw[i] = {"letter": letter, "let_relation": rel,
                     "let_frequency": max(1, c - rng.randint(0, 3)) if rel == "at least" else c + rng.randint(1, 5)}
        elif i == "length_constraints:number_words":
            c = ifv.count_words(text)
            rel = rng.choice(ifv.RELATIONS)
            kw[i] = {"relation": rel, "num_words": max(1, c - rng.randint(0, 10)) if rel == "at least"
                     else c + rng.randint(1, 20)}
        elif i == "length_constraints:number_sentences":
            c = ifv.count_sentences(text)
            rel = rng.choice(ifv.RELATIONS)
            kw[i] = {"relation": rel, "num_sentences": max(1, c - rng.randint(0, 2)) if rel == "at least"
                     else c + rng.randint(1, 3)}
        elif i == "change_case:capital_word_frequency":
            c = sum(1 for w in ifv._word_tokens(text) if w.isupper())
            rel = rng.choice(ifv.RELATIONS)
            kw[i] = {"capital_relation": rel, "capital_frequency": max(1, c - rng.randint(0, 2)) if rel == "at least"
                     else c + rng.randint(1, 3)}
        elif i == "language:response_language":
            kw[i] = {"language": lang}
    prompt = stem + " " + " ".join(describe(i, kw[i]) for i in ids)
    if "combination:repeat_prompt" in ids:
        kw["combination:repeat_prompt"] = {"prompt_to_repeat": stem}
        prompt = describe("combination:repeat_prompt", kw["combination:repeat_prompt"]) + " " + stem
        text = stem + "\n" + text
    kwargs = [kw[i] for i in ids]
    if not all(ifv.follows(i, text, k) for i, k in zip(ids, kwargs)):
        return None  # this combination does not hold on the built response: the caller draws another
    return prompt, text, kwargs


def describe(i: str, k: dict[str, Any]) -> str:
    """Our own wording of each instruction."""
    return {
        "change_case:capital_word_frequency": lambda: f"Use {k['capital_relation']} {k['capital_frequency']} words in "
                                                      f"ALL CAPITAL letters.",
        "change_case:english_capital": lambda: "Write the whole response in English using only capital letters.",
        "change_case:english_lowercase": lambda: "Write the whole response in English using only lowercase letters.",
        "combination:repeat_prompt": lambda: "Begin by repeating the following request word for word, then answer it:",
        "combination:two_responses": lambda: "Give two different answers separated by a line of six asterisks (******).",
        "detectable_content:number_placeholders": lambda: f"Include at least {k['num_placeholders']} placeholders in "
                                                          f"square brackets like [name].",
        "detectable_content:postscript": lambda: f"End with a postscript that starts with {k['postscript_marker']}",
        "detectable_format:constrained_response": lambda: "Reply only with one of: My answer is yes. / My answer is no. "
                                                          "/ My answer is maybe.",
        "detectable_format:json_format": lambda: "Format the entire output as JSON.",
        "detectable_format:multiple_sections": lambda: f"Organise it in {k['num_sections']} parts, each headed "
                                                       f"{k['section_spliter']} X.",
        "detectable_format:number_bullet_lists": lambda: f"Use exactly {k['num_bullets']} markdown bullet points (* item).",
        "detectable_format:number_highlighted_sections": lambda: f"Mark at least {k['num_highlights']} parts with "
                                                                 f"*single asterisks*.",
        "detectable_format:title": lambda: "Put a title in double angle brackets, like <<my title>>.",
        "keywords:existence": lambda: f"Mention the words {' and '.join(k['keywords'])}.",
        "keywords:forbidden_words": lambda: f"Never use the words {' or '.join(k['forbidden_words'])}.",
        "keywords:frequency": lambda: f"Use the word {k['keyword']} {k['relation']} {k['frequency']} times.",
        "keywords:letter_frequency": lambda: f"The letter {k['letter']} must appear {k['let_relation']} "
                                             f"{k['let_frequency']} times.",
        "language:response_language": lambda: f"Answer only in {_LANG_NAMES[k['language']]}.",
        "length_constraints:nth_paragraph_first_word": lambda: f"Write {k['num_paragraphs']} paragraphs separated by a "
                                                               f"blank line; paragraph {k['nth_paragraph']} must start "
                                                               f"with the word {k['first_word']}.",
        "length_constraints:number_paragraphs": lambda: f"Write {k['num_paragraphs']} paragraphs separated by ***.",
        "length_constraints:number_sentences": lambda: f"Use {k['relation']} {k['num_sentences']} sentences.",
        "length_constraints:number_words": lambda: f"Use {k['relation']} {k['num_words']} words.",
        "punctuation:no_comma": lambda: "Do not use any commas.",
        "startend:end_checker": lambda: f"Finish with the exact phrase: {k['end_phrase']}",
        "startend:quotation": lambda: "Wrap the whole response in double quotation marks.",
    }[i]()


def read_ifeval(path: str) -> list[dict[str, Any]]:
    """The IFEval test prompts from a JSON-lines file, a folder holding input_data.jsonl, or a hub name."""
    if os.path.isdir(path):
        path = os.path.join(path, "input_data.jsonl")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        try:
            import datasets

            with quiet_hub():
                rows = list(datasets.load_dataset(path, split="train"))
        except Exception as e:  # noqa: BLE001 - no hub, no such dataset: one clear line
            raise EnvError(f"cannot load IFEval from {path!r} ({type(e).__name__}): give a local copy with "
                           f"env.path=DIR_OR_FILE (e.g. env.path=../shared/data/ifeval)") from None
    need = ("prompt", "instruction_id_list", "kwargs")
    if not rows or any(k not in rows[0] for k in need):
        raise EnvError(f"{path!r} is not IFEval data: rows need {need}")
    return rows


class IFEvalSource(TaskSource):
    def __init__(self, path: str = "google/IFEval", seed: int = 0, max_instructions: int = 3):
        self.name, self.seed, self.path = "ifeval", seed, path
        self.rows = read_ifeval(path)
        self.test_prompts = {r["prompt"].strip() for r in self.rows}
        blob = "\n".join(self.test_prompts).lower()
        self.stems = [s for s in STEMS if s.lower().rstrip(".") not in blob]  # never a stem of the test set
        self.max_instructions = max_instructions

    def size(self, split: str = "train") -> int | None:
        return len(self.rows) if split == "heldout" else None

    def task(self, index: int, split: str = "train") -> Task:
        if split == "heldout":
            r = self.rows[index % len(self.rows)]
            ref = {"instruction_id_list": list(r["instruction_id_list"]), "kwargs": [dict(k) for k in r["kwargs"]],
                   "prompt": r["prompt"]}
            return Task(f"ifeval/{r.get('key', index)}", r["prompt"], ref,
                        {"source": "ifeval", "split": split, "index": index % len(self.rows)})
        for attempt in range(10_000):
            rng = item_rng(self.name, self.seed, split, index, attempt)
            ids: list[str] = []
            for _ in range(rng.randint(1, self.max_instructions)):
                options = [c for c in TRAIN_INSTRUCTIONS if _compatible(ids, c)]
                if not options:
                    break
                ids.append(rng.choice(options))
            built = build_example(rng, rng.choice(self.stems), ids)
            if built is None:
                continue
            prompt, gold, kwargs = built
            if content_split(prompt) != "train" or prompt.strip() in self.test_prompts:
                continue
            ref = {"instruction_id_list": ids, "kwargs": kwargs, "prompt": prompt}
            return Task(f"ifeval-train/{self.seed}/{index}", prompt, ref,
                        {"source": "ifeval-procedural", "split": split, "index": index, "gold": gold})
        raise EnvError(f"could not build training task {index}")


class IFEvalEnv(TextEnv):
    """``rlvr/IFEval-v0``. Args: path (local file/folder or hub name), seed, reward ("all" or
    "fraction"), correct_weight, format_weight, format_mode, split, prompt_format, system_prompt."""

    def __init__(self, path: str = "google/IFEval", seed: int = 0, reward: str = "all", correct_weight: float = 1.0,
                 format_weight: float = 0.1, format_mode: str = "soft", split: str = "train",
                 prompt_format: str = "chat", system_prompt: str | None = IFEVAL_INSTRUCTION,
                 render_mode: str | None = None):
        if reward not in ("all", "fraction"):
            raise EnvError(f"reward must be 'all' or 'fraction', got {reward!r}")
        rubric = Rubric().add_verifier("correct", ifv.IFEvalVerifier(reward), correct_weight)
        if format_weight > 0:
            rubric.add_verifier("format", FormatVerifier(format_mode), format_weight)
        super().__init__(IFEvalSource(path, seed), rubric, split=split, prompt_format=prompt_format,
                         system_prompt=system_prompt, render_mode=render_mode)

    def gold_completion(self, task: Task) -> str:
        gold = task.metadata.get("gold")
        if gold is None:
            raise EnvError(f"task {task.id} has no gold response (IFEval's test prompts come without one)")
        return f"<think>\nFollow each instruction.\n</think>\n<answer>{gold}</answer>"
