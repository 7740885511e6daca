"""In-plane resampling of slices to a target pixel size (the paper resamples every sample to 1 µm).

Only Y and X change; slices (Z) are kept. Images use linear interpolation (Gaussian anti-aliasing
before down-sampling), labels nearest neighbour. Pixel edges are aligned (``grid_mode``), so a
resample there and back returns the original size and geometry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from marker_excite.errors import UserInputError

#: Resampling may change the pixel size by at most this factor (either way); more means a wrong voxel size.
MAX_SCALE = 100.0


def target_shape(shape_yx: Sequence[int], spacing_yx: Sequence[float], target_yx: Sequence[float]) -> tuple[int, int]:
    """Size (Y, X) of a slice of ``shape_yx`` pixels of ``spacing_yx`` µm resampled to ``target_yx`` µm.

    Refuses a change of pixel size by more than :data:`MAX_SCALE` either way (a slice shrunk to a few
    pixels or blown up beyond memory means the voxel size or the target is wrong).
    """
    if len(spacing_yx) != 2 or len(target_yx) != 2 or min(*spacing_yx, *target_yx) <= 0:
        raise UserInputError(
            f"spacing {tuple(spacing_yx)} and target {tuple(target_yx)} must be two positive sizes (y, x)"
        )
    for s, t in zip(spacing_yx, target_yx):
        if not 1 / MAX_SCALE <= s / t <= MAX_SCALE:
            raise UserInputError(
                f"resampling {s:g} µm pixels to {t:g} µm changes the slice size by a factor {s / t:g} "
                f"(allowed 1/{MAX_SCALE:g} .. {MAX_SCALE:g}): check the voxel size (--spacing) and the target pixel size"
            )
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape_yx, spacing_yx, target_yx))  # type: ignore[return-value]


def resample_notice(shape_yx: Sequence[int], out_yx: Sequence[int]) -> str:
    """One line when in-plane resampling changes the size by more than 2x either way, else ``""``."""
    factor = float(out_yx[1]) / float(shape_yx[1])
    if 0.5 <= factor <= 2.0:
        return ""
    return (
        f"note: resampling in-plane by x{factor:.3g}: {shape_yx[0]} x {shape_yx[1]} px -> "
        f"{out_yx[0]} x {out_yx[1]} px (check the voxel size if this is unexpected)"
    )


def resample_to_shape(image: np.ndarray, shape_yx: Sequence[int], order: int = 1) -> np.ndarray:
    """Resize the last two axes of ``image`` (``[..., Y, X]``) to ``shape_yx``.

    ``order=1``: linear, float32 output, anti-aliased when shrinking. ``order=0``: nearest neighbour,
    dtype kept (labels).
    """
    image = np.asarray(image)
    in_yx = image.shape[-2:]
    shape_yx = tuple(int(s) for s in shape_yx)
    if tuple(in_yx) == shape_yx:
        return image if order == 0 else image.astype(np.float32, copy=False)
    lead = image.ndim - 2
    zoom = [1.0] * lead + [o / i for o, i in zip(shape_yx, in_yx)]
    if order == 0:
        data = image
    else:
        data = image.astype(np.float32, copy=False)
        sigma = [0.0] * lead + [max(0.0, (1.0 / z - 1.0) / 2.0) for z in zoom[lead:]]
        if any(sigma):
            data = ndimage.gaussian_filter(data, sigma, mode="nearest")
    out = ndimage.zoom(data, zoom, order=order, mode="nearest", grid_mode=True)
    if out.shape[-2:] != shape_yx:  # guard against rounding inside scipy
        pad = [(0, 0)] * lead + [(0, max(0, s - o)) for s, o in zip(shape_yx, out.shape[-2:])]
        out = np.pad(out, pad, mode="edge")[(..., slice(0, shape_yx[0]), slice(0, shape_yx[1]))]
    return out


def resample_slice(
    image: np.ndarray, spacing_yx: Sequence[float], target_yx: Sequence[float], order: int = 1
) -> np.ndarray:
    """Resample ``image [C, Y, X]`` (or ``[Y, X]``) from ``spacing_yx`` to ``target_yx`` µm (float32)."""
    return resample_to_shape(image, target_shape(np.shape(image)[-2:], spacing_yx, target_yx), order=order)


def restore_slice(data: np.ndarray, shape_yx: Sequence[int], order: int = 1) -> np.ndarray:
    """Inverse of :func:`resample_slice`: bring a result back to the original slice size ``shape_yx``
    (``order=0`` for label maps, 1 for probabilities)."""
    return resample_to_shape(data, shape_yx, order=order)
