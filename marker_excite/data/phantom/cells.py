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


class Scatterer:
    """Draws cell positions for several populations from ONE uniform random volume.

    Population ``i`` takes the voxels whose uniform value falls in its own interval
    ``[offset_i, offset_i + p(x))``; the intervals do not overlap, so populations never share a voxel
    and one random draw serves them all (cell probabilities per voxel are small).
    """

    def __init__(self, shape: tuple[int, ...], spacing: tuple[float, float, float], rng: np.random.Generator):
        self.uniform = rng.random(shape, dtype=np.float32)
        self.voxel_um3 = float(np.prod(spacing))
        self.rng = rng
        self._offset = 0.0

    def scatter(self, mask: np.ndarray, density: float, heights: tuple[float, float]) -> np.ndarray:
        """Impulse image of cells inside ``mask`` at ``density`` cells per cubic micrometre.

        Impulse heights are uniform in ``heights`` (the size/brightness factor of each cell).
        """
        p = density * self.voxel_um3
        if self._offset + p > 1.0:
            raise ValueError("cell densities of all populations add up to more than one cell per voxel")
        lo, hi = np.float32(self._offset), np.float32(self._offset + p)
        self._offset += p
        hit = (self.uniform >= lo) & (self.uniform < hi) & mask
        img = np.zeros(mask.shape, dtype=np.float32)
        img[hit] = self.rng.uniform(heights[0], heights[1], int(hit.sum())).astype(np.float32)
        return img


def render(impulses: np.ndarray, spacing: tuple[float, float, float], sigma_um: float, flat: bool = True) -> np.ndarray:
    """Blobs of width ``sigma_um`` at the impulses (peak = impulse height before saturation).

    With ``flat`` the blobs saturate softly at 1 (``1 - exp(-x)``): nuclei with flat tops and soft rims.
    """
    sigma = [sigma_um / s for s in spacing]
    norm = np.float32(np.prod([np.sqrt(2 * np.pi) * s for s in sigma]))
    out = ndi.gaussian_filter(impulses, sigma, mode="constant", truncate=3.0)
    out *= norm
    if flat:
        np.negative(out, out=out)
        np.exp(out, out=out)
        np.subtract(np.float32(1.0), out, out=out)
    return out


def coarse_density(
    impulses: np.ndarray, spacing: tuple[float, float, float], sigma_um: float, step: int = 4
) -> np.ndarray:
    """A smooth map of how many impulses lie within ~``sigma_um`` (counts, float32).

    Computed on an in-plane grid ``step`` times coarser and expanded back by repetition: cheap for the
    wide kernels of slowly varying maps (e.g. the reach of stromal-cell processes).
    """
    z, y, x = impulses.shape
    ny, nx = -(-y // step), -(-x // step)
    padded = np.zeros((z, ny * step, nx * step), dtype=np.float32)
    padded[:, :y, :x] = impulses != 0
    coarse = padded.reshape(z, ny, step, nx, step).sum(axis=(2, 4))
    sigma = [sigma_um / spacing[0], sigma_um / (spacing[1] * step), sigma_um / (spacing[2] * step)]
    coarse = ndi.gaussian_filter(coarse, sigma, mode="constant", truncate=3.0)
    return np.repeat(np.repeat(coarse, step, axis=1), step, axis=2)[:, :y, :x]


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
