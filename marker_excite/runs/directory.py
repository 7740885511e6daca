"""The run directory: file names, creation rules, config checks on resume, and atomic state files.

A run directory holds everything about one training run (see ``docs/workflow.md``)::

    model_config.json  train_config.json  data_config.json  versions.json
    weights.best.weights.h5  weights.last.weights.h5  checkpoint/  log.csv  tensorboard/  curves.png
    .lock

Every file is written to a temporary sibling and renamed into place, so an interrupted run never
leaves a half-written file under its final name. ``checkpoint/`` (resume state) is replaced as a whole.
A training holds ``.lock`` (:func:`training_lock`), so a second training of the same directory is refused.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import platform
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite import __version__
from marker_excite.atomic import (
    atomic_directory,
    atomic_path,
    previous_directory,
    remove_stale_temporaries,
    write_json,
    write_text,
)
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
_STATE_JSON = "state.json"
_STATE_ARRAYS = "state.npz"


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

    The lock is an ``flock`` on ``run_dir/.lock``: the operating system releases it when the process
    ends, even by ``kill -9``, so a lock is never stale. The file itself stays (deleting it would let
    two processes lock two different files of the same name) and holds the holder's host and pid.

    Raises:
        RunDirError: another process (this one included, through another call) holds the lock.
    """
    p = _make_run_dir(run_dir)
    try:
        fd = os.open(p / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise RunDirError(f"cannot write run directory {p}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise RunDirError(
                f"run directory {p} is being trained by another process{f' ({holder})' if holder else ''}; "
                "wait for it to end, or train into another --run"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}\n".encode(), 0)
        try:
            yield p
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, raising :class:`RunDirError` naming the file when missing or corrupt."""
    return read_json_object(
        path, f"{path.parent} is not a complete run directory: {what} {path.name} is missing", RunDirError
    )


def config_differences(stored: Mapping[str, Any], given: Mapping[str, Any], prefix: str) -> list[str]:
    """Field names (``prefix.field``) whose values differ between two config dicts (JSON-normalised)."""

    def norm(v: Any) -> Any:
        return json.loads(json.dumps(v, default=str))

    keys = list(dict.fromkeys(list(stored) + list(given)))
    return [f"{prefix}.{k}" for k in keys if norm(stored.get(k)) != norm(given.get(k))]


def check_resume(
    run_dir: Path,
    configs: Mapping[str, Mapping[str, Any]],
    *,
    may_grow: Mapping[str, Sequence[str]] | None = None,
    ignore: Mapping[str, Sequence[str]] | None = None,
    defaults: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
) -> None:
    """Raise a one-line :class:`RunDirError` naming every field where ``configs`` differ from the stored ones.

    ``configs`` maps a file name (``model_config.json`` ...) to the dict the new invocation would write;
    ``may_grow`` names numeric fields per file that may be larger than stored (e.g. ``epochs``: extend a
    finished run), ``ignore`` fields per file that are not compared (e.g. how the run was initialised),
    ``defaults`` a function per file that completes a stored dict with the defaults of fields it lacks
    (:meth:`~marker_excite.config.JsonConfig.with_defaults`: runs written before a field existed).
    """
    if not run_dir.is_dir():
        raise RunDirError(f"cannot resume: run directory {run_dir} does not exist")
    if not is_run_dir(run_dir):
        raise RunDirError(f"cannot resume: {run_dir} is not a run directory (no {MODEL_CONFIG})")
    diffs: list[str] = []
    for name, given in configs.items():
        stored = dict(read_json(run_dir / name, "config"))
        if defaults and name in defaults:
            stored = defaults[name](stored)
        given = dict(given)
        for key in (ignore or {}).get(name, ()):
            stored.pop(key, None)
            given.pop(key, None)
        for key in (may_grow or {}).get(name, ()):
            old, new = stored.get(key), given.get(key)
            if isinstance(old, (int, float)) and isinstance(new, (int, float)) and new >= old:
                given[key] = old
        diffs += config_differences(stored, given, name.removesuffix(".json"))
    if diffs:
        raise RunDirError(
            f"cannot resume {run_dir}: the given settings differ from the stored run in {', '.join(diffs)} "
            "(start a new run directory, or use --overwrite to restart this one)"
        )


def visible_devices() -> list[str]:
    """The devices the Keras backend sees, as ``"GPU:<name>"`` / ``"CPU:<name>"`` (TensorFlow or JAX)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices()]
    if backend == "jax":
        import jax

        return [f"{d.platform.upper()}:{d}" for d in jax.devices()]
    return []


def versions() -> dict[str, Any]:
    """Versions of Python, Keras and its backend (TensorFlow or JAX), numpy, marker_excite, the platform
    and the visible devices."""
    import keras

    backend = keras.backend.backend()
    info: dict[str, Any] = {"python": platform.python_version()}
    if backend == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax

        info["jax"] = jax.__version__
    info.update(keras=keras.__version__, numpy=np.__version__, marker_excite=__version__)
    if backend != "tensorflow":
        info["keras_backend"] = backend
    info.update(platform=platform.platform(), devices=visible_devices())
    return info


def save_weights(model, path: Path) -> Path:
    """``model.save_weights`` to a temporary ``.weights.h5`` sibling, then rename into place."""
    with atomic_path(path, suffix=".weights.h5") as tmp:
        tmp.unlink()  # Keras refuses to write over an existing file
        model.save_weights(str(tmp))
    return path


def load_weights(model, path: Path) -> None:
    """Load weights, raising :class:`RunDirError` naming the file when it is missing or unreadable."""
    if not path.is_file():
        raise RunDirError(f"{path.parent}: weights file {path.name} is missing (no completed epoch?)")
    try:
        model.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - h5py / keras raise many types for a corrupt file
        raise RunDirError(
            f"cannot load weights {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


# -- resume checkpoint ---------------------------------------------------------------------------
def _variable_arrays(prefix: str, variables: Sequence) -> dict[str, np.ndarray]:
    return {f"{prefix}/{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}


def save_checkpoint(run_dir: Path, model, optimizer, state: Mapping[str, Any]) -> None:
    """Write the resume state: every model variable (incl. Marker Sampling seed-generator states),
    every optimizer variable and the JSON ``state`` (epoch, best score, ...), replaced as a whole."""
    with atomic_directory(run_dir / CHECKPOINT) as tmp:
        arrays = _variable_arrays("model", model.variables) | _variable_arrays("optimizer", optimizer.variables)
        with open(tmp / _STATE_ARRAYS, "wb") as fh:
            np.savez(fh, **arrays)
        meta = dict(state)
        meta["model_variables"] = [v.path for v in model.variables]
        meta["optimizer_variables"] = [v.path for v in optimizer.variables]
        (tmp / _STATE_JSON).write_text(json.dumps(meta, indent=2) + "\n")


def _restore(prefix: str, variables: Sequence, names: list[str], arrays, where: Path) -> None:
    if len(names) != len(variables):
        raise RunDirError(
            f"checkpoint {where} holds {len(names)} {prefix} variables, the model has {len(variables)}; "
            "the run was made with a different model"
        )
    for i, v in enumerate(variables):
        value = arrays[f"{prefix}/{i:05d}"]
        if tuple(value.shape) != tuple(v.shape):
            raise RunDirError(
                f"checkpoint {where}: {prefix} variable {names[i]} has shape {value.shape}, expected {tuple(v.shape)}"
            )
        v.assign(value)


def load_checkpoint(run_dir: Path, model, optimizer) -> dict[str, Any]:
    """Restore the variables written by :func:`save_checkpoint` and return its JSON state.

    Uses the previous checkpoint (moved aside to ``.checkpoint.old/`` during the swap) when a crash
    happened between the two renames of the swap. Stale temporary checkpoint folders of killed runs
    are removed.
    """
    remove_stale_temporaries(run_dir / CHECKPOINT)
    where = _complete_checkpoint(run_dir)
    if where is None:
        raise RunDirError(f"{run_dir} has no complete resume checkpoint")
    state = read_json(where / _STATE_JSON, "resume state")
    try:
        with np.load(where / _STATE_ARRAYS) as arrays:
            _restore("model", model.variables, state["model_variables"], arrays, where)
            _restore("optimizer", optimizer.variables, state["optimizer_variables"], arrays, where)
    except (OSError, KeyError, ValueError) as exc:
        raise RunDirError(f"resume state in {where} is corrupt: {exc}") from None
    return state


def _complete_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder to resume from: ``checkpoint/``, else the one moved aside by a crashed swap."""
    for where in (run_dir / CHECKPOINT, previous_directory(run_dir / CHECKPOINT)):
        if (where / _STATE_JSON).is_file() and (where / _STATE_ARRAYS).is_file():
            return where
    return None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a complete resume checkpoint (see :func:`load_checkpoint`)."""
    return _complete_checkpoint(run_dir) is not None


def check_nothing_trained(run_dir: Path) -> None:
    """Before a resume without a checkpoint starts again from epoch 1: raise :class:`RunDirError` when
    ``run_dir`` shows completed epochs (``log.csv`` rows, weights files), which that would overwrite.

    Without them the run was interrupted during its first epoch, and starting again loses nothing.
    """
    trained = [f"{LOG} up to epoch {rows[-1].get('epoch')}" for rows in [read_log(run_dir / LOG)] if rows]
    trained += [name for name in (BEST_WEIGHTS, LAST_WEIGHTS) if (run_dir / name).is_file()]
    if trained:
        raise RunDirError(
            f"cannot resume {run_dir}: it has trained epochs ({', '.join(trained)}) but no complete {CHECKPOINT}/ "
            "to continue from; resuming would start again at epoch 1 and overwrite its weights (restore "
            f"{CHECKPOINT}/, or use --overwrite to train it again from scratch)"
        )


# -- log.csv -------------------------------------------------------------------------------------
def write_log(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the per-epoch log (all rows, columns of the first row) atomically."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def read_log(path: Path) -> list[dict[str, Any]]:
    """The per-epoch log as dicts with numbers converted; [] when the file does not exist."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as fh:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise RunDirError(f"training log {path} is corrupt: {exc}") from None


def write_configs(run_dir: Path, configs: Mapping[str, Mapping[str, Any]]) -> None:
    """Write each ``file name -> dict`` as JSON (atomic)."""
    for name, data in configs.items():
        write_json(run_dir / name, dict(data))
