"""One worker on the public port (no Kamailio), taking INVITEs only from its allowed networks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ivr.harness import Gateway, need, sip_request


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`seda run` with one worker, no speech, INVITEs allowed from 10.0.0.0/8 only."""
    need("espeak-ng")
    workdir: Path = tmp_path_factory.mktemp("ivr-lone")
    running = Gateway(workdir, workers=1)
    running.extra = {"allow": ["10.0.0.0/8"], "speech": {}}
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_one_worker_listens_on_the_public_port_without_kamailio(lone: Gateway) -> None:
    assert sip_request(lone.sip_port, "OPTIONS").startswith("SIP/2.0 200")
    assert not (lone.workdir / "kamailio" / "kamailio.cfg").exists()


def test_invite_from_a_network_not_allowed_is_refused(lone: Gateway) -> None:
    assert sip_request(lone.sip_port, "INVITE").startswith("SIP/2.0 403")
    assert lone.events() == []
