"""The SMTP channel's fast path for MAIL and RCPT paths gives exactly aiosmtpd's own result."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from email_in.channel import _PLAIN_PATH, _Connection

LOCALS = ["a", "A+tag", "first.last", "x_y-z", "o'hara", "a..b", ".a", "a.", '"x y"', "ali۱", "ä"]
DOMAINS = [
    "b.c",
    "example.com",
    "mail-1.example.ir",
    "b.",
    "-b",
    "[1.2.3.4]",
    "b c",
    "ex_ample.com",
]
AFTER = ["", " ", "  ", " SIZE=100", "SIZE=100", " SIZE=10 BODY=8BITMIME", "\tSMTPUTF8",
         " SIZE=10  ", " (comment)", "(c) SIZE=1", ' "q"', " x\r\n"]  # fmt: skip
BEFORE = ["", " ", "\t", "  "]


def paths() -> list[str]:
    made = [
        f"{before}<{local}@{domain}>{after}"
        for before, local, domain, after in itertools.product(BEFORE, LOCALS, DOMAINS, AFTER)
    ]
    made += ["", "<>", "a@b.c", "<a@b.c", "<@route:a@b.c>", "<a@b.c>>", "<" + "l" * 70 + "@b.c>"]
    return made


def outcome(parse: Callable[[str], Any], path: str) -> Any:
    """What parsing `path` gives, or the exception it raises (the email package's parser raises
    IndexError on some malformed paths, such as "<a@>")."""
    try:
        return parse(path)
    except Exception as exc:
        return type(exc)


@pytest.fixture(scope="module")
def protocols() -> Iterator[tuple[SMTP, _Connection]]:
    class Handler:
        pass

    loop = asyncio.new_event_loop()  # the protocols want one; they are never connected
    yield SMTP(Handler(), loop=loop), _Connection(Handler(), set(), Counter(), "-", loop=loop)
    loop.close()


@pytest.mark.parametrize("limit", [0, 64])
def test_every_path_parses_as_aiosmtpd_parses_it(
    protocols: tuple[SMTP, _Connection], limit: int
) -> None:
    stock, ours = protocols
    stock.local_part_limit = ours.local_part_limit = limit
    cases = paths()
    fast = [path for path in cases if _PLAIN_PATH.fullmatch(path)]
    assert len(fast) > 200 and len(cases) - len(fast) > 500  # both branches are exercised
    for path in cases:
        assert outcome(ours._getaddr, path) == outcome(stock._getaddr, path), path


def test_random_paths_parse_as_aiosmtpd_parses_them(protocols: tuple[SMTP, _Connection]) -> None:
    stock, ours = protocols
    alphabet = "ab.@<> \t()\"'+-_[]:;,=Z9\u06f1"
    chooser = random.Random(20261207)
    for _ in range(20_000):
        path = "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 14)))
        if chooser.random() < 0.5:
            path = f"<{path}@b.c>" if chooser.random() < 0.5 else f"<a@b.c>{path}"
        assert outcome(ours._getaddr, path) == outcome(stock._getaddr, path), repr(path)
