"""Kamailio as the SIP front: its configuration written from a template, and its process.

pjsua2-python answers at most four calls per process, so several workers listen on local
ports and Kamailio's dispatcher spreads the calls over them (DESIGN.md section 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError

TEMPLATE = Path(__file__).resolve().parent.parent / "config" / "kamailio" / "kamailio.cfg.tmpl"
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _libc_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once here in the parent: a forked child must not dlopen."""
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux/glibc: Kamailio may outlive a killed Seda
        return None
    return function


_PRCTL = _libc_prctl()


class KamailioError(RuntimeError):
    """Kamailio could not be configured or started; the message says why."""


class PortInUse(KamailioError, ConfigError):
    """The SIP port is taken: `seda run` says so as a configuration error, no traceback."""


class NotThisMachine(KamailioError, ConfigError):
    """sip.host is not an address of this machine (copied from an example, say): said as a
    configuration error, no traceback."""


@dataclass(frozen=True)
class Front:
    """What the Kamailio configuration is made from."""

    host: str
    port: int
    workers: Sequence[tuple[str, int]]  # (host, port) of each worker
    allow: Sequence[str]  # networks INVITEs may come from
    rate: float  # INVITEs per second per source
    children: int = 2
    public: str = ""  # the address to put in Record-Route and Via when behind NAT
    failover_ms: int = 2000  # no answer from a worker within this: try the next one


def render(front: Front, dispatcher_list: Path, template: Path = TEMPLATE) -> str:
    """kamailio.cfg text for this front."""
    if front.host in ("0.0.0.0", "::") and not front.public:
        raise KamailioError(
            "channels.ivr.sip.host must be the address callers reach (Kamailio puts it in"
            " Record-Route), not a wildcard; or set public_address"
        )
    text = template.read_text("utf-8")
    tests = " || ".join(f'is_in_subnet("$si", "{net}")' for net in front.allow) or "0"
    host = f"[{front.host}]" if ":" in front.host else front.host
    values = {
        "LOG_PREFIX": "seda-kamailio: ",
        "CHILDREN": str(front.children),
        "LISTEN": f"{host}:{front.port}",
        "ADVERTISE": f" advertise {front.public}:{front.port}" if front.public else "",
        "LISTEN_HOST": host,
        "MPATH": _mpath(),
        "FR_TIMER": str(front.failover_ms),
        "PIKE_DENSITY": str(max(2, round(front.rate * 2))),
        "DISPATCHER_LIST": str(dispatcher_list),
        "ALLOW_TEST": tests,
    }
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    if "{{" in text:
        raise KamailioError(f"{template}: a placeholder was left unfilled")
    return text


def dispatcher(front: Front) -> str:
    """The dispatcher list: set 1 holds every worker."""
    lines = ["# setid destination flags priority (written by seda)"]
    for host, port in front.workers:
        where = f"[{host}]" if ":" in host else host
        lines.append(f"1 sip:{where}:{port} 0 0")
    return "\n".join(lines) + "\n"


def write(front: Front, folder: Path) -> Path:
    """Write kamailio.cfg and dispatcher.list into folder; returns the cfg path."""
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / "dispatcher.list"
    listing.write_text(dispatcher(front), "utf-8")
    cfg = folder / "kamailio.cfg"
    cfg.write_text(render(front, listing.resolve()), "utf-8")
    return cfg


class Kamailio:
    """One Kamailio process in the foreground (-DD), logging to a file.

    It never outlives Seda: the kernel sends it SIGTERM when Seda dies, even by SIGKILL
    (PR_SET_PDEATHSIG, Linux), and its main process then stops the children it forked.
    """

    def __init__(self, binary: str, cfg: Path, front: Front, log: Path | None = None):
        self.binary, self.cfg, self.front, self.log = binary, cfg, front, log
        self.proc: subprocess.Popen[bytes] | None = None

    def check(self) -> None:
        """`kamailio -c`: the configuration parses (raises KamailioError with its output)."""
        try:
            done = subprocess.run(
                [self.binary, "-c", "-f", str(self.cfg)], capture_output=True, timeout=30
            )
        except FileNotFoundError:
            missing = f"{self.binary} is not installed (Debian package kamailio)"
            raise KamailioError(missing) from None
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace")[-1500:]
            raise KamailioError(f"kamailio rejects {self.cfg}:\n{tail}")

    async def start(self, timeout: float = 15.0) -> None:
        """Start it and wait until it answers OPTIONS on its port."""
        # The parent-death signal fires when the *thread* that forked the child ends, not the
        # process (prctl(2)): fork from the main thread, which lives as long as Seda does. The
        # event loop of `seda run` is on the main thread; anywhere else, refuse rather than
        # start a Kamailio that would die with some executor thread.
        if threading.current_thread() is not threading.main_thread():
            raise KamailioError("Kamailio must be started from the main thread")
        check_port(self.front.host, self.front.port)
        self.check()
        out = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [self.binary, "-f", str(self.cfg), "-DD", "-E", "-m", "64", "-M", "8"],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                # Its own process group: Ctrl-C on Seda's terminal reaches Seda only, which
                # stops Kamailio first (no new calls) and then the workers; and stop() can
                # kill Kamailio's children with it if it ever hangs.
                process_group=0,
                preexec_fn=_die_with(os.getpid()),  # kept trivial: see _die_with
            )
        finally:
            if self.log is not None and not isinstance(out, int):
                out.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.proc.poll() is not None:
                raise KamailioError(f"kamailio exited with status {self.proc.returncode}")
            host = self.front.host if self.front.host not in ("0.0.0.0", "::") else "127.0.0.1"
            if await asyncio.to_thread(options_ping, host, self.front.port, 0.3):
                return
        self.stop()
        raise KamailioError(f"kamailio did not answer on port {self.front.port}")

    def stop(self) -> None:
        """SIGTERM (Kamailio's main process stops its children), then SIGKILL to its group."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its group: the main process still holds it
            proc.wait(5)


def _die_with(parent: int) -> Callable[[], None]:
    """What the forked child runs before exec: SIGTERM to it when `parent` dies.

    preexec_fn runs in a child forked from a process with threads, so it must not take a lock
    another thread might have held at the fork (no import, no dlopen, no logging): it calls the
    prctl looked up at import and reads its parent's pid, nothing else. The setting is kept
    across exec (Kamailio is not set-user-ID). If Seda died between fork and prctl, no signal
    would ever come: the child then sees another parent and exits before exec.
    """
    prctl, signum = _PRCTL, int(signal.SIGTERM)

    def child() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return child


def check_port(host: str, port: int) -> None:
    """KamailioError when the UDP port is taken (another Kamailio or SIP server may hold it).

    Kamailio binds with SO_REUSEADDR, so a second one on the same port could start and steal
    part of the traffic instead of failing; a plain bind without that option tells the truth.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"the SIP port {host}:{port} (UDP) is already in use: another Kamailio or"
                    " SIP server may be running there; stop it or set channels.ivr.sip.port"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise NotThisMachine(
                    f"channels.ivr.sip.host: {host} is not an address of this machine"
                    f" ({exc.strerror}): give one it has (`ip -brief address`)"
                ) from None
            raise KamailioError(
                f"cannot listen on the SIP port {host}:{port} (UDP): {exc}"
            ) from None


def options_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Send one SIP OPTIONS over UDP; True when any SIP response comes back."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        local_host, local_port = sock.getsockname()[:2]
        tag = secrets.token_hex(6)
        target = f"[{host}]" if family == socket.AF_INET6 else host
        where = f"[{local_host}]" if family == socket.AF_INET6 else local_host
        message = (
            f"OPTIONS sip:{target}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {where}:{local_port};branch=z9hG4bK{tag};rport\r\n"
            f"From: <sip:seda-check@{where}>;tag={tag}\r\n"
            f"To: <sip:{target}:{port}>\r\n"
            f"Call-ID: {tag}@seda\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\nContent-Length: 0\r\n\r\n"
        )
        try:
            sock.sendto(message.encode("ascii"), (host, port))
            data = sock.recv(4096)
        except OSError:
            return False
        return data.startswith(b"SIP/2.0 ")


def _mpath() -> str:
    """Debian's module folder when it exists (else Kamailio's compiled-in default)."""
    folder = os.environ.get("SEDA_KAMAILIO_MODULES", MODULES)
    return f'mpath="{folder}"' if Path(folder).is_dir() else "# mpath: Kamailio's default"
