"""Batched greedy generation gives what one-prompt-at-a-time generation gives, in order."""

from __future__ import annotations

from collections import Counter

import pytest

from evaluators.generation import generate, length_batches

INPUTS = [
    "Order 1234 from Alice Smith, alice@example.com, 3 widgets at 4.50 each.",
    "hi",
    "Extract the contact as JSON: Bob bob@example.org",
    "The quick brown fox",
    "Contact Carol Jones by phone +1 555 0100 or email carol.jones@mail.net, then "
    "order 7 widgets for the Lima office and ship them next week.",
    "x",
    "Quantity: 3. City: Lima.",
]


@pytest.fixture
def prompts(chat_render):
    return [chat_render(text) for text in INPUTS]


def one_at_a_time(model, tokenizer, prompts, **kwargs):
    return [
        generate(model, tokenizer, [p], max_new_tokens=12, add_special_tokens=False, **kwargs)[0]
        for p in prompts
    ]


def test_batched_generation_equals_one_prompt_at_a_time(tiny_model, tiny_tokenizer, prompts):
    # batch_size 3 over 7 prompts of very different lengths: uneven, left-padded batches.
    batched = generate(
        tiny_model,
        tiny_tokenizer,
        prompts,
        max_new_tokens=12,
        batch_size=3,
        add_special_tokens=False,
    )
    single = one_at_a_time(tiny_model, tiny_tokenizer, prompts)
    assert batched == single
    assert all(batched)  # nothing stopped at once: the comparison has text to compare
    assert len(set(batched)) > 1


def test_outputs_follow_the_prompt_order(tiny_model, tiny_tokenizer, prompts):
    forward = generate(tiny_model, tiny_tokenizer, prompts, max_new_tokens=8, batch_size=2)
    backward = generate(tiny_model, tiny_tokenizer, prompts[::-1], max_new_tokens=8, batch_size=2)
    assert backward == forward[::-1]


def test_rows_that_stop_early_match_single_generation(tiny_model, tiny_tokenizer, prompts):
    # Make a token the random model often writes its end-of-sequence token, so rows in one
    # batch stop at different steps (the finished ones keep being padded).
    ids = tiny_tokenizer(prompts[0], add_special_tokens=False, return_tensors="pt").input_ids
    written = tiny_model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1] :]
    counts = Counter(written.tolist())
    tiny_model.generation_config.eos_token_id = counts.most_common(1)[0][0]

    batched = generate(
        tiny_model,
        tiny_tokenizer,
        prompts,
        max_new_tokens=12,
        batch_size=4,
        add_special_tokens=False,
    )
    assert batched == one_at_a_time(tiny_model, tiny_tokenizer, prompts)
    full = generate(
        tiny_model,
        tiny_tokenizer,
        prompts,
        max_new_tokens=12,
        batch_size=4,
        add_special_tokens=False,
        stop_at_eos=False,
    )
    shorter = [b for b, f in zip(batched, full, strict=True) if len(b) < len(f)]
    assert shorter, "no row stopped early: the test did not exercise stopping"
    assert all(f.startswith(b) for b, f in zip(batched, full, strict=True))


def test_tokenizer_without_pad_token_pads_with_eos(tiny_model, tiny_tokenizer, prompts):
    with_pad = generate(tiny_model, tiny_tokenizer, prompts, max_new_tokens=8, batch_size=4)
    tiny_tokenizer.pad_token = None
    assert tiny_tokenizer.pad_token_id is None
    without_pad = generate(tiny_model, tiny_tokenizer, prompts, max_new_tokens=8, batch_size=4)
    assert without_pad == with_pad


@pytest.mark.parametrize("training", [True, False])
def test_model_modes_are_restored(tiny_model, tiny_tokenizer, prompts, training):
    tiny_model.train(training)
    # A model mid-training may mix modes (e.g. a frozen part kept in eval).
    tiny_model.model.layers[0].eval()
    before = {name: m.training for name, m in tiny_model.named_modules()}
    generate(tiny_model, tiny_tokenizer, prompts[:2], max_new_tokens=4)
    assert {name: m.training for name, m in tiny_model.named_modules()} == before


def test_modes_are_restored_when_generation_fails(tiny_model, tiny_tokenizer):
    tiny_model.train()
    with pytest.raises(ValueError, match="empty"):
        generate(tiny_model, tiny_tokenizer, ["fine", ""], max_new_tokens=4)
    assert tiny_model.training


def test_no_prompts_gives_no_outputs(tiny_model, tiny_tokenizer):
    assert generate(tiny_model, tiny_tokenizer, [], max_new_tokens=4) == []


def test_length_batches_group_neighbours_longest_first():
    lengths = [5, 1, 9, 3, 7, 2]
    batches = length_batches(lengths, 2)
    assert batches == [[2, 4], [0, 3], [5, 1]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
