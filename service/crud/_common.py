"""What every data-access module of `service.crud` shares: looking rows up (plain and
locked), write transactions on SQLite, counting, and the idempotency helpers.

A write that a remote client may retry stores the request's `Idempotency-Key` on the row
it creates (a unique column): `replayed` finds the row an earlier request with the key
wrote, and `insert_once` writes once per key even when two retries race; the same key with
a different request raises `IdempotencyKeyReused` (422 in the API). This module has no
table-specific code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from sqlmodel.sql.expression import SelectOfScalar

from service.db import IMMEDIATE
from service.errors import NotFoundError

T = TypeVar("T")


class IdempotencyKeyReused(ValueError):
    """An `Idempotency-Key` came back with a different request than the one it first wrote."""


def replayed(*, session: Session, model: Any, key: str | None, expect: dict[str, Any]) -> Any:
    """Return the row an earlier request with `key` wrote (None if none, or no key).

    `expect` holds the fields the new request would write; a row that differs in any
    raises `IdempotencyKeyReused` naming them, so a reused key never returns another
    request's row as if it were this one's.
    """
    if not key:
        return None
    row = session.exec(select(model).where(model.idempotency_key == key)).first()
    if row is None:
        return None
    differs = [name for name, value in expect.items() if getattr(row, name) != value]
    if differs:
        raise IdempotencyKeyReused(
            f"Idempotency-Key '{key}' was already used for {noun(model)} {row.id} with a "
            f"different {', '.join(differs)}; send a new key for a new request"
        )
    return row


def insert_once(
    *,
    session: Session,
    model: type[T],
    key: str | None,
    expect: dict[str, Any],
    write: Callable[[], T],
) -> T:
    """Run `write` (it adds the row that stores `key`) and commit it, once per `key`.

    A row an earlier request with `key` wrote is returned without writing. A concurrent
    retry that commits first breaks the key's unique index at this commit: that is rolled
    back and the retry's row returned. Another request under the key: `IdempotencyKeyReused`.
    """
    existing = replayed(session=session, model=model, key=key, expect=expect)
    if existing is not None:
        session.commit()  # ends a write transaction the caller began
        return existing
    try:
        row = write()
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = replayed(session=session, model=model, key=key, expect=expect)
        if existing is None:
            raise
        return existing
    except BaseException:
        session.rollback()
        raise
    session.refresh(row)
    return row


def get_or_insert(*, session: Session, query: SelectOfScalar[T], build: Callable[[], T]) -> T:
    """Return the row `query` finds, else insert `build()`; a concurrent writer that
    inserted the same unique key first wins, and its row is returned."""
    existing = session.exec(query).first()
    if existing is not None:
        return existing
    row = build()
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = session.exec(query).first()
        if existing is None:
            raise
        return existing
    session.refresh(row)
    return row


def get_row(session: Session, model: type[T], row_id: int) -> T:
    """Return the row of `model` with this id (NotFoundError naming both if none)."""
    row = session.get(model, row_id)
    if row is None:
        raise NotFoundError(f"{noun(model)} {row_id} not found")
    return row


def get_locked(session: Session, model: Any, row_id: int, *, shared: bool = False) -> Any:
    """Return the row with this id, locked for this transaction; roll back if none."""
    query = select(model).where(model.id == row_id)
    row = session.exec(locking(query, shared=shared)).first()
    if row is None:
        session.rollback()
        raise NotFoundError(f"{noun(model)} {row_id} not found")
    return row


def locking(query: SelectOfScalar[Any], *, shared: bool = False) -> SelectOfScalar[Any]:
    """Return `query` taking row locks (shared ones with `shared`) on Postgres."""
    # populate_existing: rows already in the session are refreshed from the locked read.
    return query.with_for_update(read=shared).execution_options(populate_existing=True)


def begin_write(session: Session) -> None:
    """Make sure the session's transaction may write; on SQLite, under `BEGIN IMMEDIATE`.

    A deferred SQLite transaction that read first cannot always upgrade to a write (another
    writer may have committed in between); so an open one is ended and an immediate one
    begun, which waits for the write lock up front. Postgres needs nothing: rows are locked.
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    if session.in_transaction():
        if session.connection().get_execution_options().get("sqlite_begin") == "IMMEDIATE":
            return
        session.commit()
    session.connection(execution_options=IMMEDIATE)


def count_rows(session: Session, query: SelectOfScalar[Any]) -> int:
    """Return how many rows `query` matches."""
    return session.exec(select(func.count()).select_from(query.subquery())).one()


def noun(model: type[Any]) -> str:
    """Return how messages name a table: `api_token` -> 'api token'."""
    return str(getattr(model, "__tablename__", model.__name__.lower())).replace("_", " ")
