"""Prompt rendering: how a data row, or a bare user input, becomes the model's prompt.

Owns the prompt/completion rules of each data format (vertex, chat, alpaca, completion),
filling `data.prompt_template`, wrapping prompts in the tokenizer's chat template, and the
stop text appended to every completion. Runners train on exactly what evaluators later
send, so both render through this one class. It does not read files, check row shapes or
tokenize (that is `runners.data`), and it never imports torch.

Rules, by format (user text = what goes into the user turn):
- vertex: user text = `prompt_template.format(**row)` if set, else `row["input_text"]`;
  completion = `output_text`.
- alpaca: user text = the template if set, else `instruction` + ("\\n\\n" + `input` if
  non-empty); completion = `output`.
- chat: every message but a final assistant message is the prompt; completion = that final
  assistant message. `prompt_template` is not allowed (the messages are the prompt).
- completion: the prompt is "" and the whole `text` is the completion (trained on all of
  it). `prompt_template` is not allowed.

With `use_chat_template` and a tokenizer that has a `chat_template`, the prompt is
`apply_chat_template([system?, user], add_generation_prompt=True)` and completions end with
the template's end-of-turn token (usually the EOS token). Otherwise prompts are plain text:
vertex `[system + "\\n\\n"] + text + "\\n"`; alpaca the classic "### Instruction:" /
"### Input:" / "### Response:" layout (`system_prompt` replaces its preamble); chat
"### System:/### User:/### Assistant:" blocks; completions end with the EOS token.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from service.errors import EvalctlError, did_you_mean

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from service.spec import DataSpec

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request."
)
ALPACA_PREAMBLE_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
# Template fields that `render_text` fills with the bare input when the format's own row
# does not already name them.
INPUT_FIELDS = ("input_text", "input", "instruction", "text", "prompt")
_ROLE_HEADERS = {"system": "### System:", "user": "### User:", "assistant": "### Assistant:"}
_PROBE = "EVALCTLENDOFTURNPROBE"


class PromptRenderer:
    """Turn rows of one data format into prompt and completion text for one tokenizer."""

    def __init__(self, spec: DataSpec, tokenizer: PreTrainedTokenizerBase) -> None:
        self.format = spec.format
        self.prompt_template = spec.prompt_template
        self.system_prompt = spec.system_prompt
        self.tokenizer = tokenizer
        if self.prompt_template is not None and self.format in ("chat", "completion"):
            raise EvalctlError(
                f"data.prompt_template: not used with format '{self.format}' "
                f"({'the messages are' if self.format == 'chat' else 'the text is'} the "
                "prompt); remove it"
            )
        self.template_fields = _template_fields(self.prompt_template)
        #: True when prompts come from the tokenizer's chat template (they then carry their
        #: own special tokens: tokenize them with add_special_tokens=False).
        self.uses_chat_template = bool(
            spec.use_chat_template
            and getattr(tokenizer, "chat_template", None)
            and self.format != "completion"
        )
        #: Appended to every completion so the model learns to stop.
        self.stop_text = (
            _end_of_turn(tokenizer) if self.uses_chat_template else tokenizer.eos_token or ""
        )

    def render(self, row: Mapping[str, Any]) -> str:
        """Return the prompt for a row of the spec's format ("" for completion rows)."""
        if self.format == "completion":
            return ""
        if self.format == "chat":
            return self._render_messages(_prompt_messages(row["messages"]))
        if self.uses_chat_template or self.prompt_template is not None or self.format == "vertex":
            return self._render_user(self.prompt_input(row, filled=True))
        return self._render_alpaca(row["instruction"], row.get("input") or "")

    def render_text(self, text: str) -> str:
        """Return the prompt for a bare user input (what evaluators send).

        vertex renders `{"input_text": text}`, alpaca `{"instruction": text, "input": ""}`,
        chat a single user message, completion the text itself (the model continues it).
        A `prompt_template` field that row lacks is filled with `text` when it is one of
        `INPUT_FIELDS`; any other field is an error (render a full row instead).
        """
        if self.format == "completion":
            return text
        if self.format == "chat":
            return self.render({"messages": [{"role": "user", "content": text}]})
        row: dict[str, Any] = (
            {"input_text": text} if self.format == "vertex" else {"instruction": text, "input": ""}
        )
        for field in self.template_fields:
            if field in row:
                continue
            if field not in INPUT_FIELDS:
                raise EvalctlError(
                    f"data.prompt_template: field '{field}' has no value for a bare input "
                    f"(only {', '.join(INPUT_FIELDS)} are filled); render a full row instead"
                )
            row[field] = text
        return self.render(row)

    def completion(self, row: Mapping[str, Any]) -> str:
        """Return the text the model is trained to produce for a row, ending in the stop text."""
        return self.target(row) + self.stop_text

    def target(self, row: Mapping[str, Any]) -> str:
        """Return a row's answer text without the stop text."""
        if self.format == "vertex":
            return str(row["output_text"])
        if self.format == "alpaca":
            return str(row["output"])
        if self.format == "completion":
            return str(row["text"])
        messages = row["messages"]
        return str(messages[-1]["content"]) if messages[-1]["role"] == "assistant" else ""

    def prompt_input(self, row: Mapping[str, Any], *, filled: bool = False) -> str:
        """Return a row's user input before any wrapping ("" for completion rows).

        With `filled`, the `prompt_template` (if any) is applied: that is the user turn.
        """
        if filled and self.prompt_template is not None:
            return self._fill(row)
        if self.format == "vertex":
            return str(row["input_text"])
        if self.format == "alpaca":
            extra = row.get("input") or ""
            return str(row["instruction"]) + (f"\n\n{extra}" if extra else "")
        if self.format == "chat":
            users = [m["content"] for m in row["messages"] if m["role"] == "user"]
            return str(users[-1]) if users else ""
        return ""

    def _fill(self, row: Mapping[str, Any]) -> str:
        assert self.prompt_template is not None
        for field in self.template_fields:
            if field not in row:
                raise EvalctlError(
                    f"data.prompt_template: unknown field '{field}' in row "
                    f"(fields: {', '.join(row)}).{did_you_mean(field, row)}"
                )
        try:
            return self.prompt_template.format_map(dict(row))
        except (KeyError, IndexError, AttributeError, TypeError, ValueError) as err:
            raise EvalctlError(
                f"data.prompt_template: cannot fill {self.prompt_template!r} from a row: {err}"
            )

    def _render_user(self, user_text: str) -> str:
        if self.uses_chat_template:
            return self._render_messages([{"role": "user", "content": user_text}])
        system = f"{self.system_prompt}\n\n" if self.system_prompt else ""
        return f"{system}{user_text}\n"

    def _render_alpaca(self, instruction: str, extra: str) -> str:
        preamble = self.system_prompt or (ALPACA_PREAMBLE if extra else ALPACA_PREAMBLE_NO_INPUT)
        text = f"{preamble}\n\n### Instruction:\n{instruction}\n\n"
        if extra:
            text += f"### Input:\n{extra}\n\n"
        return text + "### Response:\n"

    def _render_messages(self, messages: list[dict[str, Any]]) -> str:
        if self.system_prompt and not (messages and messages[0]["role"] == "system"):
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        if not self.uses_chat_template:
            blocks = [f"{_ROLE_HEADERS[m['role']]}\n{m['content']}\n\n" for m in messages]
            return "".join(blocks) + _ROLE_HEADERS["assistant"] + "\n"
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        if not isinstance(text, str):
            raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text)}")
        return text


def _prompt_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the messages before a final assistant answer (all of them when none)."""
    return list(messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages)


def _template_fields(template: str | None) -> tuple[str, ...]:
    """Return the row fields a prompt template names, rejecting malformed templates."""
    if template is None:
        return ()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise EvalctlError(
            f"data.prompt_template: {err} in {template!r}; write a literal brace as "
            "'{{' or '}}'"
        )
    fields: list[str] = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise EvalctlError(
                f"data.prompt_template: positional field '{{{field}}}' in {template!r}; "
                "name a row field, e.g. {input_text}"
            )
        if name not in fields:
            fields.append(name)
    return tuple(fields)


def _end_of_turn(tokenizer: PreTrainedTokenizerBase) -> str:
    """Return the special token the chat template closes an assistant turn with.

    Found by rendering a probe answer and taking the special token right after it (e.g.
    `<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`); the EOS token when there is none.
    """
    eos = tokenizer.eos_token or ""
    probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = tokenizer.apply_chat_template(probe, tokenize=False)
    except Exception:  # a template may insist on its own conversation shape: keep EOS
        return eos
    if not isinstance(text, str) or _PROBE not in text:
        return eos
    tail = text.split(_PROBE, 1)[1].lstrip()
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    specials = {*tokenizer.all_special_tokens, *(t.content for t in added.values() if t.special)}
    for token in sorted(specials, key=len, reverse=True):
        if token and tail.startswith(token):
            return str(token)
    return eos
