"""Prompts as the workers play them: recorded WAVs converted once, espeak-ng text cached."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr_flows.prompts import PromptCache, PromptError, to_wav, wav_seconds
from tests.ivr.harness import need


def _tone(rate: int, channels: int, seconds: float = 0.5) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 440 * t)
    samples = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (44100, 2), (16000, 1)])
def test_recorded_prompts_become_8k_mono(rate: int, channels: int) -> None:
    converted = to_wav(_tone(rate, channels))
    with wave.open(io.BytesIO(converted)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.getnframes() == 4000  # the same half second
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert 0.25 * 32767 < np.abs(samples).max() < 0.35 * 32767  # the level kept


def test_not_audio_is_a_clear_error() -> None:
    with pytest.raises(PromptError, match="not audio"):
        to_wav(b"RIFF nonsense")


async def test_recorded_prompt_is_converted_once(tmp_path: Path) -> None:
    source = tmp_path / "nps.wav"
    source.write_bytes(_tone(8000, 1))
    cache = PromptCache(tmp_path / "cache")
    first = await cache.recorded(source)
    made = first.stat().st_mtime_ns
    assert await cache.recorded(source) == first
    assert first.stat().st_mtime_ns == made
    assert wav_seconds(first) == pytest.approx(0.5)
    source.write_bytes(_tone(8000, 1, seconds=1.0))  # a new recording: a new file
    assert await cache.recorded(source) != first


async def test_text_prompts_are_spoken_once_per_voice(tmp_path: Path) -> None:
    need("espeak-ng")
    cache = PromptCache(tmp_path, voices={"fa": "fa"})
    persian = await cache.spoken("از صفر تا ده", "fa")
    assert wav_seconds(persian) > 0.3
    assert await cache.spoken("از صفر تا ده", "fa") == persian
    assert await cache.spoken("from zero to ten", "en") != persian
    broken = PromptCache(tmp_path / "x", espeak="/nonexistent/espeak-ng")
    with pytest.raises(PromptError, match="not installed"):
        await broken.spoken("hello", "en")
    assert not (tmp_path / "x").exists()
