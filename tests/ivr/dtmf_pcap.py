"""RFC 4733 keypad events written as pcap files, for SIPp's play_pcap_audio.

SIPp's own captures (/usr/share/sip-tester/dtmf_2833_*.pcap) have payload type 101 and keys of
160 ms. Real phones differ: the payload type is whatever their offer said (96, 127...), a key
held long is many packets with a growing duration, the end packet is sent three times, and
two keys may follow each other within a few tens of milliseconds. SIPp rewrites the addresses
and ports of the packets it plays and keeps the RTP (payload type, timestamps) as it is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

EVENTS = "0123456789*#"
PACKET_MS = 20
SAMPLES_PER_MS = 8  # telephone-event/8000


@dataclass(frozen=True)
class Key:
    """One key press: which key, how long, and the silence before it (milliseconds)."""

    key: str
    held_ms: int = 160
    gap_ms: int = 0


def write(
    path: Path, keys: list[Key], payload_type: int = 101, at_ms: int = 0, ssrc: int = 0x5EDA0001
) -> Path:
    """A pcap (Ethernet, IPv4, UDP) of the RTP event packets of `keys`, one after the other.

    `at_ms`: where in the call's RTP stream the file starts; two files played on one call
    need different ones, as a phone's sequence numbers and timestamps only go forward (a
    receiver drops packets whose sequence number it has seen)."""
    packets: list[tuple[int, bytes]] = []  # (microseconds from the start, RTP packet)
    seq = 0x1F30 + at_ms // PACKET_MS * 4
    now_ms = at_ms
    for key in keys:
        now_ms += key.gap_ms
        event = EVENTS.index(key.key)
        timestamp = 0x33E0 + now_ms * SAMPLES_PER_MS
        steps = max(key.held_ms // PACKET_MS, 1)
        for step in range(steps):
            last = step == steps - 1
            duration = min((step + 1) * PACKET_MS * SAMPLES_PER_MS, 0xFFFF)
            for _repeat in range(3 if last else 1):  # the end packet three times, new seq each
                marker = 0x80 if step == 0 else 0
                header = struct.pack(
                    "!BBHII", 0x80, marker | payload_type, seq & 0xFFFF, timestamp, ssrc
                )
                body = struct.pack("!BBH", event, (0x80 if last else 0) | 10, duration)
                packets.append(((now_ms - at_ms + step * PACKET_MS) * 1000, header + body))
                seq += 1
        now_ms += steps * PACKET_MS
    path.write_bytes(_pcap(packets))
    return path


def _pcap(packets: list[tuple[int, bytes]]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # Ethernet
    for usec, rtp in packets:
        udp = struct.pack("!HHHH", 49176, 10000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
            bytes([192, 168, 0, 3]), bytes([192, 168, 0, 1]),
        )  # fmt: skip
        frame = b"\x00\x50\xbf\x99\x03\x36\x00\x0d\x87\x14\xac\x24\x08\x00" + ip + udp
        seconds, micro = divmod(1_134_424_480_000_000 + usec, 1_000_000)
        out.append(struct.pack("<IIII", seconds, micro, len(frame), len(frame)) + frame)
    return b"".join(out)
