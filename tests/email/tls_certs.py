"""Certificates for TLS relays in tests, made by the `openssl` command in a temporary folder:
a test CA, relay certificates it signs, and a second CA that signed none of them."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Seda test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[relay]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[misnamed]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:relay.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


@dataclass(frozen=True)
class Certificates:
    """The files: `ca` signed the relay's certificates, `other_ca` signed nothing of them."""

    folder: Path

    @property
    def ca(self) -> Path:
        """The test CA, to give Seda as relay.ca_file."""
        return self.folder / "ca.crt"

    @property
    def other_ca(self) -> Path:
        """A CA that did not sign the relay's certificate: the wrong ca_file."""
        return self.folder / "other.crt"

    def server(self, name: str = "relay") -> ssl.SSLContext:
        """A server context with the certificate `relay` (127.0.0.1) or `misnamed`."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.folder / f"{name}.crt", self.folder / f"{name}.key")
        return context


def make(folder: Path) -> Certificates:
    """Write a test CA, a second CA and two relay certificates into `folder`."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("the openssl command is required on CI for the TLS relay tests")
        pytest.skip("the openssl command is not installed")
    config = folder / "openssl.cnf"
    config.write_text(_CONFIG)
    for ca in ("ca", "other"):
        _openssl(folder, "req", "-x509", "-config", config, "-extensions", "ca", *_KEY,
                 "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
                 "-subj", f"/CN=Seda test {ca}")  # fmt: skip
    for serial, name in enumerate(("relay", "misnamed"), start=2):
        _openssl(folder, "req", "-new", "-config", config, *_KEY, "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={name}")  # fmt: skip
        _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey",
                 "ca.key", "-set_serial", str(serial), "-days", "2", "-extfile", config,
                 "-extensions", name, "-out", f"{name}.crt")  # fmt: skip
    return Certificates(folder)


def _openssl(folder: Path, *args: str | Path) -> None:
    done = subprocess.run(
        ["openssl", *map(str, args)], cwd=folder, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"openssl {args[0]} failed: {done.stderr}")
