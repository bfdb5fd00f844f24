"""What the store forgets, and when: `Store.retention`.

Seda is a gateway, not the system of record: once a backend has had an event, Seda keeps it
only for as long as the operator says.
- Delivered outbox rows (each event as sent), for `seda outbox replay`: `outbox.keep_delivered`.
- Finished responses (the session with the respondent's address and context, its answers and
  its events as sent, which carry the same answers) after `retention.responses`, counted from
  the response's last change; and only once every event of the response has been delivered: a
  pending or dead event keeps its response, so nothing a backend has not had is deleted. Open
  responses are never deleted (they expire). A response's events thus go after whichever of
  the two times is shorter.
- Delivery receipts and the provider message ids kept for de-duplication, by age, after the
  same `retention.responses`.
Each call deletes at most `limit` rows in one transaction, so replies' commits get in between.

On request (`forget`, the right to erasure), everything Seda holds about one address goes at
once: its sessions of every status, their answers, receipts and outbox rows (delivered,
pending and dead), the respondent's own events, and the de-duplication ids of its messages
(whose keys start with the address, router.dedupe_key). The opt-out stays: it is keyed by the
pseudonym, and honouring it is the reason to keep it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from gateway import jsoncodec
from gateway.store_schema import RESPONDENT_KEYS, listed, to_ts

_T = TypeVar("_T")


class Change(Protocol):
    """The store's `_change_with`: run `work` in one transaction of its writer."""

    def __call__(self, work: Callable[[sqlite3.Connection], _T]) -> Awaitable[_T]: ...


Read = Callable[[str, Iterable[Any]], Awaitable[list[sqlite3.Row]]]


@dataclass(frozen=True)
class Forgotten:
    """What `forget` deleted: the responses (by id, with their channels) and their answers."""

    responses: tuple[tuple[str, str], ...]  # (response_id, channel)
    answers: tuple[dict[str, Any], ...]
    events: int  # outbox rows
    message_ids: int


# Finished responses older than ?1 whose events have all been delivered, at most ?2, with the
# ids they list. INDEXED BY: finished sessions by age (sessions_finished) and each one's rows not
# yet delivered (outbox_undelivered, pending and dead rows only), never a walk over either table.
FINISHED = (
    "SELECT s.response_id, s.events FROM sessions AS s INDEXED BY sessions_finished"
    " WHERE s.status <> 'open' AND s.updated_at < ?1 AND NOT EXISTS"
    " (SELECT 1 FROM outbox AS o INDEXED BY outbox_undelivered"
    " WHERE o.order_key = s.response_id AND o.status <> 'delivered') LIMIT ?2"
)
# The file an answer names, if it names one (by its primary key; JSON1 reads the stored data).
ANSWER_FILE = (
    "SELECT json_extract(data, '$.channel'), json_extract(data, '$.recording') FROM answers"
    " WHERE id = ? AND json_extract(data, '$.recording') IS NOT NULL"
)
# A response's sessions row with the ids it lists (migration 6).
LISTED = "SELECT events FROM sessions WHERE response_id = ?"
# The first ?1 rows of a table inserted in time order, those older than ?2 ({table}, {column}).
OLDEST_FIRST = (
    "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY rowid LIMIT ?1)"
    " AND {column} < ?2"
)


class Retention:
    """`Store.retention`: each method is one transaction on the store's writer (`_change_with`)
    and returns how many rows (responses, for `prune_responses`) it deleted."""

    def __init__(self, read: Read, change_with: Change) -> None:
        self._read = read
        self._change_with = change_with

    async def sessions_of(self, address: str) -> list[tuple[str, str]]:
        """(response_id, channel) of every session of this address, oldest first. On the
        reader: a walk over the table (finished sessions have no index by address), which
        must not hold the write lock."""
        rows = await self._read(
            "SELECT response_id, channel FROM sessions WHERE address = ? ORDER BY rowid",
            (address,),
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    async def forget(
        self, address: str, respondent_id: str, responses: list[tuple[str, str]]
    ) -> Forgotten:
        """Delete everything held about one address (see the module): its `responses`
        (`sessions_of`, read by the caller), their rows, its message ids. The caller holds the
        address's turns on its channels (router.Gateway.erase), so no step of it adds a
        session or a message id between those reads and the transaction."""
        found = [  # on the reader too: the key does not lead with the message id
            tuple(row)
            for row in await self._read(
                "SELECT channel, provider, message_id FROM inbound_ids"
                " WHERE message_id >= ? AND message_id < ?",
                (f"{address} ", f"{address}!"),  # "!" sorts just after " "
            )
        ]
        ids = [(response_id,) for response_id, _ in responses]

        def work(conn: sqlite3.Connection) -> Forgotten:
            kept = [
                (one,) for key in ids for row in conn.execute(LISTED, key) for one in listed(row[0])
            ]
            answers = [
                jsoncodec.loads(row[0])
                for key in kept
                for row in conn.execute("SELECT data FROM answers WHERE id = ?", key)
            ]
            conn.executemany("DELETE FROM answers WHERE id = ?", kept)
            conn.executemany("DELETE FROM deliveries WHERE response_id = ?", ids)
            # Whole queues (every row of an order key) go: no head is left to promote. The rows
            # a session lists, then any of its order key not yet delivered, then the
            # respondent's own events.
            events = sum(
                conn.execute("DELETE FROM outbox WHERE event_id = ?", key).rowcount for key in kept
            )
            events += sum(
                conn.execute(
                    "DELETE FROM outbox WHERE order_key = ? AND status <> 'delivered'", key
                ).rowcount
                for key in ids
            )
            events += conn.execute(
                f"DELETE FROM outbox WHERE order_key = ? AND {RESPONDENT_KEYS}", (respondent_id,)
            ).rowcount
            conn.executemany("DELETE FROM sessions WHERE response_id = ?", ids)
            message_ids = sum(
                conn.execute(
                    "DELETE FROM inbound_ids WHERE channel = ? AND provider = ? AND message_id = ?",
                    key,
                ).rowcount
                for key in found
            )
            return Forgotten(tuple(responses), tuple(answers), events, message_ids)

        return await self._change_with(work)

    async def prune_delivered(self, before: datetime, limit: int = 5000) -> int:
        """Delete up to `limit` outbox rows delivered before `before`. Pending and dead rows
        are never deleted."""
        return await self._change_with(
            lambda conn: (
                conn.execute(
                    # INDEXED BY: the planner would rather walk every delivered row by status.
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox INDEXED BY"
                    " outbox_delivered WHERE status = 'delivered' AND delivered_at < ? LIMIT ?)",
                    (to_ts(before), limit),
                ).rowcount
            )
        )

    async def prune_responses(
        self, before: datetime, limit: int = 1000, files: list[dict[str, Any]] | None = None
    ) -> int:
        """Delete up to `limit` finished responses last changed before `before` whose events
        have all been delivered: their sessions, answers and delivered events. Answers that
        name a file a channel keeps (a call's `recording`) are added to `files`, as
        `{"channel", "recording"}`, for the channel to delete (Gateway.file_keepers)."""

        def work(conn: sqlite3.Connection) -> tuple[int, list[dict[str, Any]]]:
            found = conn.execute(FINISHED, (to_ts(before), limit)).fetchall()
            kept = [(one,) for _, events in found for one in listed(events)]
            named = [
                {"channel": row[0], "recording": row[1]}
                for key in kept
                for row in conn.execute(ANSWER_FILE, key)
            ]
            conn.executemany("DELETE FROM answers WHERE id = ?", kept)
            # FINISHED found no row of these responses pending or dead: every row is delivered,
            # so no head is left to promote. An answer's id matches no event (by its key).
            conn.executemany("DELETE FROM outbox WHERE event_id = ?", kept)
            conn.executemany("DELETE FROM sessions WHERE response_id = ?", [(r,) for r, _ in found])
            return len(found), named

        count, named = await self._change_with(work)
        if files is not None:
            files += named
        return count

    async def prune_receipts(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to `limit` delivery receipts of messages sent before `before`."""
        return await self._oldest_first("deliveries", "sent_at", before, limit)

    async def prune_message_ids(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to `limit` de-duplication ids of provider messages handled before
        `before` (a provider that retries a message half a year later is not expected)."""
        return await self._oldest_first("inbound_ids", "created_at", before, limit)

    async def _oldest_first(self, table: str, column: str, before: datetime, limit: int) -> int:
        """Rows are inserted in time order, so the oldest are the first rowids: the table's own
        b-tree finds them, with no index of its own to keep up on every insert."""
        sql = OLDEST_FIRST.format(table=table, column=column)
        return await self._change_with(
            lambda conn: conn.execute(sql, (limit, to_ts(before))).rowcount
        )
