"""Word tables for gateway.replies: numbers, yes/no and opt-out words in en, fa and ar.

Spellings are written as people type them; gateway.replies folds them before matching,
so أربعة and اربعة, or ي and ی, need not both be listed for matching (only for grammars).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

LANGUAGES: tuple[str, ...] = ("en", "fa", "ar")

# Values 0-19, the tens and 100; compounds 21-99 come from number_spellings().
NUMBERS: Mapping[str, Mapping[int, tuple[str, ...]]] = {
    "en": {
        0: ("zero",),
        1: ("one",),
        2: ("two",),
        3: ("three",),
        4: ("four",),
        5: ("five",),
        6: ("six",),
        7: ("seven",),
        8: ("eight",),
        9: ("nine",),
        10: ("ten",),
        11: ("eleven",),
        12: ("twelve",),
        13: ("thirteen",),
        14: ("fourteen",),
        15: ("fifteen",),
        16: ("sixteen",),
        17: ("seventeen",),
        18: ("eighteen",),
        19: ("nineteen",),
        20: ("twenty",),
        30: ("thirty",),
        40: ("forty", "fourty"),
        50: ("fifty",),
        60: ("sixty",),
        70: ("seventy",),
        80: ("eighty",),
        90: ("ninety",),
        100: ("one hundred", "a hundred", "hundred"),
    },
    "fa": {
        0: ("صفر",),
        1: ("یک",),
        2: ("دو",),
        3: ("سه",),
        4: ("چهار",),
        5: ("پنج",),
        6: ("شش", "شیش"),
        7: ("هفت",),
        8: ("هشت",),
        9: ("نه",),
        10: ("ده",),
        11: ("یازده",),
        12: ("دوازده",),
        13: ("سیزده",),
        14: ("چهارده",),
        15: ("پانزده", "پونزده"),
        16: ("شانزده", "شونزده"),
        17: ("هفده", "هیفده"),
        18: ("هجده", "هیجده", "هژده"),
        19: ("نوزده",),
        20: ("بیست",),
        30: ("سی",),
        40: ("چهل",),
        50: ("پنجاه",),
        60: ("شصت",),
        70: ("هفتاد",),
        80: ("هشتاد",),
        90: ("نود",),
        100: ("صد", "یکصد", "یک صد"),
    },
    "ar": {
        0: ("صفر",),
        1: ("واحد", "واحدة", "أحد", "احد", "إحدى"),
        2: ("اثنان", "اثنين", "اتنين", "اثنتان", "اثنتين"),
        3: ("ثلاثة", "ثلاث", "تلاتة", "تلات"),
        4: ("أربعة", "اربعة", "أربع", "اربع"),
        5: ("خمسة", "خمس"),
        6: ("ستة", "ست"),
        7: ("سبعة", "سبع"),
        8: ("ثمانية", "ثمان", "ثماني", "تمانية", "تمنية"),
        9: ("تسعة", "تسع"),
        10: ("عشرة", "عشر"),
        11: ("أحد عشر", "إحدى عشرة", "حداشر", "احداشر"),
        12: ("اثنا عشر", "اثني عشر", "اثنتا عشرة", "اثنتي عشرة", "اتناشر", "اطناشر"),
        13: ("تلتاشر",),
        14: ("اربعتاشر",),
        15: ("خمستاشر",),
        16: ("ستاشر",),
        17: ("سبعتاشر",),
        18: ("تمنتاشر",),
        19: ("تسعتاشر",),
        20: ("عشرون", "عشرين"),
        30: ("ثلاثون", "ثلاثين", "تلاتين"),
        40: ("أربعون", "أربعين", "اربعين"),
        50: ("خمسون", "خمسين"),
        60: ("ستون", "ستين"),
        70: ("سبعون", "سبعين"),
        80: ("ثمانون", "ثمانين", "تمانين"),
        90: ("تسعون", "تسعين"),
        100: ("مئة", "مائة", "مية", "ميه"),
    },
}


def number_spellings(language: str) -> dict[int, tuple[str, ...]]:
    """Every spelling of 0-100 in one language, compounds included ("twenty one", "بیست و یک")."""
    table = NUMBERS[language]
    spellings = {value: list(words) for value, words in table.items()}
    for tens in range(20, 100, 10):
        for unit in range(1, 10):
            spellings[tens + unit] = [
                _compound(language, tens_word, unit_word)
                for tens_word in table[tens]
                for unit_word in table[unit]
            ]
    if language == "ar":  # 13-19: "ثلاثة عشر", "ثلاث عشرة"
        for unit in range(3, 10):
            teens = [f"{word} {ten}" for word in table[unit] for ten in ("عشر", "عشرة")]
            spellings[10 + unit] = teens + spellings[10 + unit]
    return {value: tuple(spellings[value]) for value in sorted(spellings)}


def _compound(language: str, tens_word: str, unit_word: str) -> str:
    if language == "fa":
        return f"{tens_word} و {unit_word}"
    if language == "ar":
        return f"{unit_word} و{tens_word}"
    return f"{tens_word} {unit_word}"


YES: Mapping[str, tuple[str, ...]] = {
    "en": (
        *("yes", "y", "yeah", "yea", "yep", "yup", "sure", "ok", "okay", "correct", "of course"),
        *("absolutely", "definitely", "certainly", "why not"),
    ),
    "fa": (
        *("بله", "بلی", "آره", "آری", "اره", "بعله", "چرا", "درسته", "حتما", "البته"),
        *("چرا که نه", "چرا نه", "اوهوم", "آرع", "باشه", "اوکی"),
    ),
    "ar": (
        *("نعم", "أجل", "اي", "ايوه", "أيوه", "ايوا", "صح", "اكيد", "طبعا", "بالتأكيد", "صحيح"),
        *("اوكي", "ماشي", "ليش لا", "ليه لأ", "ليه لا"),
    ),
    "ko": ("네", "예"),  # the voice tests' Korean model (DESIGN section 6)
}
NO: Mapping[str, tuple[str, ...]] = {
    "en": (
        *("no", "n", "nope", "nah", "not really", "no thanks", "not at all", "never"),
        *("of course not", "certainly not", "definitely not", "absolutely not", "dont think so"),
    ),
    "fa": ("نه", "خیر", "نخیر", "نچ", "البته که نه", "به هیچ وجه", "هرگز", "اصلا"),
    "ar": ("لا", "كلا", "لأ", "لاء", "أبدا", "مطلقا", "إطلاقا"),
    "ko": ("아니요", "아니오", "아니"),
}
# Typed in Latin letters: Finglish (Persian) and Arabizi (Arabic), from phones without a Persian
# or Arabic keyboard. Read like the words above, but never put in a speech grammar.
YES_LATIN: tuple[str, ...] = (
    *("bale", "baleh", "areh", "are", "aywa", "aiwa", "na3am", "naam", "akeed", "akid", "tab3an"),
)
NO_LATIN: tuple[str, ...] = ("na", "kheir", "kheyr", "nakheir", "la", "la2")
# Arabizi writes Arabic letters as digits (2 hamza, 3 ain, 5 kha, 6 ta, 7 ha, 8 qaf, 9 sad): a
# digit glued to Latin letters is a letter of a word ("la2" لأ, "na3am" نعم, "3adi" عادي, "7elw"
# حلو), never a number. Before these endings a digit stays a number ("9ish", "5stars", "8am").
ARABIZI_DIGITS: str = "2356789"
NUMBER_ENDINGS: tuple[str, ...] = ("ish", "st", "nd", "rd", "th", "pt", "pts", "am", "pm", "x")
# Count only as the whole reply: single letters, and words that mean something else in a
# sentence (چرا is also "why", اي also the exclamation "ای", باشه "there is", چرا که "because",
# ماشي الحال "so-so", are "are", la "the" in French and Spanish).
YES_NO_WHOLE_ONLY: frozenset[str] = frozenset(
    {"y", "n", "na", "are", "la", "چرا", "اي", "باشه", "اصلا", "ماشي"}
    | {"why not", "چرا نه", "چرا که نه", "ليش لا", "ليه لأ", "ليه لا"}
)
# Neither yes nor no, though they hold a yes/no word ("not sure", "لا أعرف"). "no problem" says
# yes to an offer ("shall we call you?") and no to a question about problems.
UNSURE: tuple[str, ...] = (
    "not sure",
    "not really sure",
    "dont know",
    "do not know",
    "no idea",
    "idk",
    "maybe",
    "no problem",
    "نمی دانم",
    "نمی دونم",
    "مطمئن نیستم",
    "شاید",
    "لا أعرف",
    "لا ادري",
    "مش عارف",
    "مش متأكد",
    "غير متأكد",
    "ربما",
    "لا مشكلة",
)

# Between two numbers, these make the second one the scale's top: "8/10", "۸ از ۱۰", "٨ من ١٠",
# "٨ على ١٠" (Gulf, Levant), "8 from 10" ("۸ از ۱۰" in English). Not before a number, they make
# the first a count: "two of the staff", "اثنين من الموظفين".
OUT_OF: tuple[str, ...] = ("/", "of", "out of", "over", "from", "از", "من", "على")
# Right after a number, these make it a count, not a score: "ten minutes", "دو ساعت", "عشر دقائق",
# "ده هزار تومان", "10%".
UNITS: tuple[str, ...] = (
    *("second", "seconds", "sec", "secs", "minute", "minutes", "min", "mins", "hour", "hours"),
    *("hr", "hrs", "day", "days", "week", "weeks", "month", "months", "year", "years", "yrs"),
    *("time", "times", "call", "calls", "people", "persons", "thousand", "million", "percent"),
    *("dollars", "bucks", "euros", "pounds", "%", "٪"),
    *("ثانیه", "دقیقه", "دیقه", "ساعت", "روز", "هفته", "ماه", "سال", "بار", "دفعه", "مرتبه"),
    *("نفر", "تومان", "تومن", "ریال", "هزار", "میلیون", "درصد"),
    *("ثانية", "ثواني", "دقيقة", "دقائق", "دقايق", "ساعة", "ساعات", "يوم", "أيام", "ايام"),
    *("أسبوع", "اسبوع", "أسابيع", "شهر", "أشهر", "شهور", "سنة", "سنوات", "سنين", "مرة", "مرات"),
    *("شخص", "أشخاص", "ألف", "آلاف", "مليون", "ريال", "درهم", "دينار", "جنيه", "ليرة"),
    *("بالمية", "بالمئة", "بالمائة"),
    # Who or what was counted in a call centre: "two agents were rude", «۲ اپراتور», «٣ مكالمات».
    *("agent", "agents", "operator", "operators", "rep", "reps", "representative"),
    *("representatives", "person", "employee", "employees", "attempts", "tries", "transfers"),
    *("اپراتور", "کارشناس", "کارمند", "تماس"),
    *("موظف", "موظفين", "موظفون", "مكالمة", "مكالمات", "اتصال", "اتصالات", "محاولات"),
)
# «تا» counts in Persian: «دو تا اپراتور» "two operators". Before a word of UNITS the number is a
# count; alone or before a score word it is a score («ده تا میدم», «۵ تا ستاره»).
COUNTER: tuple[str, ...] = ("تا",)
# Number words that are also something else: "a" (یک), "no" (نه), "someone" (one, واحد, أحد).
# In a sentence they count only beside a score word, before "out of" and a number, or before
# another number (then the reply is ambiguous): "یک مشکل داشتم" is "I had a problem", not 1.
ALSO_NOT_A_NUMBER: tuple[str, ...] = ("one", "یک", "نه", "واحد", "واحدة", "أحد", "احد", "إحدى")
SCORE_WORDS: tuple[str, ...] = (
    *("star", "stars", "point", "points", "mark", "marks"),
    *("ستاره", "امتیاز", "نمره", "میدم", "میدهم", "میدیم", "بدم", "تا"),
    *("نجمة", "نجوم", "نجمات", "درجة", "درجات", "نقطة", "نقاط", "علامة"),
)
NEGATIVE: tuple[str, ...] = ("minus", "negative", "منفی", "سالب", "ناقص")
# Right after a number, these make it a fraction, which no scale takes: "هفت و نیم" is not 7.
# A fraction character ("7½") is read as "and a half".
AND_A_HALF: tuple[str, ...] = ("and a half", "and half", "و نیم", "و نصف", "و نص")

# Messaging apps answer with symbols: a run of stars is a rating ("⭐⭐⭐⭐" is 4 on a scale),
# and a thumb or a check mark is yes or no. They count only where no word or digit does.
STARS: str = "⭐★🌟"  # ⭐ ★ 🌟
YES_SYMBOLS: str = "👍✅✔☑👌"  # 👍 ✅ ✔ ☑ 👌
NO_SYMBOLS: str = "👎❌✖❎"  # 👎 ❌ ✖ ❎

# Opt-out words and phrases: the whole reply, with "please" or "thanks" around it (COURTESY).
OPT_OUT: tuple[str, ...] = (
    *("stop", "stopall", "unsubscribe", "unsub", "cancel", "end", "quit", "opt out", "remove me"),
    *("stop it", "stop sending", "stop sending me", "stop sending messages"),
    *("stop sending me messages", "stop texting", "stop texting me", "stop messaging"),
    *("stop messaging me", "dont text me", "do not text me", "dont message me"),
    *("do not message me", "dont contact me", "do not contact me", "no more messages"),
    *("لغو", "لغو 11", "توقف", "انصراف", "laghv", "لغو عضویت", "لغو اشتراک", "انصراف از عضویت"),
    *("ارسال نکنید", "ارسال نکن", "پیام ندهید", "پیام ندید", "پیام نده", "پیام نفرستید"),
    *("پیام نفرست", "پیامک ندهید", "پیامک ندید", "پیامک نده", "پیامک نفرستید", "پیامک نفرست"),
    *("إلغاء", "الغاء", "الغا", "ايقاف", "إيقاف", "إلغاء الاشتراك", "أوقف", "اوقفوا", "وقف"),
    *("وقف الرسائل", "إيقاف الرسائل", "لا ترسل", "لا ترسلوا", "لا ترسل رسائل"),
    *("لا ترسلوا رسائل", "لا تراسلني", "لا تراسلوني", "بطلوا رسائل", "بطلوا رسايل"),
    *("ستوب", "استوب"),
)
# Single words that do not change what a control word says: "please stop", "لطفا لغو", "الغاء رجاء".
COURTESY: tuple[str, ...] = (
    *("please", "pls", "plz", "thanks", "thank", "you", "thx"),
    *("لطفا", "خواهشا", "ممنون", "ممنونم", "مرسی", "متشکرم", "دیگه", "دیگر"),
    *("رجاء", "رجاءا", "شكرا", "أرجو"),
)
OPT_IN: tuple[str, ...] = ("start", "unstop")
# Iranian informational SMS lines: 11 opts out, 12 opts in again (DESIGN.md section 5).
SMS_CODES: Mapping[str, Literal["opt_out", "opt_in"]] = {"11": "opt_out", "12": "opt_in"}
