"""A small authoritative DNS server on a loopback UDP port, for DKIM keys and SPF policies.

It speaks the real wire format (built and read with dnspython's message classes): Seda's
resolver asks it exactly as it would ask a name server on the network. Unknown names get
NXDOMAIN; names in `silent` get no answer at all, so the asker times out; names in `failing`
get SERVFAIL at once.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


@dataclass
class Zone:
    """Records by (name, type); a TXT value is a list of strings (one record each)."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    queries: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, rdtype: str, *values: str) -> None:
        """Serve these values for the name and type."""
        self.records.setdefault((_key(name), rdtype.upper()), []).extend(values)

    def txt(self, name: str, text: str) -> None:
        """A TXT record; long text is split into strings of at most 255 octets."""
        chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
        self.add(name, "TXT", " ".join(f'"{chunk}"' for chunk in chunks))

    def answer(self, wire: bytes) -> bytes | None:
        """The response to one query (None: stay silent)."""
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            name = _key(question.name.to_text())
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if name in self.silent:
                return None
            if name in self.failing:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            values = self.records.get((name, rdtype))
            if values:
                rrset = dns.rrset.from_text(name + ".", 60, dns.rdataclass.IN, rdtype, *values)
                response.answer.append(rrset)
            elif not any(key[0] == name for key in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


def _key(name: str) -> str:
    return name.lower().rstrip(".")


@contextmanager
def serve(zone: Zone) -> Iterator[int]:
    """Serve the zone on 127.0.0.1 (UDP) in a thread; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = zone.answer(wire)
            except Exception:
                continue  # a malformed query gets no answer, like a real server would
            if reply is not None:
                sock.sendto(reply, peer)

    thread = threading.Thread(target=loop, name="test-dns", daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        sock.close()
