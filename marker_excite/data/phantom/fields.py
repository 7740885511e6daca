"""Gaussian random fields generated in the Fourier domain (vectorised, float32, any 2D/3D grid).

A field is white complex noise in the half spectrum (``rfftn`` layout) shaped by a radial filter of the
physical frequency (cycles per micrometre, so anisotropic voxel spacing is handled) and brought back with
one inverse FFT. Every field is normalised to zero mean and unit standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft as sfft

#: threads used by scipy.fft (the project targets small CPUs; more threads do not hurt elsewhere)
FFT_WORKERS = 2


def _axis_frequencies(shape: Sequence[int], spacing: Sequence[float]) -> list[np.ndarray]:
    """Frequencies (cycles per micrometre) of each axis on the ``rfftn`` grid of ``shape``."""
    last = len(shape) - 1
    return [
        (np.fft.rfftfreq(n, d) if i == last else np.fft.fftfreq(n, d)).astype(np.float32)
        for i, (n, d) in enumerate(zip(shape, spacing))
    ]


def random_field(
    shape: Sequence[int],
    spacing: Sequence[float],
    rng: np.random.Generator,
    *,
    wavelength: float,
    bandwidth: float | None = 0.35,
) -> np.ndarray:
    """A stationary Gaussian random field with features of about ``wavelength`` micrometres.

    Only the box of frequencies where the filter is not negligible is filled with noise, so slow
    fields cost little more than one inverse FFT.

    Args:
        shape: grid shape (2D or 3D).
        spacing: voxel size per axis in micrometres.
        rng: random generator (the only source of randomness).
        wavelength: dominant wavelength in micrometres.
        bandwidth: relative width of the band-pass shell around 1/wavelength; ``None`` gives a
            low-pass field (Gaussian spectrum with cut-off 1/wavelength) for slow variations.

    Returns:
        float32 array of ``shape`` with mean 0 and standard deviation 1.
    """
    shape = tuple(int(s) for s in shape)
    k0 = 1.0 / wavelength
    k_max = 3.5 * k0 if bandwidth is None else k0 * (1.0 + 3.5 * bandwidth)
    freqs = _axis_frequencies(shape, spacing)
    keep = [np.flatnonzero(np.abs(f) <= k_max) for f in freqs]
    keep = [k if k.size else np.array([0]) for k in keep]
    k2 = np.zeros([k.size for k in keep], dtype=np.float32)
    for i, (f, k) in enumerate(zip(freqs, keep)):
        view = [1] * len(shape)
        view[i] = k.size
        k2 = k2 + (f[k] ** 2).reshape(view)
    k = np.sqrt(k2)
    if bandwidth is None:
        amp = np.exp(-0.5 * (k / np.float32(k0)) ** 2)
    else:
        amp = np.exp(-0.5 * ((k - np.float32(k0)) / np.float32(bandwidth * k0)) ** 2)
    noise = rng.standard_normal(k.shape, dtype=np.float32) + 1j * rng.standard_normal(k.shape, dtype=np.float32)
    spectrum = np.zeros([n for n in shape[:-1]] + [shape[-1] // 2 + 1], dtype=np.complex64)
    spectrum[np.ix_(*keep)] = noise * amp
    field = sfft.irfftn(spectrum, s=shape, workers=FFT_WORKERS).astype(np.float32, copy=False)
    del spectrum
    view = field[(slice(None),) * (field.ndim - 2) + (slice(None, None, 3), slice(None, None, 3))]
    field -= np.float32(view.mean(dtype=np.float64))
    std = float(view.std(dtype=np.float64))
    if std > 0:
        field /= np.float32(std)
    return field


def tube_score(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Root sum of squares of the two smallest of |a|, |b|, |c| (element-wise, float32).

    Its small values lie along the zero-level intersection curves of pairs of fields, which meet where
    all three fields vanish: thresholding it gives an anastomosing network of tubes with round-ish
    cross-sections.
    """
    a2, b2, c2 = a * a, b * b, c * c
    return np.sqrt(a2 + b2 + c2 - np.maximum(np.maximum(a2, b2), c2))
