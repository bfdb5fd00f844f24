"""The voice channel's pure parts: INVITE reading, settings, keypad rules, Kamailio's config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError
from ivr_flows import kamailio, sipmsg
from ivr_flows.settings import IvrSettings, allowed, parse
from ivr_flows.turns import Expect, Outcome, Prompt, Turn
from tests.ivr.harness import DATA, need

INVITES = DATA / "invites"


def _invite(name: str) -> str:
    return (INVITES / name).read_bytes().decode("utf-8")


def test_asterisk_transfer_gives_caller_number_and_context() -> None:
    invite = sipmsg.parse_invite(_invite("asterisk_transfer.sip"), ["X-Seda-Language"])
    assert invite.caller == "sip:+989121234567@10.0.0.5"  # P-Asserted-Identity first
    assert invite.called == "5000"
    assert invite.call_id == "3f2a1b0c-9d8e-7f6a-5b4c-3d2e1f0a9b8c"
    assert invite.headers["x-ticket"] == "TCK-99812"  # a folded header, joined
    assert sipmsg.address(invite.caller) == "tel:+989121234567"
    context = sipmsg.context(invite.headers, ["X-Agent", "X-Queue", "X-Ticket"], invite.call_id)
    assert context == {
        "agent": "2042",
        "queue": "billing-fa",
        "ticket": "TCK-99812",
        "diversion": "2100",
        "history_info": "2100",
        "sip_call_id": "3f2a1b0c-9d8e-7f6a-5b4c-3d2e1f0a9b8c",
    }
    assert invite.headers["x-seda-language"] == "fa"


def test_genesys_anonymous_caller_with_uui_and_compact_headers() -> None:
    invite = sipmsg.parse_invite(_invite("genesys_anonymous.sip"), ["X-Seda-Survey"])
    assert invite.called == "survey"
    assert invite.call_id == "a84b4c76e66710@pc33.genesys.example"  # compact "i:"
    assert sipmsg.address(invite.caller) is None  # withheld: the call gets its own address
    context = sipmsg.context(invite.headers, ["X-Agent"], invite.call_id)
    assert context["uui_text"] == "Seed-12345"  # 00 discriminator, then the text
    assert context["uui"].startswith("00536565642d")
    assert context["referred_by"] == "sip:agent.sara@cc.example.com"
    assert "agent" not in context
    assert invite.headers["x-seda-survey"] == "post_call_nps"


@pytest.mark.parametrize(
    ("caller", "address"),
    [
        ("sip:+98-912-123-4567@pbx", "tel:+989121234567"),  # visual separators
        ("<tel:+971501234567>", "tel:+971501234567"),
        ('"Ali" <sip:ali@Example.COM;transport=udp>', "sip:ali@example.com"),
        ("sip:anonymous@anonymous.invalid", None),
        ("sip:Restricted@pbx", None),
        ("", None),
        ("http://evil", None),
    ],
)
def test_addresses(caller: str, address: str | None) -> None:
    assert sipmsg.address(caller) == address


def _info(content_type: str, body: str) -> str:
    return (
        "INFO sip:survey@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n"
        f"CSeq: 2 INFO\r\n{content_type}\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )


@pytest.mark.parametrize(
    ("content_type", "body", "key"),
    [
        ("Content-Type: application/dtmf", "5", "5"),
        ("content-type: Application/DTMF ; charset=x", "#\r\n", "#"),  # case, params, CRLF
        ("c: application/dtmf", "b", "B"),  # compact form; A-D as RFC 4733 reports them
        ("Content-Type: application/dtmf", "12", ""),  # not one key: refused (400)
        ("Content-Type: application/dtmf", "", ""),
        ("Content-Type: application/dtmf", "Signal=5", ""),
        ("Content-Type: application/dtmf-relay", "Signal=5\r\nDuration=160", None),  # pjsua's
        ("Content-Type: application/media_control+xml", "<x/>", None),
        ("Content-Length: 0", "", None),  # no Content-Type at all
    ],
)
def test_info_application_dtmf(content_type: str, body: str, key: str | None) -> None:
    assert sipmsg.info_dtmf(_info(content_type, body)) == key


def test_hostile_headers_are_capped_and_refused() -> None:
    message = "INVITE sip:1@h SIP/2.0\r\n" + "".join(f"X-H{i}: a{i}\r\n" for i in range(100))
    invite = sipmsg.parse_invite(message)
    assert len(invite.headers) == sipmsg.MAX_HEADERS
    hostile = (
        "INVITE sip:1@h SIP/2.0\r\nX-Agent: " + "A" * 257 + "\r\nX-Queue: bil\x07ling\r\n"
        "X-Ticket: Jos\ufffd\r\nX-Store: Jos\udce9\r\nX-Call-Id: \u0645\u0631\u06a9\u0632 7\r\n"
        "User-to-User: " + "0" * 300 + "\r\nX-Ok: " + "B" * 256 + "\r\n"
    )
    invite = sipmsg.parse_invite(hostile)
    assert dict(invite.refused) == {
        "x-agent": "too long",
        "x-queue": "not text",
        "x-ticket": "not text",
        "x-store": "not text",
        "user-to-user": "too long",
    }
    assert invite.headers == {"x-call-id": "\u0645\u0631\u06a9\u0632 7", "x-ok": "B" * 256}
    assert sipmsg.uui_text("ff00;encoding=hex") == ""  # not text: only the raw hex is kept
    assert sipmsg.uui_text("zz;encoding=hex") == ""


def _spec(**over: Any) -> dict[str, Any]:
    return {"default_survey": "s", **over}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "default_survey or surveys"),
        (_spec(workers=0), "workers must be between 1 and 64"),
        (_spec(calls_per_worker=5), "calls_per_worker must be between 1 and 4"),
        (_spec(allow=["not a net"]), "allow: 'not a net' is not a network"),
        (_spec(surveys={"50 00": "s"}), "surveys"),
        (_spec(context_headers=["X Agent"]), "context_headers"),
        (_spec(end_key="5"), "end_key"),
        (_spec(max_call="forever"), "duration"),
        (_spec(language="Farsi!"), "language"),
        (
            _spec(workers=3, sip={"port": 5071}, worker_port_base=5070),
            r"ivr.worker_port_base: worker ports 5070-5072 overlap sip.port 5071",
        ),
    ],
)
def test_bad_settings_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(spec)


def test_every_bad_setting_is_said_at_once() -> None:
    """parse() said the first wrong key only: the operator met the next one after each fix."""
    spec = _spec(
        workers=0,
        context_headers=["X Agent", "X-Queue", "X:Store"],
        end_key="5",
        control={"port": 70000, "allow": ["not a net"]},
        surveys={"50 00": "s", "5000": "a"},
        recordings={"enabled": "yes", "keep_days": 0},
    )
    with pytest.raises(ConfigError) as caught:
        parse(spec)
    assert str(caught.value).split("\n") == [
        "channels.ivr.workers must be between 1 and 64",
        "channels.ivr.surveys: '50 00' must map a dialled number to a survey id",
        "channels.ivr.context_headers: 'X Agent' is not a header name",
        "channels.ivr.context_headers: 'X:Store' is not a header name",
        "channels.ivr.end_key must be '#', '*' or empty",
        "channels.ivr.recordings.enabled must be true or false",
        "channels.ivr.recordings.keep_days must be between 1 and 36500",
        "channels.ivr.control.port must be between 0 and 65535",
        "channels.ivr.control.allow: 'not a net' is not a network like 10.0.0.0/8",
    ]


def test_settings_travel_to_the_pool_unchanged() -> None:
    settings = parse(_spec(workers=3, surveys={"5000": "a"}, allow=["10.0.0.0/8"], max_call="5m"))
    again = IvrSettings.from_json(settings.to_json())
    assert again == settings
    assert again.max_call == 300
    assert settings.worker_port(2) == 5072
    assert allowed("10.1.2.3", settings.allow)
    assert not allowed("192.168.1.1", settings.allow)
    assert not allowed("not-an-ip", settings.allow)


@pytest.mark.parametrize(
    ("expect", "digits", "complete"),
    [
        (Expect("q", "nps", "fa", 2, high=10), "1", False),  # may become 10
        (Expect("q", "nps", "fa", 2, high=10), "10", True),
        (Expect("q", "nps", "fa", 2, high=10), "2", True),  # 20 is beyond the scale
        (Expect("q", "nps", "fa", 2, high=10), "0", True),
        (Expect("q", "csat", "fa", 1, high=5), "4", True),
        (Expect("q", "yes_no", "fa", 1, keys=("1", "2")), "1", True),
        (Expect("q", "choice", "fa", 2, keys=("1", "12")), "1", False),
        (Expect("q", "choice", "fa", 2, keys=("1", "12")), "3", True),  # no key: taken as is
        (Expect("q", "number", "fa", 9), "123", False),  # open-ended: # or the timeout
        (Expect("q", "nps", "fa", 2, high=10), "", False),
    ],
)
def test_when_keys_make_an_answer(expect: Expect, digits: str, complete: bool) -> None:
    assert expect.complete(digits) is complete


def test_turns_round_trip_as_json() -> None:
    expect = Expect("nps", "nps", "ko", 2, high=10, speech=True, phrases=("영", "십"))
    turn = Turn((Prompt("/p/a.wav", 1.25),), expect)
    assert Turn.from_json(turn.to_json()) == turn
    assert Turn.from_json(Turn((Prompt("/p/b.wav", 2.0, "closing"),)).to_json()).expect is None
    speech = Outcome("speech", "네", 0.93, 0.41).to_json(3)
    assert speech == {
        "seq": 3,
        "mode": "speech",
        "text": "네",
        "confidence": 0.93,
        "latency_ms": 410.0,
    }


def _front() -> kamailio.Front:
    return kamailio.Front(
        host="127.0.0.1",
        port=5060,
        workers=[("127.0.0.1", 5070), ("127.0.0.1", 5071)],
        allow=["10.0.0.0/8", "127.0.0.0/8"],
        rate=5,
    )


def test_kamailio_config_from_the_template(tmp_path: Path) -> None:
    cfg = kamailio.write(_front(), tmp_path)
    text = cfg.read_text()
    assert "listen=udp:127.0.0.1:5060" in text
    assert 'is_in_subnet("$si", "10.0.0.0/8") || is_in_subnet("$si", "127.0.0.0/8")' in text
    assert 'modparam("pike", "reqs_density_per_unit", 10)' in text
    assert "{{" not in text
    assert (tmp_path / "dispatcher.list").read_text().splitlines()[1:] == [
        "1 sip:127.0.0.1:5070 0 0",
        "1 sip:127.0.0.1:5071 0 0",
    ]


def test_kamailio_needs_a_reachable_address(tmp_path: Path) -> None:
    wildcard = kamailio.Front("0.0.0.0", 5060, [("127.0.0.1", 5070)], ["10.0.0.0/8"], 5)
    with pytest.raises(kamailio.KamailioError, match="Record-Route"):
        kamailio.write(wildcard, tmp_path)
    natted = kamailio.Front(
        "0.0.0.0", 5060, [("127.0.0.1", 5070)], ["10.0.0.0/8"], 5, public="203.0.113.9"
    )
    assert (
        "listen=udp:0.0.0.0:5060 advertise 203.0.113.9:5060"
        in kamailio.write(natted, tmp_path).read_text()
    )


def test_kamailio_accepts_the_config(tmp_path: Path) -> None:
    need("kamailio")
    cfg = kamailio.write(_front(), tmp_path)
    kamailio.Kamailio("kamailio", cfg, _front()).check()  # `kamailio -c`: raises on an error
    broken = tmp_path / "broken.cfg"
    broken.write_text(cfg.read_text().replace("request_route {", "request_route {{"))
    with pytest.raises(kamailio.KamailioError, match="rejects"):
        kamailio.Kamailio("kamailio", broken, _front()).check()
