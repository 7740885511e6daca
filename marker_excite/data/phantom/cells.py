"""Cells rendered without loops: random impulse images blurred by a Gaussian blob kernel.

Each cell is one voxel impulse whose height is the cell's brightness-size factor; a Gaussian filter
turns the impulse image into blobs and a soft saturation flattens their tops, so brighter impulses
give bigger cells (the saturated radius grows with log(height)). Positions follow a density map, so
populations can be enriched near structures (e.g. stromal cells near sinusoids).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from marker_excite.data.phantom.fields import random_field


def scatter(
    density: np.ndarray, spacing: tuple[float, float, float], rng: np.random.Generator, heights: tuple[float, float]
) -> np.ndarray:
    """Impulse image of cells at random voxels.

    Args:
        density: expected cells per cubic micrometre at each voxel (float array, 0 where none).
        spacing: voxel size (z, y, x) in micrometres.
        rng: random generator.
        heights: range of the uniform impulse heights (size/brightness factor of each cell).

    Returns:
        float32 image, 0 except at cell centres.
    """
    p = density * np.float32(np.prod(spacing))
    hit = rng.random(density.shape, dtype=np.float32) < p
    img = np.zeros(density.shape, dtype=np.float32)
    img[hit] = rng.uniform(heights[0], heights[1], int(hit.sum())).astype(np.float32)
    return img


def render(impulses: np.ndarray, spacing: tuple[float, float, float], sigma_um: float, flat: bool = True) -> np.ndarray:
    """Blobs of width ``sigma_um`` at the impulses (peak = impulse height before saturation).

    With ``flat`` the blobs saturate softly at 1 (``1 - exp(-x)``): nuclei with flat tops and soft rims.
    """
    sigma = [sigma_um / s for s in spacing]
    norm = np.float32(np.prod([np.sqrt(2 * np.pi) * s for s in sigma]))
    out = ndi.gaussian_filter(impulses, sigma, mode="constant") * norm
    if flat:
        np.negative(out, out=out)
        np.exp(out, out=out)
        np.subtract(np.float32(1.0), out, out=out)
    return out


def fibres(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    wavelength: float,
    width: float,
) -> np.ndarray:
    """Thin curvy fibres (intensity 0..1): the zero-level intersection curves of two random fields.

    ``width`` is the fibre thickness relative to the field (about micrometres x wavelength / 6).
    """
    a = random_field(shape, spacing, rng, wavelength=wavelength, bandwidth=0.5)
    b = random_field(shape, spacing, rng, wavelength=wavelength, bandwidth=0.5)
    a *= a
    b *= b
    a += b
    a *= np.float32(-1.0 / (width * width))
    return np.exp(a, out=a)
