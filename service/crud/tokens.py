"""Data access for API tokens: create (the plain token is returned once, only its sha256
is stored), authenticate, look up, list, revoke and count.

Scopes are checked by the API (`service.api.auth`), not here.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from service.crud._common import begin_write, get_locked
from service.errors import EvalctlError, unknown_name
from service.models import TOKEN_PREFIX_LEN, TOKEN_SCOPES, ApiToken, ApiTokenCreate, utcnow

#: Every plain token starts with this, so secret scanners and users can recognise one.
TOKEN_PREFIX = "evk_"
#: `last_used_at` is written at most this often per token (not on every request).
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_token(plain: str) -> str:
    """Return the sha256 hex digest stored for a plain token."""
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def create_token(
    *, session: Session, name: str, scopes: Sequence[str], expires_at: datetime | None = None
) -> tuple[str, ApiToken]:
    """Create a token; return the plain token (shown once, never stored) and its row."""
    for scope in scopes:
        if scope not in TOKEN_SCOPES:
            raise EvalctlError(unknown_name("scope", scope, TOKEN_SCOPES))
    if not scopes:
        raise EvalctlError(f"a token needs at least one scope: {', '.join(TOKEN_SCOPES)}")
    if expires_at is not None and expires_at.utcoffset() is None:
        raise EvalctlError("expires_at must be timezone-aware")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_in = ApiTokenCreate(name=name, scopes=list(scopes), expires_at=expires_at)
    row = ApiToken.model_validate(
        token_in, update={"prefix": plain[:TOKEN_PREFIX_LEN], "token_hash": hash_token(plain)}
    )
    begin_write(session)
    session.add(row)
    session.commit()
    session.refresh(row)
    return plain, row


def authenticate_token(*, session: Session, plain: str) -> ApiToken | None:
    """Return the live token matching `plain` (None if unknown, revoked or expired)."""
    if not plain:
        return None
    query = select(ApiToken).where(ApiToken.token_hash == hash_token(plain))
    row = session.exec(query).first()
    now = utcnow()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        stale = or_(
            col(ApiToken.last_used_at).is_(None),
            col(ApiToken.last_used_at) < now - LAST_USED_RESOLUTION,
        )
        begin_write(session)
        # Conditional, so concurrent requests with one token write it once.
        session.exec(
            update(ApiToken).where(col(ApiToken.id) == row.id, stale).values(last_used_at=now)
        )
        session.commit()
        session.refresh(row)
    return row


def active_token(*, session: Session, token_id: int) -> ApiToken | None:
    """Return the token with this id if it is neither revoked nor expired."""
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return row


def list_tokens(*, session: Session) -> list[ApiToken]:
    """List all tokens (revoked and expired ones too), oldest first."""
    return list(session.exec(select(ApiToken).order_by(col(ApiToken.id))).all())


def revoke_token(*, session: Session, token_id: int) -> ApiToken:
    """Revoke a token (it stops authenticating at once); revoking twice keeps the first time."""
    begin_write(session)
    row = get_locked(session, ApiToken, token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    session.commit()
    session.refresh(row)
    return row


def count_tokens(*, session: Session, active_only: bool = False) -> int:
    """Count tokens; with `active_only`, only those neither revoked nor expired."""
    query = select(func.count()).select_from(ApiToken)
    if active_only:
        query = query.where(
            col(ApiToken.revoked_at).is_(None),
            or_(col(ApiToken.expires_at).is_(None), col(ApiToken.expires_at) > utcnow()),
        )
    return session.exec(query).one()
