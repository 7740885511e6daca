"""Atomic output: everything is written to a temporary sibling and renamed into place on success.

A crash or an error therefore never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from marker_excite.errors import UserInputError


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output path before any work starts.

    Raises :class:`UserInputError` if it exists (and ``overwrite`` is False) or its folder cannot be
    created or written.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise UserInputError(f"output {p} already exists (use --overwrite to replace it)")
    parent = p.parent if str(p.parent) else Path(".")
    blocking = next((a for a in [parent, *parent.parents] if a.exists() and not a.is_dir()), None)
    if blocking is not None:
        raise UserInputError(f"cannot write {p}: {blocking} is a file, not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot create output folder {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise UserInputError(f"output folder {parent} is not writable")
    return p


def temporary_sibling(final: Path, suffix: str = ".tmp") -> Path:
    """Create an empty, hidden temporary file next to ``final`` (same file system, so rename is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    return Path(tmp)


def commit(tmp: Path, final: Path) -> Path:
    """Give ``tmp`` the usual file permissions (mkstemp makes 0600) and rename it to ``final``."""
    os.chmod(tmp, _default_file_mode())
    os.replace(tmp, final)
    return final


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    On an exception the temporary file is removed and ``path`` is untouched. ``suffix`` is for writers
    that insist on a file extension (e.g. Keras' ``.weights.h5``).
    """
    final = check_output_path(path, overwrite=overwrite)
    tmp_path = temporary_sibling(final, suffix)
    try:
        yield tmp_path
        commit(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it replaces ``final`` as a whole.

    The previous ``final`` (if any) is moved aside first and removed afterwards, so a crash leaves
    either the old or the new folder, never a mixture. On an exception ``final`` is untouched.
    """
    final = Path(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    old = final.parent / f".{final.name}.old"
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _default_file_mode() -> int:
    """0666 minus the process umask (what ``open()`` would give), instead of mkstemp's 0600."""
    return 0o666 & ~_umask()


def write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Atomically write a text file."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, overwrite: bool = True) -> Path:
    """Atomically write pretty-printed JSON."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n", overwrite)


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
