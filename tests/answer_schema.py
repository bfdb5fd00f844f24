"""Check that answers leaving Seda match the published answer schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads(
    (Path(__file__).parent.parent / "gateway/schemas/answer.v1.json").read_text("utf-8")
)
_VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def assert_valid_answer(answer: dict[str, Any]) -> None:
    """Fail with every schema error of one answer."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _VALIDATOR.iter_errors(answer)]
    assert not errors, errors
