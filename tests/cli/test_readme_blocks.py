"""Every configuration block a README shows passes the check `seda validate` and `seda run`
make, as a newcomer copies it: so a README cannot show a key the code does not read (it would
be refused as unknown) or a value the code refuses."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from gateway.config_check import check_file
from tests.conftest import ROOT
from tests.email import dkim_keys, tls_certs

READMES = [
    "README.md",
    "sms/README.md",
    "email_in/README.md",
    "social/README.md",
    "ivr_flows/README.md",
    "asr_models/README.md",
]
SECTIONS = {"channels", "backends", "speech", "quiet_hours"}  # a survey's block is not one


def blocks() -> list[tuple[str, str]]:
    found = []
    for readme in READMES:
        text = (ROOT / readme).read_text("utf-8")
        for number, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, re.S), 1):
            block = textwrap.dedent(block)
            if SECTIONS & set(yaml.safe_load(block) or {}):
                found.append((f"{readme} block {number}", block))
    return found


BLOCKS = blocks()


def test_the_channel_readmes_show_their_blocks() -> None:
    shown = {label.split(" block")[0] for label, _ in BLOCKS}
    assert shown == set(READMES)


@pytest.mark.parametrize(("label", "block"), BLOCKS, ids=[label for label, _ in BLOCKS])
def test_a_readme_block_passes_as_copied(
    label: str, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The secrets it names, set (a token secret wants 16 characters at least, a bot token is
    # <bot id>:<key>) ...
    for name in set(re.findall(r"\$\{([A-Z0-9_]+)\}", block)):
        token = name.endswith("_TOKEN")
        monkeypatch.setenv(name, f"{'123456:' if token else ''}Secret_of-the-operator-0123456789")
    # ... and the files it names, made where it says /etc/seda/ (a DKIM key, a certificate).
    if "/etc/seda/" in block:
        certificates = tls_certs.make(tmp_path)
        (tmp_path / "dkim.pem").write_bytes(dkim_keys.key().pem)
        (tmp_path / "smtp.crt").write_bytes((certificates.folder / "relay.crt").read_bytes())
        (tmp_path / "smtp.key").write_bytes((certificates.folder / "relay.key").read_bytes())
        block = block.replace("/etc/seda/", f"{tmp_path}/")
    config = tmp_path / "gateway.yaml"
    head = f"flows: {ROOT / 'config/flows'}\ndatabase: {tmp_path / 'seda.db'}\n"
    config.write_text(head + block, "utf-8")
    problems, checked, surveys = check_file(config)
    assert problems == [] and surveys == [], label
    assert checked is not None
