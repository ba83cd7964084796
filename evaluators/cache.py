"""The generation cache: model outputs keyed by (weights, prompt, generation parameters).

Owns one SQLite file, `generations.sqlite` under a `ModelHandle.cache_dir`, mapping a
sha256 key to the text the model wrote. Greedy decoding is deterministic, so two evaluators
asking the same checkpoint for the same prompts (or a re-evaluation of an unchanged
checkpoint) need to generate only once. The file is in WAL mode with a busy timeout, so
two processes may read and write it at once; a corrupted file is rebuilt with a warning.
It does not generate (that is `evaluators.generation`) and never decides what a key means
beyond hashing the parts it is given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILENAME = "generations.sqlite"
SCHEMA_VERSION = 1
# SQLite's default limit on bound parameters is 999 on older builds.
_CHUNK = 500
_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    model_hash TEXT NOT NULL,
    output TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


@dataclass
class CacheStats:
    """Lookups answered from the cache (hits) and prompts that had to be generated."""

    hits: int = 0
    misses: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return {'hits': ..., 'misses': ...}."""
        return {"hits": self.hits, "misses": self.misses}


#: Totals for this process (every cache file); `reset_stats()` zeroes them.
STATS = CacheStats()


def reset_stats() -> CacheStats:
    """Zero the process-wide counters and return what they held."""
    before = CacheStats(STATS.hits, STATS.misses)
    STATS.hits = STATS.misses = 0
    return before


def generation_key(
    *, model_hash: str, prompt: str, params: Mapping[str, Any], tokenizer: Any
) -> str:
    """Return the cache key: sha256 over weights, tokenizer, parameters and prompt."""
    payload = {
        "model": model_hash,
        "tokenizer": [
            str(getattr(tokenizer, "name_or_path", "") or ""),
            _vocab_size(tokenizer),
        ],
        "params": dict(params),
        "prompt": prompt,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _vocab_size(tokenizer: Any) -> int:
    try:
        return len(tokenizer)
    except TypeError:
        return int(getattr(tokenizer, "vocab_size", 0) or 0)


class GenerationCache:
    """Bulk get/put of generated texts in one SQLite file (safe for several processes)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / FILENAME
        self.stats = CacheStats()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Return the cached output of every key present (missing keys are left out)."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        try:
            with self._connect() as conn:
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, output FROM generations WHERE key IN ({marks})", chunk
                    )
                    found.update(rows.fetchall())
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            found = {}
        hits = sum(1 for key in keys if key in found)
        self._count(hits, len(keys) - hits)
        return found

    def put_many(self, items: Mapping[str, str], *, model_hash: str) -> None:
        """Store outputs by key (an existing key is overwritten: same key, same output)."""
        if not items:
            return
        now = time.time()
        rows = [(key, model_hash, output, now) for key, output in items.items()]
        try:
            with self._connect(write=True) as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO generations (key, model_hash, output, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.DatabaseError as exc:
            # Losing a write only costs a later re-generation; never fail an evaluation.
            self._recover(exc)

    def __len__(self) -> int:
        try:
            with self._connect() as conn:
                return int(conn.execute("SELECT count(*) FROM generations").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return 0

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # timeout: a second process holding the write lock makes us wait, not fail.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            self._setup(conn)
            # A writer takes the lock up front: upgrading a read transaction in WAL mode
            # fails at once (no busy wait) when another process wrote meanwhile.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @staticmethod
    def _setup(conn: sqlite3.Connection) -> None:
        # Switching to WAL needs an exclusive lock and may answer "locked" without waiting
        # while another process creates the same file; retry briefly.
        for attempt in range(100):
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    conn.execute(_SCHEMA)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)
        conn.execute("PRAGMA synchronous=NORMAL")

    def _recover(self, exc: Exception) -> None:
        if isinstance(exc, sqlite3.OperationalError):
            # Busy or locked for too long, a full disk, a read-only folder: the file is
            # fine, so keep it and carry on without the cache this time.
            log.warning("generation cache %s not used this time: %s", self.path, exc)
            return
        log.warning("generation cache %s is unreadable (%s); rebuilding it", self.path, exc)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        try:
            with self._connect():
                pass
        except sqlite3.DatabaseError:  # e.g. a read-only folder: run without the cache
            log.warning("cannot recreate generation cache %s", self.path)

    def _count(self, hits: int, misses: int) -> None:
        for stats in (self.stats, STATS):
            stats.hits += hits
            stats.misses += misses
