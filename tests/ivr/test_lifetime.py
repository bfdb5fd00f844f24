"""Nothing of the voice channel outlives `seda run`, even killed with SIGKILL.

`seda run` with two workers behind Kamailio is killed without any chance to clean up; the
kernel's parent-death signal must stop Kamailio (and Kamailio its children), the voice pool and
its workers, so that the SIP port is free and the same configuration starts again. Processes
are followed by pid (and start time, against pid reuse), never by name: other tests may run
their own Kamailio at the same time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr_flows import kamailio, pool
from tests.ivr.harness import Gateway, Sipp, need, sip_request

GONE_WITHIN = 5.0  # seconds


@dataclass
class Proc:
    """One process as /proc shows it."""

    pid: int
    ppid: int
    started: int  # clock ticks after boot: tells a reused pid apart
    state: str
    comm: str
    cmdline: str


def read_proc(pid: int) -> Proc | None:
    """The process `pid`, or None when there is none."""
    try:
        # Any process on the machine is read, and its name or arguments need not be UTF-8 (a
        # SIPp run elsewhere sending a Latin-1 agent name): they are only compared here.
        stat = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", "replace")
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        cmdline = arguments.decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    rest = stat[stat.rindex(")") + 2 :].split()
    return Proc(pid, int(rest[1]), int(rest[19]), rest[0], comm, cmdline.strip())


def descendants(root: int) -> list[Proc]:
    """Every living process under `root`, parents before children."""
    table = [p for name in os.listdir("/proc") if name.isdigit() and (p := read_proc(int(name)))]
    found: list[Proc] = []
    parents = {root}
    while True:
        more = [p for p in table if p.ppid in parents and p.pid not in parents]
        if not more:
            return found
        found += more
        parents |= {p.pid for p in more}


def alive(proc: Proc) -> bool:
    """Still running: same pid and start time, and not a zombie waiting to be reaped."""
    now = read_proc(proc.pid)
    return now is not None and now.started == proc.started and now.state != "Z"


@dataclass
class Voice:
    """What `seda run` started for the voice channel, found under its pid."""

    kamailio: Proc  # the main process
    kamailio_children: list[Proc]
    pool: Proc
    workers: list[Proc]

    @classmethod
    def under(cls, seda: int) -> Voice:
        tree = descendants(seda)
        direct = [p for p in tree if p.ppid == seda]
        mains = [p for p in direct if p.comm == "kamailio"]
        pools = [p for p in direct if "ivr_flows.pool" in p.cmdline]
        assert len(mains) == 1, tree
        assert len(pools) == 1, tree
        return cls(
            kamailio=mains[0],
            kamailio_children=[p for p in tree if p.ppid == mains[0].pid],
            pool=pools[0],
            workers=[p for p in tree if p.ppid == pools[0].pid],
        )

    def every(self) -> list[Proc]:
        return [self.kamailio, *self.kamailio_children, self.pool, *self.workers]


def port_free(port: int) -> bool:
    """Nobody holds the UDP port (a bind without SO_REUSEADDR, as Kamailio's own check)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class SameConfig(Gateway):
    """A gateway that keeps its configuration (and so its ports) from one start to the next."""

    config: Path | None = None

    def write_config(self) -> Path:
        if self.config is None:
            self.config = super().write_config()
        return self.config


@pytest.fixture
def seda(tmp_path: Path) -> Iterator[SameConfig]:
    """`seda run` with two workers behind Kamailio and no speech (nothing to load)."""
    need("kamailio", "sipp", "espeak-ng")
    running = SameConfig(tmp_path, workers=2)
    running.extra = {"speech": {}}
    try:
        yield running
    finally:
        running.stop()


def test_kamailio_and_the_pool_die_with_a_killed_seda(seda: SameConfig) -> None:
    seda.start()
    assert seda.proc is not None
    assert sip_request(seda.sip_port, "OPTIONS").startswith("SIP/2.0 200")  # Kamailio answers
    voice = Voice.under(seda.proc.pid)
    assert voice.kamailio_children, "Kamailio forked no children: nothing proves they go too"
    assert len(voice.workers) == 2
    assert not port_free(seda.sip_port)

    seda.proc.send_signal(signal.SIGKILL)  # Seda alone: not its group, no clean-up at all
    seda.proc.wait(5)
    killed = time.monotonic()
    left = voice.every()
    try:
        while left and time.monotonic() - killed < GONE_WITHIN:
            time.sleep(0.05)
            left = [p for p in left if alive(p)]
        took = time.monotonic() - killed
        assert not left, f"still running {took:.1f} s after SIGKILL: {left}"
    finally:
        for proc in left:  # the test failed: leave nothing running
            if alive(proc):
                os.kill(proc.pid, signal.SIGKILL)
    ports = [seda.sip_port, seda.worker_base, seda.worker_base + 1]
    while not all(port_free(p) for p in ports) and time.monotonic() - killed < GONE_WITHIN:
        time.sleep(0.05)
    assert all(port_free(p) for p in ports), [p for p in ports if not port_free(p)]
    print(f"everything gone {took:.2f} s after SIGKILL")

    seda.proc = None
    seda.start()  # the same configuration: the same SIP, worker, control and HTTP ports
    assert seda.proc is not None
    again = Voice.under(seda.proc.pid)
    assert again.kamailio.pid != voice.kamailio.pid
    caller = "+98912900"
    call = Sipp("keypad.xml", seda.sip_port, caller)
    try:
        call.start()
        assert call.wait() == 0, call.output[-3000:]
    finally:
        call.kill()
    types = [e["type"] for e in seda.wait_events(caller, 3)]
    assert types[-1] == "response.completed", types


def test_a_taken_sip_port_is_named_at_start(tmp_path: Path) -> None:
    need("kamailio")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Kamailio binds
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        with pytest.raises(kamailio.PortInUse) as taken:
            kamailio.check_port("127.0.0.1", port)
        message = str(taken.value)
        assert f"127.0.0.1:{port}" in message
        assert "already in use" in message
        assert "another Kamailio or SIP server" in message
    kamailio.check_port("127.0.0.1", port)  # free again: no error


def test_seda_run_refuses_a_taken_sip_port(seda: SameConfig) -> None:
    config = seda.write_config()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", seda.sip_port))
        with pytest.raises(AssertionError, match="seda exited"):
            seda.start()
    assert config.exists()
    assert seda.proc is not None
    assert seda.proc.returncode == 2  # a configuration error, said in one message
    log = seda.log.read_text("utf-8", "replace")
    assert "Traceback" not in log
    assert f"the SIP port 127.0.0.1:{seda.sip_port} (UDP) is already in use" in log
    assert "another Kamailio or SIP server may be running" in log
    assert not (seda.workdir / "kamailio" / "kamailio.log").exists()  # never started


def test_a_child_whose_parent_died_before_prctl_does_not_exec(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    wrong = kamailio._die_with(os.getpid() + 1)  # as if Seda had died before the prctl
    child = subprocess.Popen(["touch", str(marker)], preexec_fn=wrong)
    assert child.wait(10) == 1
    assert not marker.exists()  # exited before exec
    right = subprocess.Popen(["touch", str(marker)], preexec_fn=kamailio._die_with(os.getpid()))
    assert right.wait(10) == 0
    assert marker.exists()


def test_a_worker_forked_after_its_pool_died_exits() -> None:
    pid = os.fork()
    if pid == 0:  # the child: as a worker whose pool is gone (another pid is its parent)
        pool.die_with_parent(os.getppid() + 1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3


def test_kamailio_is_started_from_the_main_thread_only(tmp_path: Path) -> None:
    front = kamailio.Front("127.0.0.1", 5060, [("127.0.0.1", 5070)], ["127.0.0.0/8"], 5)
    front_process = kamailio.Kamailio("kamailio", tmp_path / "absent.cfg", front)
    failed: list[BaseException] = []

    def elsewhere() -> None:
        try:
            asyncio.run(front_process.start())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(10)
    assert len(failed) == 1
    assert isinstance(failed[0], kamailio.KamailioError)
    assert "main thread" in str(failed[0])
    assert front_process.proc is None


def health(port: int) -> tuple[int, dict[str, object], str]:
    """/healthz (status, JSON) and /metrics' text of a running seda."""
    import json
    import urllib.error
    import urllib.request

    base = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
            status, body = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        status, body = exc.code, json.loads(exc.read())
    with urllib.request.urlopen(f"{base}/metrics", timeout=2) as resp:
        metrics = resp.read().decode()
    return status, body, metrics


def test_health_says_when_the_voice_pool_is_gone(seda: SameConfig) -> None:
    seda.start()
    assert seda.proc is not None
    status, body, metrics = health(seda.http_port)
    assert status == 200 and body["status"] == "ok", body
    assert body["channels"] == {"ivr": {"status": "ok", "workers": 2, "ready": 2, "calls": 0}}
    assert 'seda_channel_up{channel="ivr"} 1.0' in metrics

    voice = Voice.under(seda.proc.pid)
    os.kill(voice.pool.pid, signal.SIGKILL)  # as the OOM killer would
    deadline = time.monotonic() + GONE_WITHIN
    while body["status"] == "ok" and time.monotonic() < deadline:
        time.sleep(0.05)
        status, body, metrics = health(seda.http_port)
    # Still 200: answers on other channels are taken and kept; the voice channel says why not.
    assert status == 200 and body["status"] == "degraded", body
    ivr = body["channels"]["ivr"]  # type: ignore[index]
    assert ivr["status"] == "down" and ivr["reason"] == "the voice pool is not running", ivr
    assert 'seda_channel_up{channel="ivr"} 0.0' in metrics
