"""The run directory: its file names, creation rules, lock and config files.

A run directory holds everything about one training run (see ``docs/workflow.md``)::

    model_config.json  train_config.json  data_config.json  versions.json
    weights.best.weights.h5  weights.last.weights.h5  checkpoint/  log.csv  tensorboard/  curves.png
    .lock

Every file is written to a temporary sibling and renamed into place, so an interrupted run never
leaves a half-written file under its final name. A training holds ``.lock`` (:func:`training_lock`), so
a second training of the same directory is refused. What the other files hold is read and written by
:mod:`~marker_excite.runs.checkpoint` (weights, resume state), :mod:`~marker_excite.runs.log` (``log.csv``)
and :mod:`~marker_excite.runs.environment` (``versions.json``); :mod:`~marker_excite.runs.resume` says
when a run may be continued.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from marker_excite.atomic import exclusive_lock, write_json
from marker_excite.config import read_json_object
from marker_excite.errors import UserInputError

MODEL_CONFIG = "model_config.json"
TRAIN_CONFIG = "train_config.json"
DATA_CONFIG = "data_config.json"
VERSIONS = "versions.json"
BEST_WEIGHTS = "weights.best.weights.h5"
LAST_WEIGHTS = "weights.last.weights.h5"
CHECKPOINT = "checkpoint"
LOG = "log.csv"
TENSORBOARD = "tensorboard"
CURVES = "curves.png"
#: The lock file a training holds (:func:`training_lock`); it stays in the directory between trainings.
LOCK = ".lock"

#: What a run directory consists of (results such as evaluations may be written next to these).
RUN_FILES = (MODEL_CONFIG, TRAIN_CONFIG, DATA_CONFIG, VERSIONS, BEST_WEIGHTS, LAST_WEIGHTS, CHECKPOINT, LOG)


class RunDirError(UserInputError):
    """A run directory that is missing, incomplete, corrupt or in the way of a new run."""


def is_run_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` looks like a run directory (holds ``model_config.json``)."""
    return (Path(path) / MODEL_CONFIG).is_file()


def prepare_new(run_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Make ``run_dir`` ready for a new run.

    An existing non-empty directory is an error unless ``overwrite`` is given; ``overwrite`` only
    deletes directories that are run directories (never an arbitrary folder), and keeps the
    :data:`LOCK` file (held by the caller's :func:`training_lock`).
    """
    p = _make_run_dir(run_dir)
    contents = [child for child in p.iterdir() if child.name != LOCK]
    if contents:
        if not overwrite:
            raise RunDirError(
                f"run directory {p} is not empty (use --resume to continue it or --overwrite to replace it)"
            )
        if not is_run_dir(p):
            raise RunDirError(f"{p} is not empty and is not a run directory; refusing to delete it with --overwrite")
        for child in contents:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    if not os.access(p, os.W_OK):
        raise RunDirError(f"run directory {p} is not writable")
    return p


def _make_run_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir``, created (with its parents) when missing; :class:`RunDirError` when it cannot be."""
    p = Path(run_dir)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"run directory {p} is a file")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create run directory {p}: {exc.strerror or exc}") from None
    return p


@contextlib.contextmanager
def training_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created when missing) while a training writes it.

    The lock is an ``flock`` on ``run_dir/.lock`` (:func:`~marker_excite.atomic.exclusive_lock`): the
    operating system releases it when the process ends, even by ``kill -9``, so a lock is never stale. The
    file itself stays and holds the holder's host and pid.

    Raises:
        RunDirError: another process (this one included, through another call) holds the lock.
    """
    p = _make_run_dir(run_dir)

    def busy(holder: str) -> RunDirError:
        return RunDirError(
            f"run directory {p} is being trained by another process{f' ({holder})' if holder else ''}; "
            "wait for it to end, or train into another --run"
        )

    def cannot_open(exc: OSError) -> RunDirError:
        return RunDirError(f"cannot write run directory {p}: {exc.strerror or exc}")

    with exclusive_lock(p / LOCK, busy, cannot_open=cannot_open):
        yield p


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, raising :class:`RunDirError` naming the file when missing or corrupt."""
    return read_json_object(
        path, f"{path.parent} is not a complete run directory: {what} {path.name} is missing", RunDirError
    )


def write_configs(run_dir: Path, configs: Mapping[str, Mapping[str, Any]]) -> None:
    """Write each ``file name -> dict`` as JSON (atomic)."""
    for name, data in configs.items():
        write_json(run_dir / name, dict(data))
