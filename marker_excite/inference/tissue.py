"""Threshold tissue mask (``quantify``'s default when no tissue model or mask is given).

One marker channel of each slice (``quantify --tissue-marker``, DAPI by default) is smoothed in-plane
with a Gaussian (``sigma`` pixels); ONE Otsu threshold is computed for the whole stack from a 256-bin
histogram of the smoothed values; each slice's
mask is ``smoothed > threshold`` with holes filled and connected components (8-connected) smaller than
``min_size`` pixels removed. Everything is done slice by slice (2D), so stacks of any size stream:
the stack is read three times (value range, histogram, masks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from marker_excite.errors import UserInputError

#: Defaults of the fallback: Gaussian sigma (pixels), smallest kept object (pixels), histogram bins.
SIGMA = 2.0
MIN_SIZE = 64
BINS = 256


def smooth(image: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """In-plane Gaussian smoothing of a 2D slice (float32)."""
    image = np.asarray(image, dtype=np.float32)
    return ndimage.gaussian_filter(image, sigma, mode="nearest") if sigma > 0 else image


def otsu_threshold(counts: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold of a histogram: the bin edge maximising the between-class variance.

    Values ``> threshold`` are foreground. A histogram with a single occupied bin returns its upper
    edge (nothing is foreground).
    """
    counts = np.asarray(counts, dtype=np.float64)
    centers = (edges[:-1] + edges[1:]) / 2.0
    w0 = np.cumsum(counts)[:-1]
    total = counts.sum()
    w1 = total - w0
    m0 = np.cumsum(counts * centers)[:-1]
    m1 = (counts * centers).sum() - m0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - m1 / w1) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    if between.size == 0 or between.max() <= 0:
        occupied = np.flatnonzero(counts)
        return float(edges[occupied[-1] + 1]) if occupied.size else float(edges[-1])
    return float(edges[int(np.argmax(between)) + 1])


def clean_mask(mask: np.ndarray, min_size: int = MIN_SIZE) -> np.ndarray:
    """Fill holes and remove 8-connected components smaller than ``min_size`` pixels (2D)."""
    mask = ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))
    if min_size > 1 and mask.any():
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_size
        keep[0] = False
        mask = keep[labels]
    return mask


@dataclass(frozen=True)
class ThresholdTissue:
    """A fitted threshold tissue mask: ``mask(channel_slice) -> bool [Y, X]``."""

    threshold: float
    sigma: float = SIGMA
    min_size: int = MIN_SIZE

    def mask(self, image: np.ndarray) -> np.ndarray:
        """Tissue mask of one slice ``[Y, X]`` of the thresholded channel."""
        return clean_mask(smooth(image, self.sigma) > self.threshold, self.min_size)

    @classmethod
    def fit(
        cls,
        read_channel: Callable[[int], np.ndarray],
        n_slices: int,
        *,
        sigma: float = SIGMA,
        min_size: int = MIN_SIZE,
        bins: int = BINS,
    ) -> ThresholdTissue:
        """Otsu threshold of the smoothed channel of slices ``read_channel(0 .. n_slices-1)`` (two passes)."""
        if n_slices < 1:
            raise UserInputError("a tissue mask needs at least one slice")
        lo, hi = np.inf, -np.inf
        for z in range(n_slices):
            s = smooth(read_channel(z), sigma)
            lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
        if not hi > lo:
            return cls(threshold=hi, sigma=sigma, min_size=min_size)
        edges = np.linspace(lo, hi, bins + 1)
        counts = np.zeros(bins, dtype=np.int64)
        for z in range(n_slices):
            counts += np.histogram(smooth(read_channel(z), sigma), bins=edges)[0]
        return cls(threshold=otsu_threshold(counts, edges), sigma=sigma, min_size=min_size)


def tissue_mask(image: np.ndarray, *, sigma: float = SIGMA, min_size: int = MIN_SIZE) -> np.ndarray:
    """Threshold tissue mask of an in-memory one-marker image ``[Y, X]`` or stack ``[Z, Y, X]`` (bool, same shape)."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise UserInputError(f"the image to threshold must be [Y, X] or [Z, Y, X], got shape {image.shape}")
    stack = image[None] if image.ndim == 2 else image
    fitted = ThresholdTissue.fit(lambda z: stack[z], len(stack), sigma=sigma, min_size=min_size)
    out = np.stack([fitted.mask(s) for s in stack])
    return out[0] if image.ndim == 2 else out


def threshold_masks(volume, channel: int, *, sigma: float = SIGMA, min_size: int = MIN_SIZE) -> Iterator[np.ndarray]:
    """Stream the threshold tissue mask of every slice of a VolumeReader from its channel ``channel``."""
    n = volume.shape_czyx[1]
    fitted = ThresholdTissue.fit(lambda z: volume.read_slice(z)[channel], n, sigma=sigma, min_size=min_size)
    for z in range(n):
        yield fitted.mask(volume.read_slice(z)[channel])
