"""Who really sent a reply: DKIM (dkimpy) and SPF (pyspf), or a trusted MTA's verdict.

A message is authenticated when a DKIM signature that verifies, or an SPF pass, vouches for the
domain of its From address (relaxed alignment as in DMARC: the same domain, or one a subdomain
of the other). Seda looks at no public suffix list, so `d=example.co.uk` does not vouch for
`other.co.uk`, and a lone label such as `com` vouches for nothing.

The checks run in a worker thread (dkimpy and pyspf are synchronous) with a dnspython resolver
that caches answers, negative ones too. With `authserv_id` set, Seda checks nothing itself and
reads the Authentication-Results header that the MTA in front of it wrote (RFC 8601).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from email.message import Message
from typing import Any

import authres
import dkim
import dns.exception
import dns.nameserver
import dns.resolver
import spf

from email_in.settings import Authenticity
from gateway.logs import fields

log = logging.getLogger("seda.email")

MAX_SIGNATURES = 5  # DKIM signatures looked at per message
CACHE_SIZE = 10_000
# dkimpy logs domains and key problems at ERROR; this logger is attached to nothing.
_QUIET = logging.Logger("seda.email.dkim", logging.CRITICAL)
_DOMAIN = re.compile(r"^[a-z0-9.-]{1,253}$")


@dataclass(frozen=True)
class Verdict:
    """What the checks found; `aligned` is the one that matters."""

    dkim: str  # pass, fail, none or temperror (pass when any signature verified)
    spf: str  # pass, fail, softfail, neutral, none, permerror or temperror
    aligned: bool  # a passing DKIM signature or SPF vouches for the From domain
    by: str = "seda"  # seda, or "mta" for a trusted Authentication-Results header
    dmarc: str | None = None  # only when a trusted MTA reports it

    @property
    def temporary(self) -> bool:
        """Whether a DNS failure, not the message, kept it from passing."""
        return not self.aligned and "temperror" in (self.dkim, self.spf)

    def fields(self) -> dict[str, Any]:
        """Log fields (no domains, no addresses)."""
        out: dict[str, Any] = {"dkim": self.dkim, "spf": self.spf, "aligned": self.aligned}
        out["checked_by"] = self.by
        if self.dmarc is not None:
            out["dmarc"] = self.dmarc
        return out


class Checker:
    """Checks inbound mail with one resolver, per the channel's authenticity settings."""

    def __init__(self, settings: Authenticity):
        self.settings = settings
        self.resolver = resolver(settings)

    async def check(
        self,
        raw: bytes,
        message: Message,
        author_domain: str | None,
        peer_ip: str | None,
        helo: str | None,
        mail_from: str | None,
    ) -> Verdict:
        """The verdict on one message (never raises: a failure is a temperror)."""
        if self.settings.authserv_id is not None:
            return from_header(message, self.settings.authserv_id, author_domain)
        try:
            return await asyncio.to_thread(
                self._check, raw, author_domain, peer_ip, helo, mail_from
            )
        except Exception as exc:
            log.warning("email authenticity check failed", extra=fields(error=type(exc).__name__))
            return Verdict("temperror", "temperror", False)

    def _check(
        self,
        raw: bytes,
        author_domain: str | None,
        peer_ip: str | None,
        helo: str | None,
        mail_from: str | None,
    ) -> Verdict:
        deadline = time.monotonic() + self.settings.dns_timeout
        dkim_result, signers = check_dkim(raw, self.resolver, deadline)
        spf_result, spf_domain = check_spf(self.resolver, peer_ip, helo, mail_from, deadline)
        aligned = author_domain is not None and (
            any(aligned_domains(d, author_domain) for d in signers)
            or (spf_result == "pass" and aligned_domains(spf_domain, author_domain))
        )
        return Verdict(dkim_result, spf_result, aligned)


def resolver(settings: Authenticity) -> dns.resolver.Resolver:
    """A caching stub resolver: the configured server, or the system's."""
    if settings.dns_server is None:
        found = dns.resolver.Resolver()
    else:
        host, port = settings.dns_server
        found = dns.resolver.Resolver(configure=False)
        found.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
    found.lifetime = settings.dns_timeout
    found.timeout = min(2.0, settings.dns_timeout)
    found.cache = dns.resolver.LRUCache(CACHE_SIZE)
    return found


def aligned_domains(one: str | None, other: str | None) -> bool:
    """Relaxed alignment without a suffix list: equal, or one a subdomain of the other."""
    if not one or not other:
        return False
    one, other = one.lower().rstrip("."), other.lower().rstrip(".")
    if one == other:
        return "." in one
    short, long = sorted((one, other), key=len)
    return "." in short and long.endswith("." + short)


def check_dkim(
    raw: bytes, resolver: dns.resolver.Resolver, deadline: float
) -> tuple[str, tuple[str, ...]]:
    """(result, domains of the signatures that verified)."""
    failures: list[str] = []

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            return _txt(resolver, name.decode("ascii"), deadline)
        except _Temporary:
            failures.append("dns")
            return None

    count = sum(1 for name in _header_names(raw) if name == b"dkim-signature")
    if count == 0:
        return "none", ()
    signers: list[str] = []
    for index in range(min(count, MAX_SIGNATURES)):
        verifier = dkim.DKIM(raw, logger=_QUIET, minkey=1024)
        try:
            verified = verifier.verify(idx=index, dnsfunc=txt)
        except dkim.DKIMException:
            continue
        domain = getattr(verifier, "domain", b"") or b""
        if verified and isinstance(domain, bytes):
            signers.append(domain.decode("ascii", "replace").lower())
    if signers:
        return "pass", tuple(signers)
    return ("temperror" if failures else "fail"), ()


def check_spf(
    resolver: dns.resolver.Resolver,
    peer_ip: str | None,
    helo: str | None,
    mail_from: str | None,
    deadline: float,
) -> tuple[str, str | None]:
    """(result, the domain it is about): MAIL FROM's domain, or HELO's for a null sender."""
    sender = (mail_from or "").strip("<>")
    domain = sender.rpartition("@")[2] if "@" in sender else (helo or "")
    domain = domain.lower().rstrip(".")
    if not peer_ip or not _DOMAIN.match(domain) or "." not in domain:
        return "none", None
    remaining = max(0.5, deadline - time.monotonic())
    token = _RESOLVER.set((resolver, deadline))
    try:
        result, _ = spf.check2(i=peer_ip, s=sender, h=helo or domain, querytime=remaining)
    except Exception:
        result = "temperror"
    finally:
        _RESOLVER.reset(token)
    return str(result), domain


def from_header(message: Message, authserv_id: str, author_domain: str | None) -> Verdict:
    """The verdict of the topmost Authentication-Results header of the trusted MTA."""
    for value in message.get_all("Authentication-Results") or []:
        try:
            header = authres.parse_value(" ".join(str(value).split()))
        except Exception:
            continue
        if (header.authserv_id or "").lower() != authserv_id:
            continue
        return _mta_verdict(header.results, author_domain)
    return Verdict("none", "none", False, "mta")


def _mta_verdict(results: list[Any], author_domain: str | None) -> Verdict:
    dkim_result, spf_result, dmarc = "none", "none", None
    aligned = False
    for result in results:
        method = str(result.method).lower()
        outcome = str(result.result).lower()
        props = {(p.type, p.name): str(p.value) for p in result.properties}
        if method == "dkim":
            signer = props.get(("header", "d")) or props.get(("header", "i"), "").rpartition("@")[2]
            if outcome == "pass":
                dkim_result = "pass"
                aligned = aligned or aligned_domains(signer, author_domain)
            elif dkim_result != "pass":
                dkim_result = outcome
        elif method == "spf":
            spf_result = outcome
            identity = props.get(("smtp", "mailfrom")) or props.get(("smtp", "helo"), "")
            domain = identity.rpartition("@")[2]
            aligned = aligned or (outcome == "pass" and aligned_domains(domain, author_domain))
        elif method == "dmarc":
            dmarc = outcome
            from_domain = props.get(("header", "from"))
            if outcome == "pass" and aligned_domains(from_domain, author_domain):
                aligned = True
    return Verdict(dkim_result, spf_result, aligned, "mta", dmarc)


class _Temporary(Exception):
    """A DNS lookup that timed out or found no server to answer."""


# pyspf looks names up through its module-level DNSLookup (the hook its own drivers use).
# Seda's version answers from the resolver of the check running in this thread.
_RESOLVER: ContextVar[tuple[dns.resolver.Resolver, float] | None] = ContextVar(
    "seda_spf_resolver", default=None
)


def _spf_lookup(name: str, qtype: str, strict: bool = True, timeout: float = 20) -> list[Any]:
    current = _RESOLVER.get()
    if current is None:
        raise spf.TempError("DNS no resolver for this check")
    resolver, deadline = current
    try:
        answer = _resolve(resolver, name, qtype, deadline)
    except _Temporary as exc:
        raise spf.TempError(f"DNS {exc}") from None
    found: list[Any] = []
    for rdata in answer:
        if qtype in ("A", "AAAA"):
            found.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            found.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            found.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            found.append(((name, qtype), list(rdata.strings)))
    return found


spf.DNSLookup = _spf_lookup


def _resolve(resolver: dns.resolver.Resolver, name: str, qtype: str, deadline: float) -> list[Any]:
    lifetime = deadline - time.monotonic()
    if lifetime <= 0:
        raise _Temporary("time is up")
    try:
        answer = resolver.resolve(
            name, qtype, search=False, lifetime=lifetime, raise_on_no_answer=False
        )
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout):
        raise _Temporary("no answer in time") from None
    except dns.exception.DNSException:
        return []  # a malformed name and such: nothing there
    return list(answer)


def _txt(resolver: dns.resolver.Resolver, name: str, deadline: float) -> bytes | None:
    for rdata in _resolve(resolver, name, "TXT", deadline):
        return b"".join(rdata.strings)
    return None


def _header_names(raw: bytes) -> Iterator[bytes]:
    """The lower-cased field names of a message's header, up to the blank line."""
    for line in raw.split(b"\n"):
        if line in (b"", b"\r"):
            return
        if line[:1] in (b" ", b"\t"):
            continue
        yield line.partition(b":")[0].strip().lower()
