"""The five markers' noise-free signals (relative units, ~1 = a saturated stained structure).

Roles in bone marrow, by construction (PAPER_MARKERS order):

* m1 DAPI: densely packed nuclei (~6-8 um) everywhere in the marrow, none in vessel lumens.
* m2 endomucin: bright on sinusoidal endothelium, nearly absent on arterial endothelium.
* m3 endoglin: sinusoidal endothelium (a bit weaker), arterial endothelium (weak), off-target cells.
* m4 collagen: thick bright arterial walls, faint sinusoid basement membrane, extracellular-matrix
  fibres and the bone (bright surface) as distractors.
* m5 CXCL12-GFP: reticular stromal cells (bodies + long processes), enriched around sinusoids.

Besides the markers, an autofluorescence volume (tissue, bone, granular cells) common to all channels.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from marker_excite.data.phantom.anatomy import Anatomy
from marker_excite.data.phantom.cells import fibres, render, scatter
from marker_excite.data.phantom.fields import random_field
from marker_excite.markers import PAPER_MARKERS

_CROSS = ndi.generate_binary_structure(3, 1)

# cell densities, cells per um^3
_NUCLEI = 1.0 / 260.0
_STROMAL_NEAR_SINUSOIDS = 1.0 / 2500.0
_STROMAL_ELSEWHERE = 1.0 / 30000.0
_ENDOGLIN_OFF_TARGET = 1.0 / 9000.0
_AUTOFLUORESCENT = 1.0 / 60000.0
_CIRCULATING = 1.0 / 3000.0  # nucleated blood cells inside vessel lumens
_ADIPOCYTES = 1.0 / 150000.0  # fat cells: round, ~25-40 um, dark in every marker
#: sinusoid segments where a slow field exceeds this get a thick collagen coat (~1/3 of them)
COATED_SINUSOIDS = 0.3


def _shell(mask: np.ndarray, inner: bool) -> np.ndarray:
    """One-voxel shell of ``mask``: its inner rim (``inner``) or the ring just outside it."""
    if inner:
        return mask & ~ndi.binary_erosion(mask, _CROSS)
    return ndi.binary_dilation(mask, _CROSS) & ~mask


def render_markers(
    anatomy: Anatomy, spacing: tuple[float, float, float], rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Noise-free signal of each of the five paper markers, and the autofluorescence volume.

    Returns:
        ``({marker name: float32 (Z, Y, X)}, autofluorescence float32 (Z, Y, X))``.
    """
    shape = anatomy.tissue.shape
    tissue = anatomy.tissue
    lumen = (anatomy.sinusoids & ~_shell(anatomy.sinusoids, inner=True)) | anatomy.artery_lumen
    vessels = anatomy.sinusoids | anatomy.arteries
    fat = scatter(np.where(tissue & ~vessels, np.float32(_ADIPOCYTES), np.float32(0)), spacing, rng, (30.0, 120.0))
    fat = (render(fat, spacing, 6.0, flat=False) > 1.0) & ~vessels
    parenchyma = tissue & ~lumen & ~fat
    sin_wall = anatomy.sinusoids & ~lumen
    sin_membrane = _shell(anatomy.sinusoids, inner=False) & ~anatomy.arteries
    art_endo = _shell(anatomy.artery_lumen, inner=True)
    art_wall = anatomy.arteries & ~anatomy.artery_lumen
    bone_surface = anatomy.bone & ndi.binary_dilation(tissue, _CROSS, iterations=3)

    # staining heterogeneity: slowly varying, partly shared between markers
    slow_a = random_field(shape, spacing, rng, wavelength=70.0, bandwidth=None)
    slow_b = random_field(shape, spacing, rng, wavelength=70.0, bandwidth=None)

    def patchy(angle: float, depth: float) -> np.ndarray:
        f = np.float32(np.cos(angle)) * slow_a + np.float32(np.sin(angle)) * slow_b
        return np.clip(1.0 + np.float32(depth) * f, 0.15, None)

    # m1 DAPI: nuclei in the parenchyma (walls included) and some circulating cells in the lumens
    density = np.where(parenchyma, np.float32(_NUCLEI), np.float32(0))
    density[lumen] = _CIRCULATING
    nuclei = render(scatter(density, spacing, rng, (1.5, 6.0)), spacing, 2.0)
    del density
    dapi = nuclei * (parenchyma | lumen) * patchy(0.3, 0.2)
    del nuclei

    # m2 endomucin
    endomucin = (sin_wall * np.float32(1.0) + art_endo * np.float32(0.08)) * patchy(1.1, 0.6)
    endomucin += np.float32(0.03) * parenchyma

    # m3 endoglin
    off_target = render(scatter(np.where(parenchyma, np.float32(_ENDOGLIN_OFF_TARGET), np.float32(0)), spacing, rng, (1.0, 4.0)), spacing, 2.6)
    endoglin = (sin_wall * np.float32(0.75) + art_endo * np.float32(0.35)) * patchy(2.0, 0.6)
    endoglin += np.float32(0.7) * off_target * parenchyma + np.float32(0.05) * parenchyma
    del off_target

    # m4 collagen; some sinusoid segments carry a thick collagen coat that looks like an arterial wall
    ecm = fibres(shape, spacing, rng, wavelength=45.0, width=0.09)
    coat = ndi.gaussian_filter(anatomy.sinusoids.astype(np.float32), [4.0 / s for s in spacing]) > 0.08
    coat &= ~anatomy.sinusoids & ~anatomy.arteries
    coat &= (np.float32(np.cos(5.1)) * slow_a + np.float32(np.sin(5.1)) * slow_b) > COATED_SINUSOIDS
    collagen = art_wall * np.float32(1.0) + sin_membrane * np.float32(0.5) + coat * np.float32(1.0)
    del coat
    collagen += ecm * tissue * np.float32(0.35)
    del ecm
    collagen += anatomy.bone * np.float32(0.35) + bone_surface * np.float32(0.65)
    collagen *= patchy(2.9, 0.25)

    # m5 CXCL12-GFP: stromal bodies near vessels (mostly sinusoids) plus a reticular network of processes
    near = ndi.gaussian_filter(vessels.astype(np.float32), [3.0 / s for s in spacing]) > 0.08
    density = np.where(parenchyma & near, np.float32(_STROMAL_NEAR_SINUSOIDS), np.float32(0))
    density += np.float32(_STROMAL_ELSEWHERE) * parenchyma
    bodies_imp = scatter(density, spacing, rng, (1.5, 4.0))
    del density, near
    bodies = render(bodies_imp, spacing, 2.2)
    reach = render(bodies_imp, spacing, 9.0, flat=False)
    del bodies_imp
    reach = np.clip(reach * np.float32(40.0), 0.0, 1.0)
    processes = fibres(shape, spacing, rng, wavelength=22.0, width=0.12) * reach
    del reach
    gfp = (bodies + np.float32(0.6) * processes) * parenchyma * patchy(3.7, 0.3)
    del bodies, processes

    # autofluorescence: weak tissue and bone, a few bright granular cells (all channels)
    granules = render(scatter(np.where(tissue, np.float32(_AUTOFLUORESCENT), np.float32(0)), spacing, rng, (2.0, 6.0)), spacing, 1.6)
    auto = tissue * np.float32(0.06) * patchy(4.4, 0.4) + anatomy.bone * np.float32(0.05) + granules * np.float32(0.8)
    signals = dict(zip(PAPER_MARKERS, (dapi, endomucin, endoglin, collagen, gfp)))
    return {k: v.astype(np.float32, copy=False) for k, v in signals.items()}, auto.astype(np.float32, copy=False)
