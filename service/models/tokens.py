"""The `api_token` table: bearer tokens for the API, their scopes, expiry and revocation.

Only a token's sha256 and its first characters are stored, never the token itself
(creating and checking tokens is `service.crud.tokens`).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import field_validator
from sqlmodel import Field, SQLModel

from service.models._common import JSONType, TZDateTime, utcnow

#: What a token may do; plain strings (not a DB enum) so a new scope needs no migration.
TOKEN_SCOPES = ("read", "write", "runner", "admin")
#: How many leading characters of a token are stored in clear, to tell tokens apart.
TOKEN_PREFIX_LEN = 8


def _check_scopes(scopes: list[str]) -> list[str]:
    unknown = [scope for scope in scopes if scope not in TOKEN_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; available: {', '.join(TOKEN_SCOPES)}")
    return scopes


class ApiTokenBase(SQLModel):
    """A bearer token for the API; only its sha256 is stored, never the token itself."""

    name: str = Field(max_length=200, description="What the token is for, e.g. 'ci'.")
    scopes: list[str] = Field(
        default_factory=list,
        sa_type=JSONType,
        description=f"Any of {', '.join(TOKEN_SCOPES)}.",
        schema_extra={"json_schema_extra": {"items": {"enum": list(TOKEN_SCOPES)}}},
    )
    expires_at: datetime | None = Field(default=None, sa_type=TZDateTime)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        return _check_scopes(scopes)


class ApiTokenCreate(ApiTokenBase):
    pass


class ApiToken(ApiTokenBase, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    prefix: str = Field(max_length=TOKEN_PREFIX_LEN, description="The token's first characters.")
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=TZDateTime)


class ApiTokenPublic(ApiTokenBase):
    id: int
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreated(ApiTokenPublic):
    """A token just created: the only time the plain token is shown."""

    token: str


class ApiTokensPublic(SQLModel):
    data: list[ApiTokenPublic]
    count: int
