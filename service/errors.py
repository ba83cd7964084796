"""User-facing errors and the "did you mean" helper shared by every registry.

An `EvalctlError` is a mistake the user can fix (bad spec, missing file, unknown name);
the CLI prints its message as one line and exits 2. Anything else is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EvalctlError(Exception):
    """A problem the user can fix; its message is one self-contained line."""


class NotFoundError(EvalctlError):
    """A referenced run, checkpoint or evaluation does not exist."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest option, or '' when none is close."""
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean '{matches[0]}'?" if matches else ""


def unknown_name(kind: str, word: str, options: Iterable[str]) -> str:
    """Return the one-line message for an unknown plugin or key name."""
    names = sorted(options)
    return f"Unknown {kind} '{word}'.{did_you_mean(word, names)} Available: {', '.join(names)}"
