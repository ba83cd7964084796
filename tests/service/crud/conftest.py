"""Fixtures for the data-access tests: an empty migrated database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from service.db import get_engine, upgrade


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated, empty database per test: claims take any job, so queues must not mix."""
    upgrade(db_url)
    yield get_engine(db_url)
