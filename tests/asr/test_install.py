"""`seda models install` from a folder, a .zip and a URL (a loopback aiohttp server), and
`seda models list`. A refused install changes nothing: no target, no staging folder left."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asr_models import SpeechModels
from asr_models.install import InstallError, install
from gateway.cli import main
from tests.conftest import write_config


def fake_model(folder: Path, marker: str = "one") -> Path:
    """The smallest tree that passes the Vosk model check (enough for install, not for Vosk)."""
    (folder / "am").mkdir(parents=True)
    (folder / "am" / "final.mdl").write_text(marker)
    (folder / "conf").mkdir()
    (folder / "conf" / "model.conf").write_text("--beam=10.0\n")
    return folder


def zip_tree(folder: Path, archive: Path, top: str = "vosk-model-small-xx-0.1") -> Path:
    """A zip as alphacephei publishes models: one top folder holding the model."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        for path in sorted(folder.rglob("*")):
            name = (
                f"{top}/{path.relative_to(folder).as_posix()}"
                if top
                else str(path.relative_to(folder))
            )
            zipped.write(path, name)
    return archive


def listing(folder: Path) -> dict[str, int]:
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file()
    }


def nothing_left(models: Path) -> None:
    assert not models.exists() or not any(models.iterdir()), list(models.iterdir())


async def test_the_korean_model_from_a_zip(tmp_path: Path, ko_model: Path) -> None:
    archive = zip_tree(ko_model, tmp_path / "vosk-model-small-ko.zip", "vosk-model-small-ko-0.22")
    models = tmp_path / "var" / "models"
    target = await install("ko", str(archive), models)
    assert target == models / "ko"
    assert listing(target) == listing(ko_model)
    assert (target / "conf/model.conf").read_bytes() == (ko_model / "conf/model.conf").read_bytes()
    assert [p.name for p in models.iterdir()] == ["ko"]  # no staging folder left
    found = SpeechModels.from_config({}, tmp_path)
    assert found.languages() == ("ko",)
    found.require(["ko"])


async def test_a_flat_zip_and_a_folder(tmp_path: Path) -> None:
    tree = fake_model(tmp_path / "tree")
    models = tmp_path / "models"
    await install("xx", str(zip_tree(tree, tmp_path / "flat.zip", top="")), models)
    await install("yy", str(tree), models)
    assert listing(models / "xx") == listing(models / "yy") == listing(tree)


async def test_replace_needs_to_be_asked_for(tmp_path: Path) -> None:
    models = tmp_path / "models"
    await install("xx", str(fake_model(tmp_path / "one", "one")), models)
    second = str(fake_model(tmp_path / "two", "two"))
    with pytest.raises(InstallError, match=r"already installed.*--replace"):
        await install("xx", second, models)
    assert (models / "xx/am/final.mdl").read_text() == "one"
    await install("xx", second, models, replace=True)
    assert (models / "xx/am/final.mdl").read_text() == "two"
    assert [p.name for p in models.iterdir()] == ["xx"]


def evil_zip(path: Path, name: str, *, link: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("model/am/final.mdl", "x")
        zipped.writestr("model/conf/model.conf", "x")
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zipped.writestr(info, "/etc/passwd" if link else "owned")
    return path


REFUSED = [
    ("parent folder", "model/../../evil.txt", False, "leaving its folder"),
    ("leading ..", "../evil.txt", False, "leaving its folder"),
    ("absolute path", "/tmp/evil.txt", False, "unsafe path"),
    ("backslashes", "model\\..\\..\\evil.txt", False, "unsafe path"),
    ("drive letter", "C:/evil.txt", False, "unsafe path"),
    ("symbolic link", "model/graph", True, "symbolic link"),
]


@pytest.mark.parametrize(("label", "name", "link", "message"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_unsafe_zips_are_refused(
    tmp_path: Path, label: str, name: str, link: bool, message: str
) -> None:
    models = tmp_path / "deep" / "var" / "models"
    archive = evil_zip(tmp_path / "evil.zip", name, link=link)
    with pytest.raises(InstallError, match=message):
        await install("xx", str(archive), models)
    nothing_left(models)
    assert not list(tmp_path.rglob("evil.txt"))


async def test_a_zip_with_a_file_twice_is_refused(tmp_path: Path) -> None:
    archive = evil_zip(tmp_path / "twice.zip", "model/conf/extra.conf")
    with zipfile.ZipFile(archive, "a") as zipped, pytest.warns(UserWarning, match="Duplicate"):
        zipped.writestr("model/conf/model.conf", "again")
    with pytest.raises(InstallError, match="cannot be unpacked"):
        await install("xx", str(archive), tmp_path / "models")
    nothing_left(tmp_path / "models")


async def test_what_is_not_a_model_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    notes = tmp_path / "notes"
    (notes / "conf").mkdir(parents=True)
    with pytest.raises(InstallError, match=r"no am/final\.mdl"):
        await install("xx", str(zip_tree(notes, tmp_path / "notes.zip")), models)
    with pytest.raises(InstallError, match="not a Vosk model"):
        await install("xx", str(notes), models)
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InstallError, match="not a zip file"):
        await install("xx", str(tmp_path / "fake.zip"), models)
    with pytest.raises(InstallError, match="no such folder or file"):
        await install("xx", str(tmp_path / "absent.zip"), models)
    with pytest.raises(InstallError, match="not a language code"):
        await install("../xx", str(notes), models)
    nothing_left(models)


async def test_sha256_and_size_limits(tmp_path: Path) -> None:
    archive = zip_tree(fake_model(tmp_path / "tree"), tmp_path / "m.zip")
    models = tmp_path / "models"
    with pytest.raises(InstallError, match="sha256 mismatch"):
        await install("xx", str(archive), models, sha256="0" * 64)
    with pytest.raises(InstallError, match="64 hexadecimal"):
        await install("xx", str(archive), models, sha256="abc")
    with pytest.raises(InstallError, match="unpacks to"):
        await install("xx", str(archive), models, max_bytes=5)
    nothing_left(models)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest().upper()
    assert await install("xx", str(archive), models, sha256=digest) == models / "xx"


@pytest.fixture
async def model_server(tmp_path: Path) -> AsyncIterator[tuple[str, bytes]]:
    """A loopback HTTP server playing a model download site; yields its base URL."""
    archive = zip_tree(fake_model(tmp_path / "served"), tmp_path / "served.zip").read_bytes()

    async def model(request: web.Request) -> web.Response:
        return web.Response(body=archive, content_type="application/zip")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: the size shows only while reading
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(archive), 64):
            await response.write(archive[start : start + 64])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/vosk-model-small-xx-0.1.zip", model)
    app.router.add_get("/chunked.zip", chunked)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), archive
    await server.close()


async def test_install_from_a_url(tmp_path: Path, model_server: tuple[str, bytes]) -> None:
    base, archive = model_server
    models = tmp_path / "models"
    digest = hashlib.sha256(archive).hexdigest()
    url = f"{base}/vosk-model-small-xx-0.1.zip"
    with pytest.raises(InstallError, match="sha256 mismatch"):
        await install("xx", url, models, sha256="f" * 64)
    with pytest.raises(InstallError, match="HTTP 404"):
        await install("xx", f"{base}/missing.zip", models)
    with pytest.raises(InstallError, match=f"download refused: {len(archive)} bytes"):
        await install("xx", url, models, max_bytes=100)
    with pytest.raises(InstallError, match="download stopped: larger than 100 bytes"):
        await install("xx", f"{base}/chunked.zip", models, max_bytes=100)
    nothing_left(models)
    assert await install("xx", url, models, sha256=digest) == models / "xx"
    assert await install("yy", f"{base}/chunked.zip", models) == models / "yy"
    assert listing(models / "xx") == listing(models / "yy") == listing(tmp_path / "served")


@pytest.mark.parametrize(
    "url", ["http://models.example.com/m.zip", "ftp://127.0.0.1/m.zip", "file:///etc/passwd"]
)
async def test_urls_other_than_https_are_refused_without_a_request(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(InstallError, match="refused: use https"):
        await install("xx", url, tmp_path / "models")
    nothing_left(tmp_path / "models")


def test_cli_install_and_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    archive = zip_tree(fake_model(tmp_path / "tree"), tmp_path / "m.zip")
    config = write_config(tmp_path, speech={"dir": "models", "models": {"fa": "nowhere/fa"}})
    assert main(["--config", str(config), "models", "install", "xx", str(archive)]) == 0
    assert "installed the xx speech model in" in capsys.readouterr().out
    assert (tmp_path / "models/xx/am/final.mdl").is_file()

    assert main(["--config", str(config), "models", "install", "xx", str(archive)]) == 1
    assert "already installed" in capsys.readouterr().err

    assert main(["--config", str(config), "models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["fa", "BROKEN"]
    assert "nowhere/fa does not exist" in lines[1]
    assert lines[2].split()[:2] == ["xx", "ok"]


def test_cli_list_without_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(tmp_path / "absent.yaml"), "models", "list"]) == 0
    assert "no speech models in" in capsys.readouterr().out
    assert not (tmp_path / "var").exists()
