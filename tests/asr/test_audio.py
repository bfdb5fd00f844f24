"""decode_audio: the fixtures' formats to mono 16-bit PCM; bad audio is a clear AudioError."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from asr_models import AudioError, decode_audio, resample
from tests.asr.conftest import DATA

FORMATS = [
    ("16 kHz PCM WAV", "ko_ne_16k.wav", 16000),
    ("8 kHz mu-law WAV", "ko_ne_8k_ulaw.wav", 8000),
    ("48 kHz OGG/Opus voice note", "ko_ne_48k.ogg", 48000),
    ("16 kHz PCM WAV, no", "ko_aniyo_16k.wav", 16000),
    ("8 kHz mu-law WAV, no", "ko_aniyo_8k_ulaw.wav", 8000),
    ("48 kHz OGG/Opus, no", "ko_aniyo_48k.ogg", 48000),
]


@pytest.mark.parametrize(("label", "name", "rate"), FORMATS, ids=[f[0] for f in FORMATS])
def test_fixtures_decode_to_mono_pcm(label: str, name: str, rate: int) -> None:
    pcm, found = decode_audio((DATA / name).read_bytes())
    assert found == rate
    samples = np.frombuffer(pcm, dtype="<i2")
    assert 1.0 < len(samples) / rate < 3.0  # the word with 0.3 s before and 0.8 s after
    assert np.abs(samples).max() > 10000  # speech, not silence
    assert np.abs(samples[: int(0.2 * rate)]).max() < 600  # the silence before the word


@pytest.mark.parametrize("word", ["ne", "aniyo"])
def test_sipp_raw_file_holds_the_mu_law_wav_samples(word: str) -> None:
    """SIPp's rtp_stream sends a file's bytes as they are: the .ulaw is the WAV minus its header."""
    raw = (DATA / f"ko_{word}_8k.ulaw").read_bytes()
    from_raw, _ = soundfile.read(
        io.BytesIO(raw), samplerate=8000, channels=1, format="RAW", subtype="ULAW", dtype="int16"
    )
    wav, rate = decode_audio((DATA / f"ko_{word}_8k_ulaw.wav").read_bytes())
    assert rate == 8000
    assert from_raw.tobytes() == wav


def test_stereo_is_mixed_down() -> None:
    left = np.full(1600, 1000, dtype=np.int16)
    right = np.full(1600, 3000, dtype=np.int16)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([left, right], axis=1), 16000, format="WAV")
    pcm, rate = decode_audio(buffer.getvalue())
    assert rate == 16000
    assert set(np.frombuffer(pcm, dtype="<i2").tolist()) == {2000}


def wav_header_only() -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(0, dtype=np.int16), 16000, format="WAV")
    return buffer.getvalue()


BAD = [
    ("empty", b"", "empty"),
    ("not audio", b"GIF89a" + bytes(200), "not audio that can be decoded"),
    ("text", "네 네 네".encode() * 50, "not audio that can be decoded"),
    ("truncated OGG", (DATA / "ko_ne_48k.ogg").read_bytes()[:60], "not audio"),
    ("no samples", wav_header_only(), "no samples"),
]


@pytest.mark.parametrize(("label", "data", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_audio_is_a_clear_value_error(label: str, data: bytes, message: str) -> None:
    with pytest.raises(AudioError, match=message) as caught:
        decode_audio(data)
    assert isinstance(caught.value, ValueError)
    assert "BytesIO" not in str(caught.value)


def test_too_long_audio_is_refused_before_decoding() -> None:
    data = (DATA / "ko_ne_16k.wav").read_bytes()
    with pytest.raises(AudioError, match="longer than 1 s"):
        decode_audio(data, max_seconds=1)


def test_resample_keeps_duration_and_tone() -> None:
    seconds = 0.5
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(22050 * seconds)) / 22050)).astype("<i2")
    out = np.frombuffer(resample(tone.tobytes(), 22050, 16000), dtype="<i2")
    assert len(out) == 8000
    peak = np.argmax(np.abs(np.fft.rfft(out)))
    assert abs(peak / seconds - 440) < 4  # the tone is still at 440 Hz
    with pytest.raises(ValueError, match="positive"):
        resample(tone.tobytes(), 0, 16000)
