"""The spellings of one respondent's address, for erasure.

Channels store an address as it reaches them: sms writes numbers `tel:+<country code><number>`
and whatsapp `whatsapp:+<number>`, while the api channel keeps a `tel:` number as it was sent
(`tel:989121234567`, `tel:09121234567`, `tel:00989121234567`) and the voice channel as the PBX
put it in the call. An erasure is about a person, not a spelling: `spellings` gives every form
under which Seda may hold the same number, or the same email address in another case.

An opt-out is kept under the pseudonym of the address as stored and, when there is one, of its
`canonical` spelling too, so that the same person invited under another spelling is still
refused.

A national number (`0912...`) names a number only with its country: the calling codes of the
sms lines (`country`) are the ones Seda knows. Without one, a national number is searched as
written only, and `Spellings.note` says what was not searched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_NUMBER = re.compile(r"(\+|00)?([0-9]{3,20})\Z")
NUMBER_SCHEMES = ("tel", "whatsapp")


@dataclass(frozen=True)
class Spellings:
    """The addresses to search (lower-case: stored addresses are compared lower-cased), and
    what could not be searched, for the operator (None when nothing was left out)."""

    addresses: tuple[str, ...]
    note: str | None = None


def spellings(address: str, countries: Iterable[str] = ()) -> Spellings:
    """Every spelling of `address` that names the same respondent: for a number, each of
    +D, D and 00D under tel:, whatsapp:+D, and the national 0... for the known `countries`;
    for any other address, itself (compared without regard to case)."""
    scheme, _, rest = address.partition(":")
    found = [address.lower()]
    match = _NUMBER.match(rest) if scheme in NUMBER_SCHEMES else None
    if match is None:
        return Spellings(tuple(found))
    prefix, digits = match.groups()
    codes = sorted({c for c in countries if c}, key=len, reverse=True)
    note = None
    if prefix is None and digits.startswith("0"):
        # National: the same number under each country Seda knows.
        internationals = [code + digits[1:] for code in codes]
        if not internationals:
            note = (
                f"{address} is a national number and no sms line names its country: it was"
                " searched as written only; erase it with its country code too"
                " (tel:+<country code><number>)"
            )
    else:
        internationals = [digits]
    for number in internationals:
        found += [f"tel:+{number}", f"tel:{number}", f"tel:00{number}", f"whatsapp:+{number}"]
        found += [f"tel:0{number[len(c) :]}" for c in codes if number.startswith(c)]
    return Spellings(tuple(dict.fromkeys(found)), note)


def canonical(address: str, countries: Iterable[str] = ()) -> str | None:
    """The one spelling of a respondent's address under which an opt-out is also kept: a
    tel: number as tel:+<country code><number>, a mailto: address in lower case. None when
    there is no other (a national number whose country is not known for certain; an address
    of another scheme, which each channel writes one way only)."""
    scheme, _, rest = address.partition(":")
    if scheme == "mailto":
        return address.lower()
    match = _NUMBER.match(rest) if scheme == "tel" else None
    if match is None:
        return None
    prefix, digits = match.groups()
    if prefix is None and digits.startswith("0"):
        codes = {c for c in countries if c}
        if len(codes) != 1:
            return None
        digits = codes.pop() + digits[1:]
    return f"tel:+{digits}"
