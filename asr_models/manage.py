"""`seda models verify` and `seda models remove`, and the manifest `seda models install` keeps.

The manifest (`<models dir>/<language>.manifest.json`, beside the model folder so that the
folder stays exactly what the model's publisher made) records the size and sha256 of every file
as installed, and the sha256 of the .zip it came from. `verify` compares the folder with it,
then loads the model with Vosk in a child process (a broken model can crash Kaldi outright) and
recognises half a second of silence with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asr_models.models import LANGUAGE, ModelMissing, SpeechModels, model_problem

MANIFEST = ".manifest.json"  # <language>.manifest.json in the models folder
REMOVING = ".remove-"
CHUNK = 1024 * 1024
PROBE_TIMEOUT = 600.0  # the largest models take minutes to load
PROBE_RATE = 16000
_SAID = "seda-probe: "  # the child's own message on stderr
ROOT = Path(__file__).resolve().parent.parent


class ModelsError(ValueError):
    """A models command refused or failed; nothing was changed. The message says why."""


# -- the manifest ---------------------------------------------------------------------------


def manifest_path(models_dir: Path, language: str) -> Path:
    """Where the manifest of an installed language lives."""
    return models_dir / f"{language}{MANIFEST}"


def sha256_file(path: Path) -> str:
    """The sha256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def digests(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under `folder` (relative POSIX path) with its size and sha256."""
    found = {}
    for path in sorted(_files(folder)):
        found[path.relative_to(folder).as_posix()] = {
            "size": path.stat().st_size,
            "sha256": sha256_file(path),
        }
    return found


def manifest(language: str, folder: Path, source: str, source_sha256: str | None) -> dict[str, Any]:
    """The manifest of a model folder about to be installed."""
    return {
        "language": language,
        "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "source_sha256": source_sha256,
        "files": digests(folder),
    }


def write_manifest(path: Path, content: Mapping[str, Any]) -> None:
    """Write a manifest atomically (a temporary file renamed over it)."""
    handle, temporary = tempfile.mkstemp(prefix=".manifest-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(content, out, indent=1, sort_keys=True)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def manifest_problems(folder: Path, path: Path) -> list[str]:
    """How `folder` differs from its manifest: missing, changed and added files."""
    try:
        recorded = json.loads(path.read_text("utf-8"))["files"]
        if not isinstance(recorded, dict):
            raise TypeError("files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"its manifest {path} is unreadable ({exc})"]
    present = {p.relative_to(folder).as_posix(): p for p in _files(folder)}
    missing, changed = [], []
    for name, entry in sorted(recorded.items()):
        file = present.get(name)
        if file is None:
            missing.append(name)
        elif file.stat().st_size != entry.get("size") or sha256_file(file) != entry.get("sha256"):
            changed.append(name)
    added = sorted(set(present) - set(recorded))
    problems = []
    if changed:
        problems.append(f"changed since install: {_some(changed)}")
    if missing:
        problems.append(f"missing since install: {_some(missing)}")
    if added:
        problems.append(f"added since install: {_some(added)}")
    return problems


def _some(names: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return f"{shown} and {len(names) - most} more" if len(names) > most else shown


def _files(folder: Path) -> Iterator[Path]:
    for parent, _, names in os.walk(folder):
        for name in names:
            yield Path(parent) / name


# -- verify ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One language's model as `seda models verify` judged it."""

    language: str
    path: Path | None
    problems: tuple[str, ...]  # empty: ok
    checked_files: int  # files compared with the manifest (0: no manifest)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    models: SpeechModels,
    models_dir: Path,
    languages: Sequence[str] = (),
    *,
    timeout: float = PROBE_TIMEOUT,
) -> list[Verdict]:
    """Check each language's model (every configured or installed one when none are given)."""
    wanted = list(dict.fromkeys(languages)) or list(models.languages())
    verdicts = []
    for language in wanted:
        if not LANGUAGE.match(language):
            verdicts.append(Verdict(language, None, ("not a language code like fa or ko",), 0))
            continue
        try:
            path = models.path(language)
        except ModelMissing as exc:
            verdicts.append(Verdict(language, None, (str(exc),), 0))
            continue
        problem = model_problem(path)
        if problem:
            verdicts.append(Verdict(language, path, (problem,), 0))
            continue
        problems: list[str] = []
        recorded = manifest_path(models_dir, language)
        checked = 0
        if _same(path, models_dir / language) and recorded.is_file():
            problems += manifest_problems(path, recorded)
            checked = sum(1 for _ in _files(path))
        load = probe(path, timeout=timeout)
        if load:
            problems.append(load)
        verdicts.append(Verdict(language, path, tuple(problems), checked))
    return verdicts


def _same(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve()
    except OSError:
        return False


def probe(path: Path, *, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Load the model with Vosk in a child process and recognise silence; None when it works."""
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "asr_models.manage", "probe", str(path)]
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return f"Vosk did not load it within {timeout:.0f} s"
    if done.returncode == 0 and done.stdout.strip() == b"ok":
        return None
    said = _vosk_error(done.stderr.decode("utf-8", "replace"))
    if done.returncode < 0:
        return f"Vosk crashed loading it (signal {-done.returncode}){': ' + said if said else ''}"
    return f"Vosk cannot load it: {said or f'exit status {done.returncode}'}"


def _vosk_error(stderr: str) -> str:
    """Why, from the child's stderr: the exception, with the first error Kaldi printed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    kaldi = next((line for line in lines if line.startswith("ERROR (VoskAPI")), "")
    if ") " in kaldi:
        kaldi = kaldi.split(") ", 1)[1]  # drop "ERROR (VoskAPI:Function():file.cc:12)"
    said = next((line for line in reversed(lines) if line.startswith(_SAID)), "")
    said = said.removeprefix(_SAID) or (lines[-1] if lines and not kaldi else "")
    return (f"{said} ({kaldi})" if said and kaldi else said or kaldi)[:400]


def _probe_main(path: str) -> int:
    """In the child: load, recognise 0.5 s of silence, print `ok`."""
    import vosk

    vosk.SetLogLevel(-1)
    try:
        model = vosk.Model(path)
        recognizer = vosk.KaldiRecognizer(model, float(PROBE_RATE))
        recognizer.AcceptWaveform(bytes(PROBE_RATE))  # 0.5 s of s16le silence
        json.loads(recognizer.FinalResult())
    except Exception as exc:
        print(f"{_SAID}{exc}", file=sys.stderr)
        return 1
    print("ok")
    return 0


def run_verify(
    spec: object, base: Path, languages: Sequence[str], *, timeout: float = PROBE_TIMEOUT
) -> tuple[list[str], int]:
    """The `seda models verify` command: the lines to print and the exit status."""
    from asr_models.install import models_dir

    models = SpeechModels.from_config(spec if isinstance(spec, dict) else {}, base)
    folder = models_dir(spec, base)
    if not languages and not models.languages():
        return [f"no speech models in {folder}: nothing to verify"], 0
    verdicts = verify(models, folder, languages, timeout=timeout)
    lines = []
    for verdict in verdicts:
        if verdict.ok:
            how = (
                f"{verdict.checked_files} files as installed, "
                if verdict.checked_files
                else "no manifest, files not checked; "
            )
            lines.append(f"{verdict.language}: ok ({how}loads and recognises)")
        else:
            lines.append(f"{verdict.language}: {'; '.join(verdict.problems)}")
    return lines, 0 if all(v.ok for v in verdicts) else 1


# -- remove ---------------------------------------------------------------------------------


def uses(config: Mapping[str, Any], language: str) -> list[str]:
    """Where the configuration names a language's model: `speech.models.ko`, channels' too."""
    found = []
    speech = config.get("speech") or {}
    if isinstance(speech, Mapping) and language in (speech.get("models") or {}):
        found.append(f"speech.models.{language}")
    channels = config.get("channels") or {}
    if isinstance(channels, Mapping):
        for name, spec in channels.items():
            own = spec.get("speech") if isinstance(spec, Mapping) else None
            if isinstance(own, Mapping) and language in (own.get("models") or {}):
                found.append(f"channels.{name}.speech.models.{language}")
    return found


def remove(
    language: str,
    models_dir: Path,
    config: Mapping[str, Any],
    *,
    force: bool,
    confirm: Callable[[str], bool],
) -> str:
    """Remove an installed model; what to print. ModelsError when refused (nothing changed)."""
    if not LANGUAGE.match(language):
        raise ModelsError(f"{language!r} is not a language code like fa, ar, en or pt-BR")
    target = models_dir / language
    if not target.is_dir():
        raise ModelsError(f"no model for {language} is installed in {models_dir}")
    named = uses(config, language)
    if named and not force:
        raise ModelsError(
            f"the configuration still uses the {language} model ({', '.join(named)}): remove"
            " it from gateway.yaml first, or add --force"
        )
    size = sum(p.stat().st_size for p in _files(target))
    if not confirm(f"Remove the {language} speech model in {target} ({size / 1e6:.0f} MB)?"):
        raise ModelsError("not removed")
    # One rename takes the model out of use at once; deleting the files can then take its time.
    doomed = Path(tempfile.mkdtemp(prefix=f"{REMOVING}{language}-", dir=models_dir))
    try:
        os.rename(target, doomed / language)
    except OSError as exc:
        doomed.rmdir()
        raise ModelsError(f"{target} cannot be removed ({exc.strerror})") from None
    manifest_path(models_dir, language).unlink(missing_ok=True)
    shutil.rmtree(doomed, ignore_errors=True)
    return f"removed the {language} speech model from {target} ({size / 1e6:.0f} MB)"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        sys.exit(_probe_main(sys.argv[2]))
    print("usage: python -m asr_models.manage probe MODEL_FOLDER", file=sys.stderr)
    sys.exit(2)
