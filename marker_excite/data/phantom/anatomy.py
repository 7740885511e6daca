"""Anatomy of the phantom: out-of-tissue background, cortical and trabecular bone, marrow tissue,
the sinusoid network and the arteries. All masks are (Z, Y, X) bool arrays on the sample grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi

from marker_excite.data.phantom.fields import random_field, tube_score

#: Target sinusoid volume fraction of the marrow tissue per region (uniform range).
SINUSOID_FRACTION: dict[str, tuple[float, float]] = {"diaphysis": (0.09, 0.12), "metaphysis": (0.14, 0.17)}
#: Target artery volume fraction of the marrow tissue (uniform range).
ARTERY_FRACTION: tuple[float, float] = (0.002, 0.01)
REGIONS: tuple[str, ...] = tuple(SINUSOID_FRACTION)

_SINUSOID_WAVELENGTH = 170.0  # um, spacing of the sinusoid network
_ARTERY_RADIUS = (10.0, 25.0)  # um, outer radius (lumen + wall)
_KAPPA = (0.75, 1.35)  # bounds of the global radius factor that fits the artery fraction
_PERIVASCULAR_GAP = 1.3  # sinusoids keep out of arteries up to this multiple of the outer radius


@dataclass
class Anatomy:
    """Ground-truth geometry of one sample (all (Z, Y, X) bool).

    ``sinusoids`` = lumen + endothelium, ``arteries`` = lumen + wall; both lie inside ``tissue``
    (the marrow, excluding bone and out-of-tissue background) and are disjoint.
    """

    tissue: np.ndarray
    bone: np.ndarray
    sinusoids: np.ndarray
    arteries: np.ndarray
    artery_lumen: np.ndarray
    attrs: dict[str, object] = field(default_factory=dict)

    def fractions(self) -> dict[str, float]:
        """Volume fraction of sinusoids and arteries in the tissue."""
        n = max(int(self.tissue.sum()), 1)
        return {"sinusoids": float(self.sinusoids.sum()) / n, "arteries": float(self.arteries.sum()) / n}


def _grid_um(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> list[np.ndarray]:
    """Broadcastable physical coordinates (um) of the voxel centres along z, y, x."""
    out = []
    for i, (n, d) in enumerate(zip(shape, spacing)):
        view = [1, 1, 1]
        view[i] = n
        out.append((np.arange(n, dtype=np.float32) * np.float32(d)).reshape(view))
    return out


def bone_layout(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], rng: np.random.Generator, region: str
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-tissue background, then a band of cortical bone along a random side, then marrow.

    The bone border undulates smoothly; metaphyseal samples also get trabecular bone islands.
    Returns ``(tissue, bone)``; everything else is out-of-tissue background.
    """
    z, y, x = _grid_um(shape, spacing)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    u = y * np.float32(np.cos(phi)) + x * np.float32(np.sin(phi))
    extent_y, extent_x = shape[1] * spacing[1], shape[2] * spacing[2]
    u = u - min(0.0, np.cos(phi) * extent_y) - min(0.0, np.sin(phi) * extent_x)
    extent = abs(np.cos(phi)) * extent_y + abs(np.sin(phi)) * extent_x
    u = u + np.float32(0.04 * extent) * random_field(shape, spacing, rng, wavelength=0.6 * extent, bandwidth=None)
    outside_w = rng.uniform(0.02, 0.09) * extent
    bone_w = float(np.clip(rng.uniform(0.07, 0.14) * extent, 15.0, 90.0))
    bone = (u >= outside_w) & (u < outside_w + bone_w)
    tissue = u >= outside_w + bone_w
    if region == "metaphysis":
        trab = random_field(shape, spacing, rng, wavelength=45.0, bandwidth=0.5)
        thr = np.quantile(trab[:, ::4, ::4], 0.955)
        islands = (trab > thr) & tissue
        bone |= islands
        tissue &= ~islands
    return tissue, bone


def _artery_geometry(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    tissue: np.ndarray,
    rng: np.random.Generator,
    fraction: float,
) -> list[dict]:
    """Plan 1-3 arteries (centre, direction, outer radius) so that they fill about ``fraction`` of tissue.

    A tube of radius r tilted by theta from the optical (z) axis covers pi r^2 / cos(theta) per slice,
    so the tilt is chosen from the area each artery must cover.
    """
    area = fraction * float(tissue.sum()) / shape[0] * spacing[1] * spacing[2]  # um^2 per slice
    n = int(rng.integers(1, 4))
    while n > 1 and np.sqrt(area / (n * np.pi)) < 9.0:
        n -= 1
    share = area / n
    r_hi = float(np.clip(np.sqrt(share / np.pi), _ARTERY_RADIUS[0], _ARTERY_RADIUS[1]))
    idx = np.flatnonzero(tissue[shape[0] // 2].ravel())
    plans = []
    for _ in range(n):
        r = rng.uniform(max(_ARTERY_RADIUS[0], 0.6 * r_hi), r_hi)
        cos_t = float(np.clip(np.pi * r * r / share, 0.08, 1.0))
        theta = np.arccos(cos_t)
        psi = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(theta), np.sin(theta) * np.cos(psi), np.sin(theta) * np.sin(psi)])
        bend = np.cross(d, rng.standard_normal(3))
        bend /= np.linalg.norm(bend) + 1e-9
        yx = np.unravel_index(idx[rng.integers(idx.size)], shape[1:]) if idx.size else (shape[1] // 2, shape[2] // 2)
        centre = np.array([shape[0] / 2 * spacing[0], yx[0] * spacing[1], yx[1] * spacing[2]])
        plans.append(
            dict(
                centre=centre,
                direction=d,
                bend=bend,
                curvature=1.0 / rng.uniform(250.0, 900.0),
                radius=r,
                wobble=(rng.uniform(60, 200), rng.uniform(0, 2 * np.pi)),
            )
        )
    return plans


def _artery_distance(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], plans: list[dict], reach: float
) -> np.ndarray:
    """Distance to the nearest artery centreline divided by that artery's local radius (float32).

    The centrelines (smooth bent curves) are rasterised on a grid about 3 um coarse, padded so that
    curves leaving the volume still count, and the Euclidean distance transform gives the nearest
    centreline point. Voxels of the sample grid whose coarse value is below ``reach`` get the
    trilinearly interpolated value; all others are set to ``reach`` (far from every artery).
    """
    step = np.array([max(1, int(round(3.0 / s))) for s in spacing])
    cspacing = np.array(spacing) * step
    r_max = max(p["radius"] for p in plans) * 1.6
    pad = np.ceil(r_max * reach / cspacing).astype(int) + 1
    cshape = tuple(int(np.ceil(n / f)) + 2 * p for n, f, p in zip(shape, step, pad))
    origin = -pad * cspacing
    free = np.ones(cshape, dtype=bool)
    radius_img = np.zeros(cshape, dtype=np.float32)
    length = float(np.linalg.norm(np.array(shape) * np.array(spacing))) + 2 * r_max
    s = np.arange(-length, length, 0.5 * cspacing.min())
    for p in plans:
        pts = (
            p["centre"][None]
            + s[:, None] * p["direction"][None]
            + 0.5 * p["curvature"] * (s**2)[:, None] * p["bend"][None]
        )
        rad = p["radius"] * (1.0 + 0.1 * np.sin(2 * np.pi * s / p["wobble"][0] + p["wobble"][1]))
        ijk = np.round((pts - origin) / cspacing).astype(int)
        ok = np.all((ijk >= 0) & (ijk < np.array(cshape)), axis=1)
        ijk, rad = ijk[ok], rad[ok]
        free[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = False
        radius_img[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = rad
    dist, ind = ndi.distance_transform_edt(free, sampling=cspacing, return_indices=True)
    rel = (dist / np.maximum(radius_img[ind[0], ind[1], ind[2]], 1e-3)).astype(np.float32)
    del dist, ind
    # sample voxel i along an axis sits at coarse coordinate i / step + pad
    coords = [np.arange(n, dtype=np.float32) / np.float32(f) + np.float32(p) for n, f, p in zip(shape, step, pad)]
    nearest = rel[np.ix_(*[np.rint(c).astype(np.intp) for c in coords])]
    near = nearest < reach + 0.5
    out = np.full(shape, np.float32(reach), dtype=np.float32)
    idx = np.nonzero(near)
    if idx[0].size:
        points = np.stack([coords[a][idx[a]] for a in range(3)])
        out[idx] = np.minimum(ndi.map_coordinates(rel, points, order=1), np.float32(reach))
    return out


def make_anatomy(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    region: str,
    sinusoid_fraction: float,
    artery_fraction: float,
) -> Anatomy:
    """Generate the full ground-truth geometry of one sample."""
    tissue, bone = bone_layout(shape, spacing, rng, region)
    n_tissue = max(int(tissue.sum()), 1)

    plans = _artery_geometry(shape, spacing, tissue, rng, artery_fraction)
    rel = _artery_distance(shape, spacing, plans, reach=_KAPPA[1] * _PERIVASCULAR_GAP)
    kappa = float(np.clip(np.quantile(rel[tissue][::3], artery_fraction), *_KAPPA)) if tissue.any() else 1.0
    lumen_ratio = rng.uniform(0.5, 0.65)
    arteries = (rel < kappa) & tissue
    artery_lumen = (rel < kappa * lumen_ratio) & tissue
    keep_out = rel < kappa * _PERIVASCULAR_GAP
    del rel

    g = [random_field(shape, spacing, rng, wavelength=_SINUSOID_WAVELENGTH, bandwidth=0.3) for _ in range(3)]
    score = tube_score(*g)
    del g
    width = random_field(shape, spacing, rng, wavelength=60.0, bandwidth=None)
    score *= np.exp(np.float32(-0.3) * width)
    del width
    score += np.float32(0.012) * random_field(shape, spacing, rng, wavelength=10.0, bandwidth=0.6)
    allowed = tissue & ~keep_out
    values = score[allowed]
    q = min(1.0, sinusoid_fraction * n_tissue / max(values.size, 1))
    thr = np.quantile(values[:: max(1, values.size // 2_000_000)], q) if values.size else 0.0
    sinusoids = (score < thr) & allowed
    attrs = {
        "n_arteries": len(plans),
        "artery_radii_um": ",".join(f"{p['radius'] * kappa:.1f}" for p in plans),
        "artery_tilt_deg": ",".join(f"{np.degrees(np.arccos(abs(p['direction'][0]))):.0f}" for p in plans),
        "target_sinusoid_fraction": float(sinusoid_fraction),
        "target_artery_fraction": float(artery_fraction),
    }
    return Anatomy(
        tissue=tissue, bone=bone, sinusoids=sinusoids, arteries=arteries, artery_lumen=artery_lumen, attrs=attrs
    )
