"""Delivery receipts of the messages Seda's channels send: the `deliveries` table, one row per
provider message id, whose status only moves forward (store_schema.delivery_moves)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from gateway.store_schema import delivery_moves, from_ts, to_ts


class Deliveries:
    """`Store.deliveries`: reads on the store's reader, each change in one transaction of its
    writer (the store's own `_read`, `_change` and `_change_with`)."""

    def __init__(
        self,
        read: Callable[[str, Iterable[Any]], Awaitable[list[sqlite3.Row]]],
        change: Callable[[str, list[tuple[Any, ...]]], Awaitable[int]],
        change_with: Callable[[Callable[[sqlite3.Connection], bool]], Awaitable[bool]],
    ) -> None:
        self._read = read
        self._change = change
        self._change_with = change_with

    async def record_sent(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record sent messages (keys: channel, line, provider, message_id, response_id,
        event_id, at) with status sent; a message already recorded is left as it is."""
        await self._change(
            "INSERT INTO deliveries (channel, provider, message_id, line, response_id, event_id,"
            " status, sent_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'sent', ?, ?)"
            " ON CONFLICT (channel, provider, message_id) DO NOTHING",
            [(r["channel"], r["provider"], r["message_id"], r["line"], r.get("response_id"),
              r["event_id"], to_ts(r["at"]), to_ts(r["at"])) for r in rows],
        )  # fmt: skip

    async def record_receipt(
        self, channel: str, provider: str, message_id: str, status: str, raw_status: str,
        error: str | None, at: datetime,
    ) -> bool:  # fmt: skip
        """Apply a delivery receipt: the status moves forward only (a final one stays);
        False when no such message was sent (nothing is changed)."""
        key = (channel, provider, message_id)

        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT status FROM deliveries WHERE channel = ? AND provider = ?"
                " AND message_id = ?",
                key,
            ).fetchone()
            if row is None:
                return False
            if delivery_moves(str(row[0]), status):
                conn.execute(
                    "UPDATE deliveries SET status = ?, raw_status = ?, error = ?, updated_at = ?"
                    " WHERE channel = ? AND provider = ? AND message_id = ?",
                    (status, raw_status, error, to_ts(at), *key),
                )
            return True

        return await self._change_with(work)

    async def for_response(self, response_id: str) -> list[dict[str, Any]]:
        """The messages sent for one response and their latest status, in the order sent."""
        rows = await self._read(
            "SELECT * FROM deliveries WHERE response_id = ? ORDER BY sent_at, rowid",
            (response_id,),
        )
        return [self._delivery(row) for row in rows]

    async def pending(
        self, channel: str, line: str, since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Messages of one line sent since `since` whose status is not known yet (queued or
        sent), oldest first: those a provider without receipts is asked about."""
        rows = await self._read(
            "SELECT * FROM deliveries WHERE channel = ? AND line = ? AND sent_at >= ?"
            " AND status IN ('queued', 'sent') ORDER BY sent_at LIMIT ?",
            (channel, line, to_ts(since), limit),
        )
        return [self._delivery(row) for row in rows]

    @staticmethod
    def _delivery(row: sqlite3.Row) -> dict[str, Any]:
        """A deliveries row as a dict; times as aware datetimes."""
        found = dict(row)
        found["sent_at"] = from_ts(found["sent_at"])
        found["updated_at"] = from_ts(found["updated_at"])
        return found
