"""The package's user-facing error type (caught by the CLI and printed as one line), message helpers
and OS-error text."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable


class UserInputError(ValueError):
    """Bad input from a user (file, marker, shape, value, path). The message names the problem."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'X'?)"`` for the closest of ``choices`` to a mistyped ``name``, else ``""``."""
    options = {str(c).lower(): str(c) for c in choices}
    match = difflib.get_close_matches(str(name).lower(), list(options), n=1, cutoff=0.6)
    return f" (did you mean {options[match[0]]!r}?)" if match else ""


def is_disk_full(exc: BaseException) -> bool:
    """An OSError for a full disk or an exceeded quota (also h5py's, which carry the text, not the errno)."""
    if not isinstance(exc, OSError):
        return False
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
        text in str(exc) for text in ("No space left on device", "Disk quota exceeded")
    )


def os_error_text(exc: OSError) -> str:
    """A short, single-line description of an OSError ("no space left on device" for a full disk)."""
    if is_disk_full(exc):
        return "no space left on device"
    if exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
