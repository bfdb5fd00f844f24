"""The store's fixtures: the clock, and the store in both of its writer modes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import Store
from tests.store.common import BACKENDS, Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=[False, True], ids=["writer-thread", "writer-process"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Store]:
    """The store with group commits in a thread, then in a writer process (`seda run`'s way)."""
    opened = await Store.open(
        tmp_path / "db" / "seda.db", backends=BACKENDS, clock=clock, writer_process=request.param
    )
    yield opened
    await opened.close()
