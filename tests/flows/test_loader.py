"""Survey YAML: each pitfall of DESIGN.md section 4 is a file with its problems and positions."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from gateway.flows.loader import Problem, SurveyError, load_survey, load_surveys, validate_paths
from gateway.flows.yaml_nodes import read_yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests/data/flows"
SCHEMA = ROOT / "gateway/schemas/survey.schema.json"

# file under tests/data/flows/bad -> every problem, in order: "line:column message substring"
BAD: dict[str, list[str]] = {
    "alias_bomb": [
        "5:1 unknown key 'a'",
        "5:4 anchor &a is not allowed",
        "6:1 unknown key 'b'",
        "6:4 anchor &b is not allowed",
        "6:8 alias *a is not allowed",  # each alias name once, not 9 x 9 x 9 times
        "7:1 unknown key 'c'",
        "7:4 anchor &c is not allowed",
        "7:8 alias *b is not allowed",
        "8:1 unknown key 'd'; did you mean 'id'?",
        "8:5 alias *c is not allowed",
    ],
    "anchor": [
        "8:13 anchor &same is not allowed",
        "11:13 alias *same is not allowed",  # and no second error for the missing prompt
    ],
    "merge_key": [
        "6:5 anchor &first is not allowed",
        "10:5 merge keys (<<) are not allowed",
        "10:5 questions[1]: missing required key 'type'",
        "10:5 questions[1]: missing required key 'prompt'",
        "10:9 alias *first is not allowed",
    ],
    "duplicate_key": [
        "9:5 duplicate key 'type' (first at line 7)",
        "10:1 duplicate key 'version' (first at line 2)",
    ],
    "leading_zero": [
        "2:10 version: 0123 has a leading zero; write 123, or quote it if it is text",
        "9:10 questions[0].min: +1 has a plus sign; write 1",
        "10:10 questions[0].max: 010 has a leading zero; write 10",
    ],
    "wrong_type": [
        "2:10 version: expected an integer, got '3'",
        "9:14 questions[0].retries: expected an integer, got 'many'",
        "10:14 questions[0].on_fail: 'NO' is not one of: skip, end",  # NO stays text
        "11:11 questions[0].next: expected a list, got a mapping",
        "13:11 questions[1].type: 'Yes_No' is not one of",
        "14:18 questions[1].prompt.en: expected text, got 42",
    ],
    "tags": [
        "2:10 tag !!int is not allowed",
        "8:13 tag !custom is not allowed",
    ],
    "audio_escape": [
        "10:11 audio path '../outside/q1.wav' must not contain '..'",
        "11:11 audio path '/etc/passwd' must be relative to the survey's folder",
        "15:17 audio path 'prompts/../../q2.wav' must not contain '..'",
        "15:45 warning: audio file not found: prompts/missing.wav",
    ],
    "goto": [
        "10:37 goto 'first' jumps to its own question",
        "11:16 goto 'scond' names no question; did you mean 'second'?",
        "16:16 goto 'first' jumps backwards (to question 1)",
        "17:9 warning: this rule is never used: rule 1 always applies",
        "18:9 'end' is reserved for goto",
    ],
    "condition_syntax": [
        "10:29 condition: expected a value, a name or '(', found the end",
        "11:25 condition: chained comparisons are not supported",
        "12:19 condition: unexpected '='; use == to compare",
        "14:15 condition: answers.later is asked later",
        "14:37 condition: answers.nothing names no question",
        "15:13 condition: unexpected '='; use == to compare (column 9 of the condition)",
    ],
    "missing_prompt": [
        "5:10 closing: missing en",
        "7:5 question 'q1' has no invalid-reply prompt in fa",
        "10:7 questions[0].prompt: missing ar",
        "12:7 language 'de' is not in languages: fa, ar, en",
    ],
    "unknown_key": [
        "3:1 unknown key 'langauges'; did you mean 'languages'?",
        "9:5 unknown key 'promt'; did you mean 'prompt'?",  # and not also: missing 'prompt'
        "10:5 unknown key 'max_lenght'; did you mean 'max_length'?",
    ],
    "sms_codes": [
        "10:28 choice key 11 is the SMS opt-out code in Iran",
        "11:14 choice id 12 is the SMS opt-in code in Iran",
        "12:14 choice id 'billing' is already used by choice 1",
        "12:28 choice key '2' is already used by choice 2",
        "14:11 warning: on SMS, the reply 11 is the opt-out code; this range includes it",
        "21:5 nps has a fixed scale 0-10; remove min",
    ],
    "reminder": [
        "6:10 reminder.after (4h) must be shorter than expiry (4h)",
        "7:9 reminder.text: missing en",
    ],
    "scales": [
        "6:5 rating question 'no_max' needs min and max",
        "14:10 max (5) must be greater than min (5)",
        "19:10 a rating spans at most 100 points, not 199",
        "24:7 questions[3].choices: needs at least 2 items, has 1",
        "28:5 choices are for choice questions",
        "31:17 questions[4].max_length: 9000 is greater than the maximum of 5000",
    ],
    "several": [
        "1:5 id: 'Several': use lowercase letters",
        "2:10 version: 0 is less than the minimum of 1",
        "3:17 languages[1]: 'EN': a language code is 2 or 3 lowercase letters",
        "4:9 expiry: '1w': write a whole number followed by m, h or d",
        "10:14 questions[0].retries: 9 is greater than the maximum of 5",
        "11:5 max_length is for text questions",
        "13:24 condition: expected a value, a name or '(', found the end",
        "13:33 goto 'q3' names no question",
        "14:9 duplicate question id 'q1' (first is question 1)",
    ],
    "syntax_error": ["8:3 YAML syntax error: expected ',' or '}', but got '-'"],
    "condition_types": [
        "10:24 condition: value (question 'nps', nps 0-10) is a number, not '6', so this is never true; write 6",
        "11:23 warning: condition: value (question 'nps', nps 0-10) is never > 10",
        "11:37 warning: condition: value (question 'nps', nps 0-10) is never < 0",
        "12:27 condition: 'FA' is not one of the survey's languages (fa, ar, en); write 'fa'",
        "12:54 condition: 'de' is not one of the survey's languages (fa, ar, en)",
        "18:24 condition: value (question 'resolved', yes_no) is true or false, not 'yes'",
        "18:42 condition: value (question 'resolved', yes_no) is true or false, not 1",
        "19:30 condition: answers.nps (question 'nps', nps 0-10) is a number, not '10', so this is never true; write 10",
        "19:53 warning: condition: answers.nps (question 'nps', nps 0-10): 11 is out of range",
        "28:24 condition: 'Billing' is not a choice of question 'topic', so this is never true; its ids are billing, network",
        "28:58 condition: 'roaming' is not a choice of question 'topic'",
        "29:35 condition: answers.resolved (question 'resolved', yes_no) is true or false, not 'no'",
        "29:62 condition: answers.resolved (question 'resolved', yes_no) is true or false and has no order",
    ],
    "choice_clash": [
        "13:40 keyword '2' is the key of choice 2 ('network')",
        "16:33 label 'فواتير' (ar) also picks choice 1 ('billing')",  # الفواتير, as the matcher reads it
        "17:25 keyword ' BILL!' (en) also picks choice 1 ('billing')",
        "17:49 keyword 'إلغاء' is an opt-out word: a respondent who sends it is opted out instead",
        "20:21 label 'لغو' is an opt-out word",
        "20:46 label 'Stop' is an opt-out word",
        "21:9 warning: choice 'other' has no key, so it cannot be chosen on the keypad (calls)",
        "23:25 keyword 'start' is an opt-in word: a respondent who sends it is opted in instead",
        "23:32 keyword 'invoice' (en) also picks choice 1 ('billing')",  # fa 'bill' is no clash
    ],
    "messages": [
        "4:9 expiry: '0h': must be at least 1, e.g. 30m, 24h, 7d",
        "5:33 invalid.en: must not be empty or only spaces",  # as "" is refused
        "9:27 questions[0].prompt.ar: must not be empty or only spaces",
        "11:34 goto 'reason_why' names no question",  # no 'did you mean 'Reason Why'?'
        "12:9 questions[1].id: 'Reason Why': use lowercase letters",
    ],
    # the root cause once, not again at every prompt
    "languages_not_a_list": ["4:12 languages: expected a list, got 'fa'"],
    "languages_upper_case": [
        "4:13 languages[0]: 'FA': a language code is 2 or 3 lowercase letters, e.g. fa, ar, en; write 'fa'"
    ],
    "yaml_tab": [
        "6:1 YAML syntax error: found character '\\t' that cannot start any token; indent with spaces, not tabs"
    ],
    "yaml_colon": [
        "5:11 YAML syntax error: mapping values are not allowed here; put text that contains ': ' in quotes"
    ],
    "yaml_indent": [
        "7:4 YAML syntax error: expected <block end>, but found '<block mapping start>'; this line's indentation does not match the lines above"
    ],
}

# file under tests/data/flows/warnings -> its warnings; the survey still loads
WARNINGS: dict[str, list[str]] = {
    "unreachable": [
        "13:9 warning: this rule is never used: rule 2 always applies",
        "14:9 warning: question 'orphan' can never be asked",  # only after an always-rule
        "23:9 warning: question 'skipped' can never be asked",  # reason always jumps over it
    ],
}


def shown(problem: Problem) -> str:
    """A problem as the table writes it."""
    prefix = "warning: " if problem.severity == "warning" else ""
    return f"{problem.line}:{problem.column} {prefix}{problem.message}"


@pytest.mark.parametrize(("name", "expected"), sorted(BAD.items()), ids=sorted(BAD))
def test_bad_file(name: str, expected: list[str]) -> None:
    path = DATA / "bad" / f"{name}.yaml"
    problems = validate_paths([path])
    assert len(problems) == len(expected), "\n".join(map(str, problems))
    for problem, want in zip(problems, expected, strict=True):
        position, _, text = want.partition(" ")
        assert shown(problem).startswith(f"{position} ") and text in shown(problem), problem
        assert problem.file == str(path)
    with pytest.raises(SurveyError) as caught:
        load_survey(path)
    assert caught.value.problems == problems


@pytest.mark.parametrize(("name", "expected"), sorted(WARNINGS.items()), ids=sorted(WARNINGS))
def test_file_with_warnings(name: str, expected: list[str]) -> None:
    path = DATA / "warnings" / f"{name}.yaml"
    problems = validate_paths([path])
    assert [shown(p)[: len(want)] for p, want in zip(problems, expected, strict=False)] == expected
    assert len(problems) == len(expected)
    assert load_survey(path).id == name


def test_every_problem_of_a_file_at_once() -> None:
    path = DATA / "bad/several.yaml"
    with pytest.raises(SurveyError) as caught:
        load_survey(path)
    problems = caught.value.problems
    assert len({p.line for p in problems}) == 8  # eight lines, nine mistakes
    assert str(caught.value).splitlines() == [str(p) for p in problems]
    assert str(problems[0]) == f"{path}:1:5: id: 'Several': " + (
        "use lowercase letters, digits and _, starting with a letter; write 'several'"
    )


def test_examples_in_config_flows_load_cleanly() -> None:
    flows = ROOT / "config/flows"
    assert validate_paths([flows]) == []
    surveys = load_surveys(flows)
    assert sorted(surveys) == ["issue_resolved", "post_call_nps", "ticket_csat"]
    for survey in surveys.values():
        assert survey.languages == ("fa", "ar", "en")
        assert (
            Path(survey.source)
            .read_text("utf-8")
            .startswith(
                "# yaml-language-server: $schema=../../gateway/schemas/survey.schema.json\n"
            )
        )
        for question in survey.questions:
            assert set(question.prompt) == set(question.invalid) == set(survey.languages)
        assert set(survey.closing) == set(survey.languages)


def test_post_call_nps_branches_detractors_to_reason() -> None:
    survey = load_surveys(ROOT / "config/flows")["post_call_nps"]
    nps = survey.question("nps")
    assert (nps.minimum, nps.maximum) == (0, 10)
    detractor, default = nps.next
    assert detractor.goto == "reason" and default.goto == "resolved" and default.condition is None
    assert detractor.condition is not None
    assert [detractor.condition.evaluate({"value": v}) for v in (0, 6, 7, 10)] == [
        True,
        True,
        False,
        False,
    ]
    assert survey.question("reason").max_length == 500


def test_ticket_csat_choices() -> None:
    survey = load_surveys(ROOT / "config/flows")["ticket_csat"]
    assert (survey.question("csat").minimum, survey.question("csat").maximum) == (1, 5)
    choices = survey.question("mattered_most").choices
    assert [(c.id, c.key) for c in choices] == [
        ("speed", "1"),
        ("knowledge", "2"),
        ("courtesy", "3"),
        ("outcome", "4"),
    ]
    assert all(set(c.label) == set(c.keywords) == {"fa", "ar", "en"} for c in choices)
    assert survey.expiry == timedelta(days=7)
    assert set(survey.intro) == {"fa", "ar", "en"}


def test_yaml_1_1_words_and_numbers_stay_text() -> None:
    survey = load_survey(DATA / "good/yaml11_strings.yaml")
    answer = survey.question("answer")
    assert [c.id for c in answer.choices] == ["NO", "yes", "0123"]
    assert [c.key for c in answer.choices] == ["1", "2", "0"]
    assert answer.choices[0].label["en"] == "NO"
    assert answer.choices[1].label == {"en": "on", "fa": "+989121234567"}
    assert answer.choices[0].keywords["en"] == ("no", "off", "n")
    assert survey.expiry == timedelta(minutes=30)
    assert survey.version == 2
    rule = answer.next[0]
    assert rule.condition is not None
    assert rule.condition.evaluate({"value": "0123", "language": "en"})
    assert not rule.condition.evaluate({"value": 123, "language": "en"})


def test_defaults_and_survey_level_invalid() -> None:
    survey = load_survey(DATA / "good/yaml11_strings.yaml")
    how_many = survey.question("how_many")
    assert (how_many.retries, how_many.on_fail, how_many.max_length) == (2, "skip", 1000)
    assert (how_many.minimum, how_many.maximum) == (13, None)
    assert how_many.invalid == {"en": "Sorry?", "fa": "متوجه نشدیم."}
    assert survey.source == str(DATA / "good/yaml11_strings.yaml")
    with pytest.raises(TypeError):
        survey.intro["en"] = "changed"  # type: ignore[index]


MINIMAL = """id: {id}
version: 1
languages: [en]
invalid: {{en: "Sorry?"}}
questions:
  - id: q1
    type: yes_no
    prompt: {{en: "Yes or no?"}}
{extra}"""


def write(path: Path, survey_id: str = "minimal", extra: str = "") -> Path:
    """A small valid survey file (plus extra lines under its only question)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MINIMAL.format(id=survey_id, extra=extra), "utf-8")
    return path


def test_audio_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.wav").write_bytes(b"RIFF")
    flows = tmp_path / "flows"
    (flows / "prompts").mkdir(parents=True)
    (flows / "prompts/q1.wav").symlink_to(tmp_path / "secret.wav")
    path = write(flows / "s.yaml", extra="    audio: {en: prompts/q1.wav}\n")
    assert [shown(p) for p in validate_paths([path])] == [
        "9:17 audio path 'prompts/q1.wav' leaves the survey's folder through a symlink"
    ]


def test_missing_audio_is_only_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", extra="    audio: {en: prompts/q1.wav}\n")
    [problem] = validate_paths([path])
    assert problem.severity == "warning" and str(problem).endswith(
        ":9:17: warning: audio file not found: prompts/q1.wav"
    )
    assert load_survey(path).questions[0].audio == {"en": "prompts/q1.wav"}


def test_not_utf8_is_one_problem_at_its_position(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml")
    path.write_bytes(path.read_bytes().replace(b"Sorry?", b"Sorr\xe9?"))
    assert [shown(p) for p in validate_paths([path])] == ["4:20 not valid UTF-8 (byte 0xe9)"]


def test_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", extra="# " + "x" * (1024 * 1024) + "\n")
    assert [p.message for p in validate_paths([path])] == ["file is larger than 1 MiB"]


def test_deep_nesting_and_second_document_are_refused(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 200 + "]" * 200 + "\n", "utf-8")
    assert [shown(p) for p in validate_paths([deep])] == ["1:36 nesting deeper than 32 levels"]
    two = write(tmp_path / "two.yaml")
    two.write_text(two.read_text("utf-8") + "---\nid: other\n", "utf-8")
    assert [shown(p) for p in validate_paths([two])] == ["9:1 only one YAML document per file"]


def test_duplicate_survey_id_is_reported_at_the_second_file(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", "same")
    second = write(tmp_path / "nested/b.yml", "same")
    write(tmp_path / "c.yaml", "other")
    [problem] = validate_paths([tmp_path])
    assert (problem.file, problem.line, problem.column) == (str(second), 1, 5)
    assert problem.message == f"survey id 'same' is already used by {first}"
    with pytest.raises(SurveyError):
        load_surveys(tmp_path)
    second.unlink()
    assert sorted(load_surveys(tmp_path)) == ["other", "same"]


def test_validate_paths_never_raises(tmp_path: Path) -> None:
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01\xff")
    (tmp_path / "empty.yaml").write_text("", "utf-8")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n", "utf-8")
    problems = validate_paths([tmp_path, tmp_path / "nowhere.yaml", tmp_path / "list.yaml"])
    assert [(Path(p.file).name, p.line, p.column) for p in problems] == [
        ("nowhere.yaml", 1, 1),
        ("binary.yaml", 1, 3),
        ("empty.yaml", 1, 1),
        ("list.yaml", 1, 1),
    ]
    assert problems[0].message == "no such file or directory"
    assert problems[2].message == (
        "the file is empty; a survey needs id, version, languages and questions"
    )
    assert problems[3].message == "expected a mapping, got a list"


def test_problem_text() -> None:
    assert str(Problem("a.yaml", 3, 7, "bad")) == "a.yaml:3:7: bad"
    assert str(Problem("a.yaml", 1, 1, "hm", "warning")) == "a.yaml:1:1: warning: hm"


def test_schema_is_draft_2020_12_with_descriptions() -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" and schema["$id"]
    question = schema["$defs"]["question"]["properties"]
    for properties in (schema["properties"], question):
        assert all("description" in p for p in properties.values())
    assert schema["additionalProperties"] is False
    assert all(
        d.get("additionalProperties") is False
        for d in ("question", "choice", "rule")
        for d in [schema["$defs"][d]]
    )


QUESTION = """id: s
version: 1
languages: [en]
invalid: {{en: "Sorry?"}}
questions:
  - id: q1
    type: {type}
    prompt: {{en: "Well?"}}
{extra}"""

# What the schema's descriptions promise, enforced by the schema itself (editors) and by the
# loader (seda validate), which says it in its own words: type, extra lines, loader's message.
SCHEMA_AND_LOADER = [
    ("max_length on nps", "nps", "    max_length: 20\n", "max_length is for text questions"),
    ("rating without max", "rating", "    min: 1\n", "rating question 'q1' needs min and max"),
    ("rating without min, max", "rating", "", "rating question 'q1' needs min and max"),
    ("min on yes_no", "yes_no", "    min: 1\n", "min is for rating and number"),
    ("choice without choices", "choice", "", "choice question 'q1' needs choices"),
    (
        "choices on text",
        "text",
        "    choices: [{id: a, label: {en: A}}, {id: b, label: {en: B}}]\n",
        "choices are for choice questions",
    ),
    (
        "choice id 11",
        "choice",
        "    choices: [{id: '11', label: {en: A}}, {id: b, label: {en: B}}]\n",
        "choice id 11 is the SMS opt-out code",
    ),
    (
        "choice id 12",
        "choice",
        "    choices: [{id: a, label: {en: A}}, {id: '12', label: {en: B}}]\n",
        "choice id 12 is the SMS opt-in code",
    ),
    ("prompt only spaces", "text", '    invalid: {en: "  "}\n', "must not be empty or only"),
]


@pytest.mark.parametrize(
    ("kind", "extra", "message"),
    [case[1:] for case in SCHEMA_AND_LOADER],
    ids=[case[0] for case in SCHEMA_AND_LOADER],
)
def test_schema_and_loader_refuse_the_same(
    tmp_path: Path, kind: str, extra: str, message: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(QUESTION.format(type=kind, extra=extra), "utf-8")
    problems = validate_paths([path])
    assert [p.severity for p in problems] == ["error"] and message in problems[0].message, problems
    schema = Draft202012Validator(json.loads(SCHEMA.read_text("utf-8")))
    assert list(schema.iter_errors(read_yaml(path).data)), "the schema accepts it"


def test_control_character_and_symlink_loop(tmp_path: Path) -> None:
    control = write(tmp_path / "control.yaml")
    control.write_text(control.read_text("utf-8").replace("Sorry?", "Sorry\x07"), "utf-8")
    assert [shown(p) for p in validate_paths([control])] == [
        "4:21 character U+0007 is not allowed in YAML"
    ]
    (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    looped = write(tmp_path / "loop.yaml", extra="    audio: {en: loop.wav}\n")
    assert [shown(p) for p in validate_paths([looped])] == [
        "9:17 warning: audio file not found: loop.wav"
    ]


def test_reminder_of_the_shipped_post_call_survey() -> None:
    survey = load_survey(ROOT / "config/flows/post_call_nps.yaml")
    assert survey.remind_after == timedelta(hours=4)
    assert set(survey.reminder) == {"fa", "ar", "en"}
    assert load_survey(ROOT / "config/flows/ticket_csat.yaml").remind_after is None
