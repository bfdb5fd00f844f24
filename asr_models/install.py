"""`seda models install` and `seda models list`: Vosk models in var/models/<language>.

A model comes from a folder, a .zip (as alphacephei publishes them: one top folder holding am/,
conf/, graph/...) or a URL (https; plain http only to this machine). Everything is unpacked and
checked in a staging folder beside the target and moved into place with one rename, so a model
is either wholly installed or not at all; an interrupted install leaves a `.install-*` folder
that nothing reads and that can be deleted. The command also writes a manifest of the files
(asr_models.manage) that `seda models verify` checks the folder against.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from asr_models.manage import manifest, manifest_path, sha256_file, write_manifest
from asr_models.models import DEFAULT_DIR, LANGUAGE, SpeechModels, model_problem

MAX_BYTES = 8 * 1024**3  # the largest Vosk models unpack to about 4 GB
CHUNK = 1024 * 1024
STAGING = ".install-"


class InstallError(ValueError):
    """A model cannot be installed; nothing was changed."""


@dataclass(frozen=True)
class Installed:
    """One language's model as `seda models list` shows it."""

    language: str
    path: Path
    problem: str | None  # None: a usable Vosk model folder
    size: int  # bytes on disk


async def install(
    language: str,
    source: str,
    models_dir: Path,
    *,
    sha256: str | None = None,
    replace: bool = False,
    max_bytes: int = MAX_BYTES,
    timeout: float = 3600.0,
    record: bool = False,
) -> Path:
    """Install a model for `language` from a folder, a .zip or a URL; returns its folder.

    With `record`, the size and sha256 of every file (and of the .zip) go into a manifest
    beside the model folder, for `seda models verify`; a replaced model's manifest goes anyway.
    """
    if not LANGUAGE.match(language):
        raise InstallError(f"{language!r} is not a language code like fa, ar, en or pt-BR")
    if sha256 is not None and not _is_sha256(sha256):
        raise InstallError("--sha256 must be 64 hexadecimal digits")
    target = models_dir / language
    source_digest: str | None = None
    if target.exists() and not replace:
        raise InstallError(f"a model for {language} is already installed in {target} (--replace)")
    if _is_url(source):
        _allowed_url(source)
    elif Path(source).is_dir():
        if sha256 is not None:
            raise InstallError("--sha256 checks a .zip or a download, not a folder")
    elif Path(source).is_file():
        source_digest = _check_sha256(Path(source), sha256, always=record)
    else:
        raise InstallError(f"{source}: no such folder or file, and not an https URL")
    created = not models_dir.exists()
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{language}-", dir=models_dir))
    try:
        unpacked = staging / "unpacked"
        if _is_url(source):
            archive = staging / "download.zip"
            await _download(source, archive, max_bytes=max_bytes, timeout=timeout)
            source_digest = _check_sha256(archive, sha256, always=record)
            _unzip(archive, unpacked, max_bytes=max_bytes)
        elif Path(source).is_dir():
            try:
                shutil.copytree(Path(source), unpacked / "model")
            except (OSError, shutil.Error) as exc:
                raise InstallError(f"{source}: cannot be copied ({exc})") from None
        else:
            _unzip(Path(source), unpacked, max_bytes=max_bytes)
        root = _model_root(unpacked, source)
        content = manifest(language, root, _source_name(source), source_digest) if record else None
        manifest_path(models_dir, language).unlink(missing_ok=True)  # a replaced model's
        _move_into_place(root, target, staging)
        if content is not None:
            write_manifest(manifest_path(models_dir, language), content)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not target.exists():
            with contextlib.suppress(OSError):
                models_dir.rmdir()  # made for this install, and empty again
    return target


def installed(models: SpeechModels) -> list[Installed]:
    """Every configured or installed language with its folder, problem and size."""
    found = []
    for language in models.languages():
        try:
            path = models.path(language)
        except LookupError as exc:
            found.append(Installed(language, Path("-"), str(exc), 0))
            continue
        problem = model_problem(path)
        found.append(Installed(language, path, problem, 0 if problem else _size(path)))
    return found


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _is_url(source: str) -> bool:
    return "://" in source


def _allowed_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise InstallError(
        f"{parts.scheme}:// URLs are refused: use https (plain http only to localhost)"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _download(url: str, path: Path, *, max_bytes: int, timeout: float) -> None:
    import aiohttp

    _allowed_url(url)
    limits = aiohttp.ClientTimeout(total=timeout, sock_connect=30, sock_read=120)
    try:
        async with (
            aiohttp.ClientSession(timeout=limits) as session,
            session.get(url) as response,
        ):
            _allowed_url(str(response.url))  # where redirects led
            if response.status != 200:
                raise InstallError(f"download failed: HTTP {response.status} {response.reason}")
            if (response.content_length or 0) > max_bytes:
                raise InstallError(f"download refused: {response.content_length} bytes is too big")
            size = 0
            with path.open("wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise InstallError(f"download stopped: larger than {max_bytes} bytes")
                    out.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise InstallError(f"download failed: {type(exc).__name__} {exc}".strip()) from None


def _check_sha256(path: Path, expected: str | None, *, always: bool = False) -> str | None:
    """The file's sha256 (when expected or `always`); InstallError when it is not `expected`."""
    if expected is None and not always:
        return None
    digest = sha256_file(path)
    if expected is not None and digest != expected.lower():
        raise InstallError(f"sha256 mismatch: expected {expected.lower()}, got {digest}")
    return digest


def _source_name(source: str) -> str:
    """What the manifest says a model came from: the path, or the URL without query or login."""
    if not _is_url(source):
        return str(Path(source).resolve())
    parts = urlsplit(source)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _unzip(archive: Path, folder: Path, *, max_bytes: int) -> None:
    """Extract a zip, refusing absolute paths, `..`, symbolic links and oversized content."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            for member in members:
                _check_member(member)
            total = sum(member.file_size for member in members)
            if total > max_bytes:
                raise InstallError(f"{archive.name}: unpacks to {total} bytes, over {max_bytes}")
            folder.mkdir(parents=True)
            if total > shutil.disk_usage(folder).free:
                raise InstallError(f"{archive.name}: unpacks to {total} bytes, more than is free")
            for member in members:
                _extract(zipped, member, folder)
    except OSError as exc:
        raise InstallError(f"{archive.name}: cannot be unpacked ({exc})") from None
    except zipfile.BadZipFile as exc:
        raise InstallError(f"{archive.name}: not a zip file ({exc})") from None
    except zipfile.LargeZipFile as exc:
        raise InstallError(f"{archive.name}: {exc}") from None


def _check_member(member: zipfile.ZipInfo) -> None:
    name = member.filename
    parts = PurePosixPath(name).parts
    if not parts or "\\" in name or name.startswith("/") or ":" in parts[0]:
        raise InstallError(f"refused: the zip holds an unsafe path {name!r}")
    if ".." in parts:
        raise InstallError(f"refused: the zip holds a path leaving its folder {name!r}")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise InstallError(f"refused: the zip holds a symbolic link {name!r}")


def _extract(zipped: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path) -> None:
    destination = folder.joinpath(*PurePosixPath(member.filename).parts)
    if not destination.resolve().is_relative_to(folder.resolve()):
        raise InstallError(f"refused: the zip holds a path leaving its folder {member.filename!r}")
    if member.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipped.open(member) as source, destination.open("xb") as out:
        shutil.copyfileobj(source, out, CHUNK)


def _model_root(unpacked: Path, source: str) -> Path:
    """The model folder: the unpacked tree itself, or its one top folder."""
    if not unpacked.is_dir():
        raise InstallError(f"{source}: nothing to install")
    if model_problem(unpacked) is None:
        return unpacked
    children = [entry for entry in unpacked.iterdir() if not entry.name.startswith("__MACOSX")]
    if len(children) == 1 and children[0].is_dir():
        problem = model_problem(children[0])
        if problem is None:
            return children[0]
        raise InstallError(f"{source}: {problem.replace(str(children[0]), children[0].name)}")
    raise InstallError(
        f"{source}: not a Vosk model (expected am/final.mdl with conf/ or graph/, at the top"
        " or in one top folder)"
    )


def _move_into_place(root: Path, target: Path, staging: Path) -> None:
    """One rename puts the model in place; a replaced model is moved aside first."""
    previous = staging / "previous"
    if target.exists():
        os.rename(target, previous)
    try:
        os.rename(root, target)
    except OSError:
        if previous.exists():
            os.rename(previous, target)
        raise


def _size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in _files(path))


def _files(path: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(path):
        for name in names:
            yield Path(folder) / name


def models_dir(spec: object, base: Path) -> Path:
    """Where `seda models install` puts models: speech.dir of gateway.yaml, else var/models."""
    folder = spec.get("dir") if isinstance(spec, dict) else None
    return base / (folder if isinstance(folder, str) and folder else DEFAULT_DIR)


def run_install(
    language: str, source: str, spec: object, base: Path, *, sha256: str | None, replace: bool
) -> str:
    """The `seda models install` command: what to print; InstallError when nothing changed."""
    import asyncio

    target = asyncio.run(
        install(
            language, source, models_dir(spec, base), sha256=sha256, replace=replace, record=True
        )
    )
    return (
        f"installed the {language} speech model in {target} ({_size(target) / 1e6:.0f} MB);"
        f" `seda models verify {language}` checks it"
    )


def run_list(spec: object, base: Path) -> list[str]:
    """The `seda models list` command: one line per language."""
    models = SpeechModels.from_config(spec if isinstance(spec, dict) else {}, base)
    rows = installed(models)
    if not rows:
        folder = models_dir(spec, base)
        return [f"no speech models in {folder}: `seda models install LANG SOURCE` adds one"]
    lines = []
    for row in rows:
        state = "ok" if row.problem is None else "BROKEN"
        lines.append(f"{row.language:<8} {state:<7} {row.size / 1e6:>7.0f} MB  {row.path}")
        if row.problem:
            lines.append(f"         {row.problem}")
    return lines
