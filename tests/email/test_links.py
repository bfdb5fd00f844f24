"""One-click answer links: a GET never records (link scanners), a POST records once."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from tests.answer_schema import assert_valid_answer
from tests.conftest import Clock
from tests.email.conftest import (
    LINK_BASE,
    TOKENS,
    Seda,
    SedaFactory,
    plain_reply,
    reply_to,
    send,
)


async def links_of(seda: Seda, index: int) -> dict[str, str]:
    """The answer links (code -> path) of the index-th email the relay took."""
    sent = (await seda.relay.wait(index + 1))[index]
    part = sent.message.get_body(preferencelist=("html",))
    assert part is not None
    urls = re.findall(r'href="([^"]+)"', str(part.get_content()))
    paths = [urlsplit(u).path for u in urls if u.startswith(f"{LINK_BASE}/email/answer/")]
    return {path.rsplit("/", 1)[1]: path for path in paths}


async def test_a_get_only_asks_and_the_post_records(seda: Seda) -> None:
    rid = await seda.invite("mailto:nima@example.ir", "post_call_nps", "fa")
    links = await links_of(seda, 0)
    assert list(links) == [str(n) for n in range(11)]
    for method in ("GET", "HEAD", "GET"):  # a scanner, a preview, the respondent
        resp = await seda.client.request(method, links["9"])
        assert resp.status == 200
    page = await (await seda.client.get(links["9"])).text()
    assert '<html lang="fa" dir="rtl">' in page and '<form method="post">' in page
    assert "۹" in page and "پاسخ خود را تأیید کنید" in page
    assert await seda.answers(rid) == []

    resp = await seda.client.post(links["9"])
    assert resp.status == 200 and "پاسخ شما ثبت شد" in await resp.text()
    [answer] = await seda.answers(rid)
    assert_valid_answer(answer)
    token = links["9"].split("/")[3]
    assert (answer["value"], answer["raw"], answer["input_mode"]) == (9, "9", "link")
    assert (answer["provider"], answer["message_id"]) == ("link", f"link.{token}")
    assert answer["question_id"] == "nps" and answer["channel"] == "email"
    await seda.relay.wait(2)  # the next question by email


async def test_a_double_click_is_one_answer(seda: Seda) -> None:
    rid = await seda.invite("mailto:nima@example.ir", "post_call_nps", "en")
    links = await links_of(seda, 0)
    first = await seda.client.post(links["10"])
    second = await seda.client.post(links["10"])
    other = await seda.client.post(links["3"])  # the same question, another button
    assert first.status == second.status == other.status == 200
    assert "has been recorded" in await second.text()
    assert "already been answered" in await other.text()  # 3 was not recorded: not a thank-you
    assert [a["value"] for a in await seda.answers(rid)] == [10]


async def test_a_link_of_an_answered_question_records_nothing(seda: Seda) -> None:
    rid = await seda.invite("mailto:nima@example.ir", "post_call_nps", "en")
    links = await links_of(seda, 0)
    assert (await send(seda, plain_reply(rid, "9", "m@x"), [reply_to(rid)])).data == 250
    resp = await seda.client.post(links["2"])  # would answer "resolved" if it were not bound
    assert resp.status == 200 and "already been answered" in await resp.text()
    assert [a["question_id"] for a in await seda.answers(rid)] == ["nps"]


async def test_yes_no_and_choice_links(seda: Seda) -> None:
    rid = await seda.invite("mailto:hoda@example.ae", "ticket_csat", "ar")
    csat = await links_of(seda, 0)
    assert list(csat) == ["1", "2", "3", "4", "5"]
    assert (await seda.client.post(csat["4"])).status == 200
    choice = await links_of(seda, 1)
    assert list(choice) == ["speed", "knowledge", "courtesy", "outcome"]
    page = await (await seda.client.get(choice["courtesy"])).text()
    assert "حسن التعامل" in page and 'dir="rtl"' in page
    assert (await seda.client.post(choice["courtesy"])).status == 200
    answers = await seda.answers(rid)
    assert [a["value"] for a in answers] == [4, "courtesy"]
    for answer in answers:
        assert_valid_answer(answer)
    assert await seda.status(rid) == "completed"

    other = await seda.invite("mailto:omar@example.ae", "issue_resolved", "en")
    yes_no = await links_of(seda, 3)  # after the closing of the first survey
    assert list(yes_no) == ["yes", "no"]
    assert (await seda.client.post(yes_no["no"])).status == 200
    assert [a["value"] for a in await seda.answers(other)] == [False]


async def test_forged_and_malformed_links_are_404(seda: Seda) -> None:
    rid = await seda.invite("mailto:nima@example.ir", "post_call_nps", "en")
    links = await links_of(seda, 0)
    token = links["9"].split("/")[3]
    forged = token[:30] + ("a" if token[30] != "a" else "b") + token[31:]
    mail_token = TOKENS.issue(rid)  # a reply-address token is no link token
    for path in [
        f"/email/answer/{forged}/9",
        f"/email/answer/{mail_token}/9",
        f"/email/answer/{token}/11",
        f"/email/answer/{token}/yes",
        "/email/answer/not-a-token/9",
    ]:
        assert (await seda.client.get(path)).status == 404, path
        assert (await seda.client.post(path)).status == 404, path
    assert await seda.answers(rid) == []


async def test_a_link_of_a_closed_survey(seda: Seda) -> None:
    rid = await seda.invite("mailto:nima@example.ir", "post_call_nps", "en")
    links = await links_of(seda, 0)
    assert (await send(seda, plain_reply(rid, "STOP", "s@x"), [reply_to(rid)])).data == 250
    resp = await seda.client.post(links["9"])
    assert resp.status == 200 and "closed" in await resp.text()
    assert await seda.answers(rid) == []


async def test_a_link_of_an_expired_survey_says_closed_every_time(make_seda: SedaFactory) -> None:
    clock = Clock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    seda = await make_seda(clock=clock)
    rid = await seda.invite("mailto:nima@example.ir", "ticket_csat", "en")  # expiry: 7 days
    links = await links_of(seda, 0)
    clock.now += timedelta(days=8)  # expired, and the sweep has not closed it yet
    page = await seda.client.get(links["4"])
    assert page.status == 200 and "closed" in await page.text()
    assert "<form" not in await page.text()
    for _ in range(2):  # the second POST is told what the first one did: nothing recorded
        resp = await seda.client.post(links["4"])
        assert resp.status == 200 and "closed" in await resp.text()
    assert await seda.answers(rid) == []
