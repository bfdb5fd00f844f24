"""Replies in three languages: the tables in tests/data/replies, then fold, digits, vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import replies_words
from gateway.flows.model import Choice, Question
from gateway.replies import (
    Interpretation,
    control_word,
    fold,
    interpret,
    normalize_digits,
    vocabulary,
)

DATA = Path(__file__).parent.parent / "data" / "replies"
LANGUAGES = ("en", "fa", "ar")
CASE_KEYS = {"label", "type", "raw", "expect", "reason", "min", "max", "max_length"} | {
    "choices",
    "mode",
    "channel",
    "language",
}


def _load(language: str) -> list[dict[str, Any]]:
    cases = yaml.safe_load((DATA / f"{language}.yaml").read_text(encoding="utf-8"))
    assert isinstance(cases, list)
    return cases


CASES = {language: _load(language) for language in LANGUAGES}
TABLE = [(language, case) for language in LANGUAGES for case in CASES[language]]


def _question(case: dict[str, Any]) -> Question:
    choices = tuple(
        Choice(
            id=choice["id"],
            label=choice.get("label", {}),
            key=choice.get("key"),
            keywords={lang: tuple(words) for lang, words in choice.get("keywords", {}).items()},
        )
        for choice in case.get("choices", ())
    )
    return Question(
        id="q1",
        type=case["type"],
        prompt={"en": "?"},
        minimum=case.get("min"),
        maximum=case.get("max"),
        choices=choices,
        max_length=case.get("max_length", 1000),
    )


@pytest.mark.parametrize(
    ("language", "case"), TABLE, ids=[f"{lang}: {case['label']}" for lang, case in TABLE]
)
def test_reply(language: str, case: dict[str, Any]) -> None:
    raw = case["raw"]
    assert isinstance(raw, str), "quote raw replies in the YAML"
    if case["type"] == "control":
        assert (control_word(raw, case["channel"]) or "none") == case["expect"]
        return
    result = interpret(
        _question(case), raw, case.get("language", language), case.get("mode", "text")
    )
    if case["expect"] == "invalid":
        assert not result.ok, result
        assert result.value is None
        assert result.reason
        assert case.get("reason", "") in result.reason
    else:
        assert result == Interpretation(ok=True, value=case["expect"])
        assert type(result.value) is type(case["expect"])  # True == 1, so check the type too


@pytest.mark.parametrize("language", LANGUAGES)
def test_case_files_are_well_formed(language: str) -> None:
    cases = CASES[language]
    labels = [case["label"] for case in cases]
    assert len(cases) >= 45
    assert len(set(labels)) == len(labels), "labels are test ids: keep them unique"
    for case in cases:
        assert set(case) <= CASE_KEYS, case["label"]
        assert {"label", "type", "raw", "expect"} <= set(case), case["label"]
        if case["type"] == "control":
            assert case["expect"] in ("opt_out", "opt_in", "none"), case["label"]
            assert "channel" in case, case["label"]


def test_enough_cases_in_all() -> None:
    assert len(TABLE) >= 160


# fold


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("كيك", "کیک"),  # Arabic kaf and yeh
        ("مستشفى", "مستشفی"),  # alef maksura
        ("مدرسة", "مدرسه"),  # teh marbuta
        ("أإآٱ", "اااا"),
        ("مؤسسة", "موسسه"),
        ("مسئول", "مسیول"),
        ("مُحَمَّدٌ", "محمد"),  # harakat and tanwin
        ("رحمٰن", "رحمن"),  # superscript alef
        ("عـــلی", "علی"),  # tatweel
        ("می\u200cخواهم", "می خواهم"),  # ZWNJ splits the word into its parts
        ("\u200fبله\u200e", "بله"),  # bidi marks
        ("ﻻ", "لا"),  # presentation form, by NFKC
        ("ＹＥＳ", "yes"),  # fullwidth, by NFKC
        ("STOP", "stop"),
        ("  «سلام»؟ ", "سلام"),
        ("،بله؛", "بله"),
        ("!!ok!!", "ok"),
        ("a  \t b\n c", "a b c"),
        ("don't", "dont"),
        ("خوب، بد", "خوب، بد"),  # punctuation inside is kept
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


@pytest.mark.parametrize("text", ["كيف حالك؟", "  می\u200cخواهم  ", "STOP!", "مُحَمَّد", "«ﻻ»"])
def test_fold_is_idempotent(text: str) -> None:
    assert fold(fold(text)) == fold(text)


def test_fold_makes_arabic_and_persian_spellings_equal() -> None:
    assert fold("خيلي ممنونم") == fold("خیلی ممنونم")
    assert fold("ثلاثة") == fold("ثلاثه")
    assert fold("أيوه") == fold("ايوه")


# normalize_digits


def test_normalize_digits_persian_and_arabic_indic() -> None:
    assert normalize_digits("۰۱۲۳۴۵۶۷۸۹") == "0123456789"
    assert normalize_digits("٠١٢٣٤٥٦٧٨٩") == "0123456789"


def test_normalize_digits_mixed_and_other_text_untouched() -> None:
    assert normalize_digits("1۲٣ تا") == "123 تا"
    assert normalize_digits("abc ٫ ، x") == "abc ٫ ، x"


# vocabulary


def _numeric(kind: str, low: int | None = None, high: int | None = None) -> Question:
    return Question(id="q1", type=kind, prompt={"en": "?"}, minimum=low, maximum=high)


def test_vocabulary_nps_in_persian() -> None:
    words = vocabulary(_numeric("nps", 0, 10), "fa")
    assert {"صفر", "ده", "نه", "شش", "شیش"} <= set(words)
    assert "یازده" not in words


def test_vocabulary_follows_the_scale() -> None:
    words = vocabulary(_numeric("csat", 1, 5), "ar")
    assert {"واحد", "خمسة"} <= set(words)
    assert not {"صفر", "ستة", "عشرة"} & set(words)


def test_vocabulary_scale_without_bounds_on_the_question() -> None:
    assert "seven" in vocabulary(_numeric("ces"), "en")
    assert "eight" not in vocabulary(_numeric("ces"), "en")


def test_vocabulary_compounds_up_to_a_hundred() -> None:
    assert {"twenty one", "one hundred"} <= set(vocabulary(_numeric("number"), "en"))
    assert "بیست و یک" in vocabulary(_numeric("rating", 0, 100), "fa")
    assert "واحد وعشرون" in vocabulary(_numeric("rating", 0, 100), "ar")


def test_vocabulary_yes_no_is_one_language() -> None:
    words = vocabulary(Question(id="q1", type="yes_no", prompt={}), "ar")
    assert {"نعم", "لا", "كلا"} <= set(words)
    assert "بله" not in words and "yes" not in words


@pytest.mark.parametrize("language", ["fa", "ar"])
def test_vocabulary_yes_no_has_no_latin_letters(language: str) -> None:
    # Finglish and Arabizi ("bale", "la2") are read in text, but a Persian or Arabic speech
    # model has no such words: a grammar that names them is refused or ignored.
    words = vocabulary(Question(id="q1", type="yes_no", prompt={}), language)
    assert not [word for word in words if any(char.isascii() and char.isalpha() for char in word)]
    assert interpret(Question(id="q1", type="yes_no", prompt={}), "bale", language).value is True


def test_vocabulary_choice_labels_and_keywords() -> None:
    question = Question(
        id="q1",
        type="choice",
        prompt={},
        choices=(
            Choice(id="price", label={"fa": "قیمت", "en": "Price"}, keywords={"fa": ("گران",)}),
            Choice(id="other", label={"fa": "سایر"}, keywords={"en": ("other",)}),
        ),
    )
    assert vocabulary(question, "fa") == ["قیمت", "گران", "سایر"]
    assert vocabulary(question, "en") == ["Price", "other"]


def test_vocabulary_of_text_is_empty() -> None:
    assert vocabulary(Question(id="q1", type="text", prompt={}), "fa") == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_number_spelling_reads_back(language: str) -> None:
    question = _numeric("number", 0, 100)
    spellings = replies_words.number_spellings(language)
    assert set(spellings) == set(range(101))
    assert sum(map(len, spellings.values())) == len(vocabulary(question, language))
    for value, words in spellings.items():
        for word in words:
            assert interpret(question, word, language) == Interpretation(ok=True, value=value)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_yes_no_word_reads_back(language: str) -> None:
    question = Question(id="q1", type="yes_no", prompt={})
    for word in replies_words.YES[language]:
        assert interpret(question, word, language) == Interpretation(ok=True, value=True), word
    for word in replies_words.NO[language]:
        assert interpret(question, word, language) == Interpretation(ok=True, value=False), word


def test_only_persian_nine_is_both_a_number_and_an_answer_word() -> None:
    nps = _numeric("nps", 0, 10)
    answer_words = [
        w for table in (replies_words.YES, replies_words.NO) for ws in table.values() for w in ws
    ]
    numbers = {word: interpret(nps, word, "fa") for word in answer_words}
    assert {w for w, result in numbers.items() if result.ok} == {"نه"}
    assert numbers["نه"].value == 9


# interpret, beyond the tables


def test_raw_text_is_kept_as_it_came() -> None:
    question = Question(id="q1", type="text", prompt={})
    raw = " خيلي عالي، می\u200cخواهم دوباره بیایم "
    assert interpret(question, raw, "fa").value == raw.strip()


def test_no_digit_of_any_script_breaks_a_number_question() -> None:
    # str.isdigit() is true for ❽, ፰ or 𑁕, which int() refuses: such a reply raised, so the
    # provider got a 500 and sent it again and again. Each is now read or refused.
    question = _numeric("nps", 0, 10)
    digits = [chr(code) for code in range(0x110000) if chr(code).isdigit()]
    assert len(digits) > 700
    for char in digits:
        for raw in (char, f"{char} از ۱۰", f"5 {char}"):
            result = interpret(question, raw, "fa")
            assert result.ok or result.reason, raw


def test_unknown_question_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown question type"):
        interpret(Question(id="q1", type="slider", prompt={}), "5", "en")
