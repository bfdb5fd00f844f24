"""Audio in: any file soundfile reads (WAV, OGG/Opus, FLAC, MP3...) to mono 16-bit PCM."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import soundfile

MAX_SECONDS = 300.0  # a voice answer; longer input is refused before it is decoded
MAX_RATE = 192_000


class AudioError(ValueError):
    """The audio cannot be used: empty, not a format soundfile reads, too long, or broken."""


def decode_audio(data: bytes, *, max_seconds: float = MAX_SECONDS) -> tuple[bytes, int]:
    """WAV (PCM, mu-law...), OGG/Opus, FLAC, MP3 -> (mono s16le PCM, sample rate)."""
    if not data:
        raise AudioError("no audio: the file is empty")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            rate, frames, channels = sound.samplerate, sound.frames, sound.channels
            if not 0 < rate <= MAX_RATE or channels < 1:
                raise AudioError(f"unusable audio: {channels} channel(s) at {rate} Hz")
            if frames > max_seconds * rate:
                raise AudioError(f"audio longer than {max_seconds:g} s ({frames / rate:.0f} s)")
            samples = sound.read(dtype="int16", always_2d=True)
    except AudioError:
        raise
    except (soundfile.SoundFileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        raise AudioError(f"not audio that can be decoded: {_reason(exc)}") from None
    if len(samples) == 0:
        raise AudioError("no audio: the file holds no samples")
    return _mono(samples).tobytes(), int(rate)


def _reason(exc: Exception) -> str:
    text = str(exc)
    # soundfile names the in-memory file object in its messages; only the reason helps.
    return text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else text


def _mono(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0], dtype="<i2")
    mixed = samples.astype(np.int32).sum(axis=1) // samples.shape[1]
    out: npt.NDArray[np.int16] = mixed.astype("<i2")
    return out


def resample(pcm: bytes, rate: int, to: int) -> bytes:
    """Mono s16le PCM from `rate` to `to` Hz (band-limited: FFT with the spectrum cut)."""
    if rate <= 0 or to <= 0:
        raise ValueError(f"sample rates must be positive, not {rate} and {to}")
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    if rate == to or len(samples) == 0:
        return samples.astype("<i2").tobytes()
    length = round(len(samples) * to / rate)
    spectrum = np.fft.rfft(samples)
    kept = np.zeros(length // 2 + 1, dtype=complex)
    common = min(len(spectrum), len(kept))
    kept[:common] = spectrum[:common]
    out = np.fft.irfft(kept, length) * (length / len(samples))
    return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()


def seconds(pcm: bytes, rate: int) -> float:
    """Duration of mono s16le PCM."""
    return len(pcm) / 2 / rate
