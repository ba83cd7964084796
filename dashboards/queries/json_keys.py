"""Which user-given keys may become a JSON path in the dashboard's SQL.

SQLAlchemy writes `column[key]` on SQLite as the path `$."key"`, with no escaping: a `"`
in a key breaks the path (SQLite then fails the whole query), and a NUL byte is refused by
Postgres. So every key from a query string is checked here before it reaches a query:
metric and score names (`evaluator.metric`, as evaluators write them) against a strict
pattern, tag keys (free text) only against the characters a path cannot carry. A bad key
raises `ValueError`, which pages answer with their HTML 400 page.
"""

from __future__ import annotations

import re

#: Longest key accepted (metric names and tag keys are short).
MAX_KEY_LENGTH = 200
#: `evaluator.metric` names: letters (any script), digits, `_`, `.`, `:` and `-`.
METRIC_KEY = re.compile(r"[\w.:-]+")
#: Characters a tag key cannot have: quotes, backslashes and control characters.
TAG_KEY_FORBIDDEN = re.compile(r'["\\\x00-\x1f\x7f]')


def is_metric_key(key: str) -> bool:
    """Return whether `key` may be used as a metric or score name in a JSON path."""
    return len(key) <= MAX_KEY_LENGTH and METRIC_KEY.fullmatch(key) is not None


def metric_key(key: str, *, what: str = "metric") -> str:
    """Return `key` if it is a valid metric or score name; else raise ValueError (one line)."""
    if not is_metric_key(key):
        raise ValueError(
            f"{what} name {_shown(key)} is not valid: use letters, digits, '_', '.', ':' "
            f"and '-' (at most {MAX_KEY_LENGTH} characters)"
        )
    return key


def tag_key(key: str) -> str:
    """Return `key` if a tag filter may look it up; else raise ValueError (one line)."""
    if len(key) > MAX_KEY_LENGTH or TAG_KEY_FORBIDDEN.search(key):
        raise ValueError(
            f"tag key {_shown(key)} is not valid: no quotes, backslashes or control "
            f"characters (at most {MAX_KEY_LENGTH} characters)"
        )
    return key


def _shown(key: str) -> str:
    return repr(key if len(key) <= 60 else key[:57] + "...")
