"""Make the voice-note fixtures: espeak-ng Korean speech as OGG/Opus, as Telegram stores voice.

Run from the repository root: `.venv/bin/python tests/data/telegram/make_voice_notes.py`.
Telegram voice notes are OGG/Opus, mono, 48 kHz (Opus codes at 8/12/16/24/48 kHz).
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import soundfile

from asr_models import resample

HERE = Path(__file__).resolve().parent
RATE = 48_000
NOTES = {
    "voice_ne_ko.oga": "네",  # "yes"
    "voice_silence.oga": None,  # one second of silence: nothing to recognise
}


def speech(text: str) -> tuple[bytes, int]:
    """espeak-ng's Korean voice saying `text`, as mono s16le PCM and its rate."""
    wav = subprocess.run(
        ["espeak-ng", "-v", "ko", "--stdout", text], check=True, capture_output=True
    ).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="int16")
    return samples.tobytes(), int(rate)


def main() -> None:
    """Write each fixture next to this script."""
    for name, text in NOTES.items():
        if text is None:
            pcm = np.zeros(RATE, dtype="<i2").tobytes()
        else:
            spoken, rate = speech(text)
            pause = np.zeros(RATE // 4, dtype="<i2").tobytes()  # a quarter second each side
            pcm = pause + resample(spoken, rate, RATE) + pause
        samples = np.frombuffer(pcm, dtype="<i2")
        soundfile.write(HERE / name, samples, RATE, format="OGG", subtype="OPUS")
        print(name, f"{len(samples) / RATE:.2f} s", (HERE / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
