"""Replies that are no score, through the real app (api channel, store, jsonl backend) and
through `seda simulate`: what the tables in tests/data/replies say, as a respondent meets it.

"la2" (Arabizi لأ "no") is not 2; "2 agents were rude" is no score; "5 out of 5" on a 0-10
question is not guessed. Each is refused with the question asked again, and the score that
follows is recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config import load
from gateway.server import create_app
from tests.conftest import ROOT, write_config

PHONE = "tel:+201001234567"
# Per language: replies to the NPS question that must each be asked again, then the score,
# then the reply to "was your issue resolved?" and what it means.
RUNS = {
    "ar": (["la2", "٢ موظفين ما ردوا"], "٩ من ١٠", 9, "la2", False),
    "en": (["2 agents were rude", "5 out of 5"], "3 agents were rude, 8", 8, "aiwa", True),
    "fa": (["دو تا اپراتور بی\u200cادب بودند", "۵ از ۵"], "۹ از ۱۰", 9, "خیر", False),
}


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Any) -> TestClient:  # type: ignore[type-arg]
    app = await create_app(load(write_config(tmp_path)))
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def say(client: TestClient, text: str) -> dict[str, Any]:  # type: ignore[type-arg]
    resp = await client.post("/api/v1/messages", json={"respondent": PHONE, "text": text})
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("language", sorted(RUNS))
async def test_api_asks_again_for_a_count_an_arabizi_no_and_another_scale(
    client: TestClient,  # type: ignore[type-arg]
    language: str,
) -> None:
    refused, score_text, score, yes_no_text, yes_no = RUNS[language]
    body = {"survey": "post_call_nps", "respondent": PHONE, "language": language}
    started = await client.post("/api/v1/invitations", json=body)
    assert started.status == 201, await started.text()
    response_id = (await started.json())["response_id"]
    for text in refused:
        result = await say(client, text)
        assert result["status"] == "rejected", (text, result)
        assert [p["kind"] for p in result["prompts"]] == ["invalid"], text
    result = await say(client, score_text)
    assert result["status"] == "accepted" and result["answers"] == 1, result
    assert result["prompts"][0]["question_id"] == "resolved"
    assert (await say(client, yes_no_text))["completed"] is True
    state = await (await client.get(f"/api/v1/responses/{response_id}")).json()
    assert [(a["question_id"], a["value"], a["raw"]) for a in state["answers"]] == [
        ("nps", score, score_text),
        ("resolved", yes_no, yes_no_text),
    ]


@pytest.mark.parametrize("language", sorted(RUNS))
def test_simulate_reads_them_the_same_way(language: str) -> None:
    refused, score_text, score, yes_no_text, yes_no = RUNS[language]
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "simulate", "post_call_nps", "--lang", language],
        input="\n".join([*refused, score_text, yes_no_text]) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    answers = [json.loads(line[line.index("{") :]) for line in lines if "{" in line]
    assert [(a["question_id"], a["value"]) for a in answers] == [
        ("nps", score),
        ("resolved", yes_no),
    ]
    assert sum("[invalid]" in line for line in lines) == len(refused)
    assert lines[-1] == "(completed)"
