"""Make the speech fixtures: espeak-ng's Korean "네" (yes), "아니요" (no) and a nonsense phrase.

Run from the repository root: `.venv/bin/python tests/data/asr/make_fixtures.py [FOLDER]`
(default: this folder). Each word is written as
  ko_<word>_16k.wav       16 kHz 16-bit PCM WAV (what the recognizer is fed on a call)
  ko_<word>_8k_ulaw.wav   8 kHz mu-law WAV (G.711 as it crosses a phone network)
  ko_<word>_8k.ulaw       the same samples headerless: SIPp's rtp_stream sends a file's bytes as
                          they are, 160 per 20 ms packet, so `rtp_stream="ko_ne_8k.ulaw,1,0"`
                          (payload type 0, PCMU/8000) plays it without a WAV header's click
  ko_<word>_48k.ogg       48 kHz OGG/Opus mono (a Telegram or WhatsApp voice note)
with 0.3 s of silence before the word and 0.8 s after it, so that end of speech is detected.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from asr_models.audio import decode_audio, resample  # noqa: E402

WORDS = {"ne": "네", "aniyo": "아니요", "nonsense": "바나나 사과 딸기"}
LEAD, TAIL = 0.3, 0.8
PEAK = 0.7


def speak(text: str, rate: int) -> np.ndarray:
    """espeak-ng's Korean voice saying `text`, at `rate`, peak-normalised and padded."""
    wav = subprocess.run(
        ["espeak-ng", "-v", "ko", "--stdout", text], check=True, capture_output=True
    ).stdout
    pcm, source_rate = decode_audio(wav)
    samples = np.frombuffer(resample(pcm, source_rate, rate), dtype="<i2").astype(np.float64)
    samples *= PEAK / max(np.abs(samples).max() / 32768, 1e-9) / 32768
    return np.concatenate([np.zeros(int(LEAD * rate)), samples, np.zeros(int(TAIL * rate))])


def make(folder: Path) -> list[Path]:
    """Write every fixture into `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in WORDS.items():
        wide, narrow, full = speak(text, 16000), speak(text, 8000), speak(text, 48000)
        outputs = [
            (f"ko_{name}_16k.wav", wide, 16000, "WAV", "PCM_16"),
            (f"ko_{name}_8k_ulaw.wav", narrow, 8000, "WAV", "ULAW"),
            (f"ko_{name}_8k.ulaw", narrow, 8000, "RAW", "ULAW"),
            (f"ko_{name}_48k.ogg", full, 48000, "OGG", "OPUS"),
        ]
        if name == "nonsense":  # the recognizer tests need it once, not in every format
            outputs = outputs[:1]
        for filename, samples, rate, container, subtype in outputs:
            path = folder / filename
            soundfile.write(path, samples, rate, format=container, subtype=subtype)
            written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for path in make(target):
        print(f"{path} ({path.stat().st_size} bytes)")
