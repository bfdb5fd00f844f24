"""Shared fixtures: a gateway configuration in a temporary folder, and the real app."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any connection that would leave the machine (loopback and unix sockets are fine)."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a test tried to reach the network: {address[0]}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


def write_config(tmp_path: Path, **overrides: Any) -> Path:
    """A gateway.yaml in tmp_path using the shipped example flows and a jsonl backend."""
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "database": str(tmp_path / "seda.db"),
        "flows": str(ROOT / "config/flows"),
        "secret": "test-secret",
        "api": {"token": ""},
        "backends": {"answers_file": {"type": "jsonl", "path": str(tmp_path / "answers.jsonl")}},
        "channels": {"api": {"enabled": True}},
        "retry": {"base": 0.05, "cap": 0.5, "horizon": "1d", "poll": 0.05},
    }
    data.update(overrides)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of a file (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


class Clock:
    """A clock the test moves by hand (give it to create_app(..., clock=))."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
