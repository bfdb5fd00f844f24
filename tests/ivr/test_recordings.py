"""Recorded open answers without SIP: names, the WAV writer, retention, settings, the answer field.

The SIPp side (a real call's audio kept as a file) is tests/ivr/test_recorded_answers.py.
"""

from __future__ import annotations

import os
import stat
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.config import ConfigError
from gateway.config_check import check_file
from gateway.model import Answer, Respondent
from ivr_flows import recordings
from ivr_flows.conversation import FRAME_BYTES, SpeechGate
from ivr_flows.settings import IvrSettings, parse
from ivr_flows.turns import Expect, Outcome, Turn
from tests.answer_schema import SCHEMA, assert_valid_answer
from tests.conftest import write_config

TODAY = date(2026, 11, 23)
RESPONSE = "01a2099a-5e08-7000-8366-e283a28c7980"


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


# -- retention ---------------------------------------------------------------------------------


def test_the_sweep_deletes_only_days_older_than_keep_days(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    for days_ago in (0, 89, 90, 91, 400):
        folder = root / _day(days_ago)
        folder.mkdir(parents=True)
        (folder / f"{RESPONSE}-comment-1.wav").write_bytes(b"RIFF")
        (folder / f"{RESPONSE}-comment-2.wav").write_bytes(b"RIFF")
    (root / "notes").mkdir()  # not a day: never touched
    (root / "notes" / "old.wav").write_bytes(b"RIFF")
    (root / "2026-02-30").mkdir()  # looks like a day, is none
    stray = root / _day(120) / "kept-by-hand"  # an old day holding a folder: emptied, kept
    stray.mkdir(parents=True)
    (root / _day(120) / "x.wav").write_bytes(b"RIFF")

    files, folders = recordings.sweep(root, 90, TODAY)

    assert (files, folders) == (5, 2)
    left = sorted(p.name for p in root.iterdir())
    assert left == sorted(["notes", "2026-02-30", _day(0), _day(89), _day(90), _day(120)])
    assert sorted(p.name for p in (root / _day(120)).iterdir()) == ["kept-by-hand"]
    assert len(list((root / _day(90)).iterdir())) == 2  # exactly keep_days old: kept
    assert (root / "notes" / "old.wav").exists()
    assert recordings.sweep(root, 90, TODAY) == (0, 0)  # nothing more to do


def test_the_sweep_of_a_missing_folder_does_nothing(tmp_path: Path) -> None:
    assert recordings.sweep(tmp_path / "none", 1, TODAY) == (0, 0)
    assert not (tmp_path / "none").exists()


# -- names and the writer ----------------------------------------------------------------------


@pytest.fixture
def no_umask() -> Iterator[None]:
    """A permissive umask, so that the file's mode is Seda's doing."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_a_recording_is_written_whole_and_private(tmp_path: Path, no_umask: None) -> None:
    name = recordings.name(TODAY, RESPONSE, "comment", 2)
    assert name == f"2026-11-23/{RESPONSE}-comment-2.wav"
    pcm = bytes(range(256)) * 125  # 2 s at 8 kHz, 16 bit
    path = recordings.write(tmp_path / "rec", name, pcm, 8000)
    assert path == tmp_path / "rec" / name
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.readframes(wav.getnframes()) == pcm
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "rec").stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert recordings.delete(tmp_path / "rec", name)
    assert not recordings.delete(tmp_path / "rec", name)


@pytest.mark.parametrize(
    "name",
    ["../x-q-1.wav", "/etc/x-q-1.wav", "2026-11-23/../../x-q-1.wav", "2026-11-23/x-Q-1.wav", ""],
)
def test_only_recording_names_are_written(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a recording name"):
        recordings.write(tmp_path, name, b"\0\0", 8000)
    assert not recordings.delete(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    name = recordings.name(TODAY, RESPONSE, "comment", 1)
    (tmp_path / "2026-11-23").mkdir()
    (tmp_path / name).mkdir()  # the target is a folder: the rename fails
    with pytest.raises(OSError):
        recordings.write(tmp_path, name, b"\0\0" * 800, 8000)
    assert [p.name for p in (tmp_path / "2026-11-23").iterdir()] == [Path(name).name]


# -- what the worker keeps ---------------------------------------------------------------------


@dataclass
class Recognizer:
    """Scripted: closes the utterance once it has taken `closes_after` bytes; `words` is its
    partial result (what `finish` then returns), "" while it has heard only noise."""

    closes_after: int = 10**9
    words: str = ""
    taken: list[int] = field(default_factory=list)

    def feed(self, pcm: bytes) -> Any:
        self.taken.append(len(pcm))
        return "heard" if sum(self.taken) >= self.closes_after else None

    def partial(self) -> str:
        return self.words

    def finish(self) -> Any:
        return f"finished: {self.words}" if self.words else None

    def close(self) -> None:
        return None


def _voice(seconds: float, start: float = 0.0) -> list[tuple[float, bytes]]:
    frame = (b"\x00\x40" + b"\x00\xc0") * (FRAME_BYTES // 4)  # loud: a square wave
    return [(start + i * 0.02, frame) for i in range(round(seconds * 50))]


def _silence(seconds: float, start: float) -> list[tuple[float, bytes]]:
    """Digital silence, as a phone that stops sending audio gives it."""
    return [(start + i * 0.02, bytes(FRAME_BYTES)) for i in range(round(seconds * 50))]


def test_an_open_answer_keeps_what_was_decoded_up_to_its_longest() -> None:
    limit = 2 * 8000 * 2  # two seconds
    gate = SpeechGate(2.0, limit, keep=True)
    recognizer = Recognizer()
    gate.voiced(_voice(1.5))
    assert gate.feed(recognizer) is None and not gate.full
    gate.voiced(_voice(1.5, 1.5))
    assert gate.feed(recognizer) is None
    assert gate.full
    assert len(gate.audio()) == limit == sum(recognizer.taken)
    assert max(recognizer.taken) <= FRAME_BYTES * 5  # fed 100 ms at a time
    gate.voiced(_voice(0.5, 3.0))
    assert gate.feed(recognizer) is None  # full: nothing more is decoded or kept
    assert len(gate.audio()) == limit


def test_an_open_answer_ends_where_vosk_closed_it() -> None:
    gate = SpeechGate(2.0, 60 * 16000, keep=True)
    recognizer = Recognizer(closes_after=8000)  # half a second
    gate.voiced(_voice(3.0))  # one late block of three seconds
    assert gate.feed(recognizer) == "heard"
    assert len(gate.audio()) == 8000  # what followed in the block is neither decoded nor kept


def test_an_open_answer_ends_after_its_silence_when_vosk_never_closes_it() -> None:
    gate = SpeechGate(2.0, 60 * 16000, keep=True)
    recognizer = Recognizer(words="배송이 늦었어요")  # Vosk's endpointing never fires
    gate.voiced(_voice(1.0))
    assert gate.feed(recognizer) is None
    at = 1.0
    for _ in range(19):  # 1.9 s of silence, 100 ms at a time: not yet
        gate.voiced(_silence(0.1, at))
        at += 0.1
        assert gate.feed(recognizer) is None
    gate.voiced(_silence(0.1, at))
    assert gate.feed(recognizer) == "finished: 배송이 늦었어요"
    assert len(gate.audio()) == 3 * 8000 * 2  # the words and the 2 s of silence after them


def test_a_late_block_ends_where_the_silence_after_words_did() -> None:
    gate = SpeechGate(2.0, 60 * 16000, keep=True)
    recognizer = Recognizer(words="배송이 늦었어요")  # Vosk's endpointing never fires
    # The loop fell behind: the words, 3 s of silence and more words come as one block.
    gate.voiced(_voice(1.0) + _silence(3.0, 1.0) + _voice(1.0, 4.0))
    assert gate.feed(recognizer) == "finished: 배송이 늦었어요"
    assert len(gate.audio()) == 3 * 8000 * 2  # up to 2 s after the words; no more decoded
    assert sum(recognizer.taken) == len(gate.audio())


def test_speech_after_noise_in_the_same_block_is_not_lost() -> None:
    gate = SpeechGate(2.0, 60 * 16000, keep=True)
    recognizer = Recognizer(words="")  # the noise has no words
    gate.voiced(_voice(0.2) + _silence(2.5, 0.2) + _voice(1.0, 2.7))
    assert gate.feed(recognizer) is None
    assert gate.started  # the later speech starts the answer again
    recognizer.words = "네"
    before = len(recognizer.taken)
    assert gate.feed(recognizer) is None  # decoded: the speech and its pre-roll
    assert sum(recognizer.taken[before:]) == (0.3 + 1.0) * 8000 * 2
    gate.voiced(_silence(2.0, 3.7))
    assert gate.feed(recognizer) == "finished: 네"


def test_the_silence_is_measured_on_the_audio_not_the_wall_clock() -> None:
    gate = SpeechGate(2.0, 60 * 16000, keep=True)
    recognizer = Recognizer(words="words")
    # Frames stamped long ago (a worker that fell behind): 1 s of silence after the words,
    # however late it is now, does not end the answer.
    gate.voiced(_voice(1.0) + _silence(1.0, 1.0))
    assert gate.feed(recognizer) is None
    gate.voiced(_voice(0.5, 2.0))  # the caller goes on
    gate.voiced(_silence(1.9, 2.5))
    assert gate.feed(recognizer) is None


def test_silence_after_noise_alone_waits_for_speech_again() -> None:
    gate = SpeechGate(2.0, 60 * 16000, keep=True)
    recognizer = Recognizer(words="")  # loud, but no words: a cough, a door
    gate.voiced(_voice(0.3) + _silence(2.5, 0.3))
    assert gate.feed(recognizer) is None
    assert not gate.started and gate.last_voice is None


def test_audio_on_its_way_counts_as_silence_for_one_block_at_most() -> None:
    def gate_after_silence() -> SpeechGate:
        gate = SpeechGate(0.35)
        gate.voiced(_voice(0.5) + _silence(0.26, 0.5))  # 13 quiet frames: 0.26 s
        return gate

    latest = 0.5 + 0.24  # the newest frame's arrival
    assert gate_after_silence().feed(Recognizer(words="نه"), latest + 0.05) is None
    assert gate_after_silence().feed(Recognizer(words="نه"), latest + 0.095) == "finished: نه"
    # However late the loop is, only one block (0.1 s) of audio can be on its way.
    assert gate_after_silence().feed(Recognizer(words="نه"), latest + 9.0) == "finished: نه"
    gate = SpeechGate(0.35)
    gate.voiced(_voice(0.5) + _silence(0.2, 0.5))
    assert gate.feed(Recognizer(words="نه"), 0.68 + 9.0) is None  # 0.2 + 0.1 < 0.35
    talking = SpeechGate(0.05)
    talking.voiced(_voice(0.5))  # the newest frame is speech: nothing on its way counts
    assert talking.feed(Recognizer(words="نه"), 0.48 + 9.0) is None


def test_a_closed_question_keeps_nothing() -> None:
    gate = SpeechGate(0.35)
    gate.voiced(_voice(1.0))
    gate.feed(Recognizer())
    assert gate.audio() == b"" and not gate.full


def test_the_recording_name_travels_in_turns_and_outcomes() -> None:
    name = recordings.name(TODAY, RESPONSE, "comment", 1)
    turn = Turn((), Expect("comment", "text", "ko", 0, speech=True, record=name))
    assert Turn.from_json(turn.to_json()) == turn
    plain = Turn((), Expect("resolved", "yes_no", "ko", 1, keys=("1", "2")))
    assert Turn.from_json(plain.to_json()).expect == plain.expect
    assert Outcome("speech", "x", 0.9, recording=name).to_json(1)["recording"] == name
    assert "recording" not in Outcome("speech", "x", 0.9).to_json(1)


# -- settings ----------------------------------------------------------------------------------


def _spec(**over: Any) -> dict[str, Any]:
    return {"default_survey": "s", **over}


def test_recordings_are_kept_by_default() -> None:
    settings = parse(_spec())
    assert settings.recordings is True
    assert settings.recordings_dir == "var/recordings"
    assert settings.recordings_keep_days == 90
    assert settings.recordings_max_seconds == 60
    assert (settings.end_silence, settings.open_end_silence) == (0.35, 2.0)
    assert parse(_spec(open_end_silence=3.5)).open_end_silence == 3.5
    with pytest.raises(ConfigError, match=r"channels.ivr.open_end_silence must be between 0 a"):
        parse(_spec(open_end_silence=31))
    with pytest.raises(ConfigError, match=r"channels.ivr.open_end_silence must be a number"):
        parse(_spec(open_end_silence="2s"))
    custom = parse(_spec(recordings={"enabled": False, "dir": "/srv/rec", "keep_days": 30}))
    assert (custom.recordings, custom.recordings_dir, custom.recordings_keep_days) == (
        False,
        "/srv/rec",
        30,
    )
    assert IvrSettings.from_json(custom.to_json()) == custom


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("yes", "channels.ivr.recordings must be a mapping"),
        ({"enabled": "yes"}, r"channels.ivr.recordings.enabled must be true or false"),
        ({"keep_days": 0}, r"channels.ivr.recordings.keep_days must be between 1 and"),
        ({"keep_days": "ninety"}, r"channels.ivr.recordings.keep_days must be a whole number"),
        ({"max_seconds": 0}, r"channels.ivr.recordings.max_seconds must be between 1 and 600"),
        ({"max_seconds": 601}, r"channels.ivr.recordings.max_seconds must be between 1 and 600"),
        ({"dir": ""}, r"channels.ivr.recordings.dir must be a folder path"),
    ],
)
def test_bad_recording_settings_are_refused(block: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(_spec(recordings=block))


def test_a_misspelt_recordings_key_is_refused_beside_other_mistakes(tmp_path: Path) -> None:
    """The block's keys are checked as every block's are (gateway/config_check.py): with the
    key meant, and also when the block has another mistake."""
    block = {"keepdays": 9, "max_seconds": 0}
    ivr = {**_spec(recordings=block), "default_survey": "post_call_nps"}
    path = write_config(tmp_path, channels={"ivr": ivr})
    problems, _, _ = check_file(path)
    assert [line.split(": ", 1)[1] for line in problems] == [
        "channels.ivr.recordings.keepdays: unknown key (did you mean 'keep_days'?)",
        "channels.ivr.recordings.max_seconds must be between 1 and 600",
    ]


# -- the answer field --------------------------------------------------------------------------


def _answer(**over: Any) -> Answer:
    now = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": "01a2099a-5e08-7000-8366-e283a28c7981",
        "response_id": RESPONSE,
        "survey_id": "ko_open_answer",
        "survey_version": 1,
        "question_id": "comment",
        "question_type": "text",
        "value": "배송이 늦었어요",
        "raw": "배송이 늦었어요",
        "input_mode": "speech",
        "attempt": 1,
        "language": "ko",
        "channel": "ivr",
        "provider": "sip",
        "respondent": Respondent("r_abc", ("tel:+989121234567",)),
        "context": {},
        "answered_at": now,
        "received_at": now,
        "transcript": "배송이 늦었어요",
        "confidence": 0.8,
        **over,
    }
    return Answer(**values)


def test_an_answer_without_a_recording_has_no_recording_key() -> None:
    data = _answer().to_json()
    assert "recording" not in data
    assert_valid_answer(data)
    kept = _answer(recording=f"2026-11-23/{RESPONSE}-comment-1.wav").to_json()
    assert kept["recording"] == f"2026-11-23/{RESPONSE}-comment-1.wav"
    assert_valid_answer(kept)


@pytest.mark.parametrize("value", [42, None, "", ["a.wav"]])
def test_the_schema_refuses_a_recording_that_is_not_a_path(value: object) -> None:
    data = {**_answer().to_json(), "recording": value}
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = [e for e in validator.iter_errors(data) if list(e.absolute_path) == ["recording"]]
    assert errors, value
