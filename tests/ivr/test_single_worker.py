"""One worker on the public port (no Kamailio), taking INVITEs only from its allowed networks."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.ivr.harness import (
    Gateway,
    Sipp,
    answers_by_question,
    from_caller,
    need,
    run_all,
    sip_request,
    sip_response,
)


def one_worker(
    tmp_path_factory: pytest.TempPathFactory, name: str, **extra: object
) -> Iterator[Gateway]:
    """`seda run` with one worker and `extra` voice settings, for a module's fixture."""
    running = Gateway(tmp_path_factory.mktemp(name), workers=1)
    running.extra = extra
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`seda run` with one worker, no speech, INVITEs allowed from 10.0.0.0/8 only."""
    need("espeak-ng")
    yield from one_worker(tmp_path_factory, "ivr-lone", allow=["10.0.0.0/8"], speech={})


def test_one_worker_listens_on_the_public_port_without_kamailio(lone: Gateway) -> None:
    assert sip_request(lone.sip_port, "OPTIONS").startswith("SIP/2.0 200")
    assert not (lone.workdir / "kamailio" / "kamailio.cfg").exists()


def test_invite_from_a_network_not_allowed_is_refused(lone: Gateway) -> None:
    assert sip_request(lone.sip_port, "INVITE").startswith("SIP/2.0 403")
    assert lone.events() == []
    time.sleep(0.5)  # the worker survives the refusal (pjsua aborted it once: agent._refuse)
    assert "voice worker died" not in lone.log.read_text("utf-8", "replace")


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One worker, no speech, from loopback at most one new call per two seconds."""
    need("sipp", "espeak-ng")
    yield from one_worker(tmp_path_factory, "ivr-limited", speech={}, rate=0.5)


def test_a_rate_limited_call_is_told_when_to_retry(limited: Gateway) -> None:
    caller = Sipp("keypad.xml", limited.sip_port, "+98912860")  # takes the one token
    try:
        caller.start()
        deadline = time.monotonic() + 10
        while not [e for e in limited.events() if e["type"] == "answer.recorded"]:
            assert time.monotonic() < deadline, "the first call was not answered"
            time.sleep(0.05)
        refused = sip_response(limited.sip_port, "INVITE")
        assert refused.startswith("SIP/2.0 503 Rate Limited"), refused
        assert re.search(r"^Retry-After: *5\b", refused, re.MULTILINE | re.IGNORECASE), refused
        assert caller.wait() == 0, caller.output[-3000:]
    finally:
        caller.kill()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One worker, no speech, three calls at most (pjsua itself holds up to four)."""
    need("sipp", "espeak-ng")
    yield from one_worker(tmp_path_factory, "ivr-small", speech={}, calls_per_worker=3)


def test_a_call_beyond_a_lone_workers_capacity_is_told_when_to_retry(
    small: Gateway, sipps: list[Sipp]
) -> None:
    caller = "+9891287"  # four callers, a quarter second apart, for three places
    run = Sipp("keypad_or_busy.xml", small.sip_port, caller, calls=4, concurrent=4)
    (run,) = run_all(sipps, run)  # a 486, or a 503 without Retry-After, fails the run
    assert run.counts() == (4, 0)
    for surveyed in ("+98912871", "+98912872", "+98912873"):
        events = small.wait_events(surveyed, 3)
        assert answers_by_question(events)["nps"]["raw"] == "9"
        assert events[-1]["type"] == "response.completed", events
    refused_caller = [e for e in small.events() if from_caller(e, "+98912874")]
    assert refused_caller == []  # the fourth caller: no response opened, nothing recorded
    refused = [
        json.loads(line)
        for line in small.log.read_text("utf-8", "replace").splitlines()
        if '"call refused"' in line
    ]
    assert [(r["status"], r["reason"]) for r in refused] == [(503, "Worker Full")], refused


def test_sip_info_application_dtmf_to_a_lone_worker(small: Gateway, sipps: list[Sipp]) -> None:
    caller = "+98912880"  # no Kamailio to rewrite the INFOs: the worker reads them itself
    run_all(sipps, Sipp("keypad_info_dtmf.xml", small.sip_port, caller))  # each INFO: 200
    events = small.wait_events(caller, 3)
    answers = answers_by_question(events)
    assert (answers["resolved"]["value"], answers["resolved"]["input_mode"]) == (False, "dtmf")
    assert (answers["nps"]["raw"], answers["nps"]["attempt"]) == ("9", 1)
    assert events[-1]["type"] == "response.completed", events


def test_sip_info_application_dtmf_not_one_key_is_refused(
    small: Gateway, sipps: list[Sipp]
) -> None:
    caller = "+98912881"  # "12" gets 400 and answers nothing; then 2 and 9 as usual
    run_all(sipps, Sipp("keypad_info_dtmf_bad.xml", small.sip_port, caller))
    answers = answers_by_question(small.wait_events(caller, 3))
    assert (answers["resolved"]["value"], answers["resolved"]["attempt"]) == (False, 1)
    assert answers["nps"]["raw"] == "9"
    log = small.log.read_text("utf-8", "replace")
    assert '"info key refused"' in log and '"reason": "not one key"' in log
