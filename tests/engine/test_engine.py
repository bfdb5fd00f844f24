"""The pure step function: walk surveys with a frozen clock and seeded ids."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from gateway import engine
from gateway.flows.model import END, Choice, Question, Rule, Survey
from gateway.model import Inbound, Respondent
from tests.answer_schema import assert_valid_answer

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WHO = Respondent(id="r_abc", addresses=("tel:+989121234567",))


@dataclass(frozen=True)
class AtMost:
    """A tiny stand-in condition: value <= limit (the real language is tested in tests/flows)."""

    limit: int
    source: str = "value <= limit"

    def evaluate(self, env: dict[str, object]) -> bool:
        value = env.get("value")
        return isinstance(value, int) and not isinstance(value, bool) and value <= self.limit


def ids() -> engine.NewId:
    counter = itertools.count(1)
    return lambda: f"01a20000-0000-7000-8000-{next(counter):012x}"


def nps_survey() -> Survey:
    both = {"fa": "x", "en": "x"}
    return Survey(
        id="post_call_nps",
        version=3,
        languages=("fa", "en"),
        questions=(
            Question(
                id="nps",
                type="nps",
                prompt={"fa": "از صفر تا ده؟", "en": "From 0 to 10?"},
                invalid={"fa": "لطفا عددی از ۰ تا ۱۰", "en": "Please reply 0 to 10"},
                minimum=0,
                maximum=10,
                retries=1,
                next=(Rule(goto="reason", condition=AtMost(6)), Rule(goto="resolved")),
            ),
            Question(id="reason", type="text", prompt=both, invalid=both),
            Question(id="resolved", type="yes_no", prompt=both, invalid=both, on_fail="end"),
            Question(
                id="topic",
                type="choice",
                prompt=both,
                invalid=both,
                choices=(
                    Choice(id="billing", label={"fa": "صورتحساب", "en": "Billing"}, key="1"),
                    Choice(id="network", label={"fa": "شبکه", "en": "Network"}, key="2"),
                ),
                next=(Rule(goto=END),),
            ),
        ),
        expiry=timedelta(hours=24),
        closing={"fa": "سپاس", "en": "Thank you"},
    )


def reply(text: str, mode: str = "text", message_id: str | None = None) -> Inbound:
    return Inbound(
        "reply",
        "sms",
        "kavenegar",
        "tel:+989121234567",
        NOW,
        text=text,
        input_mode=mode,  # type: ignore[arg-type]
        message_id=message_id,
    )


def run(survey: Survey, replies: list[str], language: str = "fa") -> list[engine.Step]:
    new_id = ids()
    start = Inbound(
        "start", "sms", "kavenegar", "tel:+989121234567", NOW, language=language,
        context={"agent": "a7", "queue": "billing"},
    )  # fmt: skip
    steps = [engine.start(survey, start, WHO, NOW, new_id)]
    for text in replies:
        session = steps[-1].session
        assert session is not None
        steps.append(engine.step(survey, session, reply(text), WHO, NOW, new_id))
    return steps


# label, replies, expected answers {question: value}, final status, event types in order
CASES = [
    (
        "detractor in Persian digits gives a reason",
        ["۳", "صدای تماس قطع می‌شد", "بله", "۲"],
        {"nps": 3, "reason": "صدای تماس قطع می‌شد", "resolved": True, "topic": "network"},
        "completed",
    ),
    ("promoter skips the reason", ["۹", "نه", "1"], {"nps": 9, "resolved": False, "topic": "billing"}, "completed"),
    ("«نه» is nine on the scale", ["نه", "آره", "2"], {"nps": 9, "resolved": True, "topic": "network"}, "completed"),
    ("one bad reply then a good one", ["عالی", "10", "yes", "1"], {"nps": 10, "resolved": True, "topic": "billing"}, "completed"),
    ("retries used up: skip to the next rule", ["x", "y", "بله", "1"], {"resolved": True, "topic": "billing"}, "completed"),
    ("on_fail end abandons with answers kept", ["8", "?", "?", "?"], {"nps": 8}, "abandoned"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "texts", "expected", "status"), CASES, ids=[c[0] for c in CASES])
def test_walks(label: str, texts: list[str], expected: dict[str, object], status: str) -> None:
    steps = run(nps_survey(), texts)
    answers = [a for s in steps for a in s.answers]
    assert {a.question_id: a.value for a in answers} == expected
    final = steps[-1].session
    assert final is not None and final.status == status
    for answer in answers:
        assert_valid_answer(answer.to_json())
        assert answer.context == {"agent": "a7", "queue": "billing"}
    events = [e.type for s in steps for e in s.events]
    assert events.count("answer.recorded") == len(answers)
    assert events[-1] == ("response.completed" if status == "completed" else "response.abandoned")


def test_raw_is_kept_as_it_came_and_value_normalised() -> None:
    steps = run(nps_survey(), ["۹"])
    (answer,) = steps[1].answers
    assert (answer.raw, answer.value, answer.attempt) == ("۹", 9, 1)
    assert steps[1].events[0].id == answer.id  # the answer id is the idempotency key downstream


def test_invalid_reply_reprompts_and_counts_attempts() -> None:
    steps = run(nps_survey(), ["eleven-ish", "7"])
    assert [o.kind for o in steps[1].outbound] == ["invalid"]
    assert steps[1].outbound[0].text == "لطفا عددی از ۰ تا ۱۰"
    assert not steps[1].accepted and steps[1].answers == ()
    assert steps[2].answers[0].attempt == 2


def test_closing_message_and_completion_event() -> None:
    steps = run(nps_survey(), ["10", "no", "1"], language="en")
    assert [o.text for o in steps[-1].outbound] == ["Thank you"]
    completed = steps[-1].events[-1]
    assert completed.type == "response.completed"
    assert completed.data["answered"] == ["nps", "resolved", "topic"]


def test_the_last_failed_try_of_an_on_fail_end_question_closes_with_the_closing_words() -> None:
    # Not silence after the respondent's last reply: on a call, a hang-up without a word.
    steps = run(nps_survey(), ["9", "?", "?", "?"], language="en")
    assert [(o.kind, o.text) for o in steps[-1].outbound] == [("closing", "Thank you")]
    assert steps[-1].events[-1].data["reason"] == "no_valid_answer"


def test_hangup_abandons_and_keeps_answers() -> None:
    steps = run(nps_survey(), ["4"])
    session = steps[-1].session
    assert session is not None
    end = Inbound("end", "sms", "kavenegar", session.address, NOW, reason="hangup")
    step = engine.step(nps_survey(), session, end, WHO, NOW, ids())
    assert step.session is not None and step.session.status == "abandoned"
    (event,) = step.events
    assert event.type == "response.abandoned"
    assert (event.data["reason"], event.data["at_question"], event.data["answered"]) == (
        "hangup",
        "reason",
        ["nps"],
    )


@pytest.mark.parametrize("word", ["لغو", "STOP", "إلغاء", "11"])
def test_opt_out_is_an_event_not_an_answer(word: str) -> None:
    steps = run(nps_survey(), [word])
    assert steps[1].answers == ()
    assert steps[1].control == "opt_out"
    assert [e.type for e in steps[1].events] == ["response.abandoned", "respondent.opted_out"]
    assert steps[1].session is not None and steps[1].session.status == "abandoned"


def test_unknown_language_is_refused() -> None:
    start = Inbound("start", "api", "api", "api:x", NOW, language="de")
    with pytest.raises(engine.EngineError):
        engine.start(nps_survey(), start, WHO, NOW, ids())


def test_expiry_is_set_from_the_survey() -> None:
    steps = run(nps_survey(), [])
    assert steps[0].session is not None
    assert steps[0].session.expires_at == NOW + timedelta(hours=24)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("لغو", "fa"),
        ("۱۱", "fa"),
        ("إلغاء", "ar"),
        ("ايقاف", "ar"),
        ("STOP", "en"),
        ("انصراف", "fa"),
    ],
)
def test_opt_out_outside_a_survey_is_confirmed_in_the_senders_language(
    text: str, language: str
) -> None:
    inbound = Inbound("reply", "sms", "kavenegar", "tel:+989121234567", NOW, text=text)
    step = engine.opt_out(None, None, inbound, WHO, NOW, ids())
    (notice,) = step.outbound
    assert notice.language == language
    sms_text = engine.OPT_OUT_NOTICE.get(f"{language}-sms", engine.OPT_OUT_NOTICE[language])
    assert notice.text == sms_text
    assert [e.type for e in step.events] == ["respondent.opted_out"]


def test_opt_back_in_is_explained_per_channel() -> None:
    sms = Inbound("reply", "sms", "kavenegar", "tel:+989121234567", NOW, text="لغو")
    chat = Inbound("reply", "telegram", "bot", "telegram:42", NOW, text="لغو")
    by_sms = engine.opt_out(None, None, sms, WHO, NOW, ids()).outbound[0].text
    by_chat = engine.opt_out(None, None, chat, WHO, NOW, ids()).outbound[0].text
    assert "۱۲" in by_sms and "START" not in by_sms
    assert "START" in by_chat and "۱۲" not in by_chat
