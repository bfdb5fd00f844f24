"""One-click unsubscribe (RFC 8058): the POST opts out once, a GET never does, forgeries fail."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.conftest import read_jsonl
from tests.email.conftest import TOKENS, Seda, plain_reply, reply_to, send

ADDRESS = "mailto:sara@example.ir"
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def unsubscribe_path(seda: Seda, index: int = 0) -> str:
    """The path of the HTTPS target in the index-th email's List-Unsubscribe."""
    message = (await seda.relay.wait(index + 1))[index].message
    assert message["List-Unsubscribe-Post"] == ONE_CLICK
    found = re.search(r"<(https://[^>]+)>", message["List-Unsubscribe"])
    assert found is not None
    return urlsplit(found[1]).path


async def opted_out_events(seda: Seda, settle: float = 0.3) -> list[dict[str, Any]]:
    """The respondent.opted_out events the backend got, once the outbox has been drained."""
    await asyncio.sleep(settle)
    events = read_jsonl(seda.tmp_path / "answers.jsonl")
    return [e for e in events if e["type"] == "respondent.opted_out"]


async def reinvite_status(seda: Seda, address: str = ADDRESS) -> int:
    body = {"survey": "post_call_nps", "respondent": address, "channel": "email"}
    return (await seda.client.post("/api/v1/invitations", json=body)).status


async def test_the_post_opts_out_once_and_sends_nothing(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS, "post_call_nps", "fa")
    path = await unsubscribe_path(seda)
    first = await seda.client.post(path, data=ONE_CLICK, headers=FORM)
    assert first.status == 200
    assert "اشتراک شما لغو شد" in await first.text()  # the response's language
    assert await seda.status(rid) == "abandoned"
    assert await reinvite_status(seda) == 409  # the core refuses every new survey
    again = await seda.client.post(path, data=ONE_CLICK, headers=FORM)
    assert again.status == 200  # idempotent
    [event] = await opted_out_events(seda)
    assert event["data"]["channel"] == "email" and event["data"]["provider"] == "one-click"
    assert event["data"]["response_id"] == rid
    assert len(seda.relay.sent) == 1  # the invitation only: no mail after an unsubscribe


async def test_a_multipart_post_works_too(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    path = await unsubscribe_path(seda)
    with aiohttp.MultipartWriter("form-data") as form:
        part = form.append("One-Click")
        part.set_content_disposition("form-data", name="List-Unsubscribe")
    assert (await seda.client.post(path, data=form)).status == 200
    assert await seda.status(rid) == "abandoned"


async def test_a_get_only_shows_a_button(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS, "post_call_nps", "ar")
    path = await unsubscribe_path(seda)
    for method in ("GET", "HEAD", "GET"):  # a link scanner, a preview, a person
        assert (await seda.client.request(method, path)).status == 200
    page = await (await seda.client.get(path)).text()
    assert '<html lang="ar" dir="rtl">' in page
    assert '<form method="post">' in page and 'name="List-Unsubscribe" value="One-Click"' in page
    assert await seda.status(rid) == "open"
    assert await opted_out_events(seda) == []
    assert await reinvite_status(seda, "mailto:other@example.ir") == 201


async def test_a_post_that_is_not_one_click_changes_nothing(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    path = await unsubscribe_path(seda)
    for data in ["", "List-Unsubscribe=Yes", "unsubscribe=1"]:
        resp = await seda.client.post(path, data=data, headers=FORM)
        assert resp.status == 400, data
    resp = await seda.client.post(path, json={"List-Unsubscribe": "One-Click"})
    assert resp.status == 400
    assert await seda.status(rid) == "open"
    assert await opted_out_events(seda) == []


async def test_forged_and_foreign_tokens_are_404_and_change_nothing(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    other = await seda.invite("mailto:omid@example.ir")
    path = await unsubscribe_path(seda)
    token = path.rsplit("/", 1)[1]
    forged = token[:30] + ("a" if token[30] != "a" else "b") + token[31:]
    for bad in [
        forged,
        TOKENS.issue(rid),  # the reply-address token is no unsubscribe token
        TOKENS.issue(other, f"unsubscribe:{ADDRESS}"),  # signed for another response
        TOKENS.issue(rid, "unsubscribe:mailto:omid@example.ir"),  # for another address
        token[:-1],
        "not-a-token",
    ]:
        url = f"/email/unsubscribe/{bad}"
        assert (await seda.client.get(url)).status == 404, bad
        assert (await seda.client.post(url, data=ONE_CLICK, headers=FORM)).status == 404, bad
    assert await seda.status(rid) == "open" and await seda.status(other) == "open"
    assert await opted_out_events(seda) == []


async def test_an_old_invitation_still_unsubscribes(seda: Seda) -> None:
    old = await seda.invite(ADDRESS, "post_call_nps")
    path = await unsubscribe_path(seda, 0)
    done = await send(seda, plain_reply(old, "STOP", "stop@x"), [reply_to(old)])
    assert done.data == 250  # opted out by mail, then back in by START
    again = await send(seda, plain_reply(old, "START", "start@x"), [reply_to(old)])
    assert again.data == 250
    new = await seda.invite(ADDRESS, "issue_resolved")
    assert (await seda.client.post(path, data=ONE_CLICK, headers=FORM)).status == 200
    assert await seda.status(new) == "abandoned"  # the respondent's open survey ends
    assert await reinvite_status(seda) == 409


async def test_the_link_opts_out_again_after_a_start(seda: Seda) -> None:
    rid = await seda.invite(ADDRESS)
    path = await unsubscribe_path(seda)
    assert (await seda.client.post(path, data=ONE_CLICK, headers=FORM)).status == 200
    start = await send(seda, plain_reply(rid, "START", "start@x"), [reply_to(rid)])
    assert start.data == 250 and await reinvite_status(seda) == 201  # opted in again
    again = await seda.client.post(path, data=ONE_CLICK, headers=FORM)  # the same old link
    assert again.status == 200 and "unsubscribed" in await again.text()
    assert await reinvite_status(seda) == 409  # what the page says is true
    assert len(await opted_out_events(seda)) == 2
