"""RSA keys for DKIM tests, made here (no tool, no key file): PEM for dkimpy, a DNS record.

Primes by Miller-Rabin over random odd numbers; the key encoded in DER by hand (PKCS#1 for the
private key, SubjectPublicKeyInfo for the `p=` of the DKIM record, as RFC 6376 section 3.6.1
says). 1024 bits: the smallest key dkimpy accepts by default, and quick to make.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from functools import cache
from math import gcd

_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]
_RSA_ENCRYPTION = bytes.fromhex("06092a864886f70d010101") + b"\x05\x00"  # OID and NULL


@dataclass(frozen=True)
class Key:
    """A DKIM key pair: the private key as PEM, the public key as a DNS TXT value."""

    pem: bytes
    record: str


@cache
def key(bits: int = 1024) -> Key:
    """One key pair per size per test session."""
    e = 65537
    while True:
        p, q = _prime(bits // 2), _prime(bits // 2)
        n, phi = p * q, (p - 1) * (q - 1)
        if p != q and gcd(e, phi) == 1 and n.bit_length() == bits:
            break
    d = pow(e, -1, phi)
    numbers = [0, n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p)]
    private = _sequence(*(_integer(x) for x in numbers))
    body = base64.encodebytes(private).decode("ascii").replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    pem = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *lines, "-----END RSA PRIVATE KEY-----"])
    public = _sequence(_integer(n), _integer(e))
    spki = _sequence(_sequence(_RSA_ENCRYPTION), _tlv(0x03, b"\x00" + public))
    record = "v=DKIM1; k=rsa; p=" + base64.b64encode(spki).decode("ascii")
    return Key((pem + "\n").encode("ascii"), record)


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if all(candidate % p for p in _SMALL_PRIMES) and _probably_prime(candidate):
            return candidate


def _probably_prime(n: int, rounds: int = 32) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _sequence(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))
