"""Survey calls as real phones and PBXs make them (SIPp through Kamailio, three workers).

Keypad variants (RFC 4733 with another payload type, a key held long, two quick keys, SIP
INFO application/dtmf), the call's lifecycle (CANCEL while ringing, hold and resume, a
session-timer refresh, a caller who never answers), capacity (a clear answer beyond it,
nothing left behind after many short calls) and the PBX's context headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.answer_schema import assert_valid_answer
from tests.ivr import dtmf_pcap
from tests.ivr.dtmf_pcap import Key
from tests.ivr.harness import Gateway, Sipp


@pytest.fixture
def sipps() -> Iterator[list[Sipp]]:
    """SIPp runs of one test, killed in teardown whatever happened."""
    runs: list[Sipp] = []
    yield runs
    for run in runs:
        run.kill()


def _run(sipps: list[Sipp], *runs: Sipp) -> list[Sipp]:
    sipps.extend(runs)
    for run in runs:
        run.start()
    for run in runs:
        status = run.wait()
        assert status == 0, f"{run.scenario}: SIPp status {status}\n{run.output[-3000:]}"
    return list(runs)


def _answers(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for event in events:
        if event["type"] == "answer.recorded":
            assert_valid_answer(event["data"])
            found[event["data"]["question_id"]] = event["data"]
    return found


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
    _run(sipps, Sipp("keys_pcap.xml", gateway.sip_port, caller, files=files))
    answers = _answers(gateway.wait_events(caller, 3))
    assert answers["resolved"]["value"] is True
    assert answers["nps"]["raw"] == "9"


def test_a_key_held_long_is_one_key(gateway: Gateway, sipps: list[Sipp], tmp_path: Path) -> None:
    caller = "+98912710"
    files = _keys(tmp_path, [Key("1", held_ms=2000)], [Key("9", held_ms=1200)], 101)
    _run(sipps, Sipp("keys_pcap.xml", gateway.sip_port, caller, files=files))
    events = gateway.wait_events(caller, 3)
    answers = _answers(events)
    assert answers["resolved"]["value"] is True
    assert answers["nps"]["raw"] == "9"
    assert answers["nps"]["attempt"] == 1, answers["nps"]  # not "1" + "9" refused first
    assert [e["type"] for e in events][-1] == "response.completed"


def test_two_quick_keys_are_two_keys(gateway: Gateway, sipps: list[Sipp], tmp_path: Path) -> None:
    caller = "+98912720"
    quick = [Key("1", held_ms=60), Key("0", held_ms=60, gap_ms=40)]
    files = _keys(tmp_path, [Key("2", held_ms=60)], quick, 101)
    _run(sipps, Sipp("keys_pcap.xml", gateway.sip_port, caller, files=files))
    answers = _answers(gateway.wait_events(caller, 3))
    assert answers["resolved"]["value"] is False
    assert answers["nps"]["raw"] == "10"


@pytest.mark.parametrize("hold", ["sendonly", "inactive"])
def test_hold_and_resume_then_the_caller_is_heard(
    gateway: Gateway, sipps: list[Sipp], hold: str
) -> None:
    caller = f"+9891275{len(hold)}"  # pjsua replaces the call's media port at each re-INVITE
    files = {"HOLD": hold}
    _run(sipps, Sipp("hold_voice.xml", gateway.sip_port, caller, voice="ne.ulaw.wav", files=files))
    answers = _answers(gateway.wait_events(caller, 3))
    assert answers["resolved"]["input_mode"] == "speech"
    assert answers["resolved"]["value"] is True
    assert answers["nps"]["raw"] == "9"
