"""API tokens on SQLite and Postgres: only hashes stored, authentication, expiry, revocation."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from service import crud
from service.errors import EvalctlError, NotFoundError
from service.models import ApiTokenPublic, utcnow
from tests.service.crud.helpers import call


def test_token_authenticates_and_only_its_hash_is_stored(engine: Engine) -> None:
    plain, row = call(engine, crud.create_token, name="ci", scopes=["read", "write"])
    assert plain.startswith("evk_") and len(plain) > 40
    assert row.prefix == plain[:8]
    assert "token_hash" not in ApiTokenPublic.model_fields
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM api_token")).mappings().one()
    assert plain not in json.dumps({k: str(v) for k, v in stored.items()})
    assert stored["token_hash"] == crud.hash_token(plain) != plain

    found = call(engine, crud.authenticate_token, plain=plain)
    assert found is not None and found.id == row.id and found.scopes == ["read", "write"]
    assert found.last_used_at is not None
    assert call(engine, crud.authenticate_token, plain=plain + "x") is None
    assert call(engine, crud.authenticate_token, plain="") is None


def test_last_used_at_is_written_at_most_once_a_minute(engine: Engine) -> None:
    plain, _ = call(engine, crud.create_token, name="ci", scopes=["read"])
    first = call(engine, crud.authenticate_token, plain=plain).last_used_at
    assert call(engine, crud.authenticate_token, plain=plain).last_used_at == first
    with engine.begin() as conn:  # pretend the last use was two minutes ago
        old = first - timedelta(minutes=2)
        conn.execute(text("UPDATE api_token SET last_used_at = :t"), {"t": old})
    assert call(engine, crud.authenticate_token, plain=plain).last_used_at > first


def test_revoked_and_expired_tokens_do_not_authenticate(engine: Engine) -> None:
    plain, row = call(engine, crud.create_token, name="a", scopes=["admin"])
    past = utcnow() - timedelta(seconds=1)
    expired, _ = call(engine, crud.create_token, name="b", scopes=["read"], expires_at=past)
    future = utcnow() + timedelta(days=1)
    live, _ = call(engine, crud.create_token, name="c", scopes=["runner"], expires_at=future)
    assert call(engine, crud.count_tokens) == 3
    assert call(engine, crud.count_tokens, active_only=True) == 2

    revoked = call(engine, crud.revoke_token, token_id=row.id)
    assert revoked.revoked_at is not None
    assert call(engine, crud.authenticate_token, plain=plain) is None
    assert call(engine, crud.authenticate_token, plain=expired) is None
    assert call(engine, crud.authenticate_token, plain=live) is not None
    assert call(engine, crud.count_tokens, active_only=True) == 1
    assert [t.name for t in call(engine, crud.list_tokens)] == ["a", "b", "c"]
    with pytest.raises(NotFoundError, match="api token 999 not found"):
        call(engine, crud.revoke_token, token_id=999)


def test_unknown_scope_is_refused_with_the_choices(engine: Engine) -> None:
    with pytest.raises(EvalctlError, match=r"Unknown scope 'wirte'\. Did you mean 'write'\?"):
        call(engine, crud.create_token, name="x", scopes=["wirte"])
    assert call(engine, crud.count_tokens) == 0
