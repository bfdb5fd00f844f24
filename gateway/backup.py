"""`seda backup`: a consistent copy of the database, taken while Seda runs.

Copying `seda.db` with `cp` while Seda runs can give a broken or stale file: the newest commits
live in `seda.db-wal` until a checkpoint moves them. SQLite's online backup reads every page in
one read transaction, so the copy is the database as of one commit, whatever commits meanwhile
(WAL lets the writer go on; only the checkpoint waits for the copy to finish).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.durable import fsync_path

# The copy holds personal data (addresses, answers): only its owner may read it.
MODE = 0o600


class BackupError(Exception):
    """The backup could not be taken; nothing was left at the destination."""


@dataclass(frozen=True)
class Backup:
    """What a finished backup holds."""

    path: Path
    schema_version: int
    sessions: int
    answers: int
    outbox: int
    size: int  # bytes
    seconds: float


def backup(database: Path, destination: Path) -> Backup:
    """Copy `database` to `destination` (a new file) as of one commit, check the copy, and
    only then give it its name; on any failure nothing is left at `destination`."""
    if not database.is_file():
        raise BackupError(f"no database at {database}")
    if destination.exists():
        raise BackupError(f"{destination} exists: choose a new name (a backup never overwrites)")
    if not destination.parent.is_dir():
        raise BackupError(f"no folder {destination.parent} to write {destination.name} in")
    started = time.monotonic()
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE))
        counts = _copy(database, partial)
        fsync_path(partial)
        os.link(partial, destination)  # fails rather than replace a file made meanwhile
        fsync_path(destination.parent)
    except FileExistsError:
        raise BackupError(f"{destination} appeared while copying: left as it was") from None
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"backup failed: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    size = destination.stat().st_size
    return Backup(destination, *counts, size=size, seconds=time.monotonic() - started)


def _copy(database: Path, partial: Path) -> tuple[int, int, int, int]:
    # mode=rw: never create a database where there was none; query_only: this side only reads.
    source = sqlite3.connect(f"file:{database}?mode=rw", uri=True)
    target = sqlite3.connect(partial)
    try:
        source.execute("PRAGMA query_only = ON")
        source.backup(target)  # every page in one step: one read transaction, one commit's view
        target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        check = target.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise BackupError(f"the copy failed its check: {check[:3]}")
        version = int(target.execute("PRAGMA user_version").fetchone()[0])
        counts = [
            int(target.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in ("sessions", "answers", "outbox")
        ]
        return version, counts[0], counts[1], counts[2]
    finally:
        target.close()
        source.close()
