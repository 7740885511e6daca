"""Resume rules: in which settings a stored run may differ from the settings that meet it again.

Two callers compare a run directory with the settings of a new invocation: ``train --resume`` continues
the run (:func:`check_resume`), and an experiment reuses a finished job's results only when the job asks
for the settings it was made with (``experiments.runner.check_settings``). Both call
:func:`stored_differences`; the fields that may differ are listed here, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from marker_excite.runs.checkpoint import has_checkpoint
from marker_excite.runs.directory import (
    BEST_WEIGHTS,
    CHECKPOINT,
    DATA_CONFIG,
    LAST_WEIGHTS,
    LOG,
    MODEL_CONFIG,
    TRAIN_CONFIG,
    RunDirError,
    is_run_dir,
    read_json,
)
from marker_excite.runs.log import read_log
from marker_excite.runs.run import TrainConfig

#: Fields that are no settings: how the run was initialised (``--init-from``) and which of the panel's
#: markers its training samples had (found in the store).
NOT_SETTINGS: dict[str, tuple[str, ...]] = {DATA_CONFIG: ("init_from", "markers_seen")}
#: Numeric fields a continued run may raise (a larger ``epochs`` extends a finished run).
MAY_GROW: dict[str, tuple[str, ...]] = {TRAIN_CONFIG: ("epochs",)}
#: Fields a continued run with a checkpoint takes from it: the weights and the Marker Sampling state come
#: from the checkpoint, so a run made before ``--seed`` also set the model's seed resumes with the same ``--seed``.
FROM_CHECKPOINT: dict[str, tuple[str, ...]] = {MODEL_CONFIG: ("seed",)}
#: Fields that follow the store's sample names (a Case's panels and training samples): compared only
#: when the new settings were made from the store.
FROM_STORE: dict[str, tuple[str, ...]] = {TRAIN_CONFIG: ("marker_panels", "train_samples")}


def config_differences(stored: Mapping[str, Any], given: Mapping[str, Any], prefix: str) -> list[str]:
    """Field names (``prefix.field``) whose values differ between two config dicts (JSON-normalised)."""

    def norm(v: Any) -> Any:
        return json.loads(json.dumps(v, default=str))

    keys = list(dict.fromkeys(list(stored) + list(given)))
    return [f"{prefix}.{k}" for k in keys if norm(stored.get(k)) != norm(given.get(k))]


def _with_defaults(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What completes a stored config file with the defaults of fields added after it was written."""
    from marker_excite.models.config import ModelConfig  # the models package imports keras

    completions = {MODEL_CONFIG: ModelConfig.with_defaults, TRAIN_CONFIG: TrainConfig.with_defaults}
    return completions.get(name, dict)


def stored_differences(
    run_dir: Path, configs: Mapping[str, Mapping[str, Any]], *, continued: bool, from_store: bool = True
) -> list[str]:
    """The fields (``file.field``) in which ``configs`` differ from those stored in ``run_dir``.

    ``configs`` maps a file name (``model_config.json`` ...) to the dict the new invocation would write;
    stored dicts are completed with the defaults of fields they lack (runs written before a field existed).
    :data:`NOT_SETTINGS` are never compared; a ``continued`` run may raise the :data:`MAY_GROW` fields and,
    when it has a checkpoint, differ in :data:`FROM_CHECKPOINT`; settings not made ``from_store`` are not
    compared in :data:`FROM_STORE`.
    """
    skipped = [NOT_SETTINGS]
    if continued and has_checkpoint(run_dir):
        skipped.append(FROM_CHECKPOINT)
    if not from_store:
        skipped.append(FROM_STORE)
    diffs: list[str] = []
    for name, given in configs.items():
        stored = _with_defaults(name)(read_json(run_dir / name, "config"))
        given = dict(given)
        for key in (key for fields in skipped for key in fields.get(name, ())):
            stored.pop(key, None)
            given.pop(key, None)
        for key in MAY_GROW.get(name, ()) if continued else ():
            old, new = stored.get(key), given.get(key)
            if isinstance(old, (int, float)) and isinstance(new, (int, float)) and new >= old:
                given[key] = old
        diffs += config_differences(stored, given, name.removesuffix(".json"))
    return diffs


def check_resume(run_dir: Path, configs: Mapping[str, Mapping[str, Any]]) -> None:
    """Before ``train --resume`` continues ``run_dir``: raise a one-line :class:`RunDirError` naming every
    field where ``configs`` differ from the stored ones (:func:`stored_differences` of a continued run)."""
    if not run_dir.is_dir():
        raise RunDirError(f"cannot resume: run directory {run_dir} does not exist")
    if not is_run_dir(run_dir):
        raise RunDirError(f"cannot resume: {run_dir} is not a run directory (no {MODEL_CONFIG})")
    diffs = stored_differences(run_dir, configs, continued=True)
    if diffs:
        raise RunDirError(
            f"cannot resume {run_dir}: the given settings differ from the stored run in {', '.join(diffs)} "
            "(start a new run directory, or use --overwrite to restart this one)"
        )


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
