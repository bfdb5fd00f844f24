"""Who really sent a reply: DKIM (dkimpy) and SPF (pyspf), or a trusted MTA's verdict.

A message is authenticated when a DKIM signature that verifies, or an SPF pass, vouches for the
domain of its From address (relaxed alignment as in DMARC: the same domain, or one a subdomain
of the other). Seda looks at no public suffix list, so `d=example.co.uk` does not vouch for
`other.co.uk`, and a lone label such as `com` vouches for nothing.

The checks look names up with a dnspython resolver that caches answers, negative ones too.
dkimpy and pyspf are synchronous, so a check first runs on the event loop from cached answers
alone; only when it needs an answer the cache does not hold is it run again, in a worker thread,
where it may wait for DNS (a hand-off to a thread cost more CPU than the check itself: about
0.4 ms a message under load). Both runs take the same steps over the same answers, so the
verdict is the same. With `authserv_id` set, Seda checks nothing itself and reads the
Authentication-Results header that the MTA in front of it wrote (RFC 8601).
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
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import spf

from email_in.settings import Authenticity
from gateway.logs import fields

log = logging.getLogger("seda.email")

MAX_SIGNATURES = 5  # DKIM signatures looked at per message
CACHE_SIZE = 10_000
# Larger messages are checked in the worker thread only: canonicalising and hashing them for
# DKIM would hold up the event loop for a millisecond or more.
INLINE_SIZE = 64 * 1024
# dkimpy logs domains and key problems at ERROR; this logger is attached to nothing.
_QUIET = logging.Logger("seda.email.dkim", logging.CRITICAL)
_DOMAIN = re.compile(r"^[a-z0-9.-]{1,253}\Z")


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
        args = (raw, author_domain, peer_ip, helo, mail_from)
        if len(raw) <= INLINE_SIZE:
            verdict = self._check_cached(*args)
            if verdict is not None:
                return verdict
        try:
            return await asyncio.to_thread(self._check, *args)
        except Exception as exc:
            log.warning("email authenticity check failed", extra=fields(error=type(exc).__name__))
            return Verdict("temperror", "temperror", False)

    def _check_cached(
        self,
        raw: bytes,
        author_domain: str | None,
        peer_ip: str | None,
        helo: str | None,
        mail_from: str | None,
    ) -> Verdict | None:
        """The verdict from cached DNS answers alone; None when one is missing (or on any
        error: the full check then finds it again, and reports it as it always does)."""
        lookups = Lookups(self.resolver, self._deadline(), cached_only=True)
        try:
            verdict = self._verdict(lookups, raw, author_domain, peer_ip, helo, mail_from)
        except Exception:
            return None
        return None if lookups.missed else verdict

    def _check(
        self,
        raw: bytes,
        author_domain: str | None,
        peer_ip: str | None,
        helo: str | None,
        mail_from: str | None,
    ) -> Verdict:
        lookups = Lookups(self.resolver, self._deadline())
        return self._verdict(lookups, raw, author_domain, peer_ip, helo, mail_from)

    def _deadline(self) -> float:
        return time.monotonic() + self.settings.dns_timeout

    @staticmethod
    def _verdict(
        lookups: Lookups,
        raw: bytes,
        author_domain: str | None,
        peer_ip: str | None,
        helo: str | None,
        mail_from: str | None,
    ) -> Verdict:
        dkim_result, signers = check_dkim(raw, lookups)
        spf_result, spf_domain = check_spf(lookups, peer_ip, helo, mail_from)
        aligned = author_domain is not None and (
            any(aligned_domains(d, author_domain) for d in signers)
            or (spf_result == "pass" and aligned_domains(spf_domain, author_domain))
        )
        return Verdict(dkim_result, spf_result, aligned)


@dataclass
class Lookups:
    """The DNS lookups of one check: its resolver and deadline, and whether it may only read
    the resolver's cache (then `missed` tells whether an answer was not there)."""

    resolver: dns.resolver.Resolver
    deadline: float
    cached_only: bool = False
    missed: bool = False


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


def check_dkim(raw: bytes, lookups: Lookups) -> tuple[str, tuple[str, ...]]:
    """(result, domains of the signatures that verified)."""
    failures: list[str] = []

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            return _txt(lookups, name.decode("ascii"))
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
    lookups: Lookups, peer_ip: str | None, helo: str | None, mail_from: str | None
) -> tuple[str, str | None]:
    """(result, the domain it is about): MAIL FROM's domain, or HELO's for a null sender."""
    sender = (mail_from or "").strip("<>")
    domain = sender.rpartition("@")[2] if "@" in sender else (helo or "")
    domain = domain.lower().rstrip(".")
    if not peer_ip or not _DOMAIN.match(domain) or "." not in domain:
        return "none", None
    remaining = max(0.5, lookups.deadline - time.monotonic())
    token = _LOOKUPS.set(lookups)
    try:
        result, _ = spf.check2(i=peer_ip, s=sender, h=helo or domain, querytime=remaining)
    except _NotCached:
        raise
    except Exception:
        result = "temperror"
    finally:
        _LOOKUPS.reset(token)
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


class _NotCached(Exception):
    """An answer a cached-only check needs is not in the cache."""


# pyspf looks names up through its module-level DNSLookup (the hook its own drivers use).
# Seda's version answers with the lookups of the check running in this context.
_LOOKUPS: ContextVar[Lookups | None] = ContextVar("seda_spf_lookups", default=None)


def _spf_lookup(name: str, qtype: str, strict: bool = True, timeout: float = 20) -> list[Any]:
    lookups = _LOOKUPS.get()
    if lookups is None:
        raise spf.TempError("DNS no resolver for this check")
    try:
        answer = _resolve(lookups, name, qtype)
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


def _resolve(lookups: Lookups, name: str, qtype: str) -> list[Any]:
    lifetime = lookups.deadline - time.monotonic()
    if lifetime <= 0:
        raise _Temporary("time is up")
    if lookups.cached_only:
        cached = _cached(lookups.resolver, name, qtype)
        if cached is None:
            lookups.missed = True  # set too, in case a library swallows the exception
            raise _NotCached(qtype)
        return cached
    resolver = lookups.resolver
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


def _cached(resolver: dns.resolver.Resolver, name: str, qtype: str) -> list[Any] | None:
    """What `_resolve` would return from the resolver's cache alone, None if it is not there.

    The same look-ups as dnspython's own before it asks a server (Resolver.resolve, search
    off): the answer for the absolute name and type (one without records: a cached NODATA),
    else a cached NXDOMAIN for the name.
    """
    cache = resolver.cache
    if cache is None:
        return None
    try:
        qname = dns.name.from_text(name)
        rdtype = dns.rdatatype.RdataType.make(qtype)
    except dns.exception.DNSException:
        return None  # the full check decides what a malformed name means
    answer = cache.get((qname, rdtype, dns.rdataclass.IN))
    if answer is not None:
        return list(answer)
    negative = cache.get((qname, dns.rdatatype.ANY, dns.rdataclass.IN))
    if negative is not None and negative.response.rcode() == dns.rcode.NXDOMAIN:
        return []
    return None


def _txt(lookups: Lookups, name: str) -> bytes | None:
    for rdata in _resolve(lookups, name, "TXT"):
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
