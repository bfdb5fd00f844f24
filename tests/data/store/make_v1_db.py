"""How seda-v1.db was made: the first Seda (commit 99cbfff, schema version 1) answering a few
surveys over its API, with a webhook backend that never answers, so six events stay pending.

    git worktree add /tmp/v1 99cbfff
    PYTHONPATH=/tmp/v1 .venv/bin/python tests/data/store/make_v1_db.py /tmp/v1 /tmp/v1run
    cp /tmp/v1run/seda.db tests/data/store/seda-v1.db

tests/store/test_upgrade.py opens a copy of it with today's Seda.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # tests/e2e/harness.py's
STEPS: list[tuple[str, dict[str, Any]]] = [
    ("invitations", {"survey": "post_call_nps", "respondent": "tel:+989121111111", "language": "fa",
                     "context": {"agent": "a7", "queue": "billing"}, "invitation_id": "inv-1"}),
    ("messages", {"respondent": "tel:+989121111111", "text": "۹", "message_id": "m-1-1"}),
    ("invitations", {"survey": "post_call_nps", "respondent": "tel:+15550000002", "language": "en",
                     "context": {"agent": "a3"}, "invitation_id": "inv-2"}),
    ("messages", {"respondent": "tel:+15550000002", "text": "3", "message_id": "m-2-1"}),
    ("invitations", {"survey": "issue_resolved", "respondent": "tel:+15550000003",
                     "language": "en", "invitation_id": "inv-3"}),
    ("messages", {"respondent": "tel:+15550000003", "text": "yes", "message_id": "m-3-1"}),
    ("invitations", {"survey": "ticket_csat", "respondent": "tel:+15550000004", "language": "en",
                     "invitation_id": "inv-4"}),
    ("messages", {"respondent": "tel:+15550000004", "text": "STOP", "message_id": "m-4-1"}),
]  # fmt: skip


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def main(old: Path, work: Path) -> None:
    """Run the old Seda in `work`, answer the surveys of STEPS, stop it with SIGTERM."""
    work.mkdir(parents=True, exist_ok=True)
    port, nobody = free_port(), free_port()
    hook = {"type": "webhook", "url": f"http://127.0.0.1:{nobody}/hook", "secret": SECRET}
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "database": str(work / "seda.db"),
        "flows": str(old / "config/flows"),
        "secret": "upgrade-test",
        "api": {"token": ""},
        "backends": {"cem": {**hook, "timeout": 1}},
        "channels": {"api": {"enabled": True}},
        "retry": {"base": 3600, "cap": 3600, "horizon": "30d"},
    }
    (work / "gateway.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "gateway.cli", "--config", str(work / "gateway.yaml"), "run"]
    with (work / "seda.log").open("wb") as log:
        env = {**os.environ, "PYTHONPATH": str(old)}
        proc = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{base}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            for path, body in STEPS:
                async with http.post(f"{base}/api/v1/{path}", json=body) as resp:
                    answer = json.dumps(await resp.json(), ensure_ascii=False)
                    print(path, resp.status, answer[:160])
            await asyncio.sleep(1.5)  # the webhook attempts fail and back off for an hour
        proc.send_signal(signal.SIGTERM)
        print("exit", proc.wait(20))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
