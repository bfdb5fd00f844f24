"""Greetings, sign-offs and contact lines in en, fa and ar: the parts of a reply around an answer.

"Hi,", «سلام», «مرحباً،» on a line of their own open a reply; "Best regards," «با تشکر»
«مع التحية» close it; "Tel: +44 …" «تلفن: …» «جوال: …» belong to a signature. Each may carry a
name of one or two words ("Hi John,", «با تشکر، علی رضایی»), never a number or an answer word:
"Hi, yes" and «سلام، نه» are answers, not greetings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway import replies_words as words
from gateway.replies import fold

# Words are compared folded (gateway.replies.fold: case, Arabic/Persian letter forms, harakat).
_GREETINGS = (
    # en
    "hi", "hello", "hey", "hiya", "howdy", "greetings", "dear", "good morning",
    "good afternoon", "good evening", "good day",
    # fa
    "سلام", "درود", "با سلام", "با درود", "سلام علیکم", "عرض سلام", "عرض ادب", "وقت بخیر",
    "وقت به خیر", "وقتتون بخیر", "وقت شما بخیر", "روز بخیر", "روزتون بخیر", "صبح بخیر",
    "صبحتون بخیر", "ظهر بخیر", "عصر بخیر", "عصرتون بخیر", "شب بخیر", "خسته نباشید",
    "دوست عزیز", "همکار گرامی",
    # ar
    "مرحبا", "مرحبا بكم", "أهلا", "أهلا وسهلا", "أهلا بكم", "السلام عليكم",
    "السلام عليكم ورحمة الله", "السلام عليكم ورحمة الله وبركاته", "سلام عليكم", "صباح الخير",
    "صباح النور", "مساء الخير", "مساء النور", "تحية طيبة", "تحية طيبة وبعد", "تحية وبعد",
    "عزيزي", "عزيزتي", "السادة الكرام", "الإخوة الكرام", "أخي العزيز",
)  # fmt: skip
# Only after a greeting, joined by "و" or a comma: «با سلام و احترام», «سلام و عرض ادب».
_GREETING_TAILS = ("احترام", "ادب", "عرض احترام", "وبعد")
_SIGN_OFFS = (
    # en
    "thanks", "thank you", "thanks a lot", "thanks so much", "thanks again", "thanks in advance",
    "thank you so much", "thank you very much", "many thanks", "with thanks", "thx", "cheers",
    "best", "best regards", "best wishes", "kind regards", "kindest regards", "warm regards",
    "warmest regards", "with best regards", "with kind regards", "regards", "sincerely",
    "yours sincerely", "yours truly", "yours faithfully", "all the best", "respectfully",
    "take care", "br",
    # fa
    "با تشکر", "با تشکر و احترام", "با تشکر فراوان", "با سپاس", "با سپاس فراوان", "سپاس",
    "سپاسگزارم", "سپاس گزارم", "ممنون", "ممنونم", "خیلی ممنون", "متشکرم", "مرسی", "تشکر",
    "با احترام", "با تقدیم احترام", "ارادتمند", "ارادتمند شما", "قربان شما", "موفق باشید",
    "با آرزوی موفقیت",
    # ar
    "مع التحية", "مع التحيات", "مع تحياتي", "تحياتي", "مع خالص التحية", "مع خالص التحيات",
    "مع أطيب التحيات", "مع الشكر", "مع الشكر والتقدير", "شكرا", "شكرا لكم", "شكرا جزيلا",
    "وشكرا", "مع الاحترام", "مع فائق الاحترام", "مع خالص التقدير", "وتفضلوا بقبول فائق الاحترام",
    "بالتوفيق", "احترامي", "تقبلوا تحياتي", "دمتم بخير", "ودمتم",
)  # fmt: skip
# Before a name, not counted as one of its words.
_TITLES = (
    "mr", "mrs", "ms", "miss", "dr", "prof",
    "آقای", "آقا", "خانم", "جناب", "سرکار", "دکتر", "مهندس", "استاد",
    "السيد", "السيدة", "الأستاذ", "الأستاذة", "الدكتور", "الدكتورة", "د",
)  # fmt: skip
# Lower-case English words that may stand where a name does ("Hi there", "Dear Seda team").
_NAME_WORDS = frozenset({"team", "there", "all", "everyone", "sir", "madam", "folks", "guys"})
_PUNCTUATION = re.compile(r"[,،.!:;؛\-–—…~]+")
_WORD = re.compile(r"^[^\W\d_][^\W\d_'’]*(?:['’][^\W\d_]+)?$")
_LATIN = re.compile(r"[A-Za-z]")
_HARAKAT = re.compile(r"[\u064b-\u065f\u0670\u0640]")  # tanween, vowel marks, tatweel
MAX_LINE = 80

# Signature lines: a contact label with a colon or a number after it, a web address, an email
# address or a phone number alone on its line.
_CONTACT = re.compile(
    r"^(?:(?:tel|telephone|phone|ph|mobile|mob|cell|fax|e-?mail|web|website|skype|whatsapp"
    r"|تلفن|تلفن همراه|تلفن ثابت|موبایل|همراه|شماره تماس|نمابر|فکس|ایمیل|پست الکترونیک"
    r"|رایانامه|وب[\u200c ]?سایت|هاتف|الهاتف|جوال|الجوال|موبايل|الموبايل|فاكس|الفاكس"
    r"|البريد الإلكتروني|بريد إلكتروني|البريد|الموقع)\.?\s*(?:[:：]|(?=[+(\d٠-٩۰-۹]))"
    r"|[TMFEW]\s*:"
    r"|(?:www\.\S+|https?://\S+|[^\s@]+@[^\s@]+\.[^\s@]+|\+?[\d٠-٩۰-۹][\d٠-٩۰-۹ ().\-]{6,})$)",
    re.IGNORECASE,
)


def _phrases(phrases: Iterable[str]) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(fold(phrase).split()) for phrase in phrases)


def _answer_words() -> frozenset[str]:
    """Single words that answer a question or are control words: never a name."""
    tables = [*words.YES.values(), *words.NO.values(), words.OPT_OUT, words.OPT_IN]
    tables += [spellings for numbers in words.NUMBERS.values() for spellings in numbers.values()]
    return frozenset(fold(w) for table in tables for w in table if " " not in fold(w))


_GREETING = _phrases(_GREETINGS)
_GREETING_TAIL = _GREETING | _phrases(_GREETING_TAILS)
_SIGN_OFF = _phrases(_SIGN_OFFS)
_TITLE = frozenset(fold(title) for title in _TITLES)
_ANSWER_WORDS = _answer_words()
_LONGEST = max(len(p) for p in _GREETING_TAIL | _SIGN_OFF)


def is_greeting(line: str) -> bool:
    """A line that only greets: "Hi,", "Hi John,", «سلام و وقت بخیر»، «مرحباً أحمد،»."""
    return _courtesy(line, _GREETING, _GREETING_TAIL)


def is_sign_off(line: str) -> bool:
    """A line that only closes: "Thanks,", "Best regards, John", «با تشکر»، «مع التحية»."""
    return _courtesy(line, _SIGN_OFF, _SIGN_OFF)


def is_contact(line: str) -> bool:
    """A signature's contact line: "Tel: …", "Mobile +98 …", «جوال: …», a web or email address."""
    return bool(_CONTACT.match(line))


def _courtesy(
    line: str, first: frozenset[tuple[str, ...]], more: frozenset[tuple[str, ...]]
) -> bool:
    """Whether the line is one or more of these phrases, then at most a name, and punctuation."""
    if len(line) > MAX_LINE:
        return False
    raw = _PUNCTUATION.sub(" ", _HARAKAT.sub("", line).replace("\u200c", " ")).split()
    if not raw or not all(_WORD.match(word) for word in raw):
        return False  # digits, symbols, addresses: not a greeting
    folded = [fold(word) for word in raw]
    at = _phrase_at(folded, 0, first)
    if not at:
        return False
    while at < len(folded):
        step = 1 if folded[at] == "و" else 0  # "سلام و وقت بخیر"
        length = _phrase_at(folded, at + step, more)
        if not length:
            break
        at += step + length
    return _is_name(raw[at:], folded[at:])


def _phrase_at(folded: list[str], at: int, phrases: frozenset[tuple[str, ...]]) -> int:
    """The length in words of the longest phrase at `at` (0: none)."""
    for length in range(min(_LONGEST, len(folded) - at), 0, -1):
        if tuple(folded[at : at + length]) in phrases:
            return length
    return 0


def _is_name(raw: list[str], folded: list[str]) -> bool:
    """Nothing, or a name of one or two words after an optional title; no answer words."""
    while folded and folded[0] in _TITLE:
        raw, folded = raw[1:], folded[1:]
    if len(folded) > 2:
        return False
    for word, key in zip(raw, folded, strict=True):
        if key in _ANSWER_WORDS:
            return False
        if _LATIN.match(word) and not word[0].isupper() and key not in _NAME_WORDS:
            return False  # "Thanks for …", "Hi there" aside: English names are capitalised
    return True
