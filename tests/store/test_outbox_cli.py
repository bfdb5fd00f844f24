"""`seda outbox`: list, stats, retry, replay and enable change the rows as they say."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway import outbox_cli
from gateway.store import StepWrite, Store
from tests.store.common import T0, Clock, event, session


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seda outbox")
    outbox_cli.add_arguments(parser)
    return parser.parse_args(argv)


async def run(store: Store, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The exit code and what was printed: stdout, then stderr (where errors go)."""
    code = await outbox_cli.run(parse(*argv), store)
    printed = capsys.readouterr()
    return code, printed.out + printed.err


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    clock = Clock()
    opened = await Store.open(tmp_path / "seda.db", backends={"crm": None}, clock=clock)
    secret_body = {"raw": "tel:+989121234567", "text": "خیلی بد بود"}
    for response in ("r1", "r2"):
        await opened.commit(StepWrite(session=session(response, address=response)))
    for n, response in enumerate(["r1", "r1", "r2"]):
        item = {**event(f"e{n}"), "data": secret_body}
        await opened.commit(StepWrite(events=((response, item),)))
        clock.now += timedelta(minutes=10)
    rows = await opened.list_outbox()
    await opened.mark_dead(rows[0].seq, "HTTP 400")
    await opened.mark_delivered([rows[2].seq])
    yield opened
    await opened.close()


async def test_list_shows_rows_without_bodies(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await run(store, capsys, "list")
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()] == ["dead", "pending", "delivered"]
    assert "error='HTTP 400'" in out and "key=r1" in out
    assert "9121234567" not in out and "خیلی" not in out
    code, out = await run(store, capsys, "list", "--status", "dead", "--backend", "crm")
    assert (code, len(out.splitlines())) == (0, 1)
    code, out = await run(store, capsys, "list", "--backend", "gone")
    assert (code, out) == (
        1,
        "seda: no backend named 'gone' in the configuration (configured: crm)\n",
    )
    code, out = await run(store, capsys, "list", "--limit", "2")
    assert code == 0 and len(out.splitlines()) == 3
    assert out.endswith("(the oldest 2 shown; more match: --limit, --status, --backend)\n")
    code, out = await run(store, capsys, "list", "--limit", "3")
    assert len(out.splitlines()) == 3  # all of them: no note


async def test_stats(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    await store.disable_backend("crm", "HTTP 410 Gone: receiver removed")
    code, out = await run(store, capsys, "stats")
    assert code == 0
    assert out.startswith("crm: DISABLED (HTTP 410 Gone: receiver removed), pending=1, ")
    assert out.rstrip().endswith("dead=1")


async def test_retry_moves_dead_letters_back(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = (await store.list_outbox(status="dead"))[0]
    code, out = await run(store, capsys, "retry", str(dead.seq), "999")
    assert code == 1 and "1 dead letter(s) back in the queue" in out and "1 of the given" in out
    assert await store.list_outbox(status="dead") == []
    row = (await store.list_outbox(status="pending"))[0]
    assert (row.seq, row.attempts) == (dead.seq, 0)
    code, out = await run(store, capsys, "retry", "--backend", "crm")
    assert (code, out) == (0, "0 dead letter(s) back in the queue\n")


async def test_replay_requeues_delivered_events(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await run(store, capsys, "replay", "--backend", "crm", "--response", "r1")
    assert (code, out) == (0, "0 delivered event(s) queued again for crm\n")
    code, out = await run(store, capsys, "replay", "--backend", "crm", "--response", "gone")
    assert (code, out) == (1, "seda: no response 'gone' is stored; replay by --since instead\n")
    since = (T0 + timedelta(minutes=15)).isoformat()
    code, out = await run(store, capsys, "replay", "--backend", "crm", "--since", since)
    assert (code, out) == (0, "1 delivered event(s) queued again for crm\n")
    assert [r.event_id for r in await store.list_outbox(status="pending")] == ["e1", "e2"]
    assert await store.list_outbox(status="delivered") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "--backend", "crm", "--since", "yesterday"], "not an ISO 8601 time"),
        (["replay", "--backend", "crm", "--since", "2024-05-01T09:00:00"], "needs an offset"),
        (["replay", "--backend", "nope"], "no backend named 'nope'"),
        (["enable", "nope"], "no backend named 'nope'"),
        (["list", "--limit", "0"], "--limit must be a positive number"),
        (
            ["replay", "--backend", "crm"],
            "say what to replay: --since TIME, --until TIME, --response ID, or --all",
        ),
        (["replay", "--backend", "crm", "--until", "soon"], "--until 'soon' is not an ISO 8601"),
        (["replay", "--backend", "crm", "--until", "2024-05-01T09:00"], "--until needs an offset"),
        (
            [
                "replay",
                "--backend",
                "crm",
                "--since",
                "2024-05-02T00:00Z",
                "--until",
                "2024-05-01T00:00Z",
            ],
            "--until must be later than --since",
        ),
        (["retry", "2"], "1 of the given rows are not dead letters"),
    ],
)
async def test_bad_arguments_exit_1_with_a_reason(
    store: Store, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = await outbox_cli.run(parse(*argv), store)
    printed = capsys.readouterr()
    assert code == 1 and printed.err.startswith("seda: ") and message in printed.err
    assert "seda:" not in printed.out  # stdout holds only the command's output


async def test_replay_a_range_sends_only_what_was_created_in_it(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """A receiver that lost an afternoon wants that afternoon again, not everything since."""
    await store.mark_delivered([row.seq for row in await store.list_outbox(status="pending")])
    since, until = (T0 + timedelta(minutes=5)).isoformat(), (T0 + timedelta(minutes=15)).isoformat()
    argv = ("replay", "--backend", "crm", "--since", since, "--until", until)
    code, out = await run(store, capsys, *argv)
    assert (code, out) == (0, "1 delivered event(s) queued again for crm\n")
    assert [r.event_id for r in await store.list_outbox(status="pending")] == ["e1"]
    code, out = await run(store, capsys, "replay", "--backend", "crm", "--until", since)
    assert (code, out) == (0, "0 delivered event(s) queued again for crm\n")  # e0 is dead


async def test_replay_all_sends_every_kept_event_again(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await run(store, capsys, "replay", "--backend", "crm", "--all")
    assert (code, out) == (0, "1 delivered event(s) queued again for crm\n")


async def test_enable_after_a_410(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    await store.disable_backend("crm", "HTTP 410 Gone")
    code, out = await run(store, capsys, "enable", "crm")
    assert (code, out) == (0, "crm enabled: delivery resumes\n")
    assert await store.disabled_backends() == {}
    code, out = await run(store, capsys, "enable", "crm")
    assert (code, out) == (0, "crm was not disabled\n")


def test_a_subcommand_is_required() -> None:
    with pytest.raises(SystemExit):
        parse()
    assert parse("retry", "3", "4").seqs == [3, 4]
    assert parse("list").status is None
