"""What the store forgets, and when: `Store.retention`.

Seda is a gateway, not the system of record: once a backend has had an event, Seda keeps it
only for as long as the operator says.
- Delivered outbox rows (each event as sent), for `seda outbox replay`: `outbox.keep_delivered`.
- Finished responses (the session with the respondent's address and context, and its answers)
  after `retention.responses`, counted from the response's last change; and only once every
  event of the response has been delivered: a pending or dead event keeps its response, so
  nothing a backend has not had is deleted. Open responses are never deleted (they expire).
- Delivery receipts and the provider message ids kept for de-duplication, by age, after the
  same `retention.responses`.
Each call deletes at most `limit` rows in one transaction, so replies' commits get in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime

from gateway.store_schema import to_ts

Change = Callable[[Callable[[sqlite3.Connection], int]], Awaitable[int]]

# Finished responses older than ?1 whose events have all been delivered, at most ?2. INDEXED BY:
# finished sessions by age (sessions_finished) and each one's outbox rows by response
# (outbox_order), never a walk over either table.
FINISHED = (
    "SELECT s.response_id FROM sessions AS s INDEXED BY sessions_finished"
    " WHERE s.status <> 'open' AND s.updated_at < ?1 AND NOT EXISTS"
    " (SELECT 1 FROM outbox AS o INDEXED BY outbox_order"
    " WHERE o.order_key = s.response_id AND o.status <> 'delivered') LIMIT ?2"
)
# The first ?1 rows of a table inserted in time order, those older than ?2 ({table}, {column}).
OLDEST_FIRST = (
    "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY rowid LIMIT ?1)"
    " AND {column} < ?2"
)


class Retention:
    """`Store.retention`: each method is one transaction on the store's writer (`_change_with`)
    and returns how many rows (responses, for `prune_responses`) it deleted."""

    def __init__(self, change_with: Change) -> None:
        self._change_with = change_with

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

    async def prune_responses(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to `limit` finished responses last changed before `before` whose events
        have all been delivered: their sessions and answers."""

        def work(conn: sqlite3.Connection) -> int:
            ids = conn.execute(FINISHED, (to_ts(before), limit)).fetchall()
            conn.executemany("DELETE FROM answers WHERE response_id = ?", ids)
            conn.executemany("DELETE FROM sessions WHERE response_id = ?", ids)
            return len(ids)

        return await self._change_with(work)

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
