"""Migrations: Alembic builds exactly the schema the models describe, on SQLite and Postgres."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import service.models  # noqa: F401  (registers the tables)
from service.db import (
    current_revision,
    downgrade,
    head_revisions,
    is_up_to_date,
    make_engine,
    upgrade,
)
from service.local import LocalRegistry

REPO_ROOT = Path(__file__).resolve().parents[2]


def schema_differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def tables_and_enums(url: str) -> tuple[set[str], set[str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables = set(inspector.get_table_names())
            if conn.dialect.name != "postgresql":
                return tables, set()
            return tables, {enum["name"] for enum in inspector.get_enums()}  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_upgrade_head_builds_the_models_schema(db_url: str) -> None:
    assert current_revision(db_url) is None
    assert not is_up_to_date(db_url)
    upgrade(db_url)
    assert is_up_to_date(db_url)
    assert current_revision(db_url) in head_revisions()
    assert schema_differences(db_url) == []


def test_downgrade_to_base_then_upgrade_again(db_url: str) -> None:
    upgrade(db_url)
    downgrade(db_url, "base")
    assert current_revision(db_url) is None
    assert tables_and_enums(db_url) == ({"alembic_version"}, set())
    upgrade(db_url)
    assert is_up_to_date(db_url)
    assert schema_differences(db_url) == []
    registry = LocalRegistry(db_url, migrate=False)
    assert registry.get_or_create_experiment(name="after-round-trip").name == "after-round-trip"


def test_local_registry_migrates_on_first_use_unless_told_not_to(db_url: str) -> None:
    LocalRegistry(db_url, migrate=False)
    assert current_revision(db_url) is None
    LocalRegistry(db_url)
    assert is_up_to_date(db_url)


def test_an_upgrade_that_fails_half_way_leaves_the_database_as_it_was(db_url: str) -> None:
    # A table in the way of migration 0003 makes the upgrade fail after 0001 and 0002 ran.
    # The whole upgrade is one transaction (on SQLite too), so nothing of it stays; that
    # is also what lets processes that start at once wait for each other and migrate once.
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE api_token (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    try:
        upgrade(db_url)
    except sa.exc.DBAPIError:
        pass
    else:
        raise AssertionError("the upgrade should have failed on the api_token table")
    assert current_revision(db_url) is None
    tables, _ = tables_and_enums(db_url)
    assert "experiment" not in tables and "alembic_version" not in tables


def test_processes_starting_at_once_migrate_once(db_url: str) -> None:
    code = "import sys; from service.local import LocalRegistry; LocalRegistry(sys.argv[1])"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    assert is_up_to_date(db_url)


def test_alembic_cli_works_from_the_repo_root(db_url: str) -> None:
    env = {**os.environ, "EVALCTL_DATABASE_URL": db_url}
    alembic = [sys.executable, "-m", "alembic"]
    subprocess.run([*alembic, "upgrade", "head"], cwd=REPO_ROOT, env=env, check=True)
    assert is_up_to_date(db_url)
    shown = subprocess.run(
        [*alembic, "-x", f"url={db_url}", "current"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{min(head_revisions())} (head)" in shown.stdout
