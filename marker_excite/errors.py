"""The package's user-facing error type (caught by the CLI and printed as one line) and message helpers."""

from __future__ import annotations

from typing import Iterable


class UserInputError(ValueError):
    """Bad input from a user (file, marker, shape, value, path). The message names the problem."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'X'?)"`` for the closest of ``choices`` to a mistyped ``name``, else ``""``."""
    import difflib

    options = {str(c).lower(): str(c) for c in choices}
    match = difflib.get_close_matches(str(name).lower(), list(options), n=1, cutoff=0.6)
    return f" (did you mean {options[match[0]]!r}?)" if match else ""
