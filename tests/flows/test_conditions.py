"""The `if:` language of survey rules: evaluation tables, syntax errors with columns, names."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.flows.conditions import Compare, ConditionError, Const, Expression, Name, parse
from gateway.flows.model import Condition, Rule

ENV: dict[str, object] = {
    "value": 4,
    "language": "fa",
    "channel": "sms",
    "answers.nps": 4,
    "answers.resolved": False,
    "answers.reason": "slow",
    "context.agent": "a7",
    "context.tier": "gold",
}

EVALUATE = [
    # label, source, env overrides, expected
    ("detractor", "value <= 6", {}, True),
    ("promoter", "value >= 9", {}, False),
    ("equal int", "value == 4", {}, True),
    ("not equal", "value != 4", {}, False),
    ("less", "value < 5", {}, True),
    ("greater", "value > 4", {}, False),
    ("string equal", 'language == "fa"', {}, True),
    ("single quotes", "context.agent == 'a7'", {}, True),
    ("string order", 'answers.reason < "z"', {}, True),
    ("in list", 'language in ["fa", "ar"]', {}, True),
    ("not in list", "channel not in ['ivr', 'email']", {}, True),
    ("in trailing comma", "value in [1, 4,]", {}, True),
    ("in empty list", "value in []", {}, False),
    ("and", 'value <= 6 and channel == "sms"', {}, True),
    ("or", "value > 8 or answers.resolved == false", {}, True),
    ("not", "not value == 4", {}, False),
    ("not binds looser than ==", "not answers.nps == 9", {}, True),
    ("and before or", "true or false and false", {}, True),
    ("parentheses", "(true or false) and false", {}, False),
    ("bare true name", "value", {"value": True}, True),
    ("bare non-bool is not true", "value", {"value": 1}, False),
    ("not of false", "not answers.resolved", {}, True),
    ("negative literal", "value > -1", {"value": 0}, True),
    # absent names are null
    ("absent answer is null", "answers.missing == null", {}, True),
    ("absent context is null", "context.nothing != 'x'", {}, True),
    ("null orders as false (<)", "answers.missing < 5", {}, False),
    ("null orders as false (>=)", "answers.missing >= 5", {}, False),
    ("null value in list", "value in [1, 2]", {"value": None}, False),
    ("null value not in list", "value not in [1, 2]", {"value": None}, True),
    ("null literal in list", "value in [null]", {"value": None}, True),
    ("skipped answer with not", "not (value <= 6)", {"value": None}, True),
    # type mismatches are false, never errors
    ("int vs str equal", 'value == "4"', {}, False),
    ("int vs str order", 'value < "5"', {}, False),
    ("str vs int order", "language > 1", {}, False),
    ("bool is not 1", "value == 1", {"value": True}, False),
    ("bool is not 0", "value == 0", {"value": False}, False),
    ("bool does not order", "value > 0", {"value": True}, False),
    ("bool not in int list", "value in [1, 0]", {"value": True}, False),
    ("int is not true", "value == true", {"value": 1}, False),
    ("bool equal bool", "answers.resolved == false", {}, True),
    ("float compares as number", "value <= 6", {"value": 5.5}, True),
    ("list value does not order", "value < 3", {"value": [1]}, False),
]


@pytest.mark.parametrize(
    ("source", "overrides", "expected"),
    [case[1:] for case in EVALUATE],
    ids=[case[0] for case in EVALUATE],
)
def test_evaluate(source: str, overrides: dict[str, object], expected: bool) -> None:
    assert parse(source).evaluate({**ENV, **overrides}) is expected


SYNTAX_ERRORS = [
    # source, column, message substring
    ("", 1, "expected a value"),
    ("value <=", 9, "found the end"),
    ("value <= 6 and", 15, "found the end"),
    ("value < 3 < 5", 11, "chained comparisons are not supported"),
    ("1 == value == 1", 12, "chained comparisons"),
    ("value in [1] in [2]", 14, "chained comparisons"),
    ("value = 1", 7, "use == to compare"),
    ("!value", 1, "use 'not' or !="),
    ("value == 'open", 10, "string is not closed"),
    ("(value == 1", 12, "expected ')' to close the '(' at column 1"),
    ("value == 1)", 11, "expected 'and', 'or' or the end"),
    ("value == 1 value", 12, "expected 'and', 'or' or the end"),
    ("valeu == 1", 1, "unknown name 'valeu'"),
    ("answers == 1", 1, "write answers.<question id>"),
    ("answers.a.b == 1", 1, "write answers.<question id>"),
    ("context. == 1", 1, "write context.<key>"),
    ("value.x == 1", 1, "value has no fields"),
    ("value == ۶", 10, "use ASCII digits"),
    ("value == 06", 10, "leading zero"),
    ("value in 1", 10, "expected '[' after 'in'"),
    ("value in [language]", 11, "list items must be"),
    ("value in [1 2]", 13, "to close the list"),
    ("value == 1.5", 11, "unexpected character '.'"),
    ("__import__('os')", 1, "unknown name '__import__'"),
    ("value == True", 10, "unknown name 'True'; write true in lower case"),
    ("context.tier == gold", 17, "unknown name 'gold'; to compare with text, quote it: 'gold'"),
    ("value in [gold]", 11, "found 'gold'; to use text, quote it: 'gold'"),
    ("a" * 1001, 1, "longer than 1000"),
    ("(" * 40 + "value" + ")" * 40, 33, "nested parentheses"),
]


@pytest.mark.parametrize(("source", "column", "message"), SYNTAX_ERRORS)
def test_syntax_error_has_column(source: str, column: int, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse(source)
    assert (caught.value.column, message in caught.value.message) == (column, True), caught.value


def test_names_lists_every_dotted_name() -> None:
    condition = parse("answers.nps <= 6 and (context.tier == 'gold' or value in [1]) or channel")
    assert condition.names == frozenset({"answers.nps", "context.tier", "value", "channel"})
    assert parse("true").names == frozenset()


def test_tree_is_frozen_dataclasses() -> None:
    condition = parse("value == 1")
    assert condition.node == Compare("==", Name("value"), Const(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        condition.node.op = "!="  # type: ignore[misc]


def test_is_a_model_condition_and_compares_by_meaning() -> None:
    condition: Condition = parse('value   ==  "x"')
    assert condition.source == 'value   ==  "x"'
    assert parse('value == "x"') == condition
    assert Rule("end", condition).condition is condition
    assert isinstance(condition, Expression)


def test_string_escapes() -> None:
    assert parse(r"value == 'it\'s'").evaluate({"value": "it's"})
    assert parse(r'value == "a\\b"').evaluate({"value": "a\\b"})
    assert parse('value == "بله"').evaluate({"value": "بله"})
