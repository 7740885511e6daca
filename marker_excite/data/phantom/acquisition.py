"""Microscope simulation: staining gain, autofluorescence, optical blur, depth decay, noise, uint16.

Per sample and marker a staining gain is drawn (log-normal; with probability ``WEAK_STAIN_P`` a marker
stains weakly, as immunostaining sometimes does). The optical blur is a Gaussian point-spread function
that is wider along z. Intensity decays exponentially with depth. Shot noise has variance equal to the
expected photon count (normal approximation of Poisson noise, accurate at the counts used here, and ~5x
faster than exact Poisson sampling on large volumes); camera read noise and offset follow.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

#: probability that a marker is weakly stained in a sample, and the range of its gain factor then
WEAK_STAIN_P = 0.2
WEAK_STAIN_FACTOR = (0.3, 0.55)
#: Gaussian point-spread function, standard deviation in micrometres (z, y, x)
PSF_SIGMA_UM = (1.2, 0.45, 0.45)
#: camera model
OFFSET = 100.0
ADU_PER_PHOTON = 4.0
READ_NOISE_ADU = 6.0
#: relative autofluorescence per marker (PAPER_MARKERS order; green channels show more)
AUTOFLUORESCENCE = (0.5, 0.8, 0.8, 1.0, 1.1)


def acquire(
    signals: dict[str, np.ndarray],
    autofluorescence: np.ndarray,
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, object]]:
    """Turn noise-free marker signals into a uint16 image (C, Z, Y, X) as a microscope would.

    Returns the image and a dict of the drawn acquisition parameters (for the sample's attrs).
    """
    names = list(signals)
    shape = autofluorescence.shape
    image = np.empty((len(names),) + shape, dtype=np.uint16)
    depth_um = rng.uniform(80.0, 250.0)
    depth = np.exp(-np.arange(shape[0], dtype=np.float32) * np.float32(spacing[0] / depth_um)).reshape(-1, 1, 1)
    sigma = [s / d for s, d in zip(PSF_SIGMA_UM, spacing)]
    attrs: dict[str, object] = {"depth_decay_um": round(float(depth_um), 1)}
    for c, name in enumerate(names):
        gain = float(rng.lognormal(0.0, 0.25))
        if rng.random() < WEAK_STAIN_P:
            gain *= rng.uniform(*WEAK_STAIN_FACTOR)
        photons = rng.uniform(120.0, 400.0)
        background = rng.uniform(2.0, 8.0)
        af = AUTOFLUORESCENCE[c % len(AUTOFLUORESCENCE)]
        x = signals[name] * np.float32(gain) + autofluorescence * np.float32(af)
        x = ndi.gaussian_filter(x, sigma, mode="nearest")
        x *= depth
        x *= np.float32(photons)
        x += np.float32(background)
        noise = rng.standard_normal(shape, dtype=np.float32)
        noise *= np.sqrt(x)
        x += noise
        del noise
        np.maximum(x, 0.0, out=x)
        x *= np.float32(ADU_PER_PHOTON)
        x += np.float32(OFFSET)
        x += rng.standard_normal(shape, dtype=np.float32) * np.float32(READ_NOISE_ADU)
        np.clip(np.rint(x, out=x), 0, 65535, out=x)
        image[c] = x
        del x
        attrs[f"gain_{name}"] = round(gain, 3)
        attrs[f"photons_{name}"] = round(float(photons), 1)
    return image, attrs
