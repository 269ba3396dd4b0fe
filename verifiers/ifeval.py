"""Verifiable instruction following (IFEval): our checkers for the 25 instruction types, in two modes.

Each checker is a pure function ``(response, **kwargs) -> bool`` with the published meaning of the
instruction (Zhou et al. 2023, "Instruction-Following Evaluation for Large Language Models").
`follows` runs one instruction in ``strict`` mode (the response as it is) or ``loose`` mode (also
the response without its first line, without its last line, without both, and each of those with
markdown asterisks removed: followed if any variant follows).

Two definitions (``mode``):

* ``"benchmark"``: lm-eval's definition (``lm_eval/tasks/ifeval``), checker for checker; used by
  ``algos.evaluate`` and the alignment-tax suite, so reported IFEval numbers stay comparable. It is
  lenient where lm-eval is: "." follows "no commas", ``42`` is JSON, "My answer is yes. My answer
  is no." follows "choose one", a keyword may sit inside another word.
* ``"train"`` (the reward of ``envs.make("ifeval")``): every benchmark rule, plus what a reward
  needs so that RL cannot learn silence or junk. The text is also read after `fold` (NFKC, format
  characters such as zero-width spaces removed, Cyrillic, Greek, Armenian look-alikes and small
  capitals mapped to Latin, and once more with combining marks removed); a count under an upper
  bound ("less than") is the largest over these readings, a count under a lower bound ("at least")
  the smallest, and a forbidden word found in any reading is used. Stricter per instruction: JSON
  must be an object or array with content; placeholders, highlights, titles, bullets, sections and
  paragraphs count only with a word inside (the nth paragraph of "paragraph n starts with W" with
  more than W); a postscript needs a word after its marker; quotes need a word inside; the two
  responses must each have a word and differ in words; "choose one" takes exactly one option; a
  keyword counts as a whole word (plural/possessive allowed) for "at least" and as lm-eval's
  substring for "less than"; toward an "at least" count, words need a letter, capital words two
  letters, sentences two words; any comma-like character (fullwidth, low-9, ideographic, Arabic,
  ...) breaks "no commas"; a text that langdetect cannot classify does not pass a language or case
  check. And the whole response must address the prompt (`degenerate`): a minimum number of words of
  its own (`min_words`, from the prompt's own limits and what it asks for), not a copy of the
  prompt, not one phrase repeated.

Nothing downloads, at import or at run time. Where the reference leans on NLTK, the text
processing is ours, deterministic and documented:

* **words** are runs of letters, digits and underscores (``\\w+``), as the reference's
  ``RegexpTokenizer(r"\\w+")``;
* **sentences** end at ``.``, ``!`` or ``?`` (repeats and closing quotes/brackets included) followed
  by whitespace or the end of the text, except after a common abbreviation (Mr., Dr., e.g., etc.,
  ...), a single capital letter (an initial) or a number's decimal point. A line break does not end
  a sentence (NLTK's punkt, which lm-eval uses, splits only at sentence punctuation: a hard-wrapped
  sentence is one sentence, and so are list items without a final period);
* **capital words** (``capital_word_frequency``) are word tokens, contractions kept whole, whose
  letters are all upper case ("I" counts, as in the reference's ``word_tokenize``);
* **language** is detected with ``langdetect`` (its profiles ship in the package), seeded so that
  the same text always gets the same verdict; a text it cannot classify counts as followed in the
  benchmark mode, as in the reference.

The completion given to a checker is the text after ``</think>`` (inside ``<answer>...</answer>``
when that block is there); a completion whose last ``<think>`` is never closed has no response.
"""

from __future__ import annotations

import collections
import functools
import json
import re
import unicodedata
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
    start = 0
    for m in _END.finditer(text):
        before = text[start:m.start()]
        last = before.split()[-1].lower() if before.split() else ""
        if m.group(0).startswith(".") and len(m.group(0).rstrip("\"'”’)]")) == 1:
            token = last.lstrip("(\"'“‘[")
            if token in _ABBREV or (len(token) == 1 and token.isalpha()):
                continue  # "Dr. Smith", "J. R. R. Tolkien"
        out.append(text[start:m.end()])
        start = m.end()
    out.append(text[start:])
    return [" ".join(s.split()) for s in out if any(c.isalnum() for c in s)]


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


def _word_tokens(text: str) -> list[str]:
    return re.findall(r"\w+(?:['’]\w+)*", text)


_LANG_SEEDED = [False]


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text`` (None when langdetect cannot tell); deterministic (seeded), so
    texts up to 4,000 characters are cached: the loose variants and the training mode's readings
    ask again for the same text."""
    return _detect_cached(text) if len(text) <= 4000 else _detect(text)


def _detect(text: str) -> str | None:
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


_detect_cached = functools.lru_cache(maxsize=4096)(_detect)


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


# ------------------------------------------------------------------------------ the training mode

MODES = ("train", "benchmark")

# Cyrillic, Greek, Armenian letters and Latin small capitals drawn like Latin letters (Unicode's confusables, the letters only)
_CONFUSABLES = str.maketrans(dict(zip(
    "аеорсухіјѕԁһӏԛԝѵүɑ" "АВЕКМНОРСТУХІЈЅԀԚԜҮӀ" "αονριкκυχϲϳε" "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ" "օսհոցՕՍıȷ"
    "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ",
    "aeopcyxijsdhlqwvya" "ABEKMHOPCTYXIJSDQWYI" "aovpikkuxcje" "ABEZHIKMNOPTYX" "ouhngOUij"
    "abcdefghijklmnoprstuvwyz")))  # the last row: Latin small capitals
# invisible letters that are not format characters (Hangul fillers, Khmer inherent vowels, CGJ)
_INVISIBLE = dict.fromkeys(map(ord, "\u115f\u1160\u3164\uffa0\u17b4\u17b5\u034f"))
# every character drawn as a comma: ASCII, fullwidth, small, low-9 quotes, ideographic, Arabic, ...
COMMA_LIKE = ",\uff0c\ufe50\ufe51\u201a\u201e\u3001\uff64\u060c\u2e41\u2e34\u2e32\u055d\u07f8\u1363\u1802\u1808" \
             "\ua4fe\ua60d\ua6f5\ufe10\ufe11\u02cf"


def fold(text: str) -> str:
    """The training mode's reading of a text: format characters (zero-width spaces, soft hyphens,
    joiners) and invisible fillers removed, NFKC (fullwidth, ligatures, math letters), then
    Cyrillic/Greek/Armenian look-alikes mapped to their Latin letters."""
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").translate(_INVISIBLE)
    return unicodedata.normalize("NFKC", text).translate(_CONFUSABLES)


def _strip_marks(text: str) -> str:
    return unicodedata.normalize("NFC", "".join(c for c in unicodedata.normalize("NFD", text)
                                               if unicodedata.category(c) != "Mn"))


_BIDI_REVERSED = re.compile("\u202e([^\u202a-\u202e\u2066-\u2069\n]*)")  # right-to-left override: shown reversed


def _as_read(kind: str, text: str) -> str:
    return text if kind == "raw" else fold(text) if kind == "fold" else _strip_marks(fold(text))


def _readings(text: str) -> list[tuple[str, str]]:
    """(reading, kind): as written ("raw"), `fold`-ed ("fold"), folded without combining marks
    ("strip"); with a right-to-left override, also folded as it is shown (the run reversed)."""
    out = [(_as_read(kind, text), kind) for kind in ("raw", "fold", "strip")]
    if "\u202e" in text:
        shown = _BIDI_REVERSED.sub(lambda m: m.group(1)[::-1], text)
        out += [(_as_read(kind, shown), kind) for kind in ("fold", "strip")]
    return out


def readings(text: str) -> list[str]:
    """The distinct readings of a text (see `_readings`)."""
    return list(dict.fromkeys(t for t, _ in _readings(text)))


def _count(texts: list[str], count: Callable[[str], int], relation: str, threshold: int) -> bool:
    """Compare the count of every reading: the largest under "less than", the smallest under "at least"."""
    counts = [count(t) for t in texts]
    return _compare(max(counts) if relation == "less than" else min(counts), relation, threshold)


_LETTER = re.compile(r"[^\W\d_]")


_NO_SPACES = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"
                        r"\uf900-\ufaff]")  # Thai, Lao, Myanmar, Khmer, kana, CJK, Hangul syllables


def _tokens(text: str) -> list[str]:
    """Runs of letters, marks, digits and underscores (a vowel sign does not split a Devanagari word)."""
    out, cur = [], []
    for c in text:
        if c == "_" or unicodedata.category(c)[0] in "LMN":
            cur.append(c)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def content_words(text: str) -> list[str]:
    """The words a response says: folded, lower-cased tokens with a letter and at least two
    characters ("a", "I", "42", "_" are not words of content); text in a script written without
    spaces (Thai, Chinese, Japanese, ...) counts a word every two characters."""
    out = []
    for w in _tokens(fold(text).lower()):
        if len(w) < 2 or not _LETTER.search(w):
            continue
        out += [w[i:i + 2] for i in range(0, len(w), 2)] if _NO_SPACES.search(w) else [w]
    return out


def _has_words(text: str, n: int = 1) -> bool:
    return sum(1 for w in _WORD.findall(fold(text)) if _LETTER.search(w)) >= n


def _kw_pattern(keyword: str) -> re.Pattern[str]:
    """A keyword as a whole word (edges not inside a word), plural or possessive allowed."""
    return re.compile(r"(?<!\w)" + re.escape(keyword) + r"(?:s|es|'s|’s)?(?!\w)", re.IGNORECASE)


def _paired(r: str, keyword: str) -> list[tuple[str, str]]:
    """(text reading, keyword read the same way): as written with as written, folded with folded, ..."""
    return [(t, _as_read(kind, keyword)) for t, kind in _readings(r)]


def t_keywords_existence(r: str, *, keywords: Sequence[str]) -> bool:
    return all(all(_kw_pattern(k2).search(t) for t, k2 in _paired(r, k)) for k in keywords)


def t_keyword_frequency(r: str, *, keyword: str, frequency: int, relation: str) -> bool:
    pairs = _paired(r, keyword)
    if relation == "less than":  # every occurrence, even inside other words (lm-eval's count), in any reading
        n = max(len(re.findall(re.escape(k2), t, flags=re.IGNORECASE)) for t, k2 in pairs)
    else:
        n = min(len(_kw_pattern(k2).findall(t)) for t, k2 in pairs)
    return _compare(n, relation, frequency)


def t_forbidden_words(r: str, *, forbidden_words: Sequence[str]) -> bool:
    return not any(re.search(r"\b" + re.escape(w2) + r"\b", t, flags=re.IGNORECASE)
                   for w in forbidden_words for t, w2 in _paired(r, w))


def t_letter_frequency(r: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    return _count(readings(r), lambda t: t.lower().count(letter.lower()), let_relation, let_frequency)


def count_letter_words(text: str) -> int:
    """Words with a letter (what the training mode counts toward "at least N words")."""
    return sum(1 for w in _WORD.findall(text) if _LETTER.search(w))


def count_full_sentences(text: str) -> int:
    """Sentences with two words with letters (what the training mode counts toward "at least N sentences")."""
    return sum(1 for s in split_sentences(text) if _has_words(s, 2))


def count_capital_words(text: str, min_letters: int = 1) -> int:
    """Word tokens in capitals; the training mode counts those of two letters or more toward "at least"."""
    return sum(1 for w in _word_tokens(text) if w.isupper() and len(_LETTER.findall(w)) >= min_letters)


def t_number_words(r: str, *, num_words: int, relation: str) -> bool:
    return _count(readings(r), count_words if relation == "less than" else count_letter_words, relation, num_words)


def t_number_sentences(r: str, *, num_sentences: int, relation: str) -> bool:
    return _count(readings(r), count_sentences if relation == "less than" else count_full_sentences, relation,
                  num_sentences)


def t_capital_word_frequency(r: str, *, capital_frequency: int, capital_relation: str) -> bool:
    least = 1 if capital_relation == "less than" else 2
    return _count(readings(r), lambda t: count_capital_words(t, least), capital_relation, capital_frequency)


_COMBINING_COMMAS = "\u0312\u0313\u0314\u0315\u0326"  # left over after NFC (ș and ț compose): a comma drawn on a letter


def t_no_comma(r: str) -> bool:
    return not any(c in COMMA_LIKE for t in readings(r) for c in t) and \
        not any(c in _COMBINING_COMMAS for c in unicodedata.normalize("NFC", fold(r)))


def t_json_format(r: str) -> bool:
    if not json_format(r):
        return False
    v = r.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        if v.startswith(fence):
            v = v[len(fence):]
            break
    return isinstance(value := json.loads(v.removesuffix("```").strip()), (dict, list)) and _json_content(value)


def _json_content(value: Any) -> bool:
    """Whether a JSON value holds anything: a word in a key or a string, a number, a boolean
    (iterative: a deeply nested value is no reason to crash)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if any(_has_words(k) for k in v):
                return True
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            if _has_words(v):
                return True
        elif v is not None:
            return True
    return False


def _says(text: str) -> bool:
    """Whether a part of a response (a placeholder, a bullet, a section, ...) holds a word of content."""
    return bool(content_words(text))


def t_number_placeholders(r: str, *, num_placeholders: int) -> bool:
    return sum(1 for p in re.findall(r"\[([^\[\]]*)\]", fold(r)) if _has_words(p)) >= num_placeholders


def t_number_highlighted_sections(r: str, *, num_highlights: int) -> bool:
    r = fold(r)
    n = sum(1 for h in re.findall(r"\*[^\n\*]*\*", r) if _has_words(h))
    n += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", r) if _has_words(h))
    return n >= num_highlights


def t_title(r: str) -> bool:
    return any(_has_words(t) for t in re.findall(r"<<[^\n]+>>", fold(r)))


def t_number_bullet_lists(r: str, *, num_bullets: int) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", r, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", r, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets and all(_says(b) for b in stars + dashes)


def t_multiple_sections(r: str, *, section_spliter: str, num_sections: int) -> bool:
    parts = re.split(r"\s?" + re.escape(section_spliter) + r"\s?\d+\s?", r)
    return len(parts) - 1 >= num_sections and all(_says(p) for p in parts[1:])


def t_number_paragraphs(r: str, *, num_paragraphs: int) -> bool:
    return (number_paragraphs(r, num_paragraphs=num_paragraphs)
            and all(_says(p) for p in re.split(r"\s?\*\*\*\s?", r) if p.strip()))


def t_nth_paragraph_first_word(r: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    """lm-eval's rule; every paragraph says something, and the nth more than its first word."""
    if not nth_paragraph_first_word(r, num_paragraphs=num_paragraphs, nth_paragraph=nth_paragraph,
                                    first_word=first_word):
        return False
    parts = re.split(r"\n\n", r)
    return all(_says(p) for p in parts if p.strip()) and len(content_words(parts[nth_paragraph - 1])) >= 2


def t_postscript(r: str, *, postscript_marker: str) -> bool:
    low = fold(r).lower()
    if postscript_marker == "P.P.S":
        pattern = r"p\.\s?p\.\s?s\.?"
    elif postscript_marker == "P.S.":
        pattern = r"p\.\s?s\."
    else:
        pattern = re.escape(postscript_marker.lower())
    return any(_says(low[m.end():]) for m in re.finditer(pattern, low))


def t_quotation(r: str) -> bool:
    return quotation(r) and _says(r.strip()[1:-1])


def t_two_responses(r: str) -> bool:
    """lm-eval's rule, and the two differ in their words (not only in case or punctuation), and each
    has a word of content (`degenerate` then asks the whole response for the prompt's minimum)."""
    if not two_responses(r):
        return False
    a, b = [p for p in r.split("******") if p.strip()]
    return content_words(a) != content_words(b) and all(content_words(p) for p in (a, b))


def t_constrained_response(r: str) -> bool:
    """One option, not several at once (in any case, with or without the final period)."""
    f = fold(r).lower()
    return sum(1 for o in CONSTRAINED_OPTIONS if o.lower().rstrip(".") in f) == 1


def t_response_language(r: str, *, language: str) -> bool:
    return detect_language(r) == language


def t_english_capital(r: str) -> bool:
    return r.isupper() and detect_language(r) == "en"


def t_english_lowercase(r: str) -> bool:
    return r.islower() and detect_language(r) == "en"


TRAIN_CHECKERS: dict[str, Callable[..., bool]] = {
    "change_case:capital_word_frequency": t_capital_word_frequency,
    "change_case:english_capital": t_english_capital,
    "change_case:english_lowercase": t_english_lowercase,
    "combination:two_responses": t_two_responses,
    "detectable_content:number_placeholders": t_number_placeholders,
    "detectable_content:postscript": t_postscript,
    "detectable_format:constrained_response": t_constrained_response,
    "detectable_format:json_format": t_json_format,
    "detectable_format:multiple_sections": t_multiple_sections,
    "detectable_format:number_bullet_lists": t_number_bullet_lists,
    "detectable_format:number_highlighted_sections": t_number_highlighted_sections,
    "detectable_format:title": t_title,
    "keywords:existence": t_keywords_existence,
    "keywords:forbidden_words": t_forbidden_words,
    "keywords:frequency": t_keyword_frequency,
    "keywords:letter_frequency": t_letter_frequency,
    "language:response_language": t_response_language,
    "length_constraints:nth_paragraph_first_word": t_nth_paragraph_first_word,
    "length_constraints:number_paragraphs": t_number_paragraphs,
    "length_constraints:number_sentences": t_number_sentences,
    "length_constraints:number_words": t_number_words,
    "punctuation:no_comma": t_no_comma,
    "startend:quotation": t_quotation,
}  # the others (repeat_prompt, end_checker) keep the benchmark rule; `degenerate` reads what they leave

# what a prompt asks for: long-form writing, or a short answer to a question
_LONG_FORM = re.compile(r"\b(write|compose|draft|create|generate)\b[^.?!]{0,40}\b(essays?|articles?|stor(?:y|ies)|"
                        r"blog posts?|letters?|speech|reports?|proposals?|emails?|biograph(?:y|ies))\b", re.IGNORECASE)
_QUESTION = re.compile(r"(?:^|[.!?\n]\s*)(what|who|whom|which|where|when)\b[^.!?\n]*\?", re.IGNORECASE)
_SHORT_ASK = re.compile(r"\b(translat\w*|another word|synonym|nickname|names? for|one word|single word|next number)\b",
                        re.IGNORECASE)
_FILLER = {"yes", "no", "ok", "okay", "sure", "maybe", "hi", "hello", "thanks", "yeah", "yep", "nope", "fine", "done",
           "answer", "response", "text", "lol", "hmm", "na", "nan", "null", "none", "true", "false"}
_WRITING = re.compile(r"\b(write|compose|draft|create|generate|list|describe|explain|summari[sz]e|elaborate|essay|"
                      r"article|story|poem|letter|blog|song|rap|itinerary|dialogue|tell me|discuss|argue|introduce|"
                      r"review|plan|outline|rewrite|critique|analy[sz]e|advice|advise|help)\b", re.IGNORECASE)
MIN_WORDS = {"short answer": 1, "default": 5, "long form": 25}


def min_words(reference: dict[str, Any]) -> int:
    """The fewest `content_words` a response needs to address its prompt: 5, or 25 when the prompt
    asks to write long-form text (an essay, a story, a letter, an email, ...), or 1 when it asks a
    question and nothing to write ("What is another word for engravings?"); never more than the
    prompt's own upper limits leave room for (under half of "less than N words", five words a
    sentence under "less than N sentences", a word a bullet under "exactly N bullets"); 0 for
    "choose one" (the option is the answer)."""
    ids = list(reference.get("instruction_id_list") or [])
    if "detectable_format:constrained_response" in ids:
        return 0
    prompt = str(reference.get("prompt") or "")
    if _LONG_FORM.search(prompt):
        n = MIN_WORDS["long form"]
    elif (_QUESTION.search(prompt) and not _WRITING.search(prompt)) or _SHORT_ASK.search(prompt):
        n = MIN_WORDS["short answer"]
    else:
        n = MIN_WORDS["default"]
    for i, k in zip(ids, reference.get("kwargs") or [{}] * len(ids)):
        k = k or {}
        if i == "length_constraints:number_words" and k.get("relation") == "less than":
            n = min(n, max(1, (int(k["num_words"]) - 1) // 2))
        elif i == "length_constraints:number_sentences" and k.get("relation") == "less than":
            n = min(n, max(3, 5 * (int(k["num_sentences"]) - 1)))
        elif i == "detectable_format:number_bullet_lists":  # a list of N names may be N words
            n = min(n, max(1, int(k["num_bullets"])))
    return n


COPY_RUN = 6  # words in a row found in the prompt: copied, not the response's own ("the two young boys" is not)


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


_REWRITE = re.compile(r"\b(rewrite|rephrase|paraphrase|edit|revise|proofread|correct)\b", re.IGNORECASE)


def degenerate(response: str, reference: dict[str, Any]) -> str | None:
    """Why ``response`` does not address the prompt of ``reference`` (None when it does): too few
    words of its own (after the repeated request, the end phrase, titles, section headers and
    postscript markers are set aside), a copy of the prompt, or one phrase repeated."""
    ids = list(reference.get("instruction_id_list") or [])
    kws = [k or {} for k in (reference.get("kwargs") or [{}] * len(ids))]
    text = fold(response)
    prompt = fold(str(reference.get("prompt") or ""))
    for i, k in zip(ids, kws):
        if i == "combination:repeat_prompt" and k.get("prompt_to_repeat"):
            rep = fold(str(k["prompt_to_repeat"])).strip()
            if text.strip().lower().startswith(rep.lower()):
                text = text.strip()[len(rep):]
        elif i == "startend:end_checker" and k.get("end_phrase"):
            end = fold(str(k["end_phrase"])).strip().lower()
            body = text.strip().strip('"')
            if body.lower().endswith(end):
                text = body[:len(body) - len(end)]
        elif i == "detectable_format:multiple_sections" and k.get("section_spliter"):
            text = re.sub(re.escape(fold(str(k["section_spliter"]))) + r"\s?\d+", " ", text)
    text = re.sub(r"<<[^\n]*>>", " ", text)
    text = re.sub(r"(?i)\bp\.\s?(?:p\.\s?)?s\b\.?", " ", text)
    words = content_words(text)
    need = min_words(reference)
    if need == 0:
        return None
    runs = _ngrams(words, COPY_RUN)
    pruns = set(_ngrams(content_words(prompt), COPY_RUN))
    copied: set[int] = set()  # the response's words inside a run of COPY_RUN words found in the prompt
    for j, g in enumerate(runs):
        if g in pruns:
            copied.update(range(j, j + COPY_RUN))
    if _REWRITE.search(prompt):  # rewriting a text of the prompt copies much of it: only a copy of it all is one
        if len(copied) >= 0.8 * len(words) and pruns and len(pruns & set(runs)) >= 0.95 * len(pruns):
            return "the response repeats the prompt"
        copied = set()
    own = [w for j, w in enumerate(words) if j not in copied]
    if len(own) < need or sum(len(w) for w in own) < 3 or all(w in _FILLER for w in own):
        return (f"{len(own)} words of its own (besides {len(copied)} repeated from the prompt), the prompt needs at "
                f"least {need}" if copied else f"{len(own)} words of its own, the prompt needs at least {need}")
    grams = _ngrams(words, 3)
    if (len(grams) >= 8 and len(set(grams)) / len(grams) < 0.5) or (4 <= len(own) < 20 and len(set(own)) <= len(own) / 2):
        return "the response repeats one phrase"
    return None


def loose_variants(response: str) -> list[str]:
    """The published loose mode's variants: the response, without its first line, without its last,
    without both; each also with markdown asterisks removed."""
    lines = response.split("\n")
    base = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return base + [v.replace("*", "") for v in base]


def follows(instruction_id: str, response: str, kwargs: dict[str, Any] | None = None, loose: bool = False,
            mode: str = "benchmark") -> bool:
    """Whether ``response`` follows one instruction; ``kwargs`` are the instruction's arguments
    (None values are dropped, as IFEval's data stores every key of every instruction). ``mode``:
    ``"benchmark"`` (lm-eval's definition, the default here) or ``"train"`` (stricter; see the module
    docstring; the response-level `degenerate` check is the verifier's, not this function's)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    try:
        check = CHECKERS[instruction_id]
    except KeyError:
        raise ValueError(f"unknown IFEval instruction {instruction_id!r}; known: {sorted(CHECKERS)}") from None
    if mode == "train" and instruction_id in TRAIN_CHECKERS:  # the benchmark's rule and the training mode's
        bench, train = check, TRAIN_CHECKERS[instruction_id]
        check = lambda v, **a: bench(v, **a) and train(v, **a)  # noqa: E731 - never more lenient than lm-eval
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
    followed. ``mode="train"`` (the default: a reward) uses the training checkers and scores a
    `degenerate` response 0 (status wrong, ``details["degenerate"]`` says why) whatever it follows;
    ``mode="benchmark"`` is lm-eval's definition, as reported by ``algos.evaluate``. The verdict's
    details hold the strict and loose result of every instruction in the chosen mode.
    """

    def __init__(self, reward: str = "all", mode: str = "train"):
        if reward not in ("all", "fraction"):
            raise ValueError(f"reward must be 'all' or 'fraction', got {reward!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.reward, self.mode = reward, mode

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
                                                                 "loose": [False] * len(ids), "mode": self.mode}))
                continue
            try:
                strict = [follows(i, response, k, mode=self.mode) for i, k in zip(ids, kws)]
                loose = [follows(i, response, k, loose=True, mode=self.mode) for i, k in zip(ids, kws)]
                why = degenerate(response, ref) if self.mode == "train" else None
            except (ValueError, TypeError, KeyError) as e:  # a bad instruction or arguments: the task's fault
                out.append(Verdict(Status.ERROR, 0.0, None, {"error": f"{type(e).__name__}: {e}"}))
                continue
            except RecursionError:  # JSON nested deeper than Python's parser goes (lm-eval's checker crashes too)
                out.append(Verdict(Status.ERROR, 0.0, response[:200], {"error": "RecursionError: the response nests "
                                                                                "deeper than the JSON parser can"}))
                continue
            details = {"instructions": ids, "strict": strict, "loose": loose, "mode": self.mode}
            if why:
                details["degenerate"] = why
                out.append(Verdict(Status.WRONG, 0.0, response[:200], details))
                continue
            frac = sum(strict) / len(strict) if strict else 0.0
            ok = bool(strict) and all(strict)
            score = float(ok) if self.reward == "all" else frac
            out.append(Verdict(Status.CORRECT if ok else Status.WRONG, score, response[:200], details))
        return out
