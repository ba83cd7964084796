"""Request dependencies: database sessions and settings taken from the app's state.

`create_app` stores one engine per app (`app.state.engine`) and a write engine that takes
SQLite's write lock at `BEGIN` (`app.state.write_engine`), so a read-then-write request
waits for other writers instead of failing with "database is locked". Routes that write ask
for `WriteSession`, the others for `ReadSession`. Sessions are closed after the response.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from service.settings import Settings


def read_session(request: Request) -> Iterator[Session]:
    """Yield a session for reads."""
    with Session(request.app.state.engine) as session:
        yield session


def write_session(request: Request) -> Iterator[Session]:
    """Yield a session whose transactions take the write lock up front (SQLite)."""
    with Session(request.app.state.write_engine) as session:
        yield session


def app_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


ReadSession = Annotated[Session, Depends(read_session)]
WriteSession = Annotated[Session, Depends(write_session)]
AppSettings = Annotated[Settings, Depends(app_settings)]
