"""The fixture script (espeak-ng) makes what the committed fixtures are, and the decoding-rate
function the IVR benchmark imports measures something."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

from asr_models import SpeechModels, decode_audio
from asr_models.bench import decode_rate
from tests.asr.conftest import DATA, YES_NO_KO
from tests.conftest import ROOT


def test_make_fixtures_writes_every_format(tmp_path: Path, espeak: str) -> None:
    done = subprocess.run(
        [sys.executable, str(DATA / "make_fixtures.py"), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in DATA.iterdir() if p.name.startswith("ko_"))
    assert made == committed
    for name in made:
        info = soundfile.info(tmp_path / name) if not name.endswith(".ulaw") else None
        if name.endswith("_16k.wav"):
            assert info and (info.samplerate, info.subtype, info.channels) == (16000, "PCM_16", 1)
        elif name.endswith("_8k_ulaw.wav"):
            assert info and (info.samplerate, info.subtype) == (8000, "ULAW")
        elif name.endswith(".ogg"):
            assert info and (info.samplerate, info.format, info.subtype) == (48000, "OGG", "OPUS")
    for name in ("ko_ne_16k.wav", "ko_aniyo_8k_ulaw.wav", "ko_ne_8k.ulaw"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_the_fixture_audio_is_speech_between_silences() -> None:
    pcm, rate = decode_audio((DATA / "ko_aniyo_16k.wav").read_bytes())
    samples = np.abs(np.frombuffer(pcm, dtype="<i2"))
    loud = np.flatnonzero(samples > 2000)
    assert 0.25 < loud[0] / rate < 0.45  # 0.3 s of silence, then the word
    assert 0.8 <= (len(samples) - loud[-1]) / rate < 1.5  # 0.8 s added to espeak-ng's own


def test_decode_rate_for_the_ivr_benchmark(speech: SpeechModels, espeak: str) -> None:
    rate = decode_rate(speech, "ko", 0.3)
    assert rate > 1.0  # grammar decoding is faster than real time on any machine we run on
    pcm, sample_rate = decode_audio((DATA / "ko_ne_16k.wav").read_bytes())
    assert decode_rate(speech, "ko", 0.2, phrases=YES_NO_KO, pcm=pcm, rate=sample_rate) > 1.0
