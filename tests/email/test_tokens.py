"""Reply tokens: short enough for a local part, impossible to forge, robust to case folding."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import pytest

from email_in.tokens import Tokens

RESPONSE = "01936f0e-8d2a-7c3b-9f10-0a1b2c3d4e5f"
SECRET = b"a-secret-of-at-least-16-bytes"
TOKENS = Tokens(SECRET)


def test_a_token_names_its_response() -> None:
    token = TOKENS.issue(RESPONSE)
    assert token == token.lower() and "=" not in token and len(token) == 42
    assert TOKENS.verify(token) == RESPONSE
    assert len(f"unsubscribe+{token}") <= 64


def test_a_token_of_another_key_or_scope_is_refused() -> None:
    token = TOKENS.issue(RESPONSE)
    assert Tokens(b"another-secret-of-16-bytes").verify(token) is None
    assert TOKENS.verify(token, "question:nps") is None
    assert TOKENS.verify(TOKENS.issue(RESPONSE, "question:nps"), "question:nps") == RESPONSE


@pytest.mark.parametrize("bad", ["", "abc", "0" * 42, "A" * 42, "a" * 41, "a" * 43])
def test_malformed_tokens(bad: str) -> None:
    assert TOKENS.verify(bad) is None


def test_every_changed_letter_is_refused() -> None:
    token = TOKENS.issue(str(uuid.uuid4()))
    for at in range(len(token)):
        for letter in "a7":
            changed = token[:at] + letter + token[at + 1 :]
            if changed != token:
                assert TOKENS.verify(changed) is None, at


def test_recipients() -> None:
    token = TOKENS.issue(RESPONSE)
    found = TOKENS.recipient(f"Survey+{token.upper()}@Reply.Example.", "reply.example")
    assert found is not None and (found.purpose, found.response_id) == ("survey", RESPONSE)
    assert TOKENS.recipient(f"bounce+{token}@reply.example", "reply.example") is not None
    assert TOKENS.recipient(f"survey+{token}@other.example", "reply.example") is None
    assert TOKENS.recipient(f"survey-{token}@reply.example", "reply.example") is None
    assert TOKENS.recipient(f"survey+{token}+x@reply.example", "reply.example") is None


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        Tokens(b"short")


def test_a_token_is_the_id_and_its_hmac_in_base32_whenever_it_is_issued() -> None:
    rid = uuid.UUID(RESPONSE).bytes
    for scope in ("mail", "question:nps"):
        tag = hmac.new(SECRET, scope.encode() + b"\0" + rid, hashlib.sha256).digest()[:10]
        expected = base64.b32encode(rid + tag).decode().rstrip("=").lower()
        assert TOKENS.issue(RESPONSE, scope) == expected
        assert TOKENS.issue(RESPONSE, scope) == expected  # again, as remembered
    for _ in range(2):
        with pytest.raises(ValueError):
            TOKENS.issue("not-a-response-id")
