"""Does Seda hold up over time? A steady mixed load for minutes, with its resources sampled.

Starts `seda run` (SQLite, jsonl backend; the api, sms and email channels: a Twilio line whose
sends go to a local fake Twilio API, and an SMTP port whose mail goes to a local discarding
relay), then for --minutes starts conversations at a steady rate, open loop, well under peak:

- over the API: invited, then each of three questions answered;
- over SMS: invited (the prompt sent through the fake Twilio), then answered with signed Twilio
  webhooks (the next prompt comes back as TwiML);
- over email: invited, then answered by SMTP to the response's reply address;
- some abandoned after the first answer (closed by the expiry sweep, or superseded when their
  address is invited again), some opted out by SMS (STOP, then START to opt back in);
- a share of the messages sent twice with the same message id (duplicates), and a share of
  bad requests: malformed JSON (400), a proxy header without a token (403), a body over
  server.max_body (413), a webhook with a wrong Twilio signature (403).

Respondents come from a pool of --pool addresses per channel that is used round and round, as
a company's customers answer survey after survey: once the pool has gone round and the email
channel's caches of the latest 4,096 responses' tokens are full (both within the 4-minute
warm-up at the default rate), every cache is as full as it gets, and what grows after that
grows with time.

Every --sample seconds it reads from /proc the RSS, open file descriptors and threads of seda
and its child processes (the store writer), the database and -wal file sizes, and from /metrics
the outbox depth and the entries of seda's in-memory caches. At the end of the warm-up and at
the end it waits until seda is idle and the clients have hung up, and samples it. It prints the
growth after the warm-up per 100,000 conversations, the slope, and PASS/FAIL against the
bounds below.

    nice -n 10 .venv/bin/python bench/soak.py [--minutes 10] [--rate 300] [--pool 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import aiosmtplib
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import free_port, seda_command, seda_config, serve, server  # noqa: E402
from bench.smtp_ingest import serve_bare as serve_relay  # noqa: E402
from bench.smtp_ingest import wait_port  # noqa: E402
from email_in.tokens import Tokens  # noqa: E402
from sms.twilio import signature  # noqa: E402

ACCOUNT = "AC" + "c" * 32
TOKEN = "soak-token"
SECRET = "soak-token-secret-0123456789"
DOMAIN = "reply.soak"
MAX_BODY = 64 * 1024
SURVEY = """\
id: soak
version: 1
languages: [en]
expiry: 1m
invalid: {en: "Please answer the question."}
closing: {en: "Thank you."}
questions:
  - {id: nps, type: nps, prompt: {en: "How likely are you to recommend us, 0 to 10?"}}
  - {id: csat, type: csat, prompt: {en: "How satisfied were you, 1 to 5?"}}
  - {id: resolved, type: yes_no, prompt: {en: "Was your issue resolved?"}}
"""
ANSWERS = ("9", "4", "yes")
REQUESTS_PER_CONVERSATION = 4.6  # invitation, three answers, duplicates and bad requests
# The bounds PASS/FAIL is judged by, after the warm-up.
RSS_BOUND_MB = 5.0  # RSS slope per 100,000 conversations (seda and its children)
WAL_PAGES = 1000  # SQLite's wal_autocheckpoint default, which Seda keeps
FD_SLACK = 2  # descriptors an idle seda may hold beyond what it held idle before the load


def fake_twilio(port: int) -> None:
    """Twilio's Messages API, as far as Seda uses it: 201 with a fresh message sid."""
    sent = 0

    async def messages(request: web.Request) -> web.Response:
        nonlocal sent
        await request.post()
        sent += 1
        return web.json_response({"sid": f"SM{sent:032x}", "status": "queued"}, status=201)

    serve(port, [web.post("/2010-04-01/Accounts/{sid}/Messages.json", messages)])


def family(pid: int) -> list[int]:
    """pid and every process it started that still runs (children's pids may be lower)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError):
            continue
    found = {pid}
    for candidate in sorted(parents):
        ancestor = candidate
        while ancestor not in found and ancestor in parents and ancestor > 1:
            ancestor = parents[ancestor]
        if ancestor in found:
            found.add(candidate)
    return sorted(found)


def status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class Sample:
    at: float  # seconds since the load started
    conversations: int  # finished so far
    rss_main: float  # MB, seda's own process
    rss_children: float  # MB, its children (the store writer)
    fds: int
    threads: int
    db: float  # MB
    wal: float  # MB
    outbox: float
    caches: dict[str, float]  # seda_cache_entries by cache


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path, ports: dict[str, int]) -> None:
        self.args = args
        self.work = work
        self.url = f"http://127.0.0.1:{ports['http']}"
        self.smtp_port = ports["smtp"]
        self.public = f"{self.url}/sms/main"
        self.tokens = Tokens(SECRET.encode())
        self.rng = random.Random(args.seed)
        self.done = 0
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.serial = 0
        self.pid = 0
        self.started = self.paused = 0.0
        self.http: aiohttp.ClientSession | None = None
        self.smtp: list[aiosmtplib.SMTP] = []
        self.smtp_free: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()

    # --- what a conversation sends -----------------------------------------------------------

    def _mid(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    async def _json(
        self, path: str, body: Any, expect: tuple[int, ...], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        assert self.http is not None
        async with self.http.post(self.url + path, json=body, headers=headers) as resp:
            data: dict[str, Any] = await resp.json(content_type=None)
            if resp.status not in expect:
                self.errors[f"{path} {resp.status} {str(data)[:80]}"] += 1
            return data

    async def _invite(self, address: str, channel: str) -> dict[str, Any]:
        body: dict[str, Any] = {"survey": "soak", "respondent": address}
        if channel != "api":
            body["channel"] = channel
        if channel == "sms":
            body["line"] = "main"
        return await self._json("/api/v1/invitations", body, (201,))

    async def _api_reply(self, address: str, text: str) -> None:
        body = {"respondent": address, "text": text, "message_id": self._mid("a")}
        for _ in range(self._times()):
            await self._json("/api/v1/messages", body, (200,))

    async def _sms(self, number: str, text: str, sign: bool = True) -> None:
        assert self.http is not None
        params = {"MessageSid": f"SM{self._mid(''):0>32}", "AccountSid": ACCOUNT,
                  "From": number, "To": "+15550000000", "Body": text}  # fmt: skip
        sig = signature(self.public, params.items(), TOKEN if sign else "wrong")
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig}
        form = urlencode(params)
        for _ in range(self._times() if sign else 1):
            async with self.http.post(self.public, data=form, headers=headers) as resp:
                await resp.read()
                if resp.status != (200 if sign else 403):
                    self.errors[f"sms {resp.status}"] += 1

    async def _mail(self, recipient: str, text: str) -> None:
        message_id = self._mid("m")
        raw = (
            f"From: someone@soak.example\r\nTo: {recipient}\r\nSubject: Re: A short survey\r\n"
            f"Message-ID: <{message_id}@soak.example>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: text/plain; charset="utf-8"\r\n\r\n{text}\r\n'
        ).encode()
        client = await self.smtp_free.get()
        try:
            for again in range(self._times()):
                _, answer = await client.sendmail("someone@soak.example", [recipient], raw)
                if "accepted" not in answer and not (again and "ignored" in answer):
                    self.errors[f"smtp {answer[:60]}"] += 1
        except aiosmtplib.SMTPException as exc:
            self.errors[f"smtp {type(exc).__name__}"] += 1
        finally:
            self.smtp_free.put_nowait(client)

    def _times(self) -> int:
        """1, or 2 for a duplicate (the same message id again)."""
        return 2 if self.rng.random() < self.args.duplicates else 1

    async def _bad(self) -> None:
        """One bad request, which must change nothing."""
        assert self.http is not None
        kind = self.rng.choice(("400", "403", "413", "sig"))
        self.counts[f"bad {kind}"] += 1
        path = self.url + "/api/v1/messages"
        json_type = {"Content-Type": "application/json"}
        if kind == "400":
            async with self.http.post(path, data=b'{"respondent": ', headers=json_type) as resp:
                ok = resp.status == 400
        elif kind == "403":
            body = {"respondent": "tel:+15559999999", "text": "9"}
            headers = {"X-Forwarded-For": "203.0.113.9"}
            async with self.http.post(path, json=body, headers=headers) as resp:
                ok = resp.status == 403
        elif kind == "413":
            body = {"respondent": "tel:+15559999999", "text": "x" * (MAX_BODY + 1)}
            async with self.http.post(path, json=body) as resp:
                ok = resp.status == 413
        else:
            return await self._sms("+15559999999", "9", sign=False)
        if not ok:
            self.errors[f"bad {kind} answered {resp.status}"] += 1

    async def conversation(self, k: int) -> None:
        """The k-th conversation: its channel and fate drawn from k."""
        rng = random.Random(k * 7919 + self.args.seed)
        n = (k // 3) % self.args.pool
        channel = ("api", "sms", "email")[k % 3] if self.args.email else ("api", "sms")[k % 2]
        fate = rng.random()
        abandon = fate < self.args.abandon
        opt_out = channel == "sms" and not abandon and fate < self.args.abandon + self.args.optout
        kind = "abandoned" if abandon else "opt-out" if opt_out else "full"
        self.counts[f"{channel} {kind}"] += 1
        if rng.random() < self.args.bad:
            await self._bad()
        if channel == "api":
            address = f"tel:+1666{n:07d}"
            await self._invite(address, "api")
            for text in ANSWERS[: 1 if abandon else 3]:
                await self._api_reply(address, text)
        elif channel == "sms":
            number = f"+1777{n:07d}"
            await self._invite(f"tel:{number}", "sms")
            if opt_out:
                await self._sms(number, "9")
                await self._sms(number, "STOP")
                await self._sms(number, "START")
            else:
                for text in ANSWERS[: 1 if abandon else 3]:
                    await self._sms(number, text)
        else:
            new = await self._invite(f"mailto:r{n}@soak.example", "email")
            if "response_id" not in new:
                return
            recipient = self.tokens.address("survey", new["response_id"], DOMAIN)
            for text in ANSWERS[: 1 if abandon else 3]:
                await self._mail(recipient, text)
        self.done += 1

    # --- the load and the samples ------------------------------------------------------------

    async def load(self, seconds: float, samples: list[Sample]) -> tuple[Sample, Sample]:
        """Drive the load for `seconds`, pausing at the end of the warm-up until seda is idle
        and the clients have hung up: what it holds then (descriptors, threads, RSS) is the
        baseline. The samples of seda idle so after the warm-up and at the end."""
        warmup = min(self.args.warmup * 60, seconds)
        self.started = time.perf_counter()
        sampler = asyncio.create_task(self.sampler(samples))
        try:
            baseline = await self.phase(0, warmup)
            print(f"idle after the warm-up: fds {baseline.fds}, threads {baseline.threads}, rss "
                  f"{baseline.rss_main + baseline.rss_children:.1f} MB", flush=True)  # fmt: skip
            self.paused = time.perf_counter() - self.started - warmup
            end = await self.phase(warmup, seconds)
        finally:
            sampler.cancel()
        return baseline, end

    async def phase(self, begin: float, end: float) -> Sample:
        """Connect the clients, drive conversations from `begin` to `end`, wait until seda is
        idle, hang up; a sample of seda then."""
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.args.connections)
        )
        self.smtp = []
        for _ in range(self.args.smtp_connections if self.args.email else 0):
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.smtp_port, start_tls=False,
                                     local_hostname="client.soak")  # fmt: skip
            await client.connect()
            self.smtp.append(client)
            self.smtp_free.put_nowait(client)
        try:
            await self.drive(begin, end)
            await self.idle()
        finally:
            for client in self.smtp:
                await client.quit()
            while not self.smtp_free.empty():
                self.smtp_free.get_nowait()
            await self.http.close()
        await asyncio.sleep(2)
        idle = await self.sample(time.perf_counter() - self.started)
        self.snapshot()
        return idle

    async def drive(self, begin: float, end: float) -> None:
        """Conversations due from `begin` to `end` seconds of load time (pauses excluded)."""
        rate = self.args.rate / REQUESTS_PER_CONVERSATION
        running: set[asyncio.Task[None]] = set()
        k, behind = int(begin * rate), 0
        while (due := k / rate) < end:
            wait = self.started + self.paused + due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            if len(running) >= self.args.in_flight:
                behind += 1  # seda fell behind: skip this one rather than pile up
            else:
                task = asyncio.create_task(self.conversation(k))
                running.add(task)
                task.add_done_callback(running.discard)
            k += 1
        await asyncio.gather(*running)
        if behind:
            self.errors[f"conversations skipped: seda behind ({behind})"] += 1

    def snapshot(self) -> None:
        """With --tracemalloc, have seda write a snapshot of its allocations (see traced)."""
        if self.args.tracemalloc:
            os.kill(self.pid, signal.SIGUSR1)

    async def idle(self) -> None:
        """Wait until the outbox is empty, then a little more."""
        for _ in range(1200):
            if not (await self.metrics())[0]:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)

    async def sampler(self, samples: list[Sample]) -> None:
        last = 0.0
        while True:
            samples.append(await self.sample(time.perf_counter() - self.started))
            s = samples[-1]
            rate = (s.conversations - last) / self.args.sample
            last = s.conversations
            print(
                f"{s.at:7.0f} s  {s.conversations:7d} conv ({rate:4.0f}/s)  rss {s.rss_main:6.1f}"
                f" + {s.rss_children:5.1f} MB  fds {s.fds:4d}  threads {s.threads:3d}"
                f"  db {s.db:6.1f} MB  wal {s.wal:5.2f} MB  outbox {s.outbox:4.0f}  cached "
                + "/".join(f"{v:.0f}" for v in s.caches.values()),
                flush=True,
            )
            await asyncio.sleep(self.args.sample)

    async def sample(self, at: float) -> Sample:
        pids = family(self.pid)
        rss = [status_kb(p, "VmRSS") / 1024 for p in pids]
        fds = sum(len(os.listdir(f"/proc/{p}/fd")) for p in pids)
        threads = sum(status_kb(p, "Threads") for p in pids)
        db, wal = (self.work / "seda.db"), (self.work / "seda.db-wal")
        size = [x.stat().st_size / 2**20 if x.exists() else 0.0 for x in (db, wal)]
        return Sample(at, self.done, rss[0], sum(rss[1:]), fds, threads, *size,
                      *await self.metrics())  # fmt: skip

    async def metrics(self) -> tuple[float, dict[str, float]]:
        """The outbox depth (all backends) and the entries of each in-memory cache."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/metrics") as resp:
            text = await resp.text()
        depths = re.findall(r"^seda_outbox_depth\{[^}]*\} (\S+)$", text, re.MULTILINE)
        caches = re.findall(r'^seda_cache_entries\{cache="(\w+)"\} (\S+)$', text, re.MULTILINE)
        return sum(float(d) for d in depths), {name: float(n) for name, n in caches}


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y on x."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def cached(sample: Sample) -> str:
    return ", ".join(f"{name} {n:.0f}" for name, n in sample.caches.items()) or "not shown"


def verdict(soak: Soak, samples: list[Sample], idle_warm: Sample, idle_after: Sample) -> bool:
    warm = [s for s in samples if s.at >= soak.args.warmup * 60]
    if len(warm) < 3:
        raise SystemExit("too few samples after the warm-up: run longer or warm up shorter")
    first, last = warm[0], warm[-1]
    conv = last.conversations - first.conversations
    per = 100_000 / conv
    rss = [(s.conversations, s.rss_main + s.rss_children) for s in warm]
    rss_slope = slope(rss) * 100_000
    growth = (rss[-1][1] - rss[0][1]) * per
    conversations = soak.args.pool * (3 if soak.args.email else 2)
    wal_bound = 4 * WAL_PAGES * 4096 / 2**20
    checks = {
        f"RSS slope {rss_slope:+.1f} MB per 100k conversations (bound {RSS_BOUND_MB})":
            rss_slope < RSS_BOUND_MB,
        f"fds idle {idle_warm.fds} after the warm-up, {idle_after.fds} at the end":
            idle_after.fds <= idle_warm.fds + FD_SLACK,
        f"threads {first.threads} at warm-up, at most {max(s.threads for s in warm)} after, "
        f"{idle_after.threads} idle at the end": max(s.threads for s in warm) <= first.threads + 2,
        f"WAL at most {max(s.wal for s in samples):.2f} MB (bound {wal_bound:.0f} MB, four "
        f"checkpoints of {WAL_PAGES} pages)": max(s.wal for s in samples) <= wal_bound,
        f"outbox {idle_after.outbox:.0f} at the end": idle_after.outbox == 0,
        f"caches {cached(idle_warm)} after the warm-up, {cached(idle_after)} at the end (bound:"
        f" {conversations} conversations, as many response ids)":
            all(v <= conversations + 10 for v in idle_after.caches.values()),
        f"no unexpected answers ({sum(soak.errors.values())})": not soak.errors,
    }  # fmt: skip
    print(f"\nafter the {soak.args.warmup:g}-minute warm-up: {conv} conversations in "
          f"{last.at - first.at:.0f} s ({conv / (last.at - first.at):.0f}/s)")  # fmt: skip
    print(f"  RSS {rss[0][1]:.1f} -> {rss[-1][1]:.1f} MB ({growth:+.1f} MB per 100k conversations,"
          f" main {first.rss_main:.1f} -> {last.rss_main:.1f}, children "
          f"{first.rss_children:.1f} -> {last.rss_children:.1f})")  # fmt: skip
    print(f"  idle RSS {idle_warm.rss_main + idle_warm.rss_children:.1f} MB after the warm-up,"
          f" {idle_after.rss_main + idle_after.rss_children:.1f} MB at the end")  # fmt: skip
    print(f"  database {first.db:.1f} -> {last.db:.1f} MB "
          f"({(last.db - first.db) * 2**20 / conv:.0f} bytes per conversation: kept by design, "
          "retention.responses)")  # fmt: skip
    ok = True
    for name, passed in checks.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {name}")
        ok = ok and passed
    for error, count in soak.errors.most_common(10):
        print(f"  unexpected: {count} x {error}")
    return ok


async def run(args: argparse.Namespace, work: Path) -> bool:
    ports = {name: free_port() for name in ("http", "smtp", "relay", "twilio")}
    line = {"provider": "twilio", "number": "+15550000000", "account_sid": ACCOUNT,
            "auth_token": TOKEN, "base_url": f"http://127.0.0.1:{ports['twilio']}",
            "public_url": f"http://127.0.0.1:{ports['http']}/sms/main"}  # fmt: skip
    channels: dict[str, Any] = {"api": {"enabled": True}, "sms": {"lines": {"main": line}}}
    if args.email:
        channels["email"] = {
            "port": ports["smtp"], "reply_domain": DOMAIN, "token_secret": SECRET,
            "from": "Seda <surveys@soak.example>", "authenticity": {"policy": "off"},
            "relay": {"host": "127.0.0.1", "port": ports["relay"], "starttls": False},
            "link_base": f"http://127.0.0.1:{ports['http']}",
        }  # fmt: skip
    config = seda_config(work, ports["http"], channels)
    (work / "flows").joinpath("soak.yaml").write_text(SURVEY)
    data = yaml.safe_load(config.read_text())
    data["server"]["max_body"] = MAX_BODY
    config.write_text(yaml.safe_dump(data))
    cmd, env = seda_command(config)
    if args.tracemalloc:  # seda's own command line, through traced() below
        cmd = [sys.executable, "-X", "tracemalloc=1", __file__, "--traced", *cmd[3:]]
    me = [sys.executable, __file__]
    log = (work / "seda.log").open("wb")
    with (
        server([*me, "--twilio", str(ports["twilio"])]),
        server([*me, "--relay", str(ports["relay"])]),
        server(cmd, cwd=work, env=env, stderr=log) as seda,
    ):
        soak = Soak(args, work, ports)
        soak.pid = seda.pid
        for port in (ports["twilio"], ports["relay"], ports["http"]):
            for _ in range(6 if args.tracemalloc else 1):  # traced, seda starts slower
                with contextlib.suppress(SystemExit):
                    await wait_port(port)
                    break
            else:
                raise SystemExit(f"nothing listens on port {port}: see {work / 'seda.log'}")
        await asyncio.sleep(1)
        idle_before = await soak.sample(0)
        samples: list[Sample] = []
        print(f"load: {args.rate:g} requests/s for {args.minutes:g} min, pool {args.pool}"
              f" addresses per channel; seda pid {seda.pid}, in {work}", flush=True)  # fmt: skip
        idle_warm, idle_after = await soak.load(args.minutes * 60, samples)
        print(f"idle: fds {idle_before.fds} at the start, {idle_warm.fds} after the warm-up, "
              f"{idle_after.fds} at the end; threads {idle_before.threads}, {idle_warm.threads},"
              f" {idle_after.threads}")  # fmt: skip
        print("conversations: " + ", ".join(f"{k} {v}" for k, v in sorted(soak.counts.items())))
        events = Counter(re.findall(rb'"type":"([a-z_.]+)"', (work / "answers.jsonl").read_bytes()))
        print("events: " + ", ".join(f"{k.decode()} {v}" for k, v in sorted(events.items())))
        ok = verdict(soak, samples, idle_warm, idle_after)
    if args.tracemalloc:
        grown(work)
    log.close()
    warnings = (work / "seda.log").read_text().splitlines()
    print(f"seda logged {len(warnings)} lines at warning or above")
    for text in warnings[:5]:
        print("  " + text[:200])
    return ok


def traced(argv: list[str]) -> None:
    """`seda` with argv, writing on each SIGUSR1 a tracemalloc snapshot (snapshot-N.bin) and the
    count of live objects by type (objects-N.json) to its working folder."""
    import gc
    import tracemalloc

    from gateway.cli import main

    taken = 0

    def dump(signum: int, frame: Any) -> None:
        nonlocal taken
        taken += 1
        gc.collect()
        tracemalloc.take_snapshot().dump(f"snapshot-{taken}.bin")
        types = Counter(type(o).__qualname__ for o in gc.get_objects())
        Path(f"objects-{taken}.json").write_text(json.dumps(types))

    signal.signal(signal.SIGUSR1, dump)
    sys.exit(main(argv))


def grown(work: Path) -> None:
    """What seda allocated between the end of the warm-up and the end, by line, and which
    types of objects grew in number."""
    import tracemalloc

    for _ in range(100):
        if (work / "objects-2.json").exists():
            break
        time.sleep(0.1)
    before, after = (tracemalloc.Snapshot.load(str(work / f"snapshot-{n}.bin")) for n in (1, 2))
    print("\nallocations that grew after the warm-up (tracemalloc, by line):")
    for stat in after.compare_to(before, "lineno")[:15]:
        print(f"  {stat}")
    one, two = (json.loads((work / f"objects-{n}.json").read_text()) for n in (1, 2))
    growth = sorted(((two.get(t, 0) - one.get(t, 0), t) for t in two), reverse=True)[:10]
    print("objects that grew in number: " + ", ".join(f"{t} {d:+d}" for d, t in growth))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=4.0, help="minutes not judged")
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--pool", type=int, default=2000, help="addresses per channel")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--abandon", type=float, default=0.08)
    parser.add_argument("--optout", type=float, default=0.03, help="of SMS conversations")
    parser.add_argument("--duplicates", type=float, default=0.05, help="messages sent twice")
    parser.add_argument("--bad", type=float, default=0.05, help="bad requests per conversation")
    parser.add_argument("--no-email", dest="email", action="store_false")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--smtp-connections", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="debug: trace seda's allocations and print what grew after the warm-up (slower)",
    )
    parser.add_argument("--twilio", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--relay", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.twilio:
        return fake_twilio(args.twilio)
    if args.relay:
        return serve_relay(args.relay)
    if args.keep:
        ok = asyncio.run(run(args, Path(tempfile.mkdtemp(prefix="soak-"))))
    else:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            ok = asyncio.run(run(args, Path(tmp)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--traced"]:
        traced(sys.argv[2:])
    cli()
