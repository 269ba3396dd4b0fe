"""Verifiable instruction following (IFEval): our checkers for the 25 instruction types.

Each checker is a pure function ``(response, **kwargs) -> bool`` with the published meaning of the
instruction (Zhou et al. 2023, "Instruction-Following Evaluation for Large Language Models").
`follows` runs one instruction in ``strict`` mode (the response as it is) or ``loose`` mode (also
the response without its first line, without its last line, without both, and each of those with
markdown asterisks removed: followed if any variant follows).

Nothing downloads, at import or at run time. Where the reference leans on NLTK, the text
processing is ours, deterministic and documented:

* **words** are runs of letters, digits and underscores (``\\w+``), as the reference's
  ``RegexpTokenizer(r"\\w+")``;
* **sentences** end at ``.``, ``!`` or ``?`` (repeats and closing quotes/brackets included) followed
  by whitespace or the end of the text, except after a common abbreviation (Mr., Dr., e.g., etc.,
  ...), a single capital letter (an initial) or a number's decimal point; a line break after text
  also ends one (a list item or heading with no final period is a sentence). The reference uses
  NLTK's punkt model or its own regexes, which split list items without periods differently;
* **capital words** (``capital_word_frequency``) are word tokens, contractions kept whole, whose
  letters are all upper case ("I" counts, as in the reference's ``word_tokenize``);
* **language** is detected with ``langdetect`` (its profiles ship in the package), seeded so that
  the same text always gets the same verdict; a text it cannot classify counts as followed, as in
  the reference.

The completion given to a checker is the text after ``</think>`` (inside ``<answer>...</answer>``
when that block is there); a completion whose last ``<think>`` is never closed has no response.
"""

from __future__ import annotations

import collections
import json
import re
from typing import Any, Callable, Sequence

from verifiers.verdict import Status, Verdict

RELATIONS = ("less than", "at least")
CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _compare(count: int, relation: str, threshold: int) -> bool:
    if relation == "less than":
        return count < threshold
    if relation == "at least":
        return count >= threshold
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


# ------------------------------------------------------------------------------ text processing

_WORD = re.compile(r"\w+")
_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co", "no",
           "fig", "al", "approx", "dept", "est", "mt", "u.s", "u.k", "a.m", "p.m", "jan", "feb", "mar", "apr", "jun",
           "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def split_sentences(text: str) -> list[str]:
    """Our sentence splitter (see the module docstring); returns the non-empty sentences."""
    out = []
    for line in text.split("\n"):
        start = 0
        for m in _END.finditer(line):
            before = line[start:m.start()]
            last = before.split()[-1].lower() if before.split() else ""
            if m.group(0).startswith(".") and len(m.group(0).rstrip("\"'”’)]")) == 1:
                token = last.lstrip("(\"'“‘[")
                if token in _ABBREV or (len(token) == 1 and token.isalpha()):
                    continue  # "Dr. Smith", "J. R. R. Tolkien"
            out.append(line[start:m.end()])
            start = m.end()
        out.append(line[start:])
    return [s.strip() for s in out if any(c.isalnum() for c in s)]


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


def _word_tokens(text: str) -> list[str]:
    return re.findall(r"\w+(?:['’]\w+)*", text)


_LANG_SEEDED = [False]


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text`` (None when langdetect cannot tell); deterministic."""
    try:
        import langdetect
        from langdetect import DetectorFactory
    except ImportError as e:
        raise ImportError("IFEval's language checks need langdetect: pip install langdetect") from e
    if not _LANG_SEEDED[0]:
        DetectorFactory.seed = 0
        _LANG_SEEDED[0] = True
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException:
        return None


# ------------------------------------------------------------------------------ the checkers


def response_language(r: str, *, language: str) -> bool:
    lang = detect_language(r)
    return lang is None or lang == language


def number_sentences(r: str, *, num_sentences: int, relation: str) -> bool:
    return _compare(count_sentences(r), relation, num_sentences)


def number_placeholders(r: str, *, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", r)) >= num_placeholders


def number_bullet_lists(r: str, *, num_bullets: int) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", r, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", r, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def constrained_response(r: str) -> bool:
    r = r.strip()
    return any(option in r for option in CONSTRAINED_OPTIONS)


def number_highlighted_sections(r: str, *, num_highlights: int) -> bool:
    n = sum(1 for h in re.findall(r"\*[^\n\*]*\*", r) if h.strip("*").strip())
    n += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", r) if h.removeprefix("**").removesuffix("**").strip())
    return n >= num_highlights


def multiple_sections(r: str, *, section_spliter: str, num_sections: int) -> bool:
    parts = re.split(r"\s?" + re.escape(section_spliter) + r"\s?\d+\s?", r)
    return len(parts) - 1 >= num_sections


def number_paragraphs(r: str, *, num_paragraphs: int) -> bool:
    parts = re.split(r"\s?\*\*\*\s?", r)
    n = len(parts)
    for i, p in enumerate(parts):
        if not p.strip():
            if i in (0, len(parts) - 1):
                n -= 1
            else:
                return False  # an empty paragraph between two separators
    return n == num_paragraphs


def postscript(r: str, *, postscript_marker: str) -> bool:
    low = r.lower()
    if postscript_marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif postscript_marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(postscript_marker.lower()) + r".*$"
    return bool(re.findall(pattern, low, flags=re.MULTILINE))


def keywords_existence(r: str, *, keywords: Sequence[str]) -> bool:
    return all(re.search(re.escape(k), r, flags=re.IGNORECASE) for k in keywords)


def keyword_frequency(r: str, *, keyword: str, frequency: int, relation: str) -> bool:
    return _compare(len(re.findall(re.escape(keyword), r, flags=re.IGNORECASE)), relation, frequency)


def number_words(r: str, *, num_words: int, relation: str) -> bool:
    return _compare(count_words(r), relation, num_words)


def json_format(r: str) -> bool:
    v = r.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        if v.startswith(fence):
            v = v[len(fence):]
            break
    v = v.removesuffix("```").strip()
    try:
        json.loads(v)
    except ValueError:
        return False
    return True


def nth_paragraph_first_word(r: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    parts = re.split(r"\n\n", r)
    n = sum(1 for p in parts if p.strip())
    if not 1 <= nth_paragraph <= n:
        return False
    para = parts[nth_paragraph - 1].strip()
    if not para:
        return False
    word = para.split()[0].strip().lstrip("'").lstrip('"')
    got = ""
    for ch in word:
        if ch in ".,?!'\"":
            break
        got += ch.lower()
    return n == num_paragraphs and got == first_word.lower()


def forbidden_words(r: str, *, forbidden_words: Sequence[str]) -> bool:
    return not any(re.search(r"\b" + re.escape(w) + r"\b", r, flags=re.IGNORECASE) for w in forbidden_words)


def letter_frequency(r: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    return _compare(collections.Counter(r.lower())[letter.lower()], let_relation, let_frequency)


def english_capital(r: str) -> bool:
    lang = detect_language(r)
    return r.isupper() and (lang is None or lang == "en")


def english_lowercase(r: str) -> bool:
    lang = detect_language(r)
    return r.islower() and (lang is None or lang == "en")


def no_comma(r: str) -> bool:
    return "," not in r


def capital_word_frequency(r: str, *, capital_frequency: int, capital_relation: str) -> bool:
    return _compare(sum(1 for w in _word_tokens(r) if w.isupper()), capital_relation, capital_frequency)


def end_checker(r: str, *, end_phrase: str) -> bool:
    return r.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def title(r: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", r))


def quotation(r: str) -> bool:
    r = r.strip()
    return len(r) > 1 and r[0] == '"' and r[-1] == '"'


def repeat_prompt(r: str, *, prompt_to_repeat: str) -> bool:
    return r.strip().lower().startswith(prompt_to_repeat.strip().lower())


def two_responses(r: str) -> bool:
    parts = r.split("******")
    valid = []
    for i, p in enumerate(parts):
        if not p.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(p)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


CHECKERS: dict[str, Callable[..., bool]] = {
    "change_case:capital_word_frequency": capital_word_frequency,
    "change_case:english_capital": english_capital,
    "change_case:english_lowercase": english_lowercase,
    "combination:repeat_prompt": repeat_prompt,
    "combination:two_responses": two_responses,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_content:postscript": postscript,
    "detectable_format:constrained_response": constrained_response,
    "detectable_format:json_format": json_format,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:title": title,
    "keywords:existence": keywords_existence,
    "keywords:forbidden_words": forbidden_words,
    "keywords:frequency": keyword_frequency,
    "keywords:letter_frequency": letter_frequency,
    "language:response_language": response_language,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_words": number_words,
    "punctuation:no_comma": no_comma,
    "startend:end_checker": end_checker,
    "startend:quotation": quotation,
}


def loose_variants(response: str) -> list[str]:
    """The published loose mode's variants: the response, without its first line, without its last,
    without both; each also with markdown asterisks removed."""
    lines = response.split("\n")
    base = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return base + [v.replace("*", "") for v in base]


def follows(instruction_id: str, response: str, kwargs: dict[str, Any] | None = None, loose: bool = False) -> bool:
    """Whether ``response`` follows one instruction; ``kwargs`` are the instruction's arguments
    (None values are dropped, as IFEval's data stores every key of every instruction)."""
    try:
        check = CHECKERS[instruction_id]
    except KeyError:
        raise ValueError(f"unknown IFEval instruction {instruction_id!r}; known: {sorted(CHECKERS)}") from None
    args = {k: v for k, v in (kwargs or {}).items() if v is not None}
    variants = loose_variants(response) if loose else [response]
    return any(v.strip() and check(v, **args) for v in variants)


def response_of(completion: str) -> str | None:
    """What the checkers read: the text after the last ``</think>`` (inside ``<answer>`` if present);
    None when the last ``<think>`` is never closed."""
    k = completion.rfind("<think>")
    if k >= 0 and completion.find("</think>", k) < 0:
        return None
    text = completion[completion.rfind("</think>") + len("</think>"):] if "</think>" in completion else completion
    a = text.rfind("<answer>")
    if a >= 0:
        end = text.find("</answer>", a)
        text = text[a + len("<answer>"):end if end >= 0 else len(text)]
    return text.strip()


class IFEvalVerifier:
    """Scores completions against IFEval references ``{"instruction_id_list", "kwargs", "prompt"?}``.

    ``reward="all"``: 1 if every instruction is followed (strict), else 0; ``"fraction"``: the share
    followed. The verdict's details hold the strict and loose result of every instruction.
    """

    def __init__(self, reward: str = "all"):
        if reward not in ("all", "fraction"):
            raise ValueError(f"reward must be 'all' or 'fraction', got {reward!r}")
        self.reward = reward

    def verify(self, completion: str, reference: dict[str, Any]) -> Verdict:
        return self.verify_batch([completion], [reference])[0]

    def verify_batch(self, completions: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        out = []
        for c, ref in zip(completions, references):
            if not isinstance(ref, dict) or "instruction_id_list" not in ref:
                out.append(Verdict(Status.ERROR, 0.0, None, {"error": "an IFEval reference needs instruction_id_list "
                                                                       "and kwargs"}))
                continue
            ids = list(ref["instruction_id_list"])
            kws = list(ref.get("kwargs") or [{}] * len(ids))
            response = response_of(c) if isinstance(c, str) else None
            if not response:
                out.append(Verdict(Status.NO_ANSWER, 0.0, None, {"instructions": ids, "strict": [False] * len(ids),
                                                                 "loose": [False] * len(ids)}))
                continue
            try:
                strict = [follows(i, response, k) for i, k in zip(ids, kws)]
                loose = [follows(i, response, k, loose=True) for i, k in zip(ids, kws)]
            except (ValueError, TypeError) as e:  # a bad instruction or arguments: the task's fault
                out.append(Verdict(Status.ERROR, 0.0, None, {"error": str(e)}))
                continue
            frac = sum(strict) / len(strict) if strict else 0.0
            ok = bool(strict) and all(strict)
            score = float(ok) if self.reward == "all" else frac
            out.append(Verdict(Status.CORRECT if ok else Status.WRONG, score, response[:200],
                               {"instructions": ids, "strict": strict, "loose": loose}))
        return out
