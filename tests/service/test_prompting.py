"""PromptRenderer: each format's prompt and completion, with and without a chat template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.errors import EvalctlError
from service.prompting import ALPACA_PREAMBLE, ALPACA_PREAMBLE_NO_INPUT, PromptRenderer
from service.spec import DataSpec

ROW = {"input_text": "Order 7 from Alice", "output_text": '{"name": "Alice"}'}
CHAT = {
    "messages": [
        {"role": "user", "content": "Who ordered?"},
        {"role": "assistant", "content": "Alice."},
        {"role": "user", "content": "How many?"},
        {"role": "assistant", "content": "Three."},
    ]
}


def data_spec(**fields: Any) -> DataSpec:
    """Return a DataSpec (vertex unless told) without checking that files exist."""
    raw = {"train": "train.jsonl", "format": "vertex", **fields}
    return DataSpec.model_validate(raw, context={"check_files": False})


@pytest.fixture
def tok(tiny_model_dir: Path) -> Any:
    """The tiny tokenizer, with its chat template (ChatML-like, eos <|im_end|>)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def plain_tok(tok: Any) -> Any:
    """The tiny tokenizer without a chat template."""
    tok.chat_template = None
    return tok


def test_vertex_prompt_uses_chat_template_with_generation_prompt(tok: Any) -> None:
    renderer = PromptRenderer(data_spec(), tok)
    prompt = renderer.render(ROW)
    assert prompt == "<|im_start|>user\nOrder 7 from Alice<|im_end|>\n<|im_start|>assistant\n"
    expected = tok.apply_chat_template(
        [{"role": "user", "content": ROW["input_text"]}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == expected
    assert renderer.uses_chat_template
    assert renderer.completion(ROW) == '{"name": "Alice"}<|im_end|>'


def test_system_prompt_comes_first_in_the_chat_template(tok: Any) -> None:
    renderer = PromptRenderer(data_spec(system_prompt="Answer in JSON."), tok)
    assert renderer.render(ROW).startswith(
        "<|im_start|>system\nAnswer in JSON.<|im_end|>\n<|im_start|>user\nOrder 7"
    )


def test_vertex_without_chat_template_is_text_and_newline(plain_tok: Any) -> None:
    renderer = PromptRenderer(data_spec(), plain_tok)
    assert not renderer.uses_chat_template
    assert renderer.render(ROW) == "Order 7 from Alice\n"
    assert renderer.completion(ROW) == '{"name": "Alice"}<|im_end|>'
    with_system = PromptRenderer(data_spec(system_prompt="Be brief."), plain_tok)
    assert with_system.render(ROW) == "Be brief.\n\nOrder 7 from Alice\n"


def test_use_chat_template_false_ignores_the_template(tok: Any) -> None:
    renderer = PromptRenderer(data_spec(use_chat_template=False), tok)
    assert renderer.render(ROW) == "Order 7 from Alice\n"


def test_prompt_template_fills_row_fields(tok: Any) -> None:
    spec = data_spec(prompt_template="Extract ({lang}): {input_text}", use_chat_template=False)
    renderer = PromptRenderer(spec, tok)
    assert renderer.render({**ROW, "lang": "en"}) == "Extract (en): Order 7 from Alice\n"
    in_chat = PromptRenderer(data_spec(prompt_template="Extract: {input_text}"), tok)
    assert "<|im_start|>user\nExtract: Order 7 from Alice<|im_end|>" in in_chat.render(ROW)


def test_unknown_template_field_names_the_field(tok: Any) -> None:
    renderer = PromptRenderer(data_spec(prompt_template="Extract: {inptu_text}"), tok)
    with pytest.raises(EvalctlError) as err:
        renderer.render(ROW)
    assert str(err.value) == (
        "data.prompt_template: unknown field 'inptu_text' in row "
        "(fields: input_text, output_text). Did you mean 'input_text'?"
    )


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("Extract: {input_text", "expected '}' before end of string"),
        ("Extract: {}", "positional field '{}'"),
        ("Extract: {0}", "positional field '{0}'"),
    ],
)
def test_malformed_template_fails_when_built(tok: Any, template: str, fragment: str) -> None:
    with pytest.raises(EvalctlError) as err:
        PromptRenderer(data_spec(prompt_template=template), tok)
    assert str(err.value).startswith("data.prompt_template: ")
    assert fragment in str(err.value)


@pytest.mark.parametrize("fmt", ["chat", "completion"])
def test_template_is_refused_where_rows_have_no_input_field(tok: Any, fmt: str) -> None:
    with pytest.raises(EvalctlError, match=f"not used with format '{fmt}'"):
        PromptRenderer(data_spec(format=fmt, prompt_template="{text}"), tok)


def test_alpaca_without_chat_template_uses_the_classic_layout(plain_tok: Any) -> None:
    renderer = PromptRenderer(data_spec(format="alpaca"), plain_tok)
    row = {"instruction": "Extract the name.", "input": "Order from Bob", "output": "Bob"}
    assert renderer.render(row) == (
        f"{ALPACA_PREAMBLE}\n\n### Instruction:\nExtract the name.\n\n"
        "### Input:\nOrder from Bob\n\n### Response:\n"
    )
    no_input = {"instruction": "Say hi.", "output": "hi"}
    assert renderer.render(no_input) == (
        f"{ALPACA_PREAMBLE_NO_INPUT}\n\n### Instruction:\nSay hi.\n\n### Response:\n"
    )
    assert renderer.completion(row) == "Bob<|im_end|>"


def test_alpaca_with_chat_template_joins_instruction_and_input(tok: Any) -> None:
    renderer = PromptRenderer(data_spec(format="alpaca"), tok)
    row = {"instruction": "Extract the name.", "input": "Order from Bob", "output": "Bob"}
    assert renderer.render(row) == (
        "<|im_start|>user\nExtract the name.\n\nOrder from Bob<|im_end|>\n<|im_start|>assistant\n"
    )
    assert renderer.render({**row, "input": ""}).count("\n\n") == 0


def test_chat_prompt_is_every_message_but_the_last_answer(tok: Any) -> None:
    renderer = PromptRenderer(data_spec(format="chat"), tok)
    expected = tok.apply_chat_template(
        CHAT["messages"][:-1], tokenize=False, add_generation_prompt=True
    )
    assert renderer.render(CHAT) == expected
    assert renderer.render(CHAT).endswith("How many?<|im_end|>\n<|im_start|>assistant\n")
    assert renderer.completion(CHAT) == "Three.<|im_end|>"


def test_chat_system_prompt_is_added_once(tok: Any) -> None:
    renderer = PromptRenderer(data_spec(format="chat", system_prompt="Be terse."), tok)
    assert renderer.render(CHAT).startswith("<|im_start|>system\nBe terse.<|im_end|>\n")
    own = {"messages": [{"role": "system", "content": "Mine."}, *CHAT["messages"]]}
    prompt = renderer.render(own)
    assert prompt.startswith("<|im_start|>system\nMine.<|im_end|>") and "Be terse." not in prompt


def test_chat_without_chat_template_uses_role_blocks(plain_tok: Any) -> None:
    renderer = PromptRenderer(data_spec(format="chat"), plain_tok)
    assert renderer.render(CHAT) == (
        "### User:\nWho ordered?\n\n### Assistant:\nAlice.\n\n"
        "### User:\nHow many?\n\n### Assistant:\n"
    )


def test_completion_format_has_no_prompt(tok: Any) -> None:
    renderer = PromptRenderer(data_spec(format="completion"), tok)
    assert not renderer.uses_chat_template
    assert renderer.render({"text": "Once upon a time"}) == ""
    assert renderer.completion({"text": "Once upon a time"}) == "Once upon a time<|im_end|>"
    assert renderer.render_text("Once upon") == "Once upon"


@pytest.mark.parametrize("system_prompt", [None, "Be brief."])
@pytest.mark.parametrize("template", [None, "Extract: {input_text}"])
@pytest.mark.parametrize("chat_template", [True, False])
def test_render_text_equals_rendering_a_vertex_row(
    tok: Any, system_prompt: str | None, template: str | None, chat_template: bool
) -> None:
    if not chat_template:
        tok.chat_template = None
    spec = data_spec(system_prompt=system_prompt, prompt_template=template)
    renderer = PromptRenderer(spec, tok)
    text = "Order 9 from Carol"
    assert renderer.render_text(text) == renderer.render({"input_text": text})
    assert text in renderer.render_text(text)


def test_render_text_fills_input_aliases_and_refuses_other_fields(tok: Any) -> None:
    aliased = PromptRenderer(data_spec(prompt_template="Q: {input} / {text}"), tok)
    assert "Q: hi / hi<|im_end|>" in aliased.render_text("hi")
    other = PromptRenderer(data_spec(prompt_template="{input_text} in {lang}"), tok)
    with pytest.raises(EvalctlError, match="field 'lang' has no value for a bare input"):
        other.render_text("hi")


def test_render_text_for_alpaca_and_chat(tok: Any) -> None:
    alpaca = PromptRenderer(data_spec(format="alpaca"), tok)
    assert alpaca.render_text("Say hi.") == alpaca.render({"instruction": "Say hi.", "input": ""})
    chat = PromptRenderer(data_spec(format="chat", system_prompt="S."), tok)
    assert chat.render_text("Hi?") == (
        "<|im_start|>system\nS.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_completion_ends_with_the_templates_end_of_turn_token(tok: Any) -> None:
    # a template whose turns end with a special token other than EOS
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '<|endoftext|>' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    renderer = PromptRenderer(data_spec(), tok)
    assert renderer.stop_text == "<|endoftext|>" != tok.eos_token
    assert renderer.completion(ROW) == '{"name": "Alice"}<|endoftext|>'


def test_end_of_turn_falls_back_to_eos_without_a_special_token(tok: Any) -> None:
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    renderer = PromptRenderer(data_spec(), tok)
    assert renderer.render(ROW) == "user: Order 7 from Alice\nassistant: "
    assert renderer.stop_text == "<|im_end|>"


def test_prompt_input_and_target_are_the_raw_fields(tok: Any) -> None:
    renderer = PromptRenderer(data_spec(prompt_template="Extract: {input_text}"), tok)
    assert renderer.prompt_input(ROW) == "Order 7 from Alice"
    assert renderer.prompt_input(ROW, filled=True) == "Extract: Order 7 from Alice"
    assert renderer.target(ROW) == '{"name": "Alice"}'
    chat = PromptRenderer(data_spec(format="chat"), tok)
    assert chat.prompt_input(CHAT) == "How many?"
