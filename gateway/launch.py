"""`seda run`'s start and stop around the app: what must hold before anything is written (the
port is free, no other Seda uses the database), what a failed start leaves (nothing it made),
and the signals that stop it cleanly (TERM, INT and HUP).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web
from aiohttp.web_runner import GracefulExit

log = logging.getLogger("seda.server")
FOLDER_MODE = 0o700  # as the store makes var/: it holds personal data
FILE_MODE = 0o600


class NotStarted(Exception):
    """Seda cannot start here; the message says why and what to do. Nothing was written."""


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for the HTTP server, before anything else happens: a port in use is said
    plainly, and no database is made for a server that cannot listen."""
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        message = f"server.host {host!r} is not an address of this machine: {exc.strerror}"
        raise NotStarted(message) from None
    sockets: list[socket.socket] = []
    for family, kind, proto, _, address in dict.fromkeys(found):
        sock = socket.socket(family, kind, proto)
        sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            for made in sockets:
                made.close()
            hint = ""
            if exc.errno == 98:  # EADDRINUSE
                hint = f" (another seda run, or another program: `ss -ltnp 'sport = :{port}'`)"
            raise NotStarted(
                f"cannot listen on {host}:{port}: {exc.strerror}{hint}; nothing was started"
            ) from None
    return sockets


class Start:
    """Whether the app was built (then a failure is no longer a failed start)."""

    built = False


@contextlib.contextmanager
def exclusive(database: Path) -> Iterator[Start]:
    """Hold `<database>.lock` while Seda runs: a second `seda run` on the same database would
    forward every event twice and work from a stale cache of open surveys. The lock goes with
    the process, however it ends (even SIGKILL); the file stays, with the last pid in it."""
    if database.is_dir():
        raise NotStarted(f"database: {database} is a folder; give a file, such as var/seda.db")
    made = _folders_to_make(database.parent)
    database.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    lock = Path(f"{database}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise NotStarted(
            f"another seda run (pid {holder}) is using {database}: stop it first, or give this"
            " one its own `database`; nothing was started"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    fresh, start = not database.exists(), Start()
    try:
        yield start
    finally:
        if fresh and not start.built:
            _remove_unused(database, lock, made)
        os.close(fd)


def _folders_to_make(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_unused(database: Path, lock: Path, folders: list[Path]) -> None:
    """A start that failed on a new database (a channel's settings, a survey) leaves nothing:
    no empty database to be mistaken for one with data, no folder it made."""
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm"), lock):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty: something else is in it now
            folder.rmdir()


async def stop_on_hangup(app: web.Application) -> None:
    """SIGHUP (the terminal closed) stops Seda as TERM and Ctrl-C do: replies in flight are
    committed and answered, the outbox is left as it is for the next start. Seda reads its
    configuration only at start and logs to stderr: there is nothing to reload or reopen.
    Under `nohup`, which ignores SIGHUP, it stays ignored."""
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _hang_up)


def _hang_up() -> None:
    log.info("SIGHUP: stopping as for SIGTERM (the configuration is read only at start)")
    raise GracefulExit()
