"""The generation cache: same outputs, generated once; distinct keys miss; corruption heals."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from evaluators.base import ModelHandle
from evaluators.cache import FILENAME, GenerationCache, reset_stats
from evaluators.generation import generate_for

INPUTS = [
    "Order 1234 from Alice Smith, 3 widgets.",
    "hi",
    "Extract the contact as JSON: Bob bob@example.org",
    "The quick brown fox",
    "hi",  # a duplicate is generated once and answered twice
]


@pytest.fixture
def prompts(chat_render):
    return [chat_render(text) for text in INPUTS]


@pytest.fixture
def cached(tiny_handle: ModelHandle, tmp_path: Path) -> ModelHandle:
    return dataclasses.replace(tiny_handle, cache_dir=tmp_path / "gen")


def rows(folder: Path) -> int:
    with sqlite3.connect(folder / FILENAME) as conn:
        return conn.execute("select count(*) from generations").fetchone()[0]


def test_cached_outputs_equal_uncached_and_second_call_only_hits(tiny_handle, cached, prompts):
    plain = generate_for(tiny_handle, prompts, max_new_tokens=8, batch_size=2)
    reset_stats()
    first = generate_for(cached, prompts, max_new_tokens=8, batch_size=2)
    stats = reset_stats()
    assert first == plain
    assert (stats.hits, stats.misses) == (0, len(prompts))
    assert rows(cached.cache_dir) == len(set(prompts))

    second = generate_for(cached, prompts, max_new_tokens=8, batch_size=3)
    stats = reset_stats()
    assert second == plain
    assert (stats.hits, stats.misses) == (len(prompts), 0)


def test_partial_hit_generates_only_the_misses_in_order(cached, prompts, tiny_handle):
    generate_for(cached, prompts[:2], max_new_tokens=8)
    reset_stats()
    out = generate_for(cached, prompts, max_new_tokens=8)
    stats = reset_stats()
    assert out == generate_for(tiny_handle, prompts, max_new_tokens=8)
    # prompts[0] and both "hi" prompts hit; two prompts were new
    assert (stats.hits, stats.misses) == (3, 2)
    assert rows(cached.cache_dir) == 4


def test_different_max_new_tokens_or_weights_miss(cached, prompts):
    generate_for(cached, prompts, max_new_tokens=8)
    reset_stats()
    generate_for(cached, prompts, max_new_tokens=4)
    assert reset_stats().hits == 0
    other = dataclasses.replace(cached, model_hash="other-weights")
    generate_for(other, prompts, max_new_tokens=8)
    assert reset_stats().hits == 0
    generate_for(cached, prompts, max_new_tokens=8)
    assert reset_stats().misses == 0


def test_special_tokens_setting_is_part_of_the_key(cached):
    # Plain prompts get the tokenizer's BOS; the same text starting with BOS does not.
    bos = cached.tokenizer.bos_token
    generate_for(cached, ["hello there"], max_new_tokens=4)
    reset_stats()
    generate_for(cached, [bos + "hello there"], max_new_tokens=4)
    assert reset_stats().misses == 1


def test_no_cache_dir_means_no_file(tiny_handle, prompts, tmp_path):
    reset_stats()
    generate_for(tiny_handle, prompts, max_new_tokens=4)
    assert reset_stats().hits == reset_stats().misses == 0
    assert not list(tmp_path.rglob(FILENAME))


def test_corrupted_cache_file_is_rebuilt_with_a_warning(cached, prompts, tiny_handle, caplog):
    expected = generate_for(tiny_handle, prompts, max_new_tokens=8)
    generate_for(cached, prompts, max_new_tokens=8)
    path = cached.cache_dir / FILENAME
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    reset_stats()
    with caplog.at_level(logging.WARNING, logger="evaluators.cache"):
        out = generate_for(cached, prompts, max_new_tokens=8)
    assert out == expected
    assert reset_stats().misses == len(prompts)
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert rows(cached.cache_dir) == len(set(prompts))  # rebuilt and refilled


def _writer(folder: str, start: int) -> None:
    cache = GenerationCache(Path(folder))
    for i in range(start, start + 200, 20):
        cache.put_many({f"k{j}": f"v{j}" for j in range(i, i + 20)}, model_hash="m")


def test_two_processes_write_the_same_file(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s)) for s in (0, 100)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = GenerationCache(tmp_path)
    assert len(cache) == 300
    found = cache.get_many([f"k{j}" for j in range(300)])
    assert found["k299"] == "v299" and len(found) == 300
    assert cache.stats.hits == 300
