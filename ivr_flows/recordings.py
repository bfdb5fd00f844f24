"""The callers' recorded answers to text questions: naming, writing and retention.

A recording is `<recordings dir>/<YYYY-MM-DD>/<response_id>-<question_id>-<attempt>.wav`
(the day in UTC), 16-bit mono PCM at the calls' rate. The main process chooses the name; the
voice worker that holds the call writes the file; the main process deletes old days. Answers
carry the path relative to the recordings dir.
"""

from __future__ import annotations

import contextlib
import os
import re
import wave
from datetime import date, timedelta
from pathlib import Path

RELATIVE = re.compile(
    r"^\d{4}-\d{2}-\d{2}/[0-9a-f-]{1,64}-[a-z][a-z0-9_]{0,63}-[1-9][0-9]{0,3}\.wav$"
)
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FOLDER_MODE = 0o700
FILE_MODE = 0o600


def name(day: date, response_id: str, question_id: str, attempt: int) -> str:
    """The recording's path relative to the recordings dir."""
    relative = f"{day.isoformat()}/{response_id}-{question_id}-{attempt}.wav"
    if not RELATIVE.match(relative):
        raise ValueError("not a recording name")
    return relative


def valid(relative: object) -> bool:
    """Whether a path is a recording name (nothing outside the recordings dir)."""
    return isinstance(relative, str) and RELATIVE.match(relative) is not None


def write(root: Path, relative: str, pcm: bytes, rate: int) -> Path:
    """Write the audio as a WAV file: a temporary name, then renamed (never a half file)."""
    if not valid(relative):
        raise ValueError("not a recording name")
    target = root / relative
    root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    target.parent.mkdir(mode=FOLDER_MODE, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            with wave.open(out, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(rate)
                wav.writeframes(pcm[: len(pcm) // 2 * 2])
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, FILE_MODE)  # an existing temporary file kept its own mode
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


def delete(root: Path, relative: str) -> bool:
    """Remove one recording (an answer that was not taken); False when there was none."""
    if not valid(relative):
        return False
    try:
        (root / relative).unlink()
    except FileNotFoundError:
        return False
    return True


def sweep(root: Path, keep_days: int, today: date) -> tuple[int, int]:
    """Delete the days older than `keep_days` (by the folder's name): (files, folders) removed."""
    if not root.is_dir():
        return 0, 0
    oldest = today - timedelta(days=keep_days)
    files = folders = 0
    for folder in sorted(root.iterdir()):
        if not DAY.match(folder.name) or not folder.is_dir() or folder.is_symlink():
            continue
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if day >= oldest:
            continue
        for item in folder.iterdir():
            if item.is_file() or item.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    item.unlink()
                    files += 1
        with contextlib.suppress(OSError):  # not empty: something else was put there
            folder.rmdir()
            folders += 1
    return files, folders
