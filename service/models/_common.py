"""Column types and field helpers shared by every table module of `service.models`.

Owns the JSON type (JSONB on Postgres), the timezone-keeping datetime type, `utcnow`, the
idempotency-key column and the plain-string column that stores a `StrEnum` without a DB
enum type. It defines no tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import AutoString, Field
from sqlmodel.sql.sqltypes import UTCDateTime

JSONType = JSON().with_variant(JSONB(), "postgresql")
# DateTime(timezone=True) that also keeps the zone on SQLite (which stores none): binds
# as UTC, reads back as aware UTC.
TZDateTime = UTCDateTime()
#: A status column stored as a plain string, not a DB enum, so a new value needs no
#: migration; the `StrEnum` in the annotation still validates it in the API.
StatusString = AutoString(length=16)

#: Longest `Idempotency-Key` the API stores (a client's uuid4 hex is 32 characters).
IDEMPOTENCY_KEY_LEN = 100


def idempotency_key_field(description: str) -> Any:
    """Return the column that holds the `Idempotency-Key` of the request that wrote a row."""
    return Field(
        default=None,
        max_length=IDEMPOTENCY_KEY_LEN,
        unique=True,
        index=True,
        description=description,
    )


def utcnow() -> datetime:
    """Return the current time, timezone-aware (UTC)."""
    return datetime.now(UTC)
