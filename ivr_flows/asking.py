"""What a call asks: each prompt's WAV (recorded or spoken), made ahead of the first call, and
what answers each question (keys, digits, the phrases the recogniser listens for)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Iterable
from pathlib import Path

from gateway import replies
from gateway.flows.model import SCALES, Question, Survey
from gateway.logs import fields
from gateway.model import Outbound
from ivr_flows.prompts import PromptCache, PromptError
from ivr_flows.turns import Expect, max_digits_for

log = logging.getLogger("seda.ivr")


async def warm(prompts: PromptCache, surveys: Iterable[Survey]) -> None:
    """Make every prompt's WAV ahead of the first call (one at a time, in the background),
    then check every recorded prompt."""
    surveys = list(surveys)
    for survey in surveys:
        for language in survey.languages:
            texts = [survey.intro.get(language), survey.closing.get(language)]
            for question in survey.questions:
                texts += [question.prompt.get(language), question.invalid.get(language)]
            for text in texts:
                if text:
                    with contextlib.suppress(PromptError):
                        await prompts.spoken(text, language)
    await check_recorded(prompts, surveys)


async def check_recorded(prompts: PromptCache, surveys: Iterable[Survey]) -> None:
    """Convert every recorded prompt now, so an unusable file is an error at start-up,
    not a synthetic voice found at the first call."""
    for survey in surveys:
        for question in survey.questions:
            for language, audio in question.audio.items():
                try:
                    await prompts.recorded(Path(survey.source).parent / audio)
                except (PromptError, OSError) as exc:
                    reason = getattr(exc, "strerror", None) or str(exc)
                    log.error(
                        "recorded prompt unusable: the text is spoken instead",
                        extra=fields(
                            survey=survey.id,
                            question=question.id,
                            language=language,
                            reason=reason,
                        ),
                    )


async def wav(prompts: PromptCache, out: Outbound, survey: Survey) -> Path | None:
    """The WAV of a prompt: its recording, else its text spoken (also when the recording
    cannot be used); None when there is nothing to play."""
    try:
        if out.audio:
            return await prompts.recorded(Path(survey.source).parent / out.audio)
        if out.text.strip():
            return await prompts.spoken(out.text, out.language)
    except (PromptError, OSError) as exc:
        log.error("prompt could not be made", extra=fields(survey=survey.id, reason=str(exc)))
        if out.audio and out.text.strip():
            with contextlib.suppress(PromptError):
                return await prompts.spoken(out.text, out.language)
    return None


def expect(question: Question, language: str, languages: Collection[str]) -> Expect:
    """What answers a question on a call: its keys and digits, and the phrases to recognise
    when `language` is one the workers have a speech model for (`languages`)."""
    high: int | None = question.maximum
    if question.type in SCALES:
        high = SCALES[question.type][1] if question.maximum is None else question.maximum
    keys: tuple[str, ...] = ()
    if question.type == "yes_no":
        keys = ("1", "2")  # gateway.replies: 1 is yes, 2 is no
    elif question.type == "choice":
        keys = tuple(c.key for c in question.choices if c.key and c.key.isdigit())
    phrases: tuple[str, ...] | None = None
    speech = language in languages
    if question.type != "text":
        phrases = tuple(replies.vocabulary(question, language))
        speech = speech and bool(phrases)
    return Expect(
        question_id=question.id,
        type=question.type,
        language=language,
        max_digits=0 if question.type == "text" else max_digits_for(high, keys),
        high=high if question.type not in ("choice", "yes_no") else None,
        keys=keys,
        speech=speech,
        phrases=phrases,
    )
