"""`seda outbox ...`: look at the outbox, retry dead letters, replay deliveries, enable a backend.

Output never includes event bodies: they hold personal data.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from gateway.model import iso
from gateway.store import OutboxRow, Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the outbox subcommands to the `seda outbox` parser."""
    commands = parser.add_subparsers(dest="outbox_command", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="list outbox rows, oldest first")
    listing.add_argument("--status", choices=("pending", "dead", "delivered"))
    listing.add_argument("--backend", metavar="NAME")
    listing.add_argument("--limit", type=int, default=50, metavar="N")

    commands.add_parser("stats", help="pending, oldest pending age, dead letters, per backend")

    retry = commands.add_parser("retry", help="put dead letters back in the queue")
    retry.add_argument("--backend", metavar="NAME", help="only this backend's dead letters")
    retry.add_argument("seqs", nargs="*", type=int, metavar="SEQ", help="only these rows")

    replay = commands.add_parser(
        "replay",
        help="send delivered events again (same event ids), as far back as outbox.keep_delivered",
    )
    replay.add_argument("--backend", metavar="NAME", required=True)
    replay.add_argument("--since", metavar="ISO8601", help="events created at or after this time")
    replay.add_argument("--until", metavar="ISO8601", help="events created before this time")
    replay.add_argument("--response", metavar="ID", help="only this response's events")
    replay.add_argument("--all", action="store_true", help="every delivered event still kept")

    enable = commands.add_parser("enable", help="resume a backend its receiver disabled (410)")
    enable.add_argument("name", metavar="NAME")


async def run(args: argparse.Namespace, store: Store) -> int:
    """Run one outbox subcommand; print plain lines; return the exit code."""
    command = args.outbox_command
    backend = getattr(args, "backend", None) or getattr(args, "name", None)
    if command != "list" and backend is not None and backend not in store.backend_names:
        known = ", ".join(store.backend_names) or "none"
        return _error(f"no backend named {backend!r} in the configuration (configured: {known})")
    if command == "list":
        return await _list(store, args.status, args.backend, args.limit)
    if command == "replay":
        return await _replay(store, args)
    if command == "stats":
        return await _stats(store)
    if command == "retry":
        return await _retry(store, args.backend, args.seqs)
    if command == "enable":
        return await _enable(store, args.name)
    return _error(f"unknown outbox command {command!r}")


def _error(message: str) -> int:
    """Say what is wrong on stderr (stdout stays the command's output); exit code 1."""
    print(f"seda: {message}", file=sys.stderr)
    return 1


async def _list(store: Store, status: str | None, backend: str | None, limit: int) -> int:
    if limit <= 0:
        return _error("--limit must be a positive number")
    rows = await store.list_outbox(status=status, backend=backend, limit=limit + 1)
    if not rows and backend is not None and backend not in store.backend_names:
        # A typo answered "no rows" as if all were well; a removed backend's rows still list.
        known = ", ".join(store.backend_names) or "none"
        return _error(f"no backend named {backend!r} in the configuration (configured: {known})")
    if not rows:
        print("no outbox rows match")
        return 0
    for row in rows[:limit]:
        print(_line(row))
    if len(rows) > limit:
        print(f"(the oldest {limit} shown; more match: --limit, --status, --backend)")
    return 0


def _line(row: OutboxRow) -> str:
    when = row.delivered_at if row.status == "delivered" else row.next_attempt_at
    label = {"delivered": "delivered", "pending": "next", "dead": "last"}[row.status]
    parts = [
        f"{row.seq:>6}",
        f"{row.status:<9}",
        row.backend,
        row.event_type,
        f"event={row.event_id}",
        f"key={row.order_key}",
        f"attempts={row.attempts}",
        f"created={iso(row.created_at)}",
    ]
    if when is not None and row.status != "dead":
        parts.append(f"{label}={iso(when)}")
    if row.last_error:
        parts.append(f"error={row.last_error!r}")
    return "  ".join(parts)


async def _stats(store: Store) -> int:
    pending = await store.outbox_stats(store.clock())
    dead = await store.dead_count()
    disabled = await store.disabled_backends()
    if not store.backend_names:
        print("no backends configured")
        return 0
    for name in store.backend_names:
        count, age = pending.get(name, (0, 0.0))
        state = f"DISABLED ({disabled[name]})" if name in disabled else "enabled"
        print(
            f"{name}: {state}, pending={count}, oldest_pending_age={age:.0f}s, "
            f"dead={dead.get(name, 0)}"
        )
    return 0


async def _retry(store: Store, backend: str | None, seqs: list[int]) -> int:
    moved = await store.retry_dead(backend=backend, seqs=seqs or None)
    print(f"{moved} dead letter(s) back in the queue")
    if seqs and moved < len(set(seqs)):
        missing = len(set(seqs)) - moved
        return _error(f"{missing} of the given rows are not dead letters (or absent)")
    return 0


class _BadTime(ValueError):
    """An option's time cannot be used; the message says why."""


def _moment(option: str, text: str | None) -> datetime | None:
    """An aware datetime from an option's ISO 8601 text."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _BadTime(f"{option} {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise _BadTime(f"{option} needs an offset, e.g. 2024-05-01T00:00:00+03:30 or ...Z")
    return moment


async def _replay(store: Store, args: argparse.Namespace) -> int:
    if args.since is None and args.until is None and args.response is None and not args.all:
        # Replaying every kept event by mistake would send weeks of answers again.
        return _error("say what to replay: --since TIME, --until TIME, --response ID, or --all")
    try:
        since, until = _moment("--since", args.since), _moment("--until", args.until)
    except _BadTime as exc:
        return _error(str(exc))
    if since is not None and until is not None and until <= since:
        return _error("--until must be later than --since: the range holds no event")
    response = args.response
    if response is not None and await store.session(response) is None:
        # Its session lists a response's events: once the response is deleted (retention) its
        # events, if still kept, are replayed by time.
        return _error(f"no response {response!r} is stored; replay by --since instead")
    count = await store.replay(args.backend, since=since, response_id=response, until=until)
    print(f"{count} delivered event(s) queued again for {args.backend}")
    return 0


async def _enable(store: Store, name: str) -> int:
    if await store.enable_backend(name):
        print(f"{name} enabled: delivery resumes")
    else:
        print(f"{name} was not disabled")
    return 0
