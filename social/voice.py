"""Voice-note answers on the chat channels: limits, decoding and recognition like a phone answer.

A voice note is recognised against the grammar of the respondent's current question (the words
that answer it, gateway.replies.vocabulary), or with the model's whole vocabulary for a text
question. What is heard goes to the gateway as an `input_mode: speech` reply with its transcript
and confidence; nothing heard is an empty reply, which the survey re-prompts like any invalid
one. A note over the limits, or in a language without a speech model, gets a polite refusal
and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from asr_models import AudioError, Heard, ModelMissing, SpeechModels, decode_audio, resample
from gateway import replies
from gateway.config import ConfigError, Problems
from gateway.flows.model import Question
from gateway.logs import fields
from social import render
from social.common import number

log = logging.getLogger("seda.voice")

RATE = 16_000  # Hz the recognizer gets (Telegram's Opus is 48 kHz)
NONE = SpeechModels({})  # in place of a speech block with a mistake (refused at once)
RECOGNITIONS = 2  # voice notes recognised at once per process (each takes a core)
Refusal = Literal["too_long", "no_model"]
REFUSALS: Mapping[Refusal, Mapping[str, str]] = {
    "too_long": {
        "en": "Sorry, your voice note is too long for us. Please send one of at most {seconds}"
        " seconds, or type or tap your answer.",
        "fa": "پیام صوتی شما بیش از حد طولانی است. لطفاً پیامی حداکثر {seconds} ثانیه‌ای"
        " بفرستید یا پاسخ را بنویسید یا انتخاب کنید.",
        "ar": "عذراً، رسالتك الصوتية طويلة جداً. يُرجى إرسال رسالة لا تتجاوز {seconds} ثانية،"
        " أو كتابة إجابتك أو اختيارها.",
        "ko": "죄송합니다. 음성 메시지가 너무 깁니다. {seconds}초 이하로 보내시거나 답을 입력해"
        " 주세요.",
    },
    "no_model": {
        "en": "Sorry, we cannot understand voice notes in this language yet. Please type or tap"
        " your answer.",
        "fa": "متأسفانه هنوز پیام صوتی به این زبان را متوجه نمی‌شویم. لطفاً پاسخ را بنویسید یا"
        " انتخاب کنید.",
        "ar": "عذراً، لا يمكننا بعد فهم الرسائل الصوتية بهذه اللغة. يُرجى كتابة إجابتك أو اختيارها.",
        "ko": "죄송합니다. 이 언어의 음성 메시지는 아직 이해할 수 없습니다. 답을 입력해 주세요.",
    },
}


class Refused(Exception):
    """The voice note is not taken; the respondent gets `refusal` and nothing is stored."""

    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal


@dataclass(frozen=True)
class VoiceLimits:
    """What a channel accepts as a voice note."""

    max_seconds: float = 60.0
    max_bytes: int = 1_048_576
    min_confidence: float = 0.0  # heard with less: treated as nothing heard


class VoiceNotes:
    """Voice notes of one channel: its limits and the speech models (loaded on first use)."""

    def __init__(self, spec: Mapping[str, Any], where: str, base: Path | None = None) -> None:
        block = spec.get("voice") or {}
        if not isinstance(block, Mapping):
            raise ConfigError(f"{where}.voice: a mapping (max_seconds, max_bytes, ...)")
        at = f"{where}.voice"
        p = Problems()  # every mistake of the block at once
        self.enabled = block.get("enabled", True) is not False
        confidence = p.value(lambda: number(block, "min_confidence", at, 0.0), 0.0)
        if confidence > 1:
            p.add(f"{at}.min_confidence: a number from 0 to 1")
        self.limits = VoiceLimits(
            max_seconds=p.value(lambda: number(block, "max_seconds", at, 60.0), 0.0) or 60.0,
            max_bytes=int(p.value(lambda: number(block, "max_bytes", at, 1_048_576), 0.0))
            or 1_048_576,
            min_confidence=confidence,
        )
        # channels.<channel>.speech, as the voice channel's: `models: {fa: folder}` and `dir`
        # (installed models, var/models by default), relative to the working directory.
        folder = base or Path.cwd()
        self.models = p.value(lambda: SpeechModels.from_config(spec.get("speech"), folder), NONE)
        p.check()
        self._slots = asyncio.Semaphore(RECOGNITIONS)

    def refuse_early(self, seconds: float | None, size: int | None) -> None:
        """Refused when the provider says the note is too long or too big (before a download)."""
        if seconds is not None and seconds > self.limits.max_seconds:
            raise Refused("too_long", "the voice note is longer than max_seconds")
        if size is not None and size > self.limits.max_bytes:
            raise Refused("too_long", "the voice note is bigger than max_bytes")

    async def hear(self, audio: bytes, question: Question, language: str) -> Heard | None:
        """What the note says as an answer to `question`: None when nothing usable was heard."""
        if len(audio) > self.limits.max_bytes:
            raise Refused("too_long", "the voice note is bigger than max_bytes")
        phrases = replies.vocabulary(question, language) or None  # none: open vocabulary
        async with self._slots:
            return await asyncio.to_thread(self._hear, audio, phrases, language)

    def _hear(self, audio: bytes, phrases: list[str] | None, language: str) -> Heard | None:
        try:
            pcm, rate = decode_audio(audio, max_seconds=self.limits.max_seconds)
        except AudioError as exc:
            if str(exc).startswith("audio longer than"):  # asr_models.decode_audio's cap
                raise Refused("too_long", "the voice note is longer than max_seconds") from None
            log.info("voice note not decodable", extra=fields(error=str(exc)[:120]))
            return None  # an empty reply: the question is asked again
        if rate > RATE:
            pcm, rate = resample(pcm, rate, RATE), RATE
        try:
            heard = self.models.recognize(language, phrases, pcm, rate)
        except ModelMissing as exc:
            log.warning("voice note in a language without a speech model", extra=fields(
                language=language, error=str(exc)[:200]))  # fmt: skip
            raise Refused("no_model", f"no speech model for {language}") from None
        if heard is None or heard.confidence < self.limits.min_confidence:
            return None
        return heard

    def refusal(self, refusal: Refusal, language: str) -> str:
        """The polite refusal in the respondent's language (else English)."""
        texts = REFUSALS[refusal]
        text = texts.get(language, texts["en"])
        return text.format(seconds=render.localized(f"{self.limits.max_seconds:g}", language))
