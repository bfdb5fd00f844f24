"""The pure decoding rate of grammar recognition: the ceiling for the voice benchmarks.

decode_rate() feeds the same speech to fresh grammar recognizers in 20 ms frames, as a call
does, on the calling thread (one core), until `seconds` of CPU time are spent, and returns audio
seconds decoded per CPU second. A machine with N free cores decodes at most about N times that.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence

from asr_models.audio import decode_audio, resample
from asr_models.models import SpeechModels

FRAME_SECONDS = 0.02
PAUSE_SECONDS = 0.6  # silence after the speech, so that each pass ends its utterance


def decode_rate(
    models: SpeechModels,
    language: str,
    seconds: float,
    *,
    phrases: Sequence[str] | None = None,
    pcm: bytes | None = None,
    rate: int = 16000,
) -> float:
    """Audio seconds decoded per CPU second with a grammar (yes/no words unless `phrases`)."""
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    phrases = list(phrases) if phrases is not None else yes_no_phrases(language)
    if pcm is None:
        pcm = spoken(language, phrases, rate)
    if not pcm:
        raise ValueError("no audio to decode")
    models.load(language)
    frame = int(rate * FRAME_SECONDS) * 2
    audio = cpu = 0.0
    while cpu < seconds:
        started = time.process_time()
        recognizer = models.recognizer(language, phrases, rate)
        for start in range(0, len(pcm), frame):
            recognizer.feed(pcm[start : start + frame])
        recognizer.finish()
        recognizer.close()
        cpu += time.process_time() - started
        audio += len(pcm) / 2 / rate
    return audio / cpu


def yes_no_phrases(language: str) -> list[str]:
    """The core's yes/no words of a language (what a yes/no question's grammar holds)."""
    from gateway import replies_words

    found = [*replies_words.YES.get(language, ()), *replies_words.NO.get(language, ())]
    if not found:
        raise ValueError(f"no yes/no words for {language!r}: pass phrases")
    return found


def spoken(language: str, phrases: Sequence[str], rate: int = 16000) -> bytes:
    """espeak-ng saying the phrases with pauses, as mono s16le PCM at `rate`."""
    if shutil.which("espeak-ng") is None:
        raise ValueError("espeak-ng is not installed: pass pcm (s16le mono speech) instead")
    text = ", ".join(phrases)
    wav = subprocess.run(
        ["espeak-ng", "-v", language, "--stdout", text], check=True, capture_output=True
    ).stdout
    speech, source_rate = decode_audio(wav)
    return resample(speech, source_rate, rate) + bytes(int(rate * PAUSE_SECONDS) * 2)
