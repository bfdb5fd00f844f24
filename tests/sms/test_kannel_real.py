"""Seda's Kannel lines against a real Kannel: bearerbox and smsbox configured as sms/README.md
says, and Kannel's own fake SMSC (`fakesmsc`) playing the operator, which injects the
respondent's messages and prints every message Kannel hands to the SMSC.

Kannel and `seda run` start once for the module (a few seconds); each test uses its own
respondent number so that the tests do not see each other's messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "kannel-real-token"
FOOTER = "لغو ۱۱"
INLINE = "982191001234"  # the line answered in the webhook response (reply: webhook)
API = "982191005678"  # the line answered through sendsms (reply: api)
UNKNOWN = "982191009999"  # a Kannel service whose get-url names no line of Seda
FORGED = "982191008888"  # a Kannel service whose get-url carries a wrong token
POSTED = "982191007777"  # a Kannel service that calls the inline line with post-url
NPS = "از صفر تا ده، چقدر احتمال دارد ما را به دوستان یا همکارانتان پیشنهاد کنید؟"
REASON = "متأسفیم که تجربهٔ خوبی نداشتید. لطفاً بگویید چه چیزی را باید بهتر کنیم."
RESOLVED = "آیا مشکل شما در این تماس حل شد؟ بله یا خیر"
CLOSING = "از اینکه وقت گذاشتید سپاسگزاریم. روز خوبی داشته باشید."
# A text answer with an Arabic comma (U+060C), a ZWNJ (U+200C) and a Persian digit: in UCS-2
# the ZWNJ is the bytes 20 0C, which Kannel's %a would cut at (sms/README.md).
WHY = "صدا قطع می‌شد، ۳ بار تماس گرفتم"


def _find(name: str, *folders: str) -> str | None:
    return shutil.which(name) or next(
        (f"{d}/{name}" for d in folders if os.access(f"{d}/{name}", os.X_OK)), None
    )


def _tools() -> dict[str, str]:
    """bearerbox, smsbox (Debian: /usr/sbin) and fakesmsc (kannel-extras: /usr/lib/kannel/test);
    skip without them here, fail on CI (CI=true), where they must be installed."""
    found = {
        "bearerbox": _find("bearerbox", "/usr/sbin"),
        "smsbox": _find("smsbox", "/usr/sbin"),
        "fakesmsc": _find("fakesmsc", "/usr/lib/kannel/test"),
    }
    missing = [name for name, path in found.items() if path is None]
    if missing:
        message = f"needs {', '.join(missing)} (kannel, kannel-extras: scripts/setup --test)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: required on CI")
        pytest.skip(message)
    return {name: str(path) for name, path in found.items()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited: {log.read_text('utf-8', 'replace')[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}: {log.read_text('utf-8', 'replace')[-3000:]}")


def readme_groups() -> list[tuple[str, dict[str, str]]]:
    """The kannel.conf block of sms/README.md's Kannel section, as (group, settings)."""
    text = (ROOT / "sms" / "README.md").read_text("utf-8")
    block = re.search(r"```\n(\s*group = smsbox\n.*?)```", text, re.DOTALL)
    assert block, "sms/README.md has no kannel.conf block starting with group = smsbox"
    groups: list[tuple[str, dict[str, str]]] = []
    for line in block.group(1).splitlines():
        key, _, value = (part.strip() for part in line.partition("="))
        if key == "group":
            groups.append((value, {}))
        elif key:
            groups[-1][1][key] = value
    return groups


def kannel_conf(ports: dict[str, int], seda: int) -> str:
    """kannel.conf: a core and a fake SMSC on free loopback ports, then sms/README.md's block
    with this machine's ports and URLs (retries 1 s apart, not 10): its sms-service once per
    line (told apart by the number the message was sent to), and twice for services that must
    not reach anyone (a line Seda does not have, a wrong token)."""
    groups: list[tuple[str, dict[str, Any]]] = [
        ("core", {"admin-port": ports["admin"], "admin-password": "admin-pass",
                  "admin-allow-ip": "127.0.0.1", "smsbox-port": ports["smsbox"],
                  "box-allow-ip": "127.0.0.1", "dlr-storage": "internal"}),
        ("smsc", {"smsc": "fake", "smsc-id": "fake", "port": ports["smsc"],
                  "connect-allow-ip": "127.0.0.1"}),
    ]  # fmt: skip
    readme = readme_groups()
    assert [name for name, _ in readme] == ["smsbox", "sendsms-user", "sms-service"]
    (_, smsbox), (_, user), (_, service) = readme
    smsbox.update({"bearerbox-port": str(ports["smsbox"]), "sendsms-port": str(ports["sendsms"]),
                   "sendsms-interface": "127.0.0.1", "http-request-retry": "1",
                   "http-queue-delay": "1"})  # fmt: skip
    user["password"] = "kannel-pass"
    groups += [("smsbox", smsbox), ("sendsms-user", user)]
    url = service["get-url"].replace("https://seda.example.com", f"http://127.0.0.1:{seda}")
    targets = {INLINE: ("inline", TOKEN), API: ("api", TOKEN),
               UNKNOWN: ("nosuchline", TOKEN), FORGED: ("inline", "not-the-token")}  # fmt: skip
    for receiver, (line, token) in targets.items():
        get_url = url.replace("/sms/main?token=T&", f"/sms/{line}?token={token}&")
        assert get_url != url, "the README's get-url changed: update this test"
        groups.append(("sms-service", {**service, "get-url": get_url,
                                       "allowed-receiver-prefix": receiver}))  # fmt: skip
    # post-url, as the README offers it: the text in the body, the sender in X-Kannel-From.
    post = {k: v for k, v in service.items() if k != "get-url"}
    post_url = f'"http://127.0.0.1:{seda}/sms/inline?token={TOKEN}&id=%I"'
    post.update({"post-url": post_url, "send-sender": "true", "allowed-receiver-prefix": POSTED})
    groups.append(("sms-service", post))
    text = []
    for name, settings in groups:
        text.append(f"group = {name}")
        text += [f"{key} = {value}" for key, value in settings.items()]
        text.append("")
    return "\n".join(text)


def seda_config(workdir: Path, port: int, sendsms: int) -> Path:
    """gateway.yaml: the two Kannel lines, sending through this Kannel's sendsms."""
    common = {"provider": "kannel", "token": TOKEN, "username": "seda",
              "password": "kannel-pass", "base_url": f"http://127.0.0.1:{sendsms}",
              "footer": FOOTER}  # fmt: skip
    lines = {
        "inline": {**common, "number": INLINE, "reply": "webhook",
                   "public_url": f"http://127.0.0.1:{port}/sms/inline"},
        "api": {**common, "number": API, "reply": "api",
                "public_url": f"http://127.0.0.1:{port}/sms/api"},
    }  # fmt: skip
    data = {
        "server": {"host": "127.0.0.1", "port": port},
        "database": str(workdir / "seda.db"),
        "flows": str(ROOT / "config/flows"),
        "secret": "test-secret",
        "api": {"token": ""},
        "backends": {"answers": {"type": "jsonl", "path": str(workdir / "answers.jsonl")}},
        "channels": {"api": {"enabled": True}, "sms": {"enabled": True, "lines": lines}},
        "retry": {"base": 0.05, "cap": 0.5, "horizon": "1d", "poll": 0.05},
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return path


@dataclass
class Mt:
    """A message Kannel handed to the SMSC: sender, receiver, coding as fakesmsc printed it
    (text, ucs-2; udh for a part of a long one), text."""

    sender: str
    receiver: str
    coding: str
    text: str


@dataclass
class Phone:
    """The operator's side: fakesmsc connected to Kannel's fake SMSC. Each `send` stops the
    running fakesmsc and starts one that injects the message and then prints what Kannel sends
    (bearerbox queues what it has to send while none is connected; what it was writing to one
    being stopped is lost, so a test switches only when it expects nothing)."""

    fakesmsc: str
    port: int
    workdir: Path
    runs: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def _start(self, message: str) -> None:
        self.stop()
        log = self.workdir / f"fakesmsc-{len(self.runs)}.log"
        with log.open("wb") as out:
            argv = [self.fakesmsc, "-H", "127.0.0.1", "-r", str(self.port), "-i", "0"]
            argv += ["-m", "1", message] if message else ["-m", "0", "0 0 text unused"]
            proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
        self.runs.append((proc, log))

    def listen(self) -> None:
        """Connect, inject nothing, print what Kannel sends."""
        self._start("")

    def send(self, sender: str, receiver: str, text: str) -> None:
        """One message from the respondent, in UCS-2 as a phone sends Persian."""
        self._start(f"{sender} {receiver} ucs2 {quote(text.encode('utf-16-be'), safe='')}")

    def stop(self) -> None:
        """Disconnect the running fakesmsc (what it printed stays readable)."""
        for proc, _ in self.runs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=3)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def received(self, to: str) -> list[Mt]:
        """Every message sent to `to` so far, the parts of a long one joined (by their UDH)."""
        whole: list[Mt] = []
        last: Mt | None = None  # the last 7-bit text read, if it was sent to `to`
        parts: dict[tuple[str, int], dict[int, bytes]] = {}
        firsts: dict[tuple[str, int], int] = {}
        for _, log in self.runs:
            text = log.read_text("latin-1")
            for line in re.findall(r"Got message \d+: <([^>]*)>", text):
                if line.count(" ") < 3:  # the fake SMSC's protocol is lines: a 7-bit text
                    if last is not None:  # with a newline goes on here
                        last.text += "\n" + line
                    continue
                sender, receiver, coding, rest = line.split(" ", 3)
                last = None
                if receiver.lstrip("+0") != to.lstrip("+0"):
                    continue
                # A part of a long message: UDH 05 00 03 <ref> <total> <seq>, then its bytes,
                # which fakesmsc prints as "data" without the coding: UCS-2 in these tests.
                if coding == "udh":
                    udh, _, data = rest.partition(" data ")
                    head = unquote_to_bytes(udh.replace("+", " "))
                    key = (sender, head[3])
                    if key not in firsts:
                        firsts[key] = len(whole)
                        whole.append(Mt(sender, receiver, "udh", ""))
                    parts.setdefault(key, {})[head[5]] = unquote_to_bytes(data.replace("+", " "))
                    got = parts[key]
                    if len(got) == head[4]:  # all parts: UCS-2 bytes, in order
                        joined = b"".join(got[i] for i in sorted(got))
                        whole[firsts[key]].text = joined.decode("utf-16-be")
                elif coding == "ucs-2":
                    raw = unquote_to_bytes(rest.replace("+", " "))
                    whole.append(Mt(sender, receiver, coding, raw.decode("utf-16-be")))
                else:
                    last = Mt(sender, receiver, coding, rest)
                    whole.append(last)
        return [m for m in whole if m.coding != "udh" or m.text]  # all parts of a long one

    def wait(self, to: str, count: int, timeout: float = 8.0) -> list[Mt]:
        """The messages sent to `to`, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(to)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received(to))} of {count} messages reached {to}")


@dataclass
class Stack:
    """`seda run` (its HTTP API and database) and the phone; bearerbox and smsbox between."""

    workdir: Path
    seda_port: int
    phone: Phone

    def http(self, method: str, path: str, body: Any = None) -> Any:
        """A request to Seda's HTTP API; the JSON answer (text for /metrics)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.seda_port}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=5) as resp:
            raw = resp.read().decode("utf-8")
        return raw if path == "/metrics" else json.loads(raw)

    def invite(self, number: str, line: str) -> str:
        """An SMS invitation to post_call_nps in Persian; its response id."""
        body = {"survey": "post_call_nps", "respondent": f"tel:+{number}", "language": "fa",
                "channel": "sms", "line": line}  # fmt: skip
        result: str = self.http("POST", "/api/v1/invitations", body)["response_id"]
        return result

    def webhook_calls(self) -> int:
        """How many requests /sms/{line} answered with a 2xx or 4xx so far (Seda's metrics)."""
        found = re.findall(
            r'seda_request_seconds_count\{route="/sms/\{line\}",status="[24]xx"\} (\S+)',
            self.http("GET", "/metrics"),
        )
        return int(sum(float(n) for n in found))

    def wait_calls(self, count: int, timeout: float = 8.0) -> None:
        """Until /sms/{line} answered `count` requests in all."""
        deadline = time.monotonic() + timeout
        while self.webhook_calls() < count:
            assert time.monotonic() < deadline, f"{self.webhook_calls()} of {count} requests"
            time.sleep(0.05)

    def deliveries(self, response_id: str, count: int, timeout: float = 5.0) -> list[Any]:
        """The response's rows in Seda's deliveries table, once `count` have their receipt."""
        deadline = time.monotonic() + timeout
        rows: list[Any] = []
        while time.monotonic() < deadline:
            with contextlib.closing(sqlite3.connect(self.workdir / "seda.db")) as db:
                db.row_factory = sqlite3.Row
                query = "SELECT * FROM deliveries WHERE response_id = ? ORDER BY sent_at"
                rows = [dict(r) for r in db.execute(query, (response_id,))]
            if len([r for r in rows if r["status"] != "sent"]) >= count:
                return rows
            time.sleep(0.1)
        raise AssertionError(f"deliveries: {rows}")

    def answers(self, response_id: str, count: int, timeout: float = 5.0) -> list[Any]:
        """The response's answer values, once there are `count`."""
        deadline = time.monotonic() + timeout
        values: list[Any] = []
        while time.monotonic() < deadline:
            state = self.http("GET", f"/api/v1/responses/{response_id}")
            values = [a["value"] for a in state["answers"]]
            if len(values) >= count:
                return values
            time.sleep(0.05)
        raise AssertionError(f"answers: {values}")


def _start(argv: list[str], log: Path, cwd: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=out,
                                env={**os.environ, **env}, start_new_session=True)  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Kannel and Seda, once for the module."""
    tools = _tools()
    workdir = tmp_path_factory.mktemp("kannel")
    ports = {name: _free_port() for name in ("admin", "smsbox", "smsc", "sendsms", "seda")}
    conf = workdir / "kannel.conf"
    conf.write_text(kannel_conf(ports, ports["seda"]), "utf-8")
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    phone = Phone(tools["fakesmsc"], ports["smsc"], workdir)
    try:
        config = seda_config(workdir, ports["seda"], ports["sendsms"])
        log = workdir / "seda.log"
        argv = [sys.executable, "-m", "gateway.cli", "--config", str(config), "run"]
        procs.append((_start(argv, log, workdir, PYTHONPATH=str(ROOT)), log))
        for box, port in (("bearerbox", ports["smsc"]), ("smsbox", ports["sendsms"])):
            log = workdir / f"{box}.log"
            procs.append((_start([tools[box], "-v", "1", str(conf)], log, workdir), log))
            _wait_port(port, *procs[-1])
        _wait_port(ports["seda"], *procs[0])
        yield Stack(workdir, ports["seda"], phone)
    finally:
        phone.stop()
        for proc, _ in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_persian_survey_answered_inline(stack: Stack) -> None:
    """MOs in UCS-2 reach Seda intact through %b; the replies in the HTTP answer reach the SMSC
    as UCS-2, whole (two parts joined), footer on its own line."""
    number = "989121110001"
    stack.phone.listen()  # before anything is sent: what goes to a fakesmsc being stopped is lost
    response_id = stack.invite(number, "inline")
    first = stack.phone.wait(number, 1)[0]  # the invitation goes through sendsms
    assert (first.text, first.sender, first.receiver) == (f"{NPS}\n{FOOTER}", INLINE, number)
    stack.phone.send(f"00{number}", INLINE, "۵")
    reason = stack.phone.wait(number, 2)[1]
    # Inline: smsbox answers the sender as it came (00...), in two concatenated UCS-2 parts.
    assert (reason.text, reason.receiver, reason.coding) == (
        f"{REASON}\n{FOOTER}", f"00{number}", "udh",
    )  # fmt: skip
    stack.phone.send(f"00{number}", INLINE, WHY)
    resolved = stack.phone.wait(number, 3)[2]
    assert (resolved.text, resolved.coding) == (f"{RESOLVED}\n{FOOTER}", "ucs-2")
    stack.phone.send(f"00{number}", INLINE, "بله")
    assert stack.phone.wait(number, 4)[3].text == f"{CLOSING}\n{FOOTER}"
    assert stack.answers(response_id, 3) == [5, WHY, True]


def test_persian_survey_answered_through_sendsms_with_receipts(stack: Stack) -> None:
    """reply: api: every prompt goes through sendsms in UCS-2, and Kannel's DLRs for each come
    back to the line's dlr-url and mark the message delivered."""
    number = "989121110002"
    stack.phone.listen()  # before anything is sent: what goes to a fakesmsc being stopped is lost
    response_id = stack.invite(number, "api")
    first = stack.phone.wait(number, 1)
    assert first[0].text == f"{NPS}\n{FOOTER}" and first[0].sender == API
    stack.phone.send(f"00{number}", API, "۱۰")
    second = stack.phone.wait(number, 2)[1]  # sent by Seda to the number it knows (no 00)
    assert (second.text, second.coding, second.receiver) == (
        f"{RESOLVED}\n{FOOTER}", "ucs-2", number,
    )  # fmt: skip
    stack.phone.send(f"00{number}", API, "خیر")
    assert stack.phone.wait(number, 3)[2].text == f"{CLOSING}\n{FOOTER}"
    assert stack.answers(response_id, 2) == [10, False]
    rows = stack.deliveries(response_id, count=3)
    assert [r["status"] for r in rows] == ["delivered"] * 3, rows
    # Kannel's fake SMSC reports 1 (delivered) and then 8 (sent to the SMSC) for each: the
    # late 8 does not move a delivered message back.
    assert [r["raw_status"] for r in rows] == ["1"] * 3, rows


def test_post_url_reaches_seda_in_utf16_and_gets_the_reply(stack: Stack) -> None:
    """post-url: smsbox POSTs a UCS-2 message as text/plain; charset=UTF-16BE with the sender in
    X-Kannel-From; the answer goes back inline like get-url's."""
    number = "989121110003"
    stack.phone.listen()  # before anything is sent: what goes to a fakesmsc being stopped is lost
    response_id = stack.invite(number, "inline")
    stack.phone.wait(number, 1)
    stack.phone.send(f"00{number}", POSTED, "۲")
    reason = stack.phone.wait(number, 2)[1]
    assert (reason.text, reason.sender) == (f"{REASON}\n{FOOTER}", POSTED)
    stack.phone.send(f"00{number}", POSTED, WHY)
    assert stack.phone.wait(number, 3)[2].text == f"{RESOLVED}\n{FOOTER}"
    assert stack.answers(response_id, 2) == [2, WHY]


@pytest.mark.parametrize(
    ("receiver", "requests"),
    [(UNKNOWN, 1), (FORGED, 2)],  # 200 JSON (no such line); 403 JSON (wrong token), retried
    ids=["unknown line", "wrong token"],
)
def test_a_refused_or_ignored_message_sends_the_respondent_nothing(
    stack: Stack, receiver: str, requests: int
) -> None:
    """Whatever Seda answers that is not a reply, smsbox must not turn it into an SMS: by default it sends "Could not fetch content, sorry." for a non-2xx answer and
    "Result could not be represented as an SMS message." for a JSON one. The smsbox group of
    sms/README.md turns those texts off; Kannel retries the request (http-request-retry) and
    still sends nothing."""
    number = "98912111" + receiver[-4:]
    calls = stack.webhook_calls()
    stack.phone.send(f"00{number}", receiver, "۵")
    stack.wait_calls(calls + requests)  # a 4xx is asked again (http-request-retry)
    time.sleep(1.0)  # what smsbox would send has reached the SMSC by now
    assert stack.phone.received(number) == []
