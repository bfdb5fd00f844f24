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

On request (`forget`, the right to erasure), everything Seda holds about one respondent goes at
once, under every spelling of their address (gateway.addresses): the sessions of every status,
their answers, receipts and outbox rows (delivered, pending and dead), the respondents' own
events, and the de-duplication ids of their messages (whose keys start with the address,
results.dedupe_key). The opt-out stays: it is keyed by the pseudonym, and honouring it is the
reason to keep it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
Held = tuple[str, str, str]  # a session of an erased respondent: response_id, channel, address


@dataclass(frozen=True)
class Forgotten:
    """What `forget` deleted: the responses (by id, with their channels) and their answers."""

    responses: tuple[Held, ...]
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

    async def sessions_of(self, addresses: Sequence[str]) -> list[Held]:
        """(response_id, channel, address) of every session stored under one of these
        addresses (lower-case; compared with the stored address lower-cased), oldest first.
        On the reader: a walk over the table (finished sessions have no index by address),
        which must not hold the write lock."""
        marks = ", ".join("?" * len(addresses))
        rows = await self._read(
            "SELECT response_id, channel, address FROM sessions"
            f" WHERE lower(address) IN ({marks}) ORDER BY rowid",
            addresses,
        )
        return [(str(row[0]), str(row[1]), str(row[2])) for row in rows]

    async def forget(
        self, addresses: Sequence[str], respondent_ids: Sequence[str], responses: list[Held]
    ) -> Forgotten:
        """Delete everything held under these addresses (see the module): their `responses`
        (`sessions_of`, read by the caller), their rows, the message ids, the respondents' own
        events. The caller holds the addresses' turns on their channels
        (router.Gateway.erase), so no step of them adds a session or a message id between
        those reads and the transaction."""
        # Message ids are kept under the address as the channel stored it: the spellings
        # asked for and those the sessions were found under, compared lower-cased.
        stored = sorted({a.lower() for a in addresses} | {a.lower() for _, _, a in responses})
        ranges = " OR ".join(["(lower(message_id) >= ? AND lower(message_id) < ?)"] * len(stored))
        bounds = [bound for a in stored for bound in (f"{a} ", f"{a}!")]  # "!" sorts after " "
        found = [  # on the reader too, in one walk: the key does not lead with the message id
            tuple(row)
            for row in await self._read(
                f"SELECT channel, provider, message_id FROM inbound_ids WHERE {ranges}", bounds
            )
        ]
        ids = [(response_id,) for response_id, _, _ in responses]
        owners = [(respondent_id,) for respondent_id in respondent_ids]

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
            # respondents' own events.
            events = sum(
                conn.execute("DELETE FROM outbox WHERE event_id = ?", key).rowcount for key in kept
            )
            events += sum(
                conn.execute(
                    "DELETE FROM outbox WHERE order_key = ? AND status <> 'delivered'", key
                ).rowcount
                for key in ids
            )
            events += sum(
                conn.execute(
                    f"DELETE FROM outbox WHERE order_key = ? AND {RESPONDENT_KEYS}", key
                ).rowcount
                for key in owners
            )
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
