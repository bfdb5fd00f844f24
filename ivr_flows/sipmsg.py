"""Reading an INVITE: who calls, which number was dialled, and the headers a survey keeps.

pjsua2 has no parsed-header API for Python, so the worker reads `prm.rdata.wholeMsg` here
(PROTOCOLS.md 5.3). Everything taken from the message is untrusted: lengths are capped and
only strings are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAX_VALUE = 256  # characters kept of one header value
MAX_HEADERS = 32  # headers forwarded from one INVITE
# Headers that carry the call's context besides X- headers (PROTOCOLS.md 5.1).
CONTEXT_HEADERS = ("user-to-user", "diversion", "history-info", "referred-by")
_COMPACT = {
    "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
    "c": "content-type",
}  # fmt: skip
_URI = re.compile(r"<([^>]*)>|((?:sips?|tel):[^\s;,>]+)", re.IGNORECASE)
_PHONE = re.compile(r"^\+?[0-9]{3,20}$")
_VISUAL = re.compile(r"[\s().-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Not text: control characters (a tab aside), bytes that were not UTF-8 (decoded as U+FFFD or
# kept as surrogates).
_NOT_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ufffd\ud800-\udfff]")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!%*_+`'~.-]{1,64}$")
# SIP INFO with the key alone as its body (no RFC; some PBXes send it), and that key.
_DTMF_TYPE = re.compile(r"^application/dtmf *(;.*)?$", re.IGNORECASE)
_ONE_KEY = re.compile(r"^[0-9*#A-Da-d]$")
_ANONYMOUS = frozenset({"", "anonymous", "restricted", "unknown", "unavailable", "private"})


@dataclass(frozen=True)
class Invite:
    """What a worker tells the main process about a new call."""

    caller: str  # the caller's URI (P-Asserted-Identity, else From), as sent
    called: str  # the dialled user part (Request-URI, else To)
    call_id: str  # the SIP Call-ID
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case name -> value
    refused: tuple[tuple[str, str], ...] = ()  # (header name, why) of values not kept

    def to_json(self) -> dict[str, object]:
        """The invite as the worker posts it."""
        return {
            "caller": self.caller,
            "called": self.called,
            "sip_call_id": self.call_id,
            "headers": dict(self.headers),
        }


def headers(message: str) -> list[tuple[str, str]]:
    """The header fields of a SIP message as (lower-case name, value), folded lines joined."""
    head = message.replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = head.split("\n")[1:]  # the first line is the request or status line
    found: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t") and found:
            name, value = found[-1]
            found[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue
        name = name.strip().lower()
        found.append((_COMPACT.get(name, name), value.strip()))
    return found


def info_dtmf(message: str) -> str | None:
    """The key of an INFO whose Content-Type is `application/dtmf` (the body is the key alone):
    None for another Content-Type, "" when the body is not one key (0-9, *, #, A-D)."""
    content_type = next((v for n, v in headers(message) if n == "content-type"), "")
    if not _DTMF_TYPE.match(content_type):
        return None
    normal = message.replace("\r\n", "\n")
    body = normal.split("\n\n", 1)[1] if "\n\n" in normal else ""
    key = body.strip()
    return key.upper() if _ONE_KEY.match(key) else ""


def request_user(message: str) -> str:
    """The user part of the Request-URI of a request (empty if there is none)."""
    first = message.split("\n", 1)[0].split()
    return uri_user(first[1]) if len(first) >= 2 else ""


def uri_of(value: str) -> str:
    """The URI inside a name-addr (`"A" <sip:a@b>;tag=1`) or an addr-spec."""
    match = _URI.search(value)
    if match is None:
        return ""
    return (match.group(1) or match.group(2) or "").strip()


def uri_user(uri: str) -> str:
    """The user part of a sip:, sips: or tel: URI (percent escapes left as they are)."""
    uri = uri_of(uri) or uri
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips", "tel"):
        return ""
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    user, at, _host = rest.partition("@")
    return user.split(";", 1)[0] if at else ""


def parse_invite(message: str, extra: Iterable[str] = ()) -> Invite:
    """The caller, the dialled number and the context headers of an INVITE."""
    fields = headers(message)
    first: dict[str, str] = {}
    for name, value in fields:
        first.setdefault(name, value)
    caller = uri_of(first.get("p-asserted-identity", "")) or uri_of(first.get("from", ""))
    called = request_user(message) or uri_user(first.get("to", ""))
    wanted = set(CONTEXT_HEADERS) | {name.lower() for name in extra}
    kept: dict[str, str] = {}
    refused: list[tuple[str, str]] = []
    for name, value in fields:
        if len(kept) >= MAX_HEADERS:
            break
        if (name.startswith("x-") or name in wanted) and name not in kept:
            why = refusal(value)
            if why:
                refused.append((name if _HEADER_NAME.match(name) else "?", why))
                continue
            kept[name] = clean(value)
    return Invite(
        caller=clean(caller),
        called=clean(called),
        call_id=clean(first.get("call-id", "")),
        headers=kept,
        refused=tuple(refused[:MAX_HEADERS]),
    )


def refusal(value: str) -> str:
    """Why a context header's value is not kept ("too long", "not text"), or "" if it is.

    Refused whole rather than cut or cleaned: an agent id cut at 256 characters, or with a
    byte dropped, would be another agent's id."""
    if len(value) > MAX_VALUE:
        return "too long"
    if _NOT_TEXT.search(value):
        return "not text"
    return ""


def clean(value: str, limit: int = MAX_VALUE) -> str:
    """A header value safe to keep: no control characters, at most `limit` characters."""
    return _CONTROL.sub("", value)[:limit].strip()


def address(caller: str) -> str | None:
    """The respondent's address: tel:+98... for numbers, sip:user@host otherwise.

    None for a withheld or anonymous caller: such calls get an address of their own.
    """
    user = uri_user(caller)
    bare = _VISUAL.sub("", user)
    if user.lower() in _ANONYMOUS or "anonymous" in caller.lower():
        return None
    if _PHONE.match(bare):
        return f"tel:{bare}"
    uri = uri_of(caller) or caller
    scheme, _, rest = uri.partition(":")
    if scheme.lower() not in ("sip", "sips") or "@" not in rest:
        return None
    user_host = rest.split(";", 1)[0].split("?", 1)[0]
    return f"sip:{user_host.lower()}"


def context(
    invite_headers: Mapping[str, str], names: Iterable[str], sip_call_id: str
) -> dict[str, str]:
    """The answers' context from the configured X- headers, UUI, Diversion, History-Info..."""
    found: dict[str, str] = {}
    for name in names:
        value = invite_headers.get(name.lower())
        if value:
            found[_context_key(name)] = clean(value)
    uui = invite_headers.get("user-to-user")
    if uui:
        found["uui"] = clean(uui)
        text = uui_text(uui)
        if text:
            found["uui_text"] = text
    for header, key in (("diversion", "diversion"), ("history-info", "history_info")):
        value = invite_headers.get(header)
        if value:
            found[key] = clean(uri_user(value) or uri_of(value) or value)
    referred_by = invite_headers.get("referred-by")
    if referred_by:
        found["referred_by"] = clean(uri_of(referred_by) or referred_by)
    if sip_call_id:
        found["sip_call_id"] = clean(sip_call_id)
    return found


def uui_text(value: str) -> str:
    """A hex User-to-User payload as text when it is printable (RFC 7433), else empty."""
    payload, _, params = value.partition(";")
    if "encoding=hex" not in params.lower().replace(" ", "") and params:
        return ""
    hexdigits = payload.strip()
    if len(hexdigits) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", hexdigits or "x"):
        return ""
    data = bytes.fromhex(hexdigits)
    if data[:1] in (b"\x00", b"\x04") and len(data) > 1:
        data = data[1:]  # a protocol discriminator octet (Q.931): 00 user-specific, 04 IA5
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return clean(text) if text.isprintable() else ""


def _context_key(header: str) -> str:
    name = header.lower()
    if name.startswith("x-"):
        name = name[2:]
    return name.replace("-", "_")
