"""The polled Iranian providers (Kavenegar, SMS.ir, Ghasedak, Melipayamak) through the real app.

Fake provider APIs on loopback answer with the recorded envelopes under tests/data/sms/; one
row per case. Each provider is run both ways its inbox may behave: handing a message out once
(marked read) and returning it on every poll (read by offset, or not marked).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.server import GATEWAY
from sms.segments import segments
from tests.answer_schema import assert_valid_answer
from tests.sms.helpers import DATA, RECORDED, FakeProviders, answers, invite, start

RESPONDENT = "tel:+989121234567"
FOOTER = "\nلغو ۱۱"  # the default on Iranian lines
SECRETS = ("kav-test-key", "smsir-test-key", "ghasedak-test-key", "meli-test-pass")
LINES: dict[str, dict[str, Any]] = {
    "kavenegar": {"provider": "kavenegar", "number": "10004346", "api_key": "kav-test-key"},
    "smsir": {"provider": "smsir", "number": "30004505000017", "api_key": "smsir-test-key"},
    "ghasedak": {"provider": "ghasedak", "number": "210002100", "api_key": "ghasedak-test-key"},
    "melipayamak": {"provider": "melipayamak", "number": "50004001234567", "username": "seda",
                    "password": "meli-test-pass"},
}  # fmt: skip
NEW = ["smsir", "ghasedak", "melipayamak"]


def line(tmp_path: Path, provider: str, **changes: Any) -> dict[str, Any]:
    """A polled line with a spool, polled every 50 ms, backing off to 0.4 s at most."""
    spec = {**LINES[provider], "poll_interval": 0.05, "poll_max_backoff": 0.4,
            "spool": str(tmp_path / f"{provider}.spool")}  # fmt: skip
    spec.update(changes)
    return spec


def item(
    provider: str, message_id: int, text: str, sender: str = "09121234567", to: str | None = None
) -> dict[str, Any]:
    """An inbox message in the provider's own shape, made from its recorded answer."""
    if provider == "kavenegar":
        entry = json.loads((DATA / "kavenegar/receive.json").read_text("utf-8"))["entries"][0]
        return {**entry, "messageid": message_id, "message": text, "sender": sender,
                "receptor": to or entry["receptor"]}  # fmt: skip
    recorded = json.loads((DATA / RECORDED[provider]).read_text("utf-8"))
    if provider == "smsir":
        first = recorded["data"][0]
        return {**first, "receiveReturnId": message_id, "messageText": text,
                "mobile": int(sender.removeprefix("0")), "number": int(to or first["number"])}  # fmt: skip
    if provider == "ghasedak":
        first = recorded["data"]["items"][0]
        return {**first, "id": message_id, "message": text, "sender": sender,
                "lineNumber": to or first["lineNumber"]}  # fmt: skip
    first = recorded["Data"][0]
    return {**first, "MsgID": message_id, "Body": text, "SenderNumber": sender,
            "RecipientNumber": to or first["RecipientNumber"]}  # fmt: skip


def sent_text(provider: str, record: dict[str, Any]) -> str:
    """Check what a provider's send API received; returns the message text."""
    body, headers, path = record["body"], record["headers"], record["path"]
    if provider == "kavenegar":
        assert path == "/v1/kav-test-key/sms/send.json" and body["localid"]
        assert (body["receptor"], body["sender"]) == ("09121234567", "10004346")
        text: str = body["message"]
    elif provider == "smsir":
        assert path == "/v1/send/bulk" and headers["X-API-KEY"] == "smsir-test-key"
        assert body["lineNumber"] == 30004505000017 and body["mobiles"] == ["09121234567"]
        text = body["messageText"]
    elif provider == "ghasedak":
        assert path == "/SendSingleSMS" and headers["ApiKey"] == "ghasedak-test-key"
        assert (body["lineNumber"], body["receptor"]) == ("210002100", "09121234567")
        assert body["clientReferenceId"] and body["udh"] is False
        text = body["message"]
    else:
        assert path == "/api/SendSMS/SendSMS"
        assert (body["username"], body["password"]) == ("seda", "meli-test-pass")
        assert (body["to"], body["from"]) == ("09121234567", "50004001234567")
        text = body["text"]
    assert text.endswith(FOOTER)
    return text


async def wait_answers(client: Any, response_id: str, count: int) -> dict[str, Any]:
    """The response once it holds `count` answers (fails after about 4 s)."""
    for _ in range(200):
        state = await answers(client, response_id)
        if len(state["answers"]) >= count:
            return state
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} answers were stored")


async def more_polls(fake: FakeProviders, count: int) -> None:
    """Wait until the line has polled `count` more times."""
    target = len(fake.polls) + count
    for _ in range(200):
        if len(fake.polls) >= target:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the line stopped polling")


KEEPS = [(p, False) for p in LINES] + [(p, True) for p in NEW]


@pytest.mark.parametrize(
    ("provider", "keeps_read"), KEEPS, ids=[f"{p}-{'keeps' if k else 'marks'}" for p, k in KEEPS]
)
async def test_reply_is_stored_once_and_answered_once(
    provider: str, keeps_read: bool, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO)
    client, fake = await start(
        tmp_path, aiohttp_client, aiohttp_server, {"l1": line(tmp_path, provider)}
    )
    fake.keeps_read = keeps_read
    invited = await invite(client, RESPONDENT, line="l1")
    first = sent_text(provider, (await fake.wait(1))[0])
    assert first.startswith("از صفر تا ده")

    fake.inbox.append(item(provider, 26901234, "۸"))
    state = await wait_answers(client, invited["response_id"], 1)
    answer = state["answers"][0]
    assert (answer["value"], answer["message_id"], answer["provider"]) == (8, "26901234", provider)
    assert_valid_answer(answer)
    assert sent_text(provider, (await fake.wait(2))[1]).startswith("آیا مشکل")

    await more_polls(fake, 6)  # with keeps_read the same message came back on each of them
    assert len((await answers(client, invited["response_id"]))["answers"]) == 1
    handed = [r for r in caplog.records if r.name == "seda.sms" and r.message == "sms received"]
    assert len(handed) == 1  # skipped by its id here, not only refused by the core
    assert len(fake.sent) == 2
    spool = json.loads((tmp_path / f"{provider}.spool").read_text("utf-8"))
    assert spool["pending"] == [] and "26901234" in spool["seen"]


POLL_FAILURES = [(p, s) for p in LINES for s in (401, 503)]


@pytest.mark.parametrize(
    ("provider", "status"), POLL_FAILURES, ids=[f"{p}-{s}" for p, s in POLL_FAILURES]
)
async def test_poll_failures_back_off_and_lose_nothing(
    provider: str, status: int, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO)
    client, fake = await start(
        tmp_path, aiohttp_client, aiohttp_server, {"l1": line(tmp_path, provider)}
    )
    fake.fail_polls.extend([status] * 3)
    invited = await invite(client, RESPONDENT, line="l1")
    fake.inbox.append(item(provider, 777001, "۹"))
    state = await wait_answers(client, invited["response_id"], 1)
    assert state["answers"][0]["value"] == 9

    times = [t for _, t, _ in fake.polls]
    assert times[3] - times[0] >= 0.6  # waited 0.1, 0.2 and 0.4 s: doubled after each failure
    failed = [r for r in caplog.records if r.name == "seda.sms.poll" and "retrying" in r.message]
    assert len(failed) == 3
    assert all(getattr(r, "fields", {})["status"] == status for r in failed)
    refused = "check this line's credentials" in failed[0].message
    assert refused == (status == 401)
    ours = [r for r in caplog.records if not r.name.startswith("aiohttp")]  # not the fakes'
    for record in ours:  # no key, password, number or message text in any of Seda's log lines
        logged = record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str)
        assert not any(secret in logged for secret in SECRETS)
        assert "9121234567" not in logged and "۹" not in logged


async def test_health_says_while_a_line_cannot_poll(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, fake = await start(
        tmp_path, aiohttp_client, aiohttp_server, {"l1": line(tmp_path, "kavenegar")}
    )
    fake.fail_polls.extend([401] * 1000)  # the key refused until the operator fixes it
    for _ in range(200):
        body = await (await client.get("/healthz")).json()
        if body["status"] != "ok":
            break
        await asyncio.sleep(0.02)
    assert body["status"] == "degraded", body
    polled = body["channels"]["sms"]["polled_lines"]["l1"]
    assert polled["polling"] == "failing" and polled["failures"] >= 1, polled
    datetime.fromisoformat(polled["since"])
    metrics = await (await client.get("/metrics")).text()
    assert 'seda_channel_up{channel="sms"} 0.0' in metrics

    fake.fail_polls.clear()  # fixed: the next poll works
    for _ in range(200):
        body = await (await client.get("/healthz")).json()
        if body["status"] == "ok":
            break
        await asyncio.sleep(0.02)
    assert body["channels"]["sms"] == {
        "status": "ok", "polled_lines": {"l1": {"polling": "ok", "pending": 0}}}  # fmt: skip


async def test_a_poll_round_that_fails_does_not_end_polling(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The spool cannot be written (a full disk, a folder made read-only): the round fails, the
    # loop goes on with the fetched message in memory and stores it once the spool can be written.
    spool = tmp_path / "spool" / "l1.spool"
    client, fake = await start(
        tmp_path, aiohttp_client, aiohttp_server,
        {"l1": line(tmp_path, "kavenegar", spool=str(spool))},
    )  # fmt: skip
    invited = await invite(client, RESPONDENT, line="l1")
    spool.parent.mkdir(parents=True, exist_ok=True)
    spool.with_suffix(".spool.tmp").mkdir()  # where the spool is written first: now a folder
    fake.inbox.append(item("kavenegar", 777002, "۹"))
    for _ in range(200):
        if any("poll round failed" in r.message for r in caplog.records):
            break
        await asyncio.sleep(0.02)
    body = await (await client.get("/healthz")).json()
    assert body["channels"]["sms"]["polled_lines"]["l1"]["polling"] == "failing", body
    spool.with_suffix(".spool.tmp").rmdir()
    state = await wait_answers(client, invited["response_id"], 1)
    assert state["answers"][0]["value"] == 9


SEND_FAILURES = [
    # label, provider, statuses before success, recorded refusal (status, file), dead letters
    ("smsir key refused, then 500", "smsir", [401, 500], None, 0),
    ("smsir blacklisted mobile", "smsir", [], (400, "smsir/blacklisted.json"), 1),
    ("ghasedak key refused, then 503", "ghasedak", [401, 503], None, 0),
    ("ghasedak bad request", "ghasedak", [], (400, "ghasedak/bad_request.json"), 1),
    ("melipayamak 401, then 500", "melipayamak", [401, 500], None, 0),
    ("kavenegar key, credit, sender refused, then 502", "kavenegar", [403, 418, 412, 502], None, 0),
    ("kavenegar invalid recipient", "kavenegar", [], (411, "kavenegar/send_invalid_receptor.json"), 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "provider", "fail", "refusal", "dead"), SEND_FAILURES,
    ids=[c[0] for c in SEND_FAILURES],
)  # fmt: skip
async def test_send_failures(
    label: str, provider: str, fail: list[int], refusal: tuple[int, str] | None, dead: int,
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
) -> None:  # fmt: skip
    # A refused key holds the line (account_hold): short here, so the retry comes at once.
    spec = {**line(tmp_path, provider), "account_hold": 0.05}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"l1": spec})
    fake.fail.extend(fail)
    if refusal is not None:
        fake.send_status[provider] = refusal
    await invite(client, RESPONDENT, line="l1")
    store = client.app[GATEWAY].store
    if dead:
        for _ in range(200):
            if (await store.dead_count())["channel.sms"]:
                break
            await asyncio.sleep(0.02)
    else:
        sent_text(provider, (await fake.wait(1))[0])  # retried after the auth error and the 5xx
        assert fake.fail == []
    assert (await store.dead_count())["channel.sms"] == dead


async def test_ghasedak_send_whose_answer_was_lost_is_not_sent_again(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, fake = await start(
        tmp_path, aiohttp_client, aiohttp_server, {"l1": line(tmp_path, "ghasedak")}
    )
    fake.fail_after_accept.append(502)  # Ghasedak took it; the answer did not come back
    await invite(client, RESPONDENT, line="l1")
    for _ in range(200):
        if fake.checks:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    key = fake.sent[0]["body"]["clientReferenceId"]
    assert fake.checks == [{"Type": "2", "Ids": key}]
    assert len(fake.sent) == 1  # found by its ClientReferenceId: no second SMS
    store = client.app[GATEWAY].store
    assert (await store.outbox_stats(datetime.now(UTC))).get("channel.sms", (0, 0.0))[0] == 0
    assert (await store.dead_count())["channel.sms"] == 0


@pytest.mark.parametrize("provider", list(LINES))
async def test_spooled_messages_survive_a_crash(
    provider: str, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """A message fetched (so perhaps marked read) before a crash is stored after the restart."""
    lines = {"l1": line(tmp_path, provider)}
    client, _ = await start(tmp_path, aiohttp_client, aiohttp_server, lines)
    invited = await invite(client, RESPONDENT, line="l1")
    await client.close()  # the process "crashed" after fetching, before storing
    pending = [{"key": "26901235", "sender": RESPONDENT, "text": "۹", "message_id": "26901235",
                "to": LINES[provider]["number"]}]  # fmt: skip
    spool = {"pending": pending, "seen": []}
    (tmp_path / f"{provider}.spool").write_text(json.dumps(spool, ensure_ascii=False), "utf-8")
    client, _ = await start(
        tmp_path, aiohttp_client, aiohttp_server, {"l1": line(tmp_path, provider)}
    )
    state = await wait_answers(client, invited["response_id"], 1)
    assert (state["answers"][0]["value"], state["answers"][0]["message_id"]) == (9, "26901235")


BURSTS = [
    # label, provider, keeps_read, newest_first
    ("smsir marks read", "smsir", False, True),
    ("melipayamak newest first", "melipayamak", True, True),
    ("melipayamak oldest first", "melipayamak", True, False),
]  # fmt: skip
INTERVAL = 0.4  # between polls in the burst test: pages read in one poll come much closer


@pytest.mark.parametrize(
    ("label", "provider", "keeps_read", "newest_first"), BURSTS, ids=[b[0] for b in BURSTS]
)
async def test_more_replies_than_a_page_are_all_stored(
    label: str, provider: str, keeps_read: bool, newest_first: bool,
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
) -> None:  # fmt: skip
    lines = {"l1": line(tmp_path, provider, page_size=2, poll_interval=INTERVAL)}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines)
    fake.keeps_read, fake.newest_first = keeps_read, newest_first
    earlier = [item(provider, 100 + i, "سلام", sender=f"0935123450{i}") for i in range(3)]
    fake.inbox[:0] = list(reversed(earlier))  # messages from before, from other people
    await more_polls(fake, 2)
    people = [f"0912123450{i}" for i in range(5)]
    invited = [await invite(client, "tel:+98" + p[1:], line="l1") for p in people]
    await fake.wait(5)
    burst = [item(provider, 500 + i, str(i + 5), sender=p) for i, p in enumerate(people)]
    fake.inbox[:0] = list(reversed(burst))  # newest first: the last reply on top
    served = len(fake.served)
    for i, response in enumerate(invited):
        state = await wait_answers(client, response["response_id"], 1)
        assert [a["value"] for a in state["answers"]] == [i + 5]
    times = [t for t, n in fake.served[served:] if n]
    together = [t for t in times if t - times[0] < INTERVAL / 2]
    assert len(together) >= 3  # the three pages of the burst were read in one poll
    await more_polls(fake, 3)
    for response in invited:
        assert len((await answers(client, response["response_id"]))["answers"]) == 1
    assert len(fake.sent) == 10  # one next prompt each, no more


async def test_polled_messages_go_to_the_line_they_were_sent_to(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """One SMS.ir account, two lines: each reply answers on its own line; others answer nothing."""
    second = line(tmp_path, "smsir", number="30004505000099", spool=str(tmp_path / "l2.spool"))
    lines = {"l1": line(tmp_path, "smsir"), "l2": second}
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, lines)
    on_second = await invite(client, RESPONDENT, line="l2")
    stranger = "tel:+989351234567"
    on_first = await invite(client, stranger, line="l1")
    await fake.wait(2)
    fake.inbox.append(item("smsir", 9001, "۷", to="30004505000099"))
    fake.inbox.append(item("smsir", 9002, "۶", sender="09351234567", to="30009999999999"))
    state = await wait_answers(client, on_second["response_id"], 1)
    assert state["answers"][0]["value"] == 7
    await more_polls(fake, 4)
    assert (await answers(client, on_first["response_id"]))["answers"] == []  # another number


@pytest.mark.parametrize("provider", NEW)
async def test_webhook_is_refused_for_a_polled_line(
    provider: str, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    client, _ = await start(
        tmp_path, aiohttp_client, aiohttp_server, {"l1": line(tmp_path, provider)}
    )
    resp = await client.post("/sms/l1", json=item(provider, 1, "۹"))
    assert resp.status == 403


async def test_whole_persian_survey_over_smsir_then_opt_out(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Three questions answered with Persian digits and words, then «۱۱» opts out."""
    client, fake = await start(
        tmp_path, aiohttp_client, aiohttp_server, {"l1": line(tmp_path, "smsir")}
    )
    invited = await invite(client, RESPONDENT, line="l1")
    await fake.wait(1)
    replies = [("۳", "متأسفیم"), ("صف تلفن خیلی طولانی بود", "آیا مشکل"), ("خیر", "از اینکه")]
    for n, (reply, next_prompt) in enumerate(replies, start=1):
        fake.inbox.append(item("smsir", 4000 + n, reply))
        await wait_answers(client, invited["response_id"], n)
        assert sent_text("smsir", (await fake.wait(n + 1))[n]).startswith(next_prompt)
    state = await answers(client, invited["response_id"])
    assert state["status"] == "completed"
    values = {a["question_id"]: a["value"] for a in state["answers"]}
    assert values == {"nps": 3, "reason": "صف تلفن خیلی طولانی بود", "resolved": False}
    for answer in state["answers"]:
        assert_valid_answer(answer)

    second = await invite(client, RESPONDENT, line="l1")
    await fake.wait(5)
    fake.inbox.append(item("smsir", 4010, "۱۱"))
    confirmation = sent_text("smsir", (await fake.wait(6))[5])
    assert confirmation.endswith(FOOTER)
    state = await answers(client, second["response_id"])
    assert state["status"] == "abandoned" and state["answers"] == []
    again = await client.post(
        "/api/v1/invitations",
        json={"survey": "post_call_nps", "respondent": RESPONDENT, "channel": "sms"},
    )
    assert again.status == 409  # opted out


@pytest.mark.parametrize("spooled", [True, False], ids=["default-spool", "spool-false"])
async def test_a_polled_line_spools_next_to_the_database_unless_told_not_to(
    spooled: bool, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """No `spool` key: fetched messages are spooled beside the database (mode 0600), since the
    provider marked them read; `spool: false` keeps none, and says so at start."""
    caplog.set_level(logging.WARNING)
    spec = {**LINES["kavenegar"], "poll_interval": 0.05}
    if not spooled:
        spec["spool"] = False
    client, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"l1": spec})
    invited = await invite(client, RESPONDENT, line="l1")
    await fake.wait(1)
    fake.inbox.append(item("kavenegar", 26901299, "۷"))
    state = await wait_answers(client, invited["response_id"], 1)
    assert state["answers"][0]["value"] == 7
    database = Path(client.app[GATEWAY].store.folder)
    spool = database / "spool" / "sms-l1.spool"
    warned = [r for r in caplog.records if r.message.startswith("no spool file")]
    if spooled:
        assert json.loads(spool.read_text("utf-8"))["seen"] == ["26901299"]
        assert spool.stat().st_mode & 0o777 == 0o600
        assert not warned
    else:
        assert not spool.exists() and not (database / "spool").exists()
        assert len(warned) == 1


@pytest.mark.parametrize("reply", ["۱۱", "لغو", "STOP"])
async def test_an_opt_out_is_confirmed_in_one_sms_on_a_one_part_line(
    reply: str, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """A line held to one SMS part (`max_segments: 1`, to keep costs down) must still confirm an
    opt-out: the fixed confirmation, footer included, fits one part. It took two in Persian and
    went to the dead letter, unsent."""
    spec = {**line(tmp_path, "smsir"), "max_segments": 1}
    _, fake = await start(tmp_path, aiohttp_client, aiohttp_server, {"l1": spec})
    fake.inbox.append(item("smsir", 4100, reply))
    confirmation = sent_text("smsir", (await fake.wait(1))[0])
    assert confirmation.endswith(FOOTER) and segments(confirmation) == 1


def test_every_fixed_confirmation_fits_one_sms_with_the_footer() -> None:
    """The same for every language's opt-out and opt-in confirmation (Persian lines send the
    «۱۲» variant), whichever of them a reply's language picks."""
    from gateway.engine import OPT_IN_NOTICE, OPT_OUT_NOTICE
    from sms.lines import IRAN_FOOTER, with_footer

    for notices in (OPT_OUT_NOTICE, OPT_IN_NOTICE):
        for key, text in notices.items():
            assert segments(with_footer(IRAN_FOOTER, text)) == 1, key
