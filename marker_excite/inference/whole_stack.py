"""Whole-stack inference: a trained run or an exported SavedModel applied to a 2D/3D volume, slice by slice.

Per stack (memory bounded: one slice, its tiles and its outputs are held at a time):

1. channels are mapped to the model's panel BY NAME (:func:`marker_excite.contract.model_spec.plan_channels`);
   markers the stack lacks (or that ``markers=`` leaves out) are zero channels with availability 0;
2. one streaming pass over the slices gives each channel's mean and standard deviation (the
   per-sample per-channel z-score used in training; a constant channel is only centred);
3. each slice is standardised, resampled in-plane to the model's pixel size (when both are known and
   differ), zero-padded and cut into tiles (:class:`~marker_excite.data.tiling.TileLayout`); tiles are
   batched (``batch_size``) through the network; softmax probabilities are stitched (overlaps
   averaged), resampled back to the slice size (linear) and the label map is their argmax.

:func:`predict_slices` yields ``(z, probabilities [1+C, Y, X])``; :func:`predict_volume` collects them
(small stacks); :func:`predict_file` streams them into OME-TIFF / HDF5 volumes, written atomically.
The model is a :class:`~marker_excite.inference.predictor.Predictor`, a trained run or a path to either
(:func:`~marker_excite.inference.predictor.load_predictor`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from marker_excite.atomic import check_output_path, check_outputs_apart
from marker_excite.contract.model_spec import ModelSpec, check_channel_names, check_seen, plan_channels
from marker_excite.data.io import input_paths, open_volume
from marker_excite.data.resample import resample_notice, resample_to_shape, restore_slice, target_shape
from marker_excite.data.stats import RunningStats, standardise
from marker_excite.data.tiling import TileLayout, predict_tiled
from marker_excite.data.writers import VolumeWriter
from marker_excite.errors import UserInputError
from marker_excite.inference.predictor import load_predictor
from marker_excite.progress import Progress

#: Storage types of the probability volume: float32 as is; integers scale [0, 1] to [0, max].
PROBABILITY_DTYPES: dict[str, int | None] = {"float32": None, "uint8": 255, "uint16": 65535}


def channel_statistics(volume, channels: Sequence[int], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (population, float64) of the given channels over the whole stack, one pass."""
    channels = list(channels)
    stats = RunningStats(len(channels))
    nz = volume.shape_czyx[1]
    with Progress(nz, "statistics", unit="slice", enabled=progress) as bar:
        for z in range(nz):
            stats.update(volume.read_slice(z)[channels])
            bar.update()
    return stats.mean, stats.std


# -- prediction -----------------------------------------------------------------------------------
def _target_yx(spec: ModelSpec, volume_spacing: Sequence[float]) -> tuple[float, float] | None:
    """The model's in-plane pixel size when resampling is needed, else None."""
    if spec.spacing is None:
        return None
    target = (float(spec.spacing[1]), float(spec.spacing[2]))
    own = (float(volume_spacing[1]), float(volume_spacing[2]))
    return None if np.allclose(own, target, rtol=1e-6) else target


def check_user_channel_names(volume, predictor) -> None:
    """:func:`~marker_excite.contract.model_spec.check_channel_names` for the channel names the USER gave a
    stack (``volume.markers_source == "user"``); names from the file are not checked."""
    if getattr(volume, "markers_source", None) == "user":
        check_channel_names(volume.markers, predictor.spec.panel, model=f"the model {predictor.source.name!r}")


def predict_slices(
    model,
    volume,
    *,
    markers: str | Sequence[str] | None = None,
    batch_size: int = 4,
    progress: bool = True,
    allow_unseen: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(z, probabilities [1+C, Y, X] float32)`` for every slice of ``volume`` in order.

    Args:
        model: a :class:`Predictor`, a training ``Run``, or a path (run directory / exported model).
        volume: a :class:`~marker_excite.data.io.VolumeReader` (``shape_czyx``, ``markers``,
            ``spacing``, ``read_slice(z)``); each slice is read twice (statistics, then prediction).
        markers: restrict the input to these markers of the model's panel (names or ``m_125``).
        batch_size: tiles per forward pass.
        progress: print progress per slice.
        allow_unseen: feed markers that no training sample of the model had (refused otherwise:
            the network never saw them, so what they do to its output is unknown).

    Channel names the user gave (``volume.markers_source == "user"``) must each be a marker of the
    model (``-`` skips a channel); names from the file that the model does not know are skipped with
    one notice line.
    """
    predictor = load_predictor(model)
    spec = predictor.spec
    if batch_size < 1:
        raise UserInputError(f"batch size must be >= 1, got {batch_size}")
    check_user_channel_names(volume, predictor)
    plan = plan_channels(volume.markers, spec.panel, markers)
    if not allow_unseen:
        check_seen(spec, [spec.panel.names[k] for k in plan.panel_indices])
    if plan.skipped and progress:
        Progress(None).write(plan.skip_notice(spec.panel))
    _, nz, ny, nx = volume.shape_czyx
    target = _target_yx(spec, volume.spacing)
    if target is None:
        work_yx = (ny, nx)
    else:
        work_yx = target_shape((ny, nx), volume.spacing[1:], target)
        if min(work_yx) < spec.output_size and min(ny, nx) >= spec.output_size:
            raise UserInputError(
                f"{getattr(volume, 'path', 'the stack')}: resampled to the model's {target[0]:g} µm pixels the slices "
                f"would be {work_yx[0]} x {work_yx[1]} px, smaller than one output tile ({spec.output_size} px); "
                "check the voxel size (--spacing)"
            )
        if progress and resample_notice((ny, nx), work_yx):
            Progress(None).write(resample_notice((ny, nx), work_yx))
    mean, std = channel_statistics(volume, plan.used_channels, progress=progress)
    layout = TileLayout(work_yx, spec.input_size, spec.output_size)
    k = spec.panel.size
    with Progress(nz, "predict", unit="slice", enabled=progress) as bar:
        for z in range(nz):
            raw = volume.read_slice(z)
            image = np.zeros((k, ny, nx), np.float32)
            image[plan.panel_indices] = standardise(raw[plan.used_channels], mean, std)
            del raw
            if target is not None:
                image = resample_to_shape(image, work_yx, order=1)
            padded = np.ascontiguousarray(layout.pad(image).transpose(1, 2, 0))
            probs = predict_tiled(predictor.probabilities, layout, padded, plan.availability, batch_size)
            if target is not None:
                probs = restore_slice(probs, (ny, nx), order=1)
            yield z, probs
            bar.update()


def predict_volume(
    model,
    volume,
    *,
    markers: str | Sequence[str] | None = None,
    batch_size: int = 4,
    progress: bool = True,
    allow_unseen: bool = False,
) -> np.ndarray:
    """Probabilities ``[1+C, Z, Y, X]`` float32 of a whole (small) stack; see :func:`predict_slices`."""
    predictor = load_predictor(model)
    _, nz, ny, nx = volume.shape_czyx
    out = np.empty((len(predictor.spec.outputs), nz, ny, nx), np.float32)
    for z, probs in predict_slices(
        predictor, volume, markers=markers, batch_size=batch_size, progress=progress, allow_unseen=allow_unseen
    ):
        out[:, z] = probs
    return out


def labels_from_probabilities(probs: np.ndarray) -> np.ndarray:
    """Argmax over the class axis (axis 0): 0 background, c the c-th class (uint8)."""
    return np.argmax(probs, axis=0).astype(np.uint8)


def encode_probabilities(probs: np.ndarray, dtype: str) -> np.ndarray:
    """Probabilities in the storage type: float32 as is, ``uint8``/``uint16`` as ``round(p * max)``."""
    if dtype not in PROBABILITY_DTYPES:
        raise UserInputError(f"probability type must be one of {', '.join(PROBABILITY_DTYPES)}, got {dtype!r}")
    scale = PROBABILITY_DTYPES[dtype]
    if scale is None:
        return probs.astype(np.float32, copy=False)
    return np.rint(np.clip(probs, 0.0, 1.0) * scale).astype(dtype)


def predict_file(
    model,
    input_path: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    probabilities: str | os.PathLike | None = None,
    markers: str | Sequence[str] | None = None,
    channel_names: Sequence[str] | str | None = None,
    spacing: Sequence[float] | None = None,
    batch_size: int = 4,
    probability_dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
    allow_unseen: bool = False,
) -> dict[str, Path]:
    """Predict a stack file and write its label and/or probability volume (OME-TIFF or HDF5 by suffix).

    Both outputs are streamed slice by slice into temporary files and renamed into place only when
    every slice succeeded; on any error nothing is left under the output names.

    Returns:
        ``{"labels": path, "probabilities": path}`` for the outputs written.
    """
    outputs = _checked_outputs(input_path, labels, probabilities, probability_dtype, overwrite=overwrite)
    predictor = load_predictor(model)
    with open_volume(input_path, markers=channel_names, spacing=spacing) as volume:
        if volume.spacing_source == "default" and predictor.spec.spacing is not None:
            raise UserInputError(
                f"{volume.path} has no voxel size: give --spacing z,y,x (µm); the model was trained at "
                f"{', '.join(f'{s:g}' for s in predictor.spec.spacing)} µm"
            )
        _, nz, ny, nx = volume.shape_czyx
        writers: dict[str, VolumeWriter] = {}
        try:
            if "labels" in outputs:
                writers["labels"] = VolumeWriter(
                    outputs["labels"], (nz, ny, nx), np.uint8, volume.spacing, ("labels",), overwrite
                )
            if "probabilities" in outputs:
                writers["probabilities"] = VolumeWriter(
                    outputs["probabilities"], (len(predictor.spec.outputs), nz, ny, nx), probability_dtype,
                    volume.spacing, predictor.spec.outputs, overwrite,
                )  # fmt: skip
            for z, probs in predict_slices(
                predictor, volume, markers=markers, batch_size=batch_size, progress=progress, allow_unseen=allow_unseen
            ):
                if "labels" in writers:
                    writers["labels"].write_slice(z, labels_from_probabilities(probs))
                if "probabilities" in writers:
                    writers["probabilities"].write_slice(z, encode_probabilities(probs, probability_dtype))
            _commit(writers.values())
        finally:
            for writer in writers.values():
                writer.abort()
    return outputs


def _checked_outputs(
    input_path: str | os.PathLike,
    labels: str | os.PathLike | None,
    probabilities: str | os.PathLike | None,
    probability_dtype: str,
    *,
    overwrite: bool,
) -> dict[str, Path]:
    """The outputs of :func:`predict_file` by kind, checked before anything is read or written: at least
    one, two different files, a known probability type, none of them the input, each writable."""
    if labels is None and probabilities is None:
        raise UserInputError("give an output: a label volume and/or a probability volume")
    outputs = {k: Path(v) for k, v in (("labels", labels), ("probabilities", probabilities)) if v is not None}
    if len(outputs) == 2 and outputs["labels"].resolve() == outputs["probabilities"].resolve():
        raise UserInputError(f"label and probability outputs are the same file {outputs['labels']}")
    if probability_dtype not in PROBABILITY_DTYPES:
        raise UserInputError(
            f"probability type must be one of {', '.join(PROBABILITY_DTYPES)}, got {probability_dtype!r}"
        )
    check_outputs_apart(outputs.items(), [("the input", p) for p in input_paths(input_path)])
    for path in outputs.values():
        check_output_path(path, overwrite=overwrite)
    return outputs


def _commit(writers: Iterable[VolumeWriter]) -> None:
    """Flush every output, then rename each into place; if one rename fails, remove those already renamed
    (all or nothing)."""
    writers = list(writers)
    for writer in writers:
        writer.finish()  # every output flushed before the first one is renamed into place
    done: list[Path] = []
    try:
        for writer in writers:
            done.append(writer.close())
    except BaseException:
        for path in done:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)  # OME-Zarr: a folder
        raise
