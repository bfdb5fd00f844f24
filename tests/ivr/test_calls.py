"""Survey calls from SIPp, the real SIP peer: keypad, voice, hang-up, REFER, several at once.

One gateway runs for the module (conftest.py): `seda run` with three voice workers behind
Kamailio. Each test calls from its own number, so its answers are told apart in the store.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.answer_schema import assert_valid_answer
from tests.ivr.harness import Gateway, Sipp, answers_by_question, run_all, sip_request


@pytest.mark.parametrize("front", ["worker", "kamailio"])
def test_answers_by_keypad(gateway: Gateway, sipps: list[Sipp], front: str) -> None:
    caller = "+98912100" if front == "worker" else "+98912101"
    port = gateway.worker_base if front == "worker" else gateway.sip_port
    run_all(sipps, Sipp("keypad.xml", port, caller))
    events = gateway.wait_events(caller, 3)
    answers = answers_by_question(events)
    assert answers["resolved"]["value"] is True
    assert answers["resolved"]["raw"] == "1"
    assert answers["nps"]["value"] == 9
    for answer in answers.values():
        assert answer["input_mode"] == "dtmf"
        assert answer["channel"] == "ivr"
        assert answer["provider"] == "sip"
        assert answer["language"] == "ko"
        assert answer["respondent"]["addresses"] == [f"tel:{caller}1"]
        context = answer["context"]
        assert context["agent"] == "agent-7"
        assert context["queue"] == "billing"
        assert context["uui_text"] == "TIK-42"  # the hex User-to-User header, decoded
        assert context["sip_call_id"]
        assert "transcript" not in answer
    assert [e["type"] for e in events][-1] == "response.completed"


def test_answers_by_sip_info(gateway: Gateway, sipps: list[Sipp]) -> None:
    caller = "+98912110"
    run_all(sipps, Sipp("keypad_info.xml", gateway.sip_port, caller))
    answers = answers_by_question(gateway.wait_events(caller, 3))
    assert answers["resolved"]["value"] is False
    assert answers["nps"]["value"] == 10  # "1" waited for the "0"
    assert answers["nps"]["raw"] == "10"
    assert {a["input_mode"] for a in answers.values()} == {"dtmf"}


def test_a_key_sent_both_as_rfc_4733_and_sip_info_counts_once(
    gateway: Gateway, sipps: list[Sipp]
) -> None:
    caller = "+98912120"
    run_all(sipps, Sipp("keypad_both.xml", gateway.sip_port, caller))
    events = gateway.wait_events(caller, 3)
    answers = answers_by_question(events)
    assert answers["resolved"]["value"] is True
    assert answers["nps"]["raw"] == "9"
    assert answers["nps"]["attempt"] == 1, answers["nps"]  # not after "1" + "9" (19) was refused
    assert [e["type"] for e in events] == [
        "answer.recorded",
        "answer.recorded",
        "response.completed",
    ]


def test_answers_by_voice(gateway: Gateway, sipps: list[Sipp]) -> None:
    yes = Sipp("voice.xml", gateway.sip_port, "+98912200", voice="ne.ulaw.wav")
    no = Sipp("voice.xml", gateway.worker_base + 1, "+98912201", voice="aniyo.ulaw.wav")
    run_all(sipps, yes, no)
    for caller, expected in (("+98912200", True), ("+98912201", False)):
        answers = answers_by_question(gateway.wait_events(caller, 3))
        resolved = answers["resolved"]
        assert resolved["value"] is expected, resolved
        assert resolved["input_mode"] == "speech"
        assert resolved["transcript"] == resolved["raw"]
        assert resolved["transcript"] in (
            ("네", "예") if expected else ("아니요", "아니오", "아니")
        )
        assert 0.4 <= resolved["confidence"] <= 1.0
        assert resolved["context"]["agent"] == "agent-7"
        assert answers["nps"]["input_mode"] == "dtmf"
        assert answers["nps"]["value"] == 9


def test_hang_up_in_the_middle_keeps_the_answers(gateway: Gateway, sipps: list[Sipp]) -> None:
    caller = "+98912300"
    run_all(sipps, Sipp("hangup.xml", gateway.sip_port, caller))
    events = gateway.wait_events(caller, 2)
    assert [e["type"] for e in events] == ["answer.recorded", "response.abandoned"]
    assert answers_by_question(events)["resolved"]["value"] is True
    abandoned = events[1]["data"]
    assert abandoned["reason"] == "hangup"
    assert abandoned["answered"] == ["resolved"]
    assert abandoned["at_question"] == "nps"
    assert abandoned["context"]["queue"] == "billing"


@pytest.mark.parametrize("front", ["worker", "kamailio"])
def test_refer_is_refused_and_nothing_is_dialled(
    gateway: Gateway, sipps: list[Sipp], front: str
) -> None:
    caller = "+98912400" if front == "worker" else "+98912401"
    port = gateway.worker_base + 2 if front == "worker" else gateway.sip_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as premium:
        premium.bind(("127.0.0.1", 0))  # where the REFER asks the gateway to call
        premium.settimeout(0.5)
        target = f"127.0.0.1:{premium.getsockname()[1]}"
        run_all(sipps, Sipp("refer.xml", port, caller, keys={"refer_target": target}))
        with pytest.raises(TimeoutError):
            premium.recv(65535)  # no INVITE ever left for the Refer-To target
    answers = answers_by_question(gateway.wait_events(caller, 3))
    assert answers["resolved"]["value"] is False  # the call went on: 2 (no), then 0
    assert answers["nps"]["value"] == 0


def test_calls_at_once_through_kamailio_over_every_worker(
    gateway: Gateway, sipps: list[Sipp]
) -> None:
    caller = "+9891250"
    calls = 10  # three workers hold twelve
    (run,) = run_all(sipps, Sipp("keypad.xml", gateway.sip_port, caller, calls, calls))
    assert run.counts() == (calls, 0)
    events = gateway.wait_events(caller, 3 * calls)
    completed = [e for e in events if e["type"] == "response.completed"]
    assert len(completed) == calls
    answers = [e["data"] for e in events if e["type"] == "answer.recorded"]
    assert len(answers) == 2 * calls
    for answer in answers:
        assert_valid_answer(answer)
    assert len({a["respondent"]["addresses"][0] for a in answers}) == calls
    workers = {a["message_id"].split("-", 1)[0] for a in answers}
    assert workers == {"w0", "w1", "w2"}  # round robin reached every worker


def test_beyond_capacity_the_caller_gets_busy_and_the_others_go_on(
    gateway: Gateway, sipps: list[Sipp]
) -> None:
    caller = "+9891260"
    run = Sipp("keypad.xml", gateway.sip_port, caller, 13, 13)  # three workers hold twelve
    sipps.append(run)
    run.start()
    assert run.wait() != 0
    assert run.counts() == (12, 1), run.output[-2000:]
    events = gateway.wait_events(caller, 36)
    assert len([e for e in events if e["type"] == "response.completed"]) == 12


def test_register_and_other_methods_are_refused(gateway: Gateway) -> None:
    assert sip_request(gateway.sip_port, "REGISTER").startswith("SIP/2.0 403")
    assert sip_request(gateway.sip_port, "MESSAGE").startswith("SIP/2.0 405")
    assert sip_request(gateway.sip_port, "SUBSCRIBE", "Event: presence\r\n").startswith(
        "SIP/2.0 405"
    )
    assert sip_request(gateway.sip_port, "OPTIONS").startswith("SIP/2.0 200")


def test_internal_api_needs_the_token(gateway: Gateway) -> None:
    url = f"http://127.0.0.1:{gateway.control_port}/ivr/v1/calls"
    body = json.dumps({"call": "x", "caller": "sip:+98912@x", "called": "5000"}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        request = urllib.request.Request(url, body, {"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        refused.value.close()
        assert refused.value.code == 401
    assert not [e for e in gateway.events() if _addressed(e, "tel:+98912")]


def _addressed(event: dict[str, Any], address: str) -> bool:
    return address in event.get("data", {}).get("respondent", {}).get("addresses", [])
