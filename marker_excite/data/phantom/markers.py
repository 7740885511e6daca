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

from marker_excite.contract.markers import PAPER_MARKERS
from marker_excite.data.phantom.anatomy import Anatomy
from marker_excite.data.phantom.cells import Scatterer, coarse_density, fibres, render
from marker_excite.data.phantom.fields import random_field

_CROSS = ndi.generate_binary_structure(3, 1)

# cell densities, cells per um^3
_NUCLEI = 1.0 / 260.0
_WALL_NUCLEI = 1.0 / 4000.0  # arterial walls are mostly matrix: few nuclei
_CIRCULATING = 1.0 / 3000.0  # nucleated blood cells inside vessel lumens
_STROMAL_NEAR_VESSELS = 1.0 / 2500.0
_STROMAL_ELSEWHERE = 1.0 / 30000.0
_ENDOGLIN_OFF_TARGET = 1.0 / 9000.0
_AUTOFLUORESCENT = 1.0 / 60000.0
_ADIPOCYTES = 1.0 / 150000.0  # fat cells: round, ~25-30 um, dark in every marker
#: sinusoid segments where a slow field exceeds this get a thick collagen coat (about 40 % of them)
COATED_SINUSOIDS = 0.25


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
    cells = Scatterer(shape, spacing, rng)
    lumen = (anatomy.sinusoids & ~_shell(anatomy.sinusoids, inner=True)) | anatomy.artery_lumen
    vessels = anatomy.sinusoids | anatomy.arteries
    fat = render(cells.scatter(tissue & ~vessels, _ADIPOCYTES, (30.0, 120.0)), spacing, 5.0, flat=False)
    fat = (fat > 1.0) & ~vessels
    parenchyma = tissue & ~lumen & ~fat
    del fat
    sin_wall = anatomy.sinusoids & ~lumen
    sin_membrane = _shell(anatomy.sinusoids, inner=False) & ~anatomy.arteries
    art_endo = _shell(anatomy.artery_lumen, inner=True)
    art_wall = anatomy.arteries & ~anatomy.artery_lumen
    bone_surface = anatomy.bone & ndi.binary_dilation(tissue, _CROSS, iterations=2)
    # a few micrometres around the vessels (outside them)
    perivascular = ndi.gaussian_filter(vessels.astype(np.float32), [3.0 / s for s in spacing], truncate=3.0)
    perivascular = (perivascular > 0.06) & ~vessels

    # staining heterogeneity and other slow variations: mixtures of two slow fields
    slow_a = random_field(shape, spacing, rng, wavelength=70.0, bandwidth=None)
    slow_b = random_field(shape, spacing, rng, wavelength=70.0, bandwidth=None)

    def slow(angle: float) -> np.ndarray:
        return np.float32(np.cos(angle)) * slow_a + np.float32(np.sin(angle)) * slow_b

    def patchy(angle: float, depth: float) -> np.ndarray:
        return np.clip(1.0 + np.float32(depth) * slow(angle), 0.15, None)

    # m1 DAPI: nuclei in the parenchyma, few in arterial walls, some circulating cells in the lumens
    nuclei = cells.scatter(parenchyma & ~art_wall, _NUCLEI, (1.5, 6.0))
    nuclei += cells.scatter(art_wall, _WALL_NUCLEI, (1.5, 4.0))
    nuclei += cells.scatter(lumen, _CIRCULATING, (1.5, 4.0))
    dapi = render(nuclei, spacing, 2.0)
    del nuclei
    dapi *= parenchyma | lumen
    dapi *= patchy(0.3, 0.2)

    # m2 endomucin
    endomucin = (sin_wall * np.float32(1.0) + art_endo * np.float32(0.08)) * patchy(1.1, 0.9)

    # m3 endoglin
    off_target = render(cells.scatter(parenchyma, _ENDOGLIN_OFF_TARGET, (1.0, 4.0)), spacing, 2.6)
    endoglin = (sin_wall * np.float32(0.75) + art_endo * np.float32(0.35)) * patchy(2.0, 0.8)
    endoglin += np.float32(0.7) * off_target * parenchyma + np.float32(0.05) * parenchyma
    del off_target

    # m4 collagen; some sinusoid segments carry a thick collagen coat that looks like an arterial wall
    collagen = fibres(shape, spacing, rng, wavelength=45.0, width=0.09)
    collagen *= tissue
    collagen *= np.float32(0.35)
    collagen += art_wall * np.float32(1.0) + sin_membrane * np.float32(0.5)
    collagen += (perivascular & (slow(5.1) > COATED_SINUSOIDS)) * np.float32(1.0)
    collagen += anatomy.bone * np.float32(0.2) + bone_surface * np.float32(0.5)
    collagen *= patchy(2.9, 0.25)

    # m5 CXCL12-GFP: stromal bodies near vessels (mostly sinusoids) plus a reticular network of processes
    bodies_imp = cells.scatter(parenchyma & perivascular, _STROMAL_NEAR_VESSELS, (1.5, 4.0))
    bodies_imp += cells.scatter(parenchyma & ~perivascular, _STROMAL_ELSEWHERE, (1.5, 4.0))
    reach = np.clip(coarse_density(bodies_imp, spacing, 8.0) * np.float32(60.0), 0.0, 1.0)
    gfp = fibres(shape, spacing, rng, wavelength=25.0, width=0.25)
    gfp *= reach
    gfp *= np.float32(0.7)
    del reach
    gfp += np.float32(0.6) * render(bodies_imp, spacing, 2.2)
    del bodies_imp
    gfp *= parenchyma
    gfp *= patchy(3.7, 0.3)

    # autofluorescence: weak tissue and bone, a few bright granular cells (all channels)
    granules = render(cells.scatter(tissue, _AUTOFLUORESCENT, (2.0, 6.0)), spacing, 1.6)
    auto = tissue * np.float32(0.06) * patchy(4.4, 0.4) + anatomy.bone * np.float32(0.05) + granules * np.float32(0.8)
    signals = dict(zip(PAPER_MARKERS, (dapi, endomucin, endoglin, collagen, gfp)))
    return {k: v.astype(np.float32, copy=False) for k, v in signals.items()}, auto.astype(np.float32, copy=False)
