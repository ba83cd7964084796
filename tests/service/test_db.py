"""Engines: URL handling and the SQLite settings that let processes share one file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from service.db import IMMEDIATE, dispose_engines, get_engine, make_engine, normalize_url, upgrade


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u:p%25w%40rd@h/db", "postgresql+psycopg://u:p%25w%40rd@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_normalize_url_points_postgres_at_psycopg(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_get_engine_is_cached_per_url(tmp_path: Path) -> None:
    url, other = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    assert get_engine(url) is get_engine(url)
    assert get_engine(url) is not get_engine(other)
    dispose_engines(url)
    dispose_engines(other)


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    orphan = text(
        "INSERT INTO checkpoint (run_id, step, path, sha256, created_at)"
        " VALUES (12345, 0, 'p', 's', '2026-01-01 00:00:00')"
    )
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), engine.begin() as conn:
        conn.execute(orphan)
    engine.dispose()


@pytest.mark.parametrize("mode", ["deferred", "immediate"])
def test_immediate_sqlite_transactions_take_the_write_lock_at_begin(
    tmp_path: Path, mode: str
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade(url)
    holder, writer = make_engine(url), make_engine(url, connect_args={"timeout": 0.2})
    insert = text("INSERT INTO experiment (name, created_at) VALUES (:n, '2026-01-01')")
    with holder.connect() as conn:
        if mode == "immediate":
            conn.execution_options(**IMMEDIATE)
        with conn.begin():
            conn.execute(text("SELECT count(*) FROM experiment")).scalar()
            if mode == "deferred":  # a reader holds no lock: the other writer goes ahead
                with writer.begin() as other:
                    other.execute(insert, {"n": "a"})
            else:
                with pytest.raises(OperationalError, match="locked"), writer.begin() as other:
                    other.execute(insert, {"n": "b"})
    holder.dispose()
    writer.dispose()
