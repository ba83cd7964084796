"""Base-model sources: a local model folder, a .gguf file, a file inside a package, the hub.

Every source resolves to a local Hugging Face model folder with safetensors weights and a
sha256 that identifies those weights. GGUF files are dequantized once and cached as
safetensors under `EVALCTL_HOME/cache/models/<hash>`. Nothing is downloaded unless the spec
opts in (`allow_network: true`). Loading the model onto a device is `load_model`'s job.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import EvalctlError
from service.hashing import WEIGHT_SUFFIXES, sha256_file, sha256_weights
from service.spec import BaseModelSpec

PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt")


class ModelSourceError(EvalctlError):
    """The base model cannot be found, converted or loaded."""


@dataclass(frozen=True)
class ResolvedModel:
    """A local model folder ready for `from_pretrained`, with the hash of its weights."""

    path: Path
    sha256: str
    source: str


def _cached_hash(path: Path, cache_dir: Path, compute: Any) -> str:
    # Hashing a multi-GB model on every run is slow; key the result on size and mtime.
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    memo = cache_dir / "hashes" / f"{key.hexdigest()[:32]}.txt"
    if memo.exists():
        return memo.read_text().strip()
    value: str = compute(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(value)
    return value


def resolve_base_model(spec: BaseModelSpec, *, cache_dir: Path) -> ResolvedModel:
    """Return the local model folder for `spec`, converting or downloading as allowed."""
    if spec.hub is not None:
        return _from_hub(spec, cache_dir)
    if spec.package is not None:
        assert spec.file is not None
        path = _package_file(spec.package, spec.file)
        source = f"package {spec.package}/{spec.file}"
    else:
        assert spec.path is not None
        path = Path(spec.path)
        source = str(path)
    if path.is_file() and path.suffix == ".gguf":
        return _from_gguf(path, cache_dir, source, spec.trust_remote_code)
    if path.is_dir():
        return _from_folder(path, cache_dir, source)
    if not path.exists():
        raise ModelSourceError(f"base_model: {path} does not exist")
    raise ModelSourceError(f"base_model: {path} is neither a model folder nor a .gguf file")


def _package_file(package: str, file: str) -> Path:
    # find_spec locates the package without importing it (some ship heavy __init__ code).
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ModelSourceError(
            f"base_model.package: package '{package}' is not installed "
            f"(pip install {package.replace('_', '-')})"
        )
    for root in found.submodule_search_locations:
        candidate = Path(root) / file
        if candidate.exists():
            return candidate
    raise ModelSourceError(f"base_model.file: '{file}' not found in package '{package}'")


def _from_folder(path: Path, cache_dir: Path, source: str) -> ResolvedModel:
    if not (path / "config.json").exists():
        raise ModelSourceError(f"base_model: {path} has no config.json (not a model folder)")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir()):
        pickled = [name for name in PICKLE_WEIGHTS if (path / name).exists()]
        hint = f" (found {pickled[0]}: convert it to safetensors)" if pickled else ""
        raise ModelSourceError(f"base_model: {path} has no .safetensors weights{hint}")
    digest = _cached_hash(path / "config.json", cache_dir, lambda _: sha256_weights(path))
    return ResolvedModel(path=path, sha256=digest, source=source)


def _from_gguf(path: Path, cache_dir: Path, source: str, trust: bool) -> ResolvedModel:
    digest = _cached_hash(path, cache_dir, sha256_file)
    target = cache_dir / "models" / digest[:16]
    if not (target / "config.json").exists():
        _convert_gguf(path, target, trust)
    return ResolvedModel(path=target, sha256=digest, source=source)


def _convert_gguf(path: Path, target: Path, trust: bool) -> None:
    """Dequantize a GGUF file with transformers and save it as a safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        kwargs = {"gguf_file": path.name, "trust_remote_code": trust}
        tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
        # The loaded weights are plain float32 tensors; the gguf quantizer marker would
        # make save_pretrained refuse, and would make later loads look for a .gguf file.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "evalctl_source.json").write_text(json.dumps({"gguf": str(path)}))
        if target.exists():  # another process converted it meanwhile
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelSourceError(f"base_model: cannot read GGUF file {path}: {exc}") from exc


def _from_hub(spec: BaseModelSpec, cache_dir: Path) -> ResolvedModel:
    assert spec.hub is not None
    if not spec.allow_network:
        raise ModelSourceError(f"base_model.hub: '{spec.hub}' needs allow_network: true")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            spec.hub,
            revision=spec.revision,
            cache_dir=str(cache_dir / "hub"),
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
        )
    except Exception as exc:  # the hub client raises many types; all mean "not reachable"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelSourceError(
            f"base_model.hub: cannot download '{spec.hub}' ({first}); offline? "
            "use base_model.path with a local copy"
        ) from None
    return _from_folder(Path(folder), cache_dir, f"hub {spec.hub}")


def pick_device(requested: str) -> str:
    """Return 'cuda' or 'cpu' for a spec's `device` (auto prefers CUDA)."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise EvalctlError("training.device: cuda requested but no CUDA GPU is available")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def load_model(
    resolved: ResolvedModel, *, dtype: str = "auto", device: str = "cpu", trust: bool = False
) -> tuple[Any, Any]:
    """Load model and tokenizer from a resolved folder; errors become one-line messages."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device == "cuda" else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust)
        model = AutoModelForCausalLM.from_pretrained(
            resolved.path, dtype=torch_dtype, trust_remote_code=trust, use_safetensors=True
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSourceError(f"base_model: cannot load {resolved.path}: {first}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer
