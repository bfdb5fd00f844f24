"""The survey engine: a pure step function, no clock and no I/O (both are passed in)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gateway import replies
from gateway.flows.model import END, Question, Survey
from gateway.model import Answer, Event, EventType, Inbound, Outbound, Respondent, iso
from gateway.session import Session

NewId = Callable[[], str]
Control = Literal["opt_out", "opt_in"]

# Confirmations a respondent gets when opting out or back in (the survey has no say in these).
# Each fits one SMS with the Iranian footer: a line held to one part must still confirm.
OPT_OUT_NOTICE: Mapping[str, str] = {
    "en": "You will get no more surveys. Reply START to opt back in.",
    "fa": "دیگر نظرسنجی نمی‌فرستیم. برای دریافت دوباره START بفرستید.",
    "fa-sms": "دیگر نظرسنجی نمی‌فرستیم. برای دریافت دوباره ۱۲ بفرستید.",
    "ar": "لن تصلك استطلاعات منا بعد الآن. للاشتراك مجددًا أرسل START.",
}
OPT_IN_NOTICE: Mapping[str, str] = {
    "en": "You will receive our surveys again.",
    "fa": "دریافت نظرسنجی‌ها دوباره فعال شد.",
    "ar": "تم تفعيل استلام الاستطلاعات مجددًا.",
}


class EngineError(ValueError):
    """The inbound event does not fit the survey (unknown language, no open question, ...)."""


@dataclass(frozen=True)
class Step:
    """What one inbound event did: the new session and what to store, send and forward."""

    session: Session | None
    answers: tuple[Answer, ...] = ()
    outbound: tuple[Outbound, ...] = ()
    events: tuple[Event, ...] = ()
    control: Control | None = None
    accepted: bool = True
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def start(
    survey: Survey,
    inbound: Inbound,
    respondent: Respondent,
    now: datetime,
    new_id: NewId,
) -> Step:
    """Open a new response and give its first prompts."""
    language = inbound.language or survey.languages[0]
    if language not in survey.languages:
        raise EngineError(f"survey {survey.id} has no language {language!r}")
    first = survey.questions[0]
    session = Session(
        response_id=new_id(),
        survey_id=survey.id,
        survey_version=survey.version,
        language=language,
        channel=inbound.channel,
        provider=inbound.provider,
        address=inbound.address,
        respondent_id=respondent.id,
        started_at=now,
        updated_at=now,
        expires_at=now + survey.expiry,
        question_id=first.id,
        context=dict(inbound.context),
        line=inbound.line,
    )
    outbound: list[Outbound] = []
    if language in survey.intro:
        outbound.append(Outbound("notice", survey.intro[language], language))
    outbound.append(prompt_for(first, language))
    return Step(session=session, outbound=tuple(outbound))


def step(
    survey: Survey,
    session: Session,
    inbound: Inbound,
    respondent: Respondent,
    now: datetime,
    new_id: NewId,
) -> Step:
    """Apply one reply or end-of-conversation to an open session."""
    if session.status != "open" or session.question_id is None:
        raise EngineError(f"response {session.response_id} is not open")
    if inbound.kind == "end":
        return abandon(survey, session, respondent, now, new_id, inbound.reason or "ended")
    control = replies.control_word(inbound.text, inbound.channel)
    if control == "opt_out":
        return opt_out(survey, session, inbound, respondent, now, new_id)
    question = survey.question(session.question_id)
    reading = replies.interpret(question, inbound.text, session.language, inbound.input_mode)
    if reading.ok:
        answer = _answer(survey, session, question, inbound, respondent, reading.value, now, new_id)
        answered = session.evolve(answers={**session.answers, question.id: reading.value})
        moved = _advance(survey, answered, question, reading.value, respondent, now, new_id)
        return Step(
            session=moved.session,
            answers=(answer,),
            outbound=moved.outbound,
            events=(_answer_event(answer), *moved.events),
        )
    if session.attempt <= question.retries:
        retry = session.evolve(attempt=session.attempt + 1, updated_at=now)
        invalid = invalid_prompt(question, session.language)
        return Step(session=retry, outbound=(invalid,), accepted=False, reason=reading.reason)
    if question.on_fail == "end":
        # The last try ends the survey: it closes with its closing words, as a finished one
        # does, not in silence (a call would hang up without a word).
        ended = abandon(survey, session, respondent, now, new_id, "no_valid_answer")
        return Step(
            session=ended.session,
            outbound=_closing(survey, session.language),
            events=ended.events,
            accepted=False,
            reason=reading.reason,
        )
    skipped = _advance(survey, session, question, None, respondent, now, new_id)
    return Step(
        session=skipped.session,
        outbound=skipped.outbound,
        events=skipped.events,
        accepted=False,
        reason=reading.reason,
    )


def remind(survey: Survey, session: Session, now: datetime) -> Step:
    """The survey's one reminder: its text, if any, then the current question again."""
    if session.status != "open" or session.question_id is None:
        raise EngineError(f"response {session.response_id} is not open")
    language = session.language
    outbound: list[Outbound] = []
    if language in survey.reminder:
        outbound.append(Outbound("notice", survey.reminder[language], language))
    outbound.append(prompt_for(survey.question(session.question_id), language))
    reminded = session.evolve(remind_at=None, reminded=True, updated_at=now)
    return Step(session=reminded, outbound=tuple(outbound))


def abandon(
    survey: Survey,
    session: Session,
    respondent: Respondent,
    now: datetime,
    new_id: NewId,
    reason: str,
) -> Step:
    """Close a response early (hang-up, expiry, opt-out); the answers so far are kept."""
    closed = session.evolve(status="abandoned", updated_at=now, expires_at=None)
    data = _response_data(survey, closed, respondent, now)
    data["reason"] = reason
    data["at_question"] = session.question_id
    event = Event(new_id(), "response.abandoned", session.response_id, now, data)
    return Step(session=closed, events=(event,))


def opt_out(
    survey: Survey | None,
    session: Session | None,
    inbound: Inbound,
    respondent: Respondent,
    now: datetime,
    new_id: NewId,
) -> Step:
    """The respondent asked for no more surveys: close any open response and say so."""
    events: list[Event] = []
    closed: Session | None = None
    if session is not None and survey is not None:
        ended = abandon(survey, session, respondent, now, new_id, "opted_out")
        closed = ended.session
        events.extend(ended.events)
    language = session.language if session else (inbound.language or guess_language(inbound.text))
    data = {
        "respondent": _respondent_json(respondent),
        "channel": inbound.channel,
        "provider": inbound.provider,
        "raw": inbound.text,
        "response_id": session.response_id if session else None,
        "received_at": iso(inbound.received_at),
    }
    order_key = session.response_id if session else None
    events.append(Event(new_id(), "respondent.opted_out", order_key, now, data))
    # The Iranian code 12 opts back in on SMS only; elsewhere START does.
    key = f"{language}-sms" if inbound.channel == "sms" else language
    text = OPT_OUT_NOTICE.get(key) or _notice(OPT_OUT_NOTICE, language)
    notice = Outbound("notice", text, language)
    return Step(session=closed, outbound=(notice,), events=tuple(events), control="opt_out")


def opt_in(inbound: Inbound, respondent: Respondent, now: datetime, new_id: NewId) -> Step:
    """The respondent asked to receive surveys again."""
    language = inbound.language or guess_language(inbound.text)
    data = {
        "respondent": _respondent_json(respondent),
        "channel": inbound.channel,
        "provider": inbound.provider,
        "raw": inbound.text,
        "received_at": iso(inbound.received_at),
    }
    event = Event(new_id(), "respondent.opted_in", None, now, data)
    notice = Outbound("notice", _notice(OPT_IN_NOTICE, language), language)
    return Step(session=None, outbound=(notice,), events=(event,), control="opt_in")


def prompt_for(question: Question, language: str) -> Outbound:
    """The prompt of a question, with what a channel needs to render buttons or keys."""
    return Outbound(
        "prompt",
        question.prompt[language],
        language,
        question_id=question.id,
        question_type=question.type,
        audio=question.audio.get(language),
        choices=_choices(question, language),
    )


def invalid_prompt(question: Question, language: str) -> Outbound:
    """The invalid-reply prompt of a question (the loader merges in the survey-wide one)."""
    return Outbound(
        "invalid",
        question.invalid.get(language, ""),
        language,
        question_id=question.id,
        question_type=question.type,
        choices=_choices(question, language),
    )


def condition_env(session: Session, value: object) -> dict[str, object]:
    """The names a `next` condition may use."""
    env: dict[str, object] = {
        "value": value,
        "language": session.language,
        "channel": session.channel,
    }
    env.update({f"answers.{qid}": v for qid, v in session.answers.items()})
    env.update({f"context.{key}": v for key, v in session.context.items()})
    return env


def next_question(survey: Survey, session: Session, question: Question, value: object) -> str:
    """The id of the question that follows (or END): first matching rule, else file order."""
    env = condition_env(session, value)
    for rule in question.next:
        if rule.condition is None or rule.condition.evaluate(env):
            return rule.goto
    following = survey.after(question.id)
    return following.id if following else END


def _advance(
    survey: Survey,
    session: Session,
    question: Question,
    value: object,
    respondent: Respondent,
    now: datetime,
    new_id: NewId,
) -> Step:
    target = next_question(survey, session, question, value)
    if target == END:
        done = session.evolve(status="completed", question_id=None, updated_at=now, expires_at=None)
        data = _response_data(survey, done, respondent, now)
        event = Event(new_id(), "response.completed", session.response_id, now, data)
        return Step(session=done, outbound=_closing(survey, session.language), events=(event,))
    nxt = survey.question(target)
    moved = session.evolve(question_id=nxt.id, attempt=1, updated_at=now)
    return Step(session=moved, outbound=(prompt_for(nxt, session.language),))


def _closing(survey: Survey, language: str) -> tuple[Outbound, ...]:
    """The survey's closing words in `language`, if it has them."""
    if language not in survey.closing:
        return ()
    return (Outbound("closing", survey.closing[language], language),)


def _answer(
    survey: Survey,
    session: Session,
    question: Question,
    inbound: Inbound,
    respondent: Respondent,
    value: int | bool | str | None,
    now: datetime,
    new_id: NewId,
) -> Answer:
    return Answer(
        id=new_id(),
        response_id=session.response_id,
        survey_id=survey.id,
        survey_version=session.survey_version,
        question_id=question.id,
        question_type=question.type,
        value=value,
        raw=inbound.text,
        input_mode=inbound.input_mode,
        attempt=session.attempt,
        language=session.language,
        channel=session.channel,
        provider=inbound.provider,
        respondent=respondent,
        context=dict(session.context),
        answered_at=now,
        received_at=inbound.received_at,
        transcript=inbound.transcript,
        confidence=inbound.confidence,
        message_id=inbound.message_id,
        recording=inbound.recording,
    )


def _answer_event(answer: Answer) -> Event:
    # The answer id is the idempotency key downstream, so the event carries it as its id.
    kind: EventType = "answer.recorded"
    return Event(answer.id, kind, answer.response_id, answer.answered_at, answer.to_json())


def _response_data(
    survey: Survey, session: Session, respondent: Respondent, now: datetime
) -> dict[str, Any]:
    return {
        "response_id": session.response_id,
        "survey_id": survey.id,
        "survey_version": session.survey_version,
        "language": session.language,
        "channel": session.channel,
        "provider": session.provider,
        "respondent": _respondent_json(respondent),
        "context": dict(session.context),
        "answered": sorted(session.answers),
        "started_at": iso(session.started_at),
        "ended_at": iso(now),
    }


def _respondent_json(respondent: Respondent) -> dict[str, Any]:
    return {"id": respondent.id, "addresses": list(respondent.addresses)}


def _choices(question: Question, language: str) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((c.id, c.label.get(language, c.id), c.key) for c in question.choices)


def guess_language(text: str) -> str:
    """The language a message outside any survey is written in: fa, ar or en (for a
    control word's confirmation, or the survey an unsolicited SMS starts)."""
    digits = replies.normalize_digits(text).strip()
    if digits in ("11", "12"):
        return "fa"  # the Iranian opt-out and opt-in codes
    if any(c in text for c in "پچژگکی"):
        return "fa"
    if any("\u0600" <= c <= "\u06ff" for c in text):
        return "ar" if any(c in text for c in "إأةيك") else "fa"
    return "en"


def _notice(texts: Mapping[str, str], language: str) -> str:
    return texts.get(language, texts["en"])
