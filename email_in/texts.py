"""The few words the email channel says itself, in English, Persian and Arabic."""

from __future__ import annotations

from collections.abc import Mapping

RTL = frozenset({"fa", "ar", "ur", "ckb", "he"})

SUBJECT = {"en": "A short survey", "fa": "یک نظرسنجی کوتاه", "ar": "استطلاع قصير"}
REPLY_HINT = {
    "en": "Just reply to this email with your answer.",
    "fa": "کافی است پاسخ خود را در جواب همین ایمیل بنویسید.",
    "ar": "يكفي أن تردّ على هذه الرسالة بإجابتك.",
}
ONE_CLICK = {
    "en": "Or answer with one click:",
    "fa": "یا با یک کلیک پاسخ دهید:",
    "ar": "أو أجب بنقرة واحدة:",
}
STOP_HINT = {
    "en": "To receive no more surveys, reply STOP.",
    "fa": "اگر نمی‌خواهید نظرسنجی دریافت کنید، «لغو» را بفرستید.",
    "ar": "لإيقاف استلام الاستطلاعات، أرسل «إلغاء».",
}
YES = {"en": "Yes", "fa": "بله", "ar": "نعم"}
NO = {"en": "No", "fa": "خیر", "ar": "لا"}

PAGE_CONFIRM = {
    "en": "Confirm your answer",
    "fa": "پاسخ خود را تأیید کنید",
    "ar": "أكّد إجابتك",
}
PAGE_YOUR_ANSWER = {"en": "Your answer:", "fa": "پاسخ شما:", "ar": "إجابتك:"}
PAGE_SEND = {"en": "Send my answer", "fa": "ارسال پاسخ", "ar": "إرسال الإجابة"}
PAGE_THANKS = {
    "en": "Thank you, your answer has been recorded.",
    "fa": "سپاسگزاریم، پاسخ شما ثبت شد.",
    "ar": "شكراً لك، تم تسجيل إجابتك.",
}
PAGE_ANSWERED = {
    "en": "This question has already been answered. Thank you.",
    "fa": "به این پرسش پیش‌تر پاسخ داده شده است. سپاسگزاریم.",
    "ar": "تمت الإجابة عن هذا السؤال من قبل. شكراً لك.",
}
PAGE_CLOSED = {
    "en": "This survey is closed.",
    "fa": "این نظرسنجی بسته شده است.",
    "ar": "هذا الاستطلاع مغلق.",
}
PAGE_INVALID = {
    "en": "This link is not valid.",
    "fa": "این پیوند معتبر نیست.",
    "ar": "هذا الرابط غير صالح.",
}
PAGE_NOT_UNDERSTOOD = {
    "en": "Sorry, this answer could not be recorded. Please reply to the email instead.",
    "fa": "متأسفیم، این پاسخ ثبت نشد. لطفاً در جواب ایمیل بنویسید.",
    "ar": "عذراً، تعذّر تسجيل هذه الإجابة. يُرجى الرد على الرسالة بدلاً من ذلك.",
}
UNSUBSCRIBE_ASK = {
    "en": "Receive no more surveys?",
    "fa": "دیگر نظرسنجی دریافت نکنید؟",
    "ar": "إيقاف استلام الاستطلاعات؟",
}
UNSUBSCRIBE_BUTTON = {
    "en": "Unsubscribe",
    "fa": "لغو اشتراک",
    "ar": "إلغاء الاشتراك",
}
UNSUBSCRIBE_DONE = {
    "en": "You are unsubscribed: you will receive no more surveys from us.",
    "fa": "اشتراک شما لغو شد: دیگر از ما نظرسنجی دریافت نمی‌کنید.",
    "ar": "تم إلغاء اشتراكك: لن تصلك منا استطلاعات بعد الآن.",
}
UNSUBSCRIBE_NOT_ONE_CLICK = {
    "en": "This is not an unsubscribe request. Use the button on the page of this link.",
    "fa": "این درخواست لغو اشتراک نیست. از دکمهٔ صفحهٔ همین پیوند استفاده کنید.",
    "ar": "هذا ليس طلب إلغاء اشتراك. استخدم الزر في صفحة هذا الرابط.",
}

_DIGITS = {
    "fa": str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"),
    "ar": str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"),
}


def say(texts: Mapping[str, str], language: str) -> str:
    """The text in this language, English when there is none."""
    return texts.get(language) or texts["en"]


def direction(language: str) -> str:
    """`rtl` or `ltr` for an HTML dir attribute."""
    return "rtl" if language in RTL else "ltr"


def local_digits(text: str, language: str) -> str:
    """Digits as readers of the language write them (Persian, Arabic-Indic or ASCII)."""
    table = _DIGITS.get(language)
    return text.translate(table) if table else text
