"""Run `seda run` as a real subprocess and play a CEM webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` now (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie waiting for its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


class Seda:
    """`seda run` in a child process, killed or stopped by the test."""

    def __init__(self, config: Path, port: int, workdir: Path):
        self.config, self.port, self.workdir = config, port, workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "seda.log"

    async def start(self) -> None:
        """Start and wait until /healthz answers."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "--config", str(self.config), "run"],
                cwd=self.workdir,
                stdout=log,
                stderr=log,
                env=env,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if self.proc.poll() is not None:
                    raise AssertionError(f"seda exited: {self.log.read_text()[-2000:]}")
                try:
                    async with http.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("seda did not become healthy")

    @property
    def url(self) -> str:
        """Base URL of the running gateway."""
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush, as a power cut would leave it (minus the disk). Its
        child processes (the store writer and what multiprocessing starts for it) must end by
        themselves within seconds: none may outlive Seda."""
        assert self.proc is not None
        children = _children(self.proc.pid)
        assert children, "seda run started no child process (its store writer)"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for _ in range(100):
            alive = [pid for pid in children if _running(pid)]
            if not alive:
                return
            time.sleep(0.05)
        raise AssertionError(f"child processes outlived the killed seda run: {alive}")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


@dataclass
class Receiver:
    """A CEM backend: verifies Standard Webhooks signatures and records every delivery."""

    mode: str = "ok"  # ok | fail (500) | hang (never answers)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    runner: web.AppRunner | None = None
    port: int = 0
    on_delivery: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        msg_id = request.headers["webhook-id"]
        stamp = request.headers["webhook-timestamp"]
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        signed = f"{msg_id}.{stamp}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        given = [s.split(",", 1)[1] for s in request.headers["webhook-signature"].split()]
        if expected not in given:
            self.bad_signatures += 1
            return web.Response(status=400)
        if self.mode == "fail":
            return web.Response(status=500)
        if self.mode == "hang":
            await asyncio.sleep(3600)
        event = await request.json()
        self.deliveries.append({"webhook_id": msg_id, "event": event})
        return web.Response(status=204)

    async def start(self) -> str:
        """Listen on a loopback port; returns the URL to configure."""
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        self.port = free_port()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        return f"http://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        """Stop listening."""
        if self.runner is not None:
            await self.runner.cleanup()
