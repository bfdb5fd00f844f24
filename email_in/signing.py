"""DKIM signatures on Seda's own mail (RFC 6376), with dkimpy.

The signature covers the addressing and List-Unsubscribe/List-Unsubscribe-Post: RFC 8058
section 4 wants both under a valid DKIM signature before a mail provider offers one-click
unsubscribe. Fields that must not change are signed once more than they occur ("oversigned"),
so nobody on the way can add a second From or List-Unsubscribe without breaking it.
"""

from __future__ import annotations

import logging

import dkim

from email_in.settings import Signing

SIGNED = (
    "from", "to", "subject", "date", "message-id", "reply-to", "in-reply-to", "references",
    "list-unsubscribe", "list-unsubscribe-post", "auto-submitted", "mime-version",
    "content-type", "content-language",
)  # fmt: skip
OVERSIGNED = ("from", "to", "subject", "reply-to", "list-unsubscribe", "list-unsubscribe-post")
_QUIET = logging.Logger("seda.email.dkim", logging.CRITICAL)


class Signer:
    """Signs messages with one key for one domain and selector."""

    def __init__(self, signing: Signing):
        self.signing = signing

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature field in front (relaxed/relaxed, rsa-sha256)."""
        present = {_name(line) for line in _header_lines(message)}
        include = [name for name in SIGNED if name in present]
        include += [name for name in OVERSIGNED if name in present]
        header = dkim.sign(
            message,
            self.signing.selector.encode("ascii"),
            self.signing.domain.encode("ascii"),
            self.signing.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[name.encode("ascii") for name in include],
            logger=_QUIET,
        )
        return bytes(header) + message


def _header_lines(message: bytes) -> list[bytes]:
    head = message.split(b"\r\n\r\n", 1)[0]
    return [line for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]


def _name(line: bytes) -> str:
    return line.partition(b":")[0].strip().lower().decode("ascii", "replace")
