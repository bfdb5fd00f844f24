"""Make the caller's voice for the SIPp tests: espeak-ng Korean as 8 kHz mu-law WAV files.

SIPp's rtp_stream sends the file's samples as PCMU RTP (it skips the WAV header), so the files
must be mu-law at 8 kHz. Half a second of silence before the word and one and a half after, so
that the recogniser sees the end of the utterance. The open answers (text questions, open
vocabulary) are sentences: a short one and one longer than the tests' recordings.max_seconds.
Run from the repository root (with names: only those files):

    .venv/bin/python tests/data/ivr/make_fixtures.py [open_short.ulaw.wav ...]
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

HERE = Path(__file__).resolve().parent
WORDS = {
    "ne.ulaw.wav": "네",
    "aniyo.ulaw.wav": "아니요",
    "open_short.ulaw.wav": "배송이 너무 늦었어요",  # the delivery was very late
    "open_long.ulaw.wav": (  # ... and the box arrived torn; please send it faster next time
        "배송이 너무 늦었어요 그리고 상자가 찢어져서 왔어요 다음에는 더 빨리 보내 주세요"
    ),
}
RATE = 8000
HEADER = 46  # the bytes of wav_mu_law's header
PACKET = 160  # bytes of mu-law in one 20 ms RTP packet


def spoken(text: str, voice: str = "ko") -> tuple[np.ndarray, int]:
    """espeak-ng's voice as float samples and their rate."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", "--stdin"],
        input=text.encode("utf-8"),
        capture_output=True,
        check=True,
    ).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float64")
    return samples, int(rate)


def resample(samples: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Band-limited resampling (FFT, spectrum cut)."""
    length = round(len(samples) * to / rate)
    spectrum = np.fft.rfft(samples)
    kept = np.zeros(length // 2 + 1, dtype=complex)
    common = min(len(spectrum), len(kept))
    kept[:common] = spectrum[:common]
    return np.fft.irfft(kept, length) * (length / len(samples))


def mu_law(pcm: np.ndarray) -> bytes:
    """G.711 mu-law encoding of s16 samples."""
    value = np.clip(pcm.astype(np.int32), -32635, 32635)
    sign = (value < 0).astype(np.int32) << 7
    magnitude = np.abs(value) + 0x84
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def wav_mu_law(data: bytes) -> bytes:
    """A WAVE file (format 7, mu-law) around the encoded bytes."""
    fmt = struct.pack("<HHIIHHH", 7, 1, RATE, RATE, 1, 8, 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def main(names: list[str]) -> None:
    """Write the fixtures (all, or those named) next to this script."""
    for name, word in WORDS.items():
        if names and name not in names:
            continue
        samples, rate = spoken(word)
        voice = resample(samples, rate, RATE) * 32767 * 0.8
        padded = np.concatenate([np.zeros(RATE // 2), voice, np.zeros(RATE * 3 // 2)])
        # SIPp sends 160 bytes a packet, the 46-byte header included, and fills a short last
        # packet with whatever its buffer held: a loud click. Whole packets only.
        padded = np.concatenate([padded, np.zeros(-(HEADER + len(padded)) % PACKET)])
        (HERE / name).write_bytes(wav_mu_law(mu_law(padded)))
        print(f"{name}: {len(padded) / RATE:.2f} s of {word!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
