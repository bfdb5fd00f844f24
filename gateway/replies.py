"""What a reply means: numbers, yes/no, choices and opt-out words in English, Persian, Arabic.

DESIGN.md section 5. Matching works on a folded copy; the raw reply is never changed.
A phrase matches a run of whole words with the spaces between them ignored, so a Persian
word written joined, with a space or with a ZWNJ (میخواهم, می خواهم, می‌خواهم) is one word.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from gateway import replies_words as words
from gateway.flows.model import NUMERIC, SCALES, Question
from gateway.model import QUESTION_TYPES, InputMode

WINDOW = 8  # numbers and yes/no words count only among the reply's first words
# No answer is longer; int() refuses more than 4,300 digits and orjson more than 64 bits.
MAX_DIGITS = 18

ControlWord = Literal["opt_out", "opt_in"]
V = TypeVar("V")


@dataclass(frozen=True)
class Interpretation:
    """What a reply answers to one question: a value, or in English why there is none."""

    ok: bool
    value: int | bool | str | None = None
    reason: str = ""


_DIGITS = str.maketrans(
    {chr(base + i): str(i) for base in (0x06F0, 0x0660) for i in range(10)},
)
# Circled digits that NFKC leaves alone (❽, ➓, ⓿, ⓫): their value, as NFKC gives ⑧ its 8.
_CIRCLED = {
    chr(code): str(int(unicodedata.numeric(chr(code))))
    for code in [*range(0x24EB, 0x2500), *range(0x2776, 0x2794)]
}
_INVISIBLE = "\u200b\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
_FOLD = str.maketrans(
    {
        "ي": "ی",
        "ى": "ی",
        "ئ": "ی",
        "ك": "ک",
        "ة": "ه",
        "ۀ": "ه",
        "ە": "ه",
        "ھ": "ه",
        "أ": "ا",
        "إ": "ا",
        "آ": "ا",
        "ٱ": "ا",
        "ؤ": "و",
        # ZWNJ splits a Persian word into its parts; phrase matching joins them again.
        "\u200c": " ",
        "\u0640": None,
        "\u0670": None,
        **{chr(mark): None for mark in range(0x064B, 0x0660)},
        # ZWJ, zero-width space, BOM and the bidi marks that right-to-left keyboards insert.
        **{char: None for char in _INVISIBLE},
        "'": None,
        "\u2019": None,
        "\u02bc": None,
        # Emoji presentation selectors and the keycap mark: "1️⃣0️⃣" is 10, and "🔟" too.
        "\ufe0e": None,
        "\ufe0f": None,
        "\u20e3": None,
        "\U0001f51f": "10",
        **_CIRCLED,
    }
)
# Fraction characters, before NFKC makes "7½" into "71⁄2": read as words, see words.AND_A_HALF.
_FRACTIONS = {
    code: " and a half "
    for code in [*range(0x00BC, 0x00BF), *range(0x2150, 0x2190)]
    if "\u2044" in unicodedata.normalize("NFKC", chr(code))
}
_MINUS = "-\u2212\u2013"
# Only these are read as digits: str.isdigit() also takes ❽ or ፰, which int() refuses.
_ASCII_DIGITS = frozenset("0123456789")
_LATIN = re.compile("[a-z]")
_THOUSANDS = ",٬"
# Arabizi words, one token each: Latin letters then digits ("la2", "na3am"), or one Arabizi
# digit then Latin letters that are no number's ending ("3adi", "7elw"; not "9ish", "5stars").
_NUMBER_ENDINGS = "|".join(
    sorted(
        {w for w in (*words.NUMBER_ENDINGS, *words.UNITS, *words.SCORE_WORDS) if w.isascii()}
        - {"%"},
        key=len,
        reverse=True,
    )
)
_ARABIZI = (
    r"[a-z]+[0-9][a-z0-9]*"
    rf"|(?<![0-9])[{words.ARABIZI_DIGITS}](?!(?:{_NUMBER_ENDINGS})(?![a-z]))[a-z][a-z0-9]*"
)
_TOKEN = re.compile(
    rf"(?<!\w)[{_MINUS}][0-9]+(?:[.٫][0-9]+)?"
    rf"|{_ARABIZI}"
    rf"|[0-9]{{1,3}}(?:[{_THOUSANDS}][0-9]{{3}})+(?![0-9])"
    r"|[0-9]+(?:[.٫][0-9]+)?|[/%٪]|[^\W\d_]+"
)
# "Yesss", "نههههه", "STOPPP": a letter typed three times or more is read once (no word of the
# three languages has a letter three times in a row).
_ELONGATED = re.compile(r"([^\W\d_])\1{2,}")


def normalize_digits(text: str) -> str:
    """Persian (U+06F0-06F9) and Arabic-Indic (U+0660-0669) digits to ASCII, mixed allowed."""
    return text.translate(_DIGITS)


def fold(text: str) -> str:
    """The matching form of a reply or a word: NFKC, casefold, one Arabic/Persian alphabet."""
    folded = _folded(text)
    start, end = 0, len(folded)
    while start < end and _is_edge(folded[start]):
        start += 1
    while end > start and _is_edge(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _folded(text: str) -> str:
    text = unicodedata.normalize("NFKC", text.translate(_FRACTIONS)).casefold().translate(_FOLD)
    return " ".join(text.split())


def _is_edge(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "PSZ" or category in ("Mn", "Me", "Cf", "Cc")


def _tokens(text: str) -> tuple[str, ...]:
    """Words, whole numbers, signed or decimal numbers and slashes of the folded text."""
    if len(text) <= SHORT_REPLY:
        return _short_tokens(text)
    return _short_tokens.__wrapped__(text)


# Most replies are a few characters ("9", "۹", "yes", "نه") and each is read three times (opt-out
# words in the router, again in the engine, then as the answer). Short ones are remembered: the
# strings only, never who sent them.
SHORT_REPLY = 24


@functools.lru_cache(maxsize=1024)
def _short_tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(_ELONGATED.sub(r"\1", normalize_digits(_folded(text)))))


def _key(phrase: str) -> str:
    """The form a phrase is looked up by: its tokens joined without spaces."""
    return "".join(_tokens(phrase))


def _index(pairs: Iterable[tuple[str, V]]) -> dict[str, V]:
    index: dict[str, V] = {}
    for phrase, value in pairs:
        key = _key(phrase)
        if index.setdefault(key, value) != value:
            raise ValueError(f"word table: {phrase!r} means both {index[key]!r} and {value!r}")
    return index


_SPELLINGS = {language: words.number_spellings(language) for language in words.LANGUAGES}
_NUMBERS = _index(
    (spelling, value)
    for table in _SPELLINGS.values()
    for value, spellings in table.items()
    for spelling in spellings
)
_YES_NO: dict[str, bool | None] = _index(
    [(w, True) for ws in [*words.YES.values(), words.YES_LATIN] for w in ws]
    + [(w, False) for ws in [*words.NO.values(), words.NO_LATIN] for w in ws]
    + [(w, None) for w in words.UNSURE]
)
_YES_NO_WHOLE_ONLY = {_key(w) for w in words.YES_NO_WHOLE_ONLY}
_OUT_OF = {_key(w) for w in words.OUT_OF}
_NEGATIVE = {_key(w) for w in words.NEGATIVE}
_AND_A_HALF = {_key(w) for w in words.AND_A_HALF}
_UNITS = {_key(w) for w in words.UNITS}
_COUNTER = {_key(w) for w in words.COUNTER}
_ALSO_NOT_A_NUMBER = {_key(w) for w in words.ALSO_NOT_A_NUMBER}
_SCORE_WORDS = {_key(w) for w in words.SCORE_WORDS}
# A run of this many digits on a scale that stops below it is a phone, order or ticket number.
IDENTIFIER_DIGITS = 5
_STAR_RUN = re.compile(rf"[{words.STARS}](?:\s*[{words.STARS}])*")
_STAR_RUN_GAPS = re.compile(r"\s+")
_OPT_OUT = {_key(w) for w in words.OPT_OUT}
_OPT_IN = {_key(w) for w in words.OPT_IN}
_COURTESY = {_key(w) for w in words.COURTESY}

Span = tuple[int, int, str]  # start and end token, and what matched there
# The longest key of the number table, measured once, not per reply: it has a thousand keys.
_LONGEST_NUMBER = max(map(len, _NUMBERS))
_LONGEST_YES_NO = max(map(len, _YES_NO))


def _spans(tokens: Sequence[str], keys: Collection[str], longest: int = 0) -> list[Span]:
    """Every run of consecutive tokens that, joined, is one of keys (at most `longest` long)."""
    longest = longest or max(map(len, keys), default=0)
    found: list[Span] = []
    for start in range(len(tokens)):
        joined = ""
        for end in range(start + 1, len(tokens) + 1):
            joined += tokens[end - 1]
            if len(joined) > longest:
                break
            if joined in keys:
                found.append((start, end, joined))
    return found


def _outermost(spans: Sequence[Span]) -> list[Span]:
    """Drop matches inside a longer one: "twenty one" is not also 20 and 1."""
    return [
        (start, end, what)
        for start, end, what in spans
        if not any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in spans)
    ]


def interpret(
    question: Question, raw: str, language: str, input_mode: InputMode = "text"
) -> Interpretation:
    """What `raw` answers to `question`; words of any language count, `language` goes first."""
    if question.type not in QUESTION_TYPES:
        raise ValueError(f"unknown question type {question.type!r}")
    if not any(not char.isspace() and unicodedata.category(char) != "Cf" for char in raw):
        return _invalid("empty reply")
    if input_mode == "dtmf":
        return _dtmf(question, raw)
    if question.type in NUMERIC:
        return _number(question, raw)
    if question.type == "yes_no":
        return _yes_no(raw)
    if question.type == "choice":
        return _choice(question, raw, language)
    return _text(question, raw.strip())


def _invalid(reason: str) -> Interpretation:
    return Interpretation(ok=False, reason=reason)


def _dtmf(question: Question, raw: str) -> Interpretation:
    keys = normalize_digits(_folded(raw))
    if not re.fullmatch("[0-9]+", keys):
        return _invalid("dtmf: digits only")
    if question.type in NUMERIC:
        return _in_range(question, int(keys))
    if question.type == "yes_no":
        return _yes_no_code(keys) or _invalid("dtmf: 1 is yes, 2 is no")
    if question.type == "choice":
        ids = [c.id for c in question.choices if normalize_digits(c.key or "") == keys]
        return (
            Interpretation(ok=True, value=ids[0]) if ids else _invalid(f"no choice has key {keys}")
        )
    return _text(question, raw.strip())


def _text(question: Question, text: str) -> Interpretation:
    return Interpretation(ok=True, value=text[: question.max_length])


def _bounds(question: Question) -> tuple[int | None, int | None]:
    low, high = question.minimum, question.maximum
    if question.type in SCALES:
        scale_low, scale_high = SCALES[question.type]
        return (scale_low if low is None else low, scale_high if high is None else high)
    return low, high


def _in_range(question: Question, value: int) -> Interpretation:
    low, high = _bounds(question)
    too_low = low is not None and value < low
    too_high = high is not None and value > high
    if low is not None and high is not None and (too_low or too_high):
        return _invalid(f"out of range {low}-{high}")
    if too_low:
        return _invalid(f"below minimum {low}")
    if too_high:
        return _invalid(f"above maximum {high}")
    return Interpretation(ok=True, value=value)


Number = tuple[int, int, int]  # start and end token, and the value


def _number(question: Question, raw: str) -> Interpretation:
    tokens = _tokens(raw)[: 2 * WINDOW]  # room for a phrase that starts inside the window
    window = tokens[:WINDOW]
    digits: list[Number] = []
    for at, token in enumerate(window):
        if token[0] in _MINUS:
            return _invalid("negative number")
        if _is_digits(token):
            whole = token.translate({ord(c): None for c in _THOUSANDS})
            if not (whole.isascii() and whole.isdigit()):
                return _invalid("not a whole number")
            if len(whole.lstrip("0")) > MAX_DIGITS:
                continue  # no answer is so long (an order number at most): not read
            digits.append((at, at + 1, int(whole)))
    # Words count where no digit does, and before "out of" digits: the scale's top goes in
    # "هفت از ۱۰" as in "۸ از ده". Most replies have digits and no "out of": no word lookup.
    spelt = (
        [
            (start, end, _NUMBERS[what])
            for start, end, what in _outermost(_spans(tokens, _NUMBERS, _LONGEST_NUMBER))
            if start < WINDOW and (what not in _ALSO_NOT_A_NUMBER or _counts(tokens, start, end))
        ]
        if not digits or any(_beside_out_of(tokens, at) for at, _, _ in digits)
        else []
    )
    numbers, other_top = _without_scale_top(question, tokens, sorted(digits + spelt))
    if other_top is not None:
        low, high = _bounds(question)
        return _invalid(f"ambiguous: out of {other_top}, the scale is {low}-{high}")
    found = [n for n in numbers if not _is_count(question, tokens, n)]
    # Digits are meant; words in a sentence with digits are often not (یک "a", نه "no").
    found = [n for n in found if _is_digits(tokens[n[0]])] or found
    if not found and question.type != "number":
        found = _stars(raw)
    if any(start > 0 and tokens[start - 1] in _NEGATIVE for start, _, _ in found):
        return _invalid("negative number")
    halves = {start for start, _, _ in _spans(tokens, _AND_A_HALF)}
    if any(end in halves for _, end, _ in found):
        return _invalid("not a whole number")
    values = sorted({value for _, _, value in found})
    if not values:
        return _invalid("no number found")
    if len(values) > 1:
        return _invalid("ambiguous: " + ", ".join(map(str, values)))
    return _in_range(question, values[0])


def _is_digits(token: str) -> bool:
    """A number written in digits; an Arabizi word ("3adi", "la2") has letters too."""
    return token[0] in _ASCII_DIGITS and not _LATIN.search(token)


def _beside_out_of(tokens: Sequence[str], at: int) -> bool:
    """Whether "out of" is just before or after the digits at `at`: "8 out of ten", "هفت از ۱۰"."""
    before = at > 0 and tokens[at - 1] in _OUT_OF
    return before or any("".join(tokens[at + 1 : at + 1 + size]) in _OUT_OF for size in (1, 2))


def _is_number(tokens: Sequence[str], at: int) -> bool:
    return at < len(tokens) and (_is_digits(tokens[at]) or tokens[at] in _NUMBERS)


def _counts(tokens: Sequence[str], start: int, end: int) -> bool:
    """Whether a word like یک ("a"), نه ("no") or one ("the one who") is a number here."""
    if (start, end) == (0, len(tokens)) or _is_number(tokens, end):
        return True
    if (start and tokens[start - 1] in _SCORE_WORDS) or (
        end < len(tokens) and tokens[end] in _SCORE_WORDS
    ):
        return True
    return any(
        "".join(tokens[end : end + size]) in _OUT_OF and _is_number(tokens, end + size)
        for size in (1, 2)
    )


def _is_count(question: Question, tokens: Sequence[str], number: Number) -> bool:
    """A number of minutes, of people ("two of the staff") or an order number, not a score.
    A number question asks for a count: there "20 minutes" is the answer."""
    start, end, _ = number
    if question.type == "number":
        return False
    after = end + 1 if end < len(tokens) and tokens[end] in _COUNTER else end
    if after < len(tokens) and tokens[after] in _UNITS:
        return True
    if any(
        "".join(tokens[end : end + size]) in _OUT_OF and not _is_number(tokens, end + size)
        for size in (1, 2)
        if end + size <= len(tokens)
    ):
        return True
    _, high = _bounds(question)
    long = len(tokens[start]) >= IDENTIFIER_DIGITS and _is_digits(tokens[start])
    return long and high is not None and high < 10 ** (IDENTIFIER_DIGITS - 1)


def _stars(raw: str) -> list[Number]:
    """Each run of stars in the reply as a number found at token 0: its length ("⭐⭐⭐⭐" is 4)."""
    return [(0, 0, len(_STAR_RUN_GAPS.sub("", run))) for run in _STAR_RUN.findall(_folded(raw))]


def _without_scale_top(
    question: Question, tokens: Sequence[str], found: Sequence[Number]
) -> tuple[list[Number], int | None]:
    """Drop the "10" of "8/10", "8 out of 10", "۸ از ۱۰" when 10 is the scale's top. "3 out of
    5" on a 0-10 scale is no answer to it: that 5 comes back second, and nothing is guessed. A
    number question, or a rating without a top, has no scale: its "out of" is left to the
    ambiguity check."""
    _, high = _bounds(question)
    kept: list[Number] = []
    for number in found:
        if kept and "".join(tokens[kept[-1][1] : number[0]]) in _OUT_OF:
            if number[2] == high:
                continue
            if high is not None and question.type != "number":
                return kept, number[2]
        kept.append(number)
    return kept, None


def _yes_no_code(text: str) -> Interpretation | None:
    if text in ("1", "2"):
        return Interpretation(ok=True, value=text == "1")
    return None


def _yes_no(raw: str) -> Interpretation:
    tokens = _tokens(raw)[: 2 * WINDOW]
    code = _yes_no_code("".join(tokens))
    if code is not None:
        return code
    spans = [
        (start, end, what)
        for start, end, what in _spans(tokens, _YES_NO, _LONGEST_YES_NO)
        if start < WINDOW and (what not in _YES_NO_WHOLE_ONLY or (start, end) == (0, len(tokens)))
    ]
    meanings = {_YES_NO[what] for _, _, what in _outermost(spans)} - {None}
    if not spans:  # no word at all: a thumb or a check mark
        meanings = {True for c in raw if c in words.YES_SYMBOLS}
        meanings |= {False for c in raw if c in words.NO_SYMBOLS}
    if len(meanings) > 1:
        return _invalid("ambiguous: both yes and no")
    if not meanings:
        return _invalid("no yes/no word found")
    return Interpretation(ok=True, value=meanings.pop())


def _choice(question: Question, raw: str, language: str) -> Interpretation:
    tokens = _tokens(raw)
    whole = "".join(tokens)
    found: list[Span] = []
    for choice in question.choices:
        if whole and _key(choice.id) == whole:
            found.append((0, len(tokens), choice.id))
        key = _key(choice.key or "")
        if key.isdigit():
            found += [
                (at, at + 1, choice.id) for at, token in enumerate(tokens[:WINDOW]) if token == key
            ]
        elif key and key == whole:
            found.append((0, len(tokens), choice.id))
    others = sorted(
        {lang for c in question.choices for lang in [*c.label, *c.keywords]} - {language}
    )
    bare = [_bare(token) for token in tokens]
    for languages in ([language], others):
        phrases = _choice_phrases(question, languages)
        spans = _spans(bare, phrases)
        found += [(start, end, id_) for start, end, what in spans for id_ in phrases[what]]
        if spans:
            break
    ids = sorted({id_ for _, _, id_ in _outermost(found)})
    if len(ids) > 1:
        return _invalid("ambiguous: " + ", ".join(ids))
    if not ids:
        return _invalid("no choice matched")
    return Interpretation(ok=True, value=ids[0])


def _choice_phrases(question: Question, languages: Sequence[str]) -> dict[str, set[str]]:
    """Folded labels and keywords in these languages, each with the choices it names."""
    phrases: dict[str, set[str]] = {}
    for choice in question.choices:
        for phrase in _choice_words(choice.label, choice.keywords, languages):
            if key := choice_key(phrase):
                phrases.setdefault(key, set()).add(choice.id)
    return phrases


def choice_key(phrase: str) -> str:
    """The form a choice's label or keyword is matched in: two phrases with the same key are
    the same to a respondent (seda validate refuses them on two choices)."""
    return "".join(map(_bare, _tokens(phrase)))


def _bare(token: str) -> str:
    """A word without the Arabic clitics و "and" and ال "the": والخدمة and خدمة match الخدمة."""
    for clitic in ("و", "ال"):
        if token.startswith(clitic) and len(token) - len(clitic) >= 3:
            token = token[len(clitic) :]
    return token


def _choice_words(
    label: Mapping[str, str], keywords: Mapping[str, tuple[str, ...]], languages: Sequence[str]
) -> list[str]:
    return [
        phrase
        for language in languages
        for phrase in ([label[language]] if language in label else [])
        + list(keywords.get(language, ()))
    ]


def control_word(raw: str, channel: str) -> ControlWord | None:
    """Opt-out or opt-in when the whole reply is such a word or phrase, courtesy words aside
    ("please stop"), or on SMS only 11 or 12; else None."""
    tokens = _tokens(raw)
    start, end = 0, len(tokens)
    while start < end and tokens[start] in _COURTESY:
        start += 1
    while end > start and tokens[end - 1] in _COURTESY:
        end -= 1
    whole = "".join(tokens[start:end])
    if whole in _OPT_OUT:
        return "opt_out"
    if whole in _OPT_IN:
        return "opt_in"
    if channel == "sms":
        return words.SMS_CODES.get(normalize_digits(fold(raw)))
    return None


def vocabulary(question: Question, language: str) -> list[str]:
    """Every word or phrase that answers `question` in `language`, as written (for grammars)."""
    if question.type in NUMERIC:
        low, high = _bounds(question)
        return [
            spelling
            for value, spellings in _SPELLINGS.get(language, {}).items()
            if (low is None or value >= low) and (high is None or value <= high)
            for spelling in spellings
        ]
    if question.type == "yes_no":
        return [*words.YES.get(language, ()), *words.NO.get(language, ())]
    if question.type == "choice":
        return list(
            dict.fromkeys(
                phrase
                for choice in question.choices
                for phrase in _choice_words(choice.label, choice.keywords, [language])
            )
        )
    return []
