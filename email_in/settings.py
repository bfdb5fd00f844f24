"""The `channels.email` block of gateway.yaml, read and checked once at start-up."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dkim.crypto

from gateway.config import ConfigError, Problems

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9-]{1,63})+$")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
MIB = 1024 * 1024
POLICIES = ("off", "record", "require")
_AUTHSERV_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")


TlsMode = Literal["starttls", "implicit", "none"]
TLS_MODES: tuple[TlsMode, ...] = ("starttls", "implicit", "none")
SMTPS_PORT = 465


@dataclass(frozen=True)
class Relay:
    """Where Seda's own mail goes out: an SMTP submission server."""

    host: str
    port: int = 587
    # starttls: upgrade a plain connection, or give up (587); implicit: TLS from the first byte
    # (SMTPS, 465); none: plain text (a relay on the same host only)
    tls: TlsMode = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    connections: int = 4  # at most this many open at once, kept open between messages
    ca_file: Path | None = None  # trust only this CA (PEM) for the relay's certificate

    def tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context that verifies the relay's certificate and name; None for none."""
        if self.tls == "none":
            return None
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)


@dataclass(frozen=True)
class Authenticity:
    """How inbound mail's sender is checked: DKIM and SPF, or a trusted MTA's verdict."""

    policy: str = "record"  # off | record (log the result) | require (550 unless it passes)
    dns_server: tuple[str, int] | None = None  # host and port; None: the system's resolver
    dns_timeout: float = 5.0  # seconds for all the lookups of one check
    authserv_id: str | None = None  # trust this MTA's Authentication-Results instead


@dataclass(frozen=True)
class Signing:
    """DKIM signing of Seda's own mail (RFC 6376), covering List-Unsubscribe (RFC 8058)."""

    domain: str
    selector: str
    private_key: bytes = field(repr=False)  # PEM, PKCS#1 or PKCS#8


@dataclass(frozen=True)
class EmailSettings:
    """Everything the email channel is configured with."""

    reply_domain: str
    token_secret: bytes = field(repr=False)
    sender: str  # the From address of invitations
    relay: Relay
    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = ""  # the name in the SMTP greeting; the reply domain when empty
    data_size_limit: int = MIB
    max_recipients: int = 10
    timeout: float = 300.0  # seconds a command (DATA included) may take before a hang-up
    max_connections: int = 100  # open SMTP connections; beyond: 421 and close
    max_connections_per_client: int = 20  # of those, from one IPv4 address or IPv6 /64
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_starttls: bool = False
    link_base: str | None = None  # Seda's public HTTP address, for one-click answer links
    verp: bool = True  # envelope sender bounce+TOKEN@reply-domain, so bounces come back here
    subject: Mapping[str, str] = field(default_factory=dict)
    authenticity: Authenticity = field(default_factory=Authenticity)
    signing: Signing | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        """A server TLS context for STARTTLS, when a certificate is configured."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


def parse(spec: Mapping[str, Any]) -> EmailSettings:
    """Read `channels.email`; a ConfigError with one line for each mistake, naming its key."""
    p = Problems()
    domain = p.value(lambda: _domain(spec), "")
    secret = p.value(lambda: _secret(spec), "")
    sender = p.value(lambda: _sender(spec), "")
    cert, key = _path(spec, "tls_cert"), _path(spec, "tls_key")
    if (cert is None) != (key is None):
        given, missing = ("tls_cert", "tls_key") if key is None else ("tls_key", "tls_cert")
        p.add(f"channels.email.{given}: needs {missing} beside it (give both, or neither)")
    require_tls = p.value(lambda: _flag(spec, "require_starttls", False), False)
    if require_tls and cert is None:
        p.add("channels.email.require_starttls needs tls_cert and tls_key")
    link_base = spec.get("link_base")
    if link_base is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", str(link_base)):
        p.add("channels.email.link_base: an http(s) URL such as https://seda.example")
    subject: dict[str, str] = p.value(lambda: _subject(spec), {})

    def number(key: str, default: int, low: int, high: int) -> int:
        return p.value(lambda: _number(spec, key, default, low, high), default)

    settings = EmailSettings(
        reply_domain=domain,
        token_secret=secret.encode("utf-8"),
        sender=sender,
        relay=p.value(lambda: _relay(spec.get("relay")), Relay("")),
        host=str(spec.get("host", "127.0.0.1")),
        port=number("port", 2525, 0, 65535),
        hostname=str(spec.get("hostname") or domain),
        data_size_limit=number("data_size_limit", MIB, 1024, 64 * MIB),
        max_recipients=number("max_recipients", 10, 1, 1000),
        timeout=float(number("timeout", 300, 1, 3600)),
        max_connections=number("max_connections", 100, 1, 100_000),
        max_connections_per_client=number("max_connections_per_client", 20, 1, 100_000),
        tls_cert=cert,
        tls_key=key,
        require_starttls=require_tls,
        link_base=str(link_base).rstrip("/") if link_base else None,
        verp=p.value(lambda: _flag(spec, "verp", True), True),
        subject=subject,
        authenticity=p.value(lambda: _authenticity(spec.get("authenticity", {})), Authenticity()),
        signing=p.value(lambda: _signing(spec.get("dkim")), None),
    )
    if (cert is None) == (key is None):
        try:
            settings.tls_context()
        except (OSError, ssl.SSLError) as exc:
            p.add(f"channels.email.tls_cert/tls_key: cannot be loaded ({exc})")
    p.check()
    return settings


def _domain(spec: Mapping[str, Any]) -> str:
    domain = _text(spec, "reply_domain").lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise ConfigError(f"channels.email.reply_domain: {domain!r} is not a domain name")
    return domain


def _secret(spec: Mapping[str, Any]) -> str:
    secret = _text(spec, "token_secret")
    if len(secret.encode("utf-8")) < 16:
        raise ConfigError("channels.email.token_secret: use at least 16 random characters")
    return secret


def _sender(spec: Mapping[str, Any]) -> str:
    sender = _text(spec, "from")
    address = sender.rpartition("<")[2].rstrip(">").strip()
    if not _ADDRESS.match(address):
        raise ConfigError("channels.email.from: not an email address")
    if not address.isascii():  # it would need SMTPUTF8 everywhere; the name may be in any script
        raise ConfigError("channels.email.from: the address must be ASCII (the name need not be)")
    if "\r" in sender or "\n" in sender:
        raise ConfigError("channels.email.from: a single line")
    return sender


def _subject(spec: Mapping[str, Any]) -> dict[str, str]:
    subject = spec.get("subject", {})
    if not isinstance(subject, Mapping):
        raise ConfigError("channels.email.subject: a mapping of language to subject line")
    found = {str(k): str(v) for k, v in subject.items()}
    if any("\r" in line or "\n" in line for line in found.values()):
        raise ConfigError("channels.email.subject: subjects are single lines")
    return found


def _relay(spec: Any) -> Relay:
    """relay: every mistake in it (the keys it does not know: gateway/config_check.py)."""
    needed = "channels.email.relay.host: the SMTP server that sends Seda's mail"
    if not isinstance(spec, Mapping):
        raise ConfigError(needed)
    p = Problems()
    if not spec.get("host"):
        p.add(needed)
    username = spec.get("username")
    password = spec.get("password")
    if (username is None) != (password is None):
        one, other = ("username", "password") if password is None else ("password", "username")
        p.add(f"channels.email.relay.{one}: needs {other} beside it (give both, or neither)")
    given: int | None = p.value(lambda: _relay_port(spec), None)
    tls = p.value(lambda: _relay_tls(spec, given), None)
    ca_file = _path(spec, "ca_file")
    if ca_file is not None and tls == "none":
        p.add("channels.email.relay.ca_file: only with tls: starttls or implicit")
    port = given or (SMTPS_PORT if tls == "implicit" else 587)
    relay = Relay(
        host=str(spec.get("host")),
        port=port,
        tls=tls or "starttls",
        username=None if username is None else str(username),
        password=None if password is None else str(password),
        timeout=float(p.value(lambda: _number(spec, "timeout", 30, 1, 600, "relay."), 30)),
        connections=p.value(lambda: _number(spec, "connections", 4, 1, 64, "relay."), 4),
        ca_file=ca_file,
    )
    if ca_file is not None and tls in ("starttls", "implicit"):
        try:
            relay.tls_context()
        except (OSError, ssl.SSLError) as exc:
            p.add(f"channels.email.relay.ca_file: cannot be loaded ({exc})")
    p.check()
    return relay


def _relay_port(spec: Mapping[str, Any]) -> int | None:
    """relay.port as given (None: not given)."""
    if spec.get("port") is None:
        return None
    return _number(spec, "port", 587, 1, 65535, "relay.")


def _relay_tls(spec: Mapping[str, Any], port: int | None) -> TlsMode:
    """relay.tls, or what the older `starttls: true|false` and the port say."""
    tls = spec.get("tls")
    starttls = None if spec.get("starttls") is None else _flag(spec, "starttls", True, "relay.")
    if tls is None:
        if starttls is None:
            return "implicit" if port == SMTPS_PORT else "starttls"
        if port == SMTPS_PORT:  # the older flag cannot say SMTPS: make the operator say it
            raise ConfigError(
                "channels.email.relay: port 465 is implicit TLS (SMTPS); "
                "write tls: implicit instead of starttls"
            )
        return "starttls" if starttls else "none"
    for mode in TLS_MODES:
        if tls == mode:
            if starttls is not None and starttls != (mode == "starttls"):
                raise ConfigError(
                    f"channels.email.relay: starttls: {str(starttls).lower()} contradicts "
                    f"tls: {mode}; keep tls alone"
                )
            return mode
    raise ConfigError("channels.email.relay.tls: starttls, implicit or none")


def _authenticity(spec: Any) -> Authenticity:
    if not isinstance(spec, Mapping):
        raise ConfigError("channels.email.authenticity: a mapping (policy, dns_server, ...)")
    p = Problems()
    policy = spec.get("policy", "record")
    if policy not in POLICIES:
        p.add("channels.email.authenticity.policy: off, record or require")
    server = spec.get("dns_server")
    address = None
    if server is not None:
        host, colon, port = str(server).rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            p.add("channels.email.authenticity.dns_server: host:port, e.g. 127.0.0.1:53")
        else:
            address = (host, int(port))
    authserv_id = spec.get("authserv_id")
    if authserv_id is not None and not _AUTHSERV_ID.match(str(authserv_id)):
        p.add("channels.email.authenticity.authserv_id: your MTA's host name")
    timeout = p.value(lambda: _number(spec, "dns_timeout", 5, 1, 60, "authenticity."), 5)
    p.check()
    return Authenticity(
        policy=str(policy),
        dns_server=address,
        dns_timeout=float(timeout),
        authserv_id=None if authserv_id is None else str(authserv_id).lower(),
    )


def _signing(spec: Any) -> Signing | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ConfigError("channels.email.dkim: a mapping of domain, selector and private_key")
    p = Problems()
    domain = str(spec.get("domain", "")).lower().rstrip(".")
    if not _DOMAIN.match(domain):
        p.add("channels.email.dkim.domain: the domain of the From address")
    selector = str(spec.get("selector", "")).lower()
    if not _SELECTOR.match(selector):
        p.add("channels.email.dkim.selector: a DNS label such as seda2025")
    key = p.value(lambda: _private_key(spec), b"")
    p.check()
    return Signing(domain, selector, key)


def _private_key(spec: Mapping[str, Any]) -> bytes:
    path = _path(spec, "private_key")
    if path is None:
        raise ConfigError("channels.email.dkim.private_key: the file of the PEM private key")
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"channels.email.dkim.private_key: cannot be read ({exc})") from None
    key = key.replace(b"\r\n", b"\n")
    try:
        dkim.crypto.parse_pem_private_key(key)
    except Exception:  # dkimpy raises several kinds for a bad file
        raise ConfigError("channels.email.dkim.private_key: not a PEM RSA private key") from None
    return key


def _text(spec: Mapping[str, Any], key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"channels.email.{key} is required")
    return value.strip()


def _path(spec: Mapping[str, Any], key: str) -> Path | None:
    value = spec.get(key)
    return None if value in (None, "") else Path(str(value))


def _flag(spec: Mapping[str, Any], key: str, default: bool, where: str = "") -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"channels.email.{where}{key}: true or false")
    return value


def _number(
    spec: Mapping[str, Any], key: str, default: int, low: int, high: int, where: str = ""
) -> int:
    value = spec.get(key, default)
    if isinstance(value, str) and value.isdigit():
        value = int(value)  # ${ENV} substitution yields strings
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"channels.email.{where}{key}: a whole number from {low} to {high}")
    return value
