"""A run's network state on disk: the best / last weights files and the resume checkpoint (``checkpoint/``).

Weights files are written to a temporary sibling and renamed into place; ``checkpoint/`` (every model and
optimizer variable plus the JSON state of the training loop) is replaced as a whole, so an interrupted
run resumes from its last complete epoch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.atomic import atomic_directory, atomic_path, previous_directory, remove_stale_temporaries
from marker_excite.runs.directory import CHECKPOINT, RunDirError, read_json

_STATE_JSON = "state.json"
_STATE_ARRAYS = "state.npz"


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
