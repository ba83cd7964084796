"""Weight hashing shared by runners (recording checkpoints) and evaluators (verifying them).

Owns the one definition of a checkpoint's identity: a sha256 over a folder's safetensors
files (names and bytes, sorted). It does not know where folders come from or cache hashes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.errors import EvalctlError

WEIGHT_SUFFIXES = (".safetensors",)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_weights(folder: Path) -> str:
    """Return one sha256 over a folder's safetensors files (names and bytes, sorted).

    Raises:
        EvalctlError: the folder holds no .safetensors file.
    """
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise EvalctlError(f"{folder}: no .safetensors weights in this folder")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()
