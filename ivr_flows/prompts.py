"""Prompts as WAV files the workers can play: recorded audio converted once, or espeak-ng speech.

Every file in the cache is 8 kHz, 16-bit mono PCM (the workers' conference bridge rate), named
by the SHA-256 of what it was made from, so a changed prompt gets a new file and an unchanged
one is never made twice. Recorded prompts are what operators should use; the synthetic voice is
a fallback so that a survey written only as text still runs on the phone.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import wave
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import soundfile

from gateway.logs import fields
from ivr_flows.settings import MEDIA_RATE

log = logging.getLogger("seda.ivr.prompts")

RATE = MEDIA_RATE
MAX_TEXT = 2000  # characters of one synthesised prompt
MAX_SECONDS = 120.0


class PromptError(RuntimeError):
    """A prompt could not be made (espeak-ng missing or failing, unreadable audio file)."""


def resample(samples: np.ndarray, rate: int, to: int = RATE) -> np.ndarray:
    """Float mono samples from `rate` to `to` Hz (FFT with the spectrum cut: band-limited)."""
    if rate == to or len(samples) == 0:
        return samples
    length = round(len(samples) * to / rate)
    spectrum = np.fft.rfft(samples)
    kept = np.zeros(length // 2 + 1, dtype=complex)
    common = min(len(spectrum), len(kept))
    kept[:common] = spectrum[:common]
    out: np.ndarray = np.fft.irfft(kept, length) * (length / len(samples))
    return out


def to_wav(data: bytes) -> bytes:
    """Any audio soundfile reads (WAV of any rate, FLAC, OGG...) as an 8 kHz mono PCM WAV."""
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            if sound.frames > MAX_SECONDS * sound.samplerate:
                raise PromptError(f"a prompt longer than {MAX_SECONDS:g} s")
            samples = sound.read(dtype="float64", always_2d=True)
            rate = int(sound.samplerate)
    except (soundfile.SoundFileError, RuntimeError, ValueError) as exc:
        raise PromptError(f"not audio that can be read: {exc}") from None
    mono = samples.mean(axis=1) if samples.size else np.zeros(0)
    pcm = np.clip(np.round(resample(mono, rate) * 32767), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()


def wav_seconds(path: Path) -> float:
    """How long a PCM WAV file plays."""
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / float(wav.getframerate())


class PromptCache:
    """Makes and remembers the WAV file of each prompt (in the main process)."""

    def __init__(self, folder: Path, espeak: str = "espeak-ng", voices: Mapping[str, str] = {}):
        self.folder = folder
        self.espeak = espeak
        self.voices = dict(voices)
        self._making: dict[str, asyncio.Future[Path]] = {}

    async def recorded(self, source: Path) -> Path:
        """A recorded prompt converted to the workers' format (once per file version)."""
        stat = source.stat()
        key = _key(
            "file", str(RATE), str(source.resolve()), str(stat.st_mtime_ns), str(stat.st_size)
        )
        return await self._once(key, lambda: asyncio.to_thread(_read_convert, source))

    async def spoken(self, text: str, language: str) -> Path:
        """`text` spoken by espeak-ng in the language's voice (once per text and voice)."""
        text = text[:MAX_TEXT]
        voice = self.voices.get(language, language)
        key = _key("espeak-ng", str(RATE), voice, text)
        return await self._once(key, lambda: self._synthesise(text, voice))

    async def _once(self, key: str, make: object) -> Path:
        target = self.folder / f"{key}.wav"
        if target.exists():
            return target
        pending = self._making.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._making[key] = future
        try:
            assert callable(make)
            data: bytes = await make()
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}.part")
            partial.write_bytes(data)
            os.replace(partial, target)  # whole or absent: a worker never plays half a file
            future.set_result(target)
            return target
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._making[key]

    async def _synthesise(self, text: str, voice: str) -> bytes:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.espeak, "-v", voice, "--stdout", "--stdin",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except FileNotFoundError:
            raise PromptError(
                f"{self.espeak} is not installed: record the prompts or install espeak-ng"
            ) from None
        out, err = await proc.communicate(text.encode("utf-8"))
        if proc.returncode != 0 or not out:
            reason = err.decode("utf-8", "replace").strip()[:200]
            log.error("espeak-ng failed", extra=fields(voice=voice, reason=reason))
            raise PromptError(f"espeak-ng failed for voice {voice!r}: {reason}")
        return await asyncio.to_thread(to_wav, out)


def _read_convert(source: Path) -> bytes:
    return to_wav(source.read_bytes())


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
