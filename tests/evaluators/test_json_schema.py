"""json_schema: parsing model outputs, schema validation, reference matching, bad inputs."""

from __future__ import annotations

import json
import re

import pytest

from evaluators.base import EvaluatorInputError, ModelHandle
from evaluators.generation import needs_special_tokens
from evaluators.json_schema import (
    NO_JSON,
    JsonSchemaEvaluator,
    PromptRow,
    extract_json,
    load_validator,
    read_prompts,
    score_outputs,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "email": {"type": "string", "format": "email"},
        "qty": {"type": "integer"},
    },
    "required": ["name", "email"],
    "additionalProperties": False,
}
BOB = {"name": "Bob", "email": "bob@example.org"}


@pytest.fixture
def schema_path(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA, indent=2))
    return path


@pytest.fixture
def validator(schema_path):
    return load_validator(schema_path)


def rows(n, reference=None):
    return [
        PromptRow(example_id=f"r{i}", input_text=f"prompt {i}", reference=reference)
        for i in range(n)
    ]


def score_one(output, validator, reference=None):
    result = score_outputs([output], rows(1, reference), validator)
    return result.examples[0]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('{"name": "Bob", "email": "bob@example.org"}', BOB),
        ('Sure! Here is the JSON: {"name": "Bob", "email": "bob@example.org"} Hope it helps.', BOB),
        ('```json\n{"name": "Bob", "email": "bob@example.org"}\n```', BOB),
        ('{"name": "Bob", "email": "bob@example.org"}\n{"name": "Eve", "email": "e@x.io"}', BOB),
        ('Use {braces} like this: {"name": "Bob", "email": "bob@example.org"}', BOB),
        ('[1, 2] and then {"a": 1}', [1, 2]),
        ('{"a": {"b": 1}}', {"a": {"b": 1}}),
    ],
)
def test_the_first_json_value_is_extracted(output, expected):
    assert extract_json(output) == expected


@pytest.mark.parametrize(
    "output",
    [
        "I cannot answer that.",
        '{"name": "Bob", "email": }',
        "{'name': 'Bob'}",  # Python, not JSON
        '{"name": "Bob", "address": {"city": "Lima"}, "email": "bo',  # cut off mid-string
        '{"name": "Bob", "address": {"city": "Lima"}, "qty": ',  # cut off after a key
        "",
    ],
)
def test_outputs_without_json_do_not_parse(output):
    # A truncated answer must not count as the object nested inside it.
    assert extract_json(output) is NO_JSON


def test_valid_answer_scores_parsed_and_valid(validator):
    example = score_one(
        'Here: ```json\n{"name": "Bob", "email": "bob@example.org"}\n```', validator
    )
    assert example.scores == {"parsed": 1.0, "valid": 1.0}
    assert "error" not in example.details
    assert example.details["input"] == "prompt 0"


@pytest.mark.parametrize(
    ("output", "error"),
    [
        ('{"name": "Bob"}', "'email' is a required property"),
        ('{"name": "Bob", "email": "not-an-email"}', "at $.email: 'not-an-email' is not a 'email'"),
        (
            '{"name": "Bob", "email": "b@x.io", "qty": "3"}',
            "at $.qty: '3' is not of type 'integer'",
        ),
        ('{"name": "Bob", "email": "b@x.io", "extra": 1}', "Additional properties"),
        ("[1, 2]", "is not of type 'object'"),
    ],
)
def test_json_failing_the_schema_is_parsed_but_invalid(validator, output, error):
    example = score_one(output, validator)
    assert example.scores == {"parsed": 1.0, "valid": 0.0}
    assert error in example.details["error"]
    assert len(example.details["error"]) <= 200


def test_output_without_json_is_neither_parsed_nor_valid(validator):
    example = score_one("no json here", validator, reference=BOB)
    assert example.scores == {
        "parsed": 0.0,
        "valid": 0.0,
        "field_exact_match": 0.0,
        "exact_match": 0.0,
    }
    assert example.details["error"] == "no JSON value in the output"
    assert example.details["output"] == "no json here"
    assert example.details["reference"] == BOB


@pytest.mark.parametrize(
    ("output", "field_match", "exact"),
    [
        ('{"name": "Bob", "email": "bob@example.org"}', 1.0, 1.0),
        ('{"email": "bob@example.org", "name": "Bob"}', 1.0, 1.0),  # key order is irrelevant
        ('{"name": "Bob", "email": "other@example.org"}', 0.5, 0.0),
        ('{"name": "Bob", "email": "bob@example.org", "qty": 1}', 1.0, 0.0),  # extra field
        ('{"name": "bob", "email": "bob@example.org "}', 0.0, 0.0),  # exact, not fuzzy
        ('["Bob", "bob@example.org"]', 0.0, 0.0),
    ],
)
def test_reference_fields_are_compared_exactly(validator, output, field_match, exact):
    example = score_one(output, validator, reference=BOB)
    assert example.scores["field_exact_match"] == field_match
    assert example.scores["exact_match"] == exact


def test_json_types_are_compared_as_json(validator):
    reference = {"flag": True, "qty": 1, "price": 2.0}
    example = score_one('{"flag": 1, "qty": 1.0, "price": 2}', validator, reference=reference)
    # true is not 1, but 1 and 1.0 are the same JSON number
    assert example.scores["field_exact_match"] == pytest.approx(2 / 3)
    assert example.scores["exact_match"] == 0.0


def test_metrics_average_over_examples(validator):
    outputs = [
        '{"name": "Bob", "email": "bob@example.org"}',  # valid, exact
        '{"name": "Bob", "email": "nope"}',  # invalid, half the fields
        "no JSON",  # not parsed
        '{"name": "Eve", "email": "eve@example.org"}',  # valid, no reference
    ]
    prompt_rows = [*rows(3, reference=BOB), PromptRow(example_id="last", input_text="p")]
    result = score_outputs(outputs, prompt_rows, validator)
    assert result.metrics == {
        "parse_rate": 0.75,
        "valid_rate": 0.5,
        "field_exact_match": 0.5,  # (1 + 0.5 + 0) / 3 rows with a reference
        "exact_match": pytest.approx(1 / 3),
    }
    assert [e.example_id for e in result.examples] == ["r0", "r1", "r2", "last"]
    assert "exact_match" not in result.examples[3].scores


def test_reference_metrics_are_absent_without_references(validator):
    result = score_outputs(['{"name": "Bob", "email": "b@x.io"}', "x"], rows(2), validator)
    assert result.metrics == {"parse_rate": 0.5, "valid_rate": 0.5}


# --- bad inputs ----------------------------------------------------------------------


def test_schema_file_that_is_not_json_names_line_and_column(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text('{\n  "type": "object",\n  "required": ["a",]\n}\n')
    with pytest.raises(
        EvaluatorInputError,
        match=rf"^{re.escape(str(path))}: invalid JSON at line 3 col 20: Expecting value",
    ):
        load_validator(path)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "nonsense"}, r"not a valid JSON Schema: at \$.type: 'nonsense' is not valid"),
        ({"properties": {"a": {"minLength": -1}}}, r"at \$.properties.a.minLength: -1"),
        ([1, 2], "must be an object"),
    ],
)
def test_invalid_schema_is_rejected_clearly(tmp_path, schema, message):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    with pytest.raises(EvaluatorInputError, match=message):
        load_validator(path)


def test_declared_draft_is_honoured(tmp_path):
    path = tmp_path / "schema.json"
    # Draft 7 tuple form: in 2020-12 `items` must be a schema, not an array.
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}]}
    path.write_text(json.dumps(draft7))
    validator = load_validator(path)
    assert validator.is_valid(["a", 1])
    assert not validator.is_valid([1])


def test_malformed_prompt_row_is_reported_with_file_and_line(write_jsonl):
    path = write_jsonl([{"input_text": "a"}, {"input_text": "b"}, "{not json}"])
    with pytest.raises(
        EvaluatorInputError, match=rf"^{re.escape(str(path))}:3: invalid JSON at col 2"
    ):
        read_prompts(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"text": "a", "id": 1},
            r"row has no 'input_text' \(or 'prompt'\) field; fields here: id, text",
        ),
        ({"input_text": ""}, "'input_text' must be a non-empty string"),
        ({"input_text": ["a"]}, "'input_text' must be a non-empty string"),
        ({"input_text": "a", "reference": '{"a": 1}'}, "reference must be a JSON object or array"),
        ({"input_text": "a", "id": "p1"}, r"duplicate id 'p1' \(first at line 1\)"),
    ],
)
def test_bad_prompt_rows_say_what_is_wrong(write_jsonl, row, message):
    path = write_jsonl([{"input_text": "fine", "id": "p1"}, row])
    with pytest.raises(EvaluatorInputError, match=rf"{re.escape(str(path))}:2: {message}"):
        read_prompts(path)


def test_prompt_field_and_line_ids_are_accepted(write_jsonl):
    path = write_jsonl([{"prompt": "a"}, "", {"input_text": "b", "id": 7, "reference": [1]}])
    assert read_prompts(path) == [
        PromptRow(example_id="1", input_text="a", line=1),
        PromptRow(example_id="7", input_text="b", reference=[1], line=3),
    ]


def test_prepare_reports_bad_inputs_before_any_model_work(write_jsonl, tmp_path):
    prompts = write_jsonl([{"input_text": "a"}])
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "nonsense"}')
    config = JsonSchemaEvaluator.Config.model_validate(
        {"prompts": "data.jsonl", "schema": "schema.json"}, context={"base_dir": tmp_path}
    )
    assert config.prompts == prompts.resolve()
    with pytest.raises(EvaluatorInputError, match=r"schema\.json: not a valid JSON Schema"):
        JsonSchemaEvaluator(config).prepare()


def test_config_is_validated_by_the_registry(write_jsonl, schema_path):
    from evaluators.registry import build_evaluator
    from service.errors import EvalctlError

    prompts = write_jsonl([{"input_text": "a"}])
    built = build_evaluator("json_schema", {"prompts": str(prompts), "schema": str(schema_path)})
    assert isinstance(built, JsonSchemaEvaluator)
    assert built.config.schema_ == schema_path
    assert built.config.model_dump(mode="json")["schema"] == str(schema_path)
    with pytest.raises(EvalctlError, match=r"evaluators\.json_schema\.max_new_token"):
        build_evaluator(
            "json_schema",
            {"prompts": str(prompts), "schema": str(schema_path), "max_new_token": 5},
        )


# --- end to end with the tiny model ------------------------------------------------------


def test_evaluate_scores_one_example_per_prompt(tiny_handle, write_jsonl, schema_path):
    prompt_rows = [
        {"id": "order-a", "input_text": "Extract the contact as JSON: Bob bob@example.org"},
        {"id": "order-b", "input_text": "Contact Carol Jones", "reference": BOB},
        {"input_text": "The quick brown fox"},
    ]
    path = write_jsonl(prompt_rows)
    rendered = []

    def render(text):
        rendered.append(text)
        return tiny_handle.render_prompt(text)

    handle = ModelHandle(
        model=tiny_handle.model,
        tokenizer=tiny_handle.tokenizer,
        model_hash="t",
        render_prompt=render,
    )
    evaluator = JsonSchemaEvaluator(
        JsonSchemaEvaluator.Config(
            prompts=path, schema=schema_path, max_new_tokens=16, batch_size=2
        )
    )
    result = evaluator.evaluate(handle)

    assert rendered == [r["input_text"] for r in prompt_rows]
    assert [e.example_id for e in result.examples] == ["order-a", "order-b", "3"]
    assert set(result.metrics) == {"parse_rate", "valid_rate", "field_exact_match", "exact_match"}
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
    for example, row in zip(result.examples, prompt_rows, strict=True):
        assert example.details["input"] == row["input_text"]
        assert isinstance(example.details["output"], str)
        assert set(example.scores) >= {"parsed", "valid"}


def test_special_tokens_are_added_only_to_prompts_without_them(tiny_tokenizer, chat_render):
    # Chat-template prompts already start with the BOS text; a second BOS would shift them.
    assert tiny_tokenizer.bos_token == "<|im_start|>"
    assert not needs_special_tokens(tiny_tokenizer, [chat_render("a"), chat_render("b")])
    assert needs_special_tokens(tiny_tokenizer, ["Extract: a", chat_render("b")])
    tiny_tokenizer.bos_token = None
    assert needs_special_tokens(tiny_tokenizer, [chat_render("a")])


def test_raw_prompts_skip_the_renderer(tiny_handle, write_jsonl, schema_path):
    path = write_jsonl([{"input_text": "Order 1234"}])

    def render(text):
        raise AssertionError("raw_prompts must not render")

    handle = ModelHandle(
        model=tiny_handle.model,
        tokenizer=tiny_handle.tokenizer,
        model_hash="t",
        render_prompt=render,
    )
    config = JsonSchemaEvaluator.Config(
        prompts=path, schema=schema_path, raw_prompts=True, max_new_tokens=4
    )
    result = JsonSchemaEvaluator(config).evaluate(handle)
    assert len(result.examples) == 1
