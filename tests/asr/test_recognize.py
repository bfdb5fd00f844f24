"""Recognition with the Korean test model: espeak-ng's "네" is yes and "아니요" is no, with the
grammar the core builds for a yes/no question, at 16 kHz, 8 kHz mu-law and 48 kHz Opus."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from asr_models import Heard, ModelMissing, SpeechModels, decode_audio
from asr_models.models import heard
from gateway import replies, replies_words
from gateway.flows.model import Question
from tests.asr.conftest import DATA

YES_NO = Question(id="resolved", type="yes_no", prompt={"ko": "해결되었습니까?"})
PHRASES = replies.vocabulary(YES_NO, "ko")

CASES = [
    ("yes, 16 kHz WAV", "ko_ne_16k.wav", True),
    ("yes, 8 kHz mu-law", "ko_ne_8k_ulaw.wav", True),
    ("yes, 48 kHz Opus", "ko_ne_48k.ogg", True),
    ("no, 16 kHz WAV", "ko_aniyo_16k.wav", False),
    ("no, 8 kHz mu-law", "ko_aniyo_8k_ulaw.wav", False),
    ("no, 48 kHz Opus", "ko_aniyo_48k.ogg", False),
]


def audio(name: str) -> tuple[bytes, int]:
    return decode_audio((DATA / name).read_bytes())


def test_the_grammar_is_the_core_vocabulary_plus_the_unknown_word(speech: SpeechModels) -> None:
    assert PHRASES == ["네", "예", "아니요", "아니오", "아니"]
    # This model spells its unknown word <UNK>; "[unk]" is not in its vocabulary.
    assert speech.grammar("ko", PHRASES) == (*PHRASES, "<UNK>")


@pytest.mark.parametrize(("label", "name", "value"), CASES, ids=[c[0] for c in CASES])
def test_a_whole_voice_note_is_recognised(
    speech: SpeechModels, label: str, name: str, value: bool
) -> None:
    pcm, rate = audio(name)
    result = speech.recognize("ko", PHRASES, pcm, rate)
    assert result is not None
    words = replies_words.YES["ko"] if value else replies_words.NO["ko"]
    assert result.words and all(word in words for word in result.words)
    assert 0.3 <= result.confidence <= 1.0
    assert replies.interpret(YES_NO, result.text, "ko", "speech").value is value


@pytest.mark.parametrize(("label", "name", "value"), CASES, ids=[c[0] for c in CASES])
def test_a_call_streams_20_ms_frames(
    speech: SpeechModels, label: str, name: str, value: bool
) -> None:
    """As a call feeds it: the utterance closes on the trailing silence, before finish()."""
    pcm, rate = audio(name)
    frame = rate // 50 * 2
    with speech.recognizer("ko", PHRASES, rate) as recognizer:
        closed = [
            found
            for start in range(0, len(pcm), frame)
            if (found := recognizer.feed(pcm[start : start + frame])) is not None
        ]
        assert recognizer.finish() is None  # nothing left after the closed utterance
    assert len(closed) == 1
    assert replies.interpret(YES_NO, closed[0].text, "ko", "speech").value is value


def test_odd_sized_chunks_give_the_same_result(speech: SpeechModels) -> None:
    pcm, rate = audio("ko_aniyo_16k.wav")
    whole = speech.recognize("ko", PHRASES, pcm, rate)
    recognizer = speech.recognizer("ko", PHRASES, rate)
    found = [h for i in range(0, len(pcm), 333) if (h := recognizer.feed(pcm[i : i + 333]))]
    found += [h for h in [recognizer.finish()] if h]
    assert whole is not None and [h.text for h in found] == [whole.text]


def test_silence_is_none(speech: SpeechModels) -> None:
    assert speech.recognize("ko", PHRASES, bytes(32000 * 2), 16000) is None
    assert speech.recognize("ko", None, bytes(16000), 8000) is None


def test_nonsense_is_not_taken_for_an_answer(speech: SpeechModels) -> None:
    """espeak-ng's "바나나 사과 딸기" (banana apple strawberry) to a yes/no grammar.

    This model's <UNK> never wins, so the grammar forces the words onto phrases; what comes out
    mixes yes and no words, which the core refuses as ambiguous. A model whose [unk] works
    gives None here."""
    pcm, rate = audio("ko_nonsense_16k.wav")
    result = speech.recognize("ko", PHRASES, pcm, rate)
    assert result is None or not replies.interpret(YES_NO, result.text, "ko", "speech").ok


def test_phrases_outside_the_vocabulary_are_left_out_without_kaldi_warnings(
    speech: SpeechModels, capfd: pytest.CaptureFixture[str]
) -> None:
    phrases = ["네", "zzqx", "아니요 qqq", "아니요"]
    assert speech.grammar("ko", phrases) == ("네", "아니요", "<UNK>")
    pcm, rate = audio("ko_ne_16k.wav")
    result = speech.recognize("ko", phrases, pcm, rate)
    assert result is not None and result.text == "네"
    assert "WARNING" not in capfd.readouterr().err  # Vosk warns on every unknown grammar word


def test_a_grammar_of_unknown_words_hears_nothing(speech: SpeechModels) -> None:
    pcm, rate = audio("ko_ne_16k.wav")
    assert speech.grammar("ko", ["zzqx"]) == ("<UNK>",)
    assert speech.recognize("ko", ["zzqx"], pcm, rate) is None


def test_open_vocabulary_recognizers_are_reused(speech: SpeechModels) -> None:
    pcm, rate = audio("ko_ne_16k.wav")
    first = speech.recognizer("ko", None, rate)
    assert first.grammar is None
    result = speech.recognize("ko", [], pcm, rate)  # no phrases: open vocabulary
    assert result is not None and 0.0 < result.confidence <= 1.0
    inner = first._inner
    first.close()
    again = speech.recognizer("ko", None, rate)
    assert again._inner is inner  # from the pool, reset, instead of ~90 ms to create
    again.close()
    with pytest.raises(RuntimeError, match="closed"):
        first.feed(pcm)


RESULTS = [
    ("unknown word only", {"result": [{"word": "[unk]", "conf": 1.0}], "text": "[unk]"}, None),
    ("model's <UNK>", {"result": [{"word": "<UNK>", "conf": 0.9}], "text": "<UNK>"}, None),
    ("no words", {"text": ""}, None),
    (
        "noise dropped, mean of the rest",
        {
            "result": [
                {"word": "[unk]", "conf": 1.0},
                {"word": "네", "conf": 0.8},
                {"word": "예", "conf": 0.6},
            ],
            "text": "[unk] 네 예",
        },
        Heard("네 예", 0.7, ("네", "예")),
    ),
]


@pytest.mark.parametrize(("label", "result", "expected"), RESULTS, ids=[r[0] for r in RESULTS])
def test_vosk_results(label: str, result: dict[str, object], expected: Heard | None) -> None:
    assert heard(json.dumps(result, ensure_ascii=False)) == expected


def test_missing_models_say_how_to_fix_it(tmp_path: Path) -> None:
    models = SpeechModels({"fa": tmp_path / "absent", "ar": "package:no_such_model_package"})
    with pytest.raises(ModelMissing, match="seda models install en SOURCE"):
        models.recognizer("en", ["yes"])
    with pytest.raises(ModelMissing, match="absent does not exist"):
        models.load("fa")
    with pytest.raises(ModelMissing, match="package no_such_model_package is not installed"):
        models.load("ar")
    with pytest.raises(ModelMissing) as caught:
        models.require(["fa", "ar", "en"])
    assert len(str(caught.value).splitlines()) == 3  # every problem at once
    assert isinstance(caught.value, LookupError)


def test_a_folder_that_is_not_a_model_is_refused_before_vosk(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    with pytest.raises(ModelMissing, match=r"no am/final\.mdl"):
        SpeechModels({"fa": tmp_path}).load("fa")


def test_bad_rates_and_languages_are_value_errors(speech: SpeechModels) -> None:
    with pytest.raises(ValueError, match="sample rate 0 Hz"):
        speech.recognizer("ko", PHRASES, 0)
    with pytest.raises(ValueError, match="not a language code"):
        SpeechModels({"../ko": Path("x")})


def test_one_model_per_folder_per_process(speech: SpeechModels, ko_model: Path) -> None:
    other = SpeechModels({"kr": ko_model})
    assert other._model("kr") is speech._model("ko")
    assert speech.languages() == ("ko",)


def test_workers_forked_after_load_share_the_model(speech: SpeechModels) -> None:
    """The model is loaded before the fork; the child recognises without loading it again and
    without copying it (its private memory stays far below the model's size)."""
    pcm, rate = audio("ko_ne_8k_ulaw.wav")
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            result = speech.recognize("ko", PHRASES, pcm, rate)
            memory = Path("/proc/self/smaps_rollup").read_text()
            private = sum(
                int(line.split()[1])
                for line in memory.splitlines()
                if line.startswith(("Private_Dirty:", "Private_Clean:"))
            )
            rss = next(
                int(line.split()[1]) for line in memory.splitlines() if line.startswith("Rss:")
            )
            os.write(write, json.dumps([result.text if result else None, private, rss]).encode())
        finally:
            os._exit(0)
    os.close(write)
    report = b""
    while chunk := os.read(read, 4096):
        report += chunk
    os.close(read)
    os.waitpid(child, 0)
    text, private_kb, rss_kb = json.loads(report)
    assert text == "네"
    assert rss_kb > 300_000  # the model is mapped in the child...
    assert private_kb < 100_000  # ...but shared with the parent, not copied
