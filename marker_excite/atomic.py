"""Atomic output: everything is written to a temporary sibling and renamed into place on success.

A crash or an error therefore never leaves a partial file under the final name. Temporary names carry
the host and process id of their writer (``.<name>.<host>_<pid>.<random>.tmp``), so the next writer of
the same output removes the leftovers of a killed process (:func:`remove_stale_temporaries`) without
touching those of a process that is still running. :func:`exclusive_lock` keeps a second writer of the
same output (a run directory, a store) out while the first one writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

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


PathLike = str | os.PathLike


def check_outputs_apart(outputs: Iterable[tuple[str, PathLike]], inputs: Iterable[tuple[str, PathLike]]) -> None:
    """The one rule for every command: an output may not be, contain, or sit inside any input.

    ``outputs`` and ``inputs`` are ``(what, path)`` pairs (``what`` names it in the message, e.g.
    ``"--labels"`` or ``"the input store"``); symbolic links are resolved. Call it before anything is
    written: it raises :class:`UserInputError` naming the first clash.
    """
    sources = [(what, path, Path(os.path.realpath(path))) for what, path in inputs]
    for what, path in outputs:
        out = Path(os.path.realpath(path))
        for source_what, source, real in sources:
            if out == real:
                relation = "is"
            elif out in real.parents:
                relation = "contains"
            elif real in out.parents:
                relation = "is inside"
            else:
                continue
            raise UserInputError(
                f"{what} {path} {relation} {source_what} {source}: an output may not be, contain or sit inside "
                "an input; choose another output path"
            )


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _temporary_prefix(final: Path) -> str:
    return f".{final.name}.{_host()}_{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(final: Path) -> list[Path]:
    """Remove the temporary files / folders of ``final`` left by killed processes of this host.

    Only names written by :func:`temporary_sibling` / :func:`atomic_directory` whose process no longer
    exists are removed; temporaries of running processes (or of other hosts) are left alone.
    """
    final = Path(final)
    pattern = re.compile(re.escape(f".{final.name}.") + r"([A-Za-z0-9-]+)_(\d+)\.")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(final.parent if str(final.parent) else "."))
    except OSError:
        return removed
    host = _host()
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or m.group(1) != host or int(m.group(2)) == os.getpid() or _pid_alive(int(m.group(2))):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def temporary_sibling(final: Path, suffix: str = ".tmp") -> Path:
    """Create an empty, hidden temporary file next to ``final`` (same file system, so rename is atomic).

    Stale temporaries of ``final`` left by killed processes are removed first.
    """
    remove_stale_temporaries(final)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(final), suffix=suffix, dir=final.parent)
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


def previous_directory(final: Path) -> Path:
    """Where :func:`atomic_directory` keeps the previous ``final`` while swapping in the new one.

    After a crash between the two renames of the swap, this folder is the only complete version.
    """
    final = Path(final)
    return final.parent / f".{final.name}.old"


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it replaces ``final`` as a whole.

    The previous ``final`` (if any) is moved aside to :func:`previous_directory` first and removed
    afterwards, so a crash leaves the old or the new folder complete, never a mixture; when only the
    moved-aside folder survived a crash it is kept until a new ``final`` is in place. On an exception
    ``final`` is untouched. Stale temporary folders of killed processes are removed first.
    """
    final = Path(final)
    old = previous_directory(final)
    with scratch_directory(final) as tmp:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def scratch_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary working folder next to ``final``, removed when the block ends.

    It is named like the other temporaries of ``final``, so when its process is killed the next writer of
    ``final`` removes it (:func:`remove_stale_temporaries`, run here first too).
    """
    final = Path(final)
    remove_stale_temporaries(final)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(final), dir=final.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def exclusive_lock(
    path: Path,
    busy: Callable[[str], Exception],
    *,
    wait_s: float = 0.0,
    cannot_open: Callable[[OSError], Exception] | None = None,
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created when missing) for the ``with`` block.

    The operating system releases the lock when the process ends, even by ``kill -9``, so a lock is never
    stale. The file itself stays (deleting it would let two processes lock two different files of the same
    name); while the lock is held it names its holder (``pid <pid> on <host>``), and it is emptied on release.

    Args:
        path: the lock file.
        busy: makes the exception raised when another holder (this process included, through another call)
            still has the lock after ``wait_s`` seconds; it is given the holder's line ("" when unknown).
        wait_s: how long to retry (every 50 ms) before giving up; 0 refuses at once.
        cannot_open: makes the exception raised when the lock file cannot be opened (default: the OSError).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if cannot_open is None:
            raise
        raise cannot_open(exc) from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy(os.pread(fd, 200, 0).decode(errors="replace").strip()) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
