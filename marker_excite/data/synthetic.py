"""The synthetic bone-marrow phantom: what every command runs on out of the box (docs/phantom.md).

:func:`generate_sample` builds one deterministic 3D sample (five markers as uint16, ground truth
``sinusoids``, ``arteries`` and ``tissue``); :func:`write_dataset` writes a preset dataset (``small`` and
``cpu`` for CPUs, ``paper`` mirroring the paper's Supplementary Table 1; their sizes are in
:mod:`marker_excite.presets`, the samples' recipes here) sample by sample into a
:class:`~marker_excite.data.store.SampleStore`, generating the samples in ``workers`` processes side by side
(each sample depends only on its recipe and seed, so the store is the same for any number of workers).

The building blocks live in :mod:`marker_excite.data.phantom` (fields, anatomy, cells, markers,
acquisition).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from marker_excite.atomic import check_output_path
from marker_excite.contract.markers import PAPER_MARKERS
from marker_excite.data.phantom.acquisition import acquire
from marker_excite.data.phantom.anatomy import ARTERY_FRACTION, REGIONS, SINUSOID_FRACTION, make_anatomy
from marker_excite.data.phantom.markers import render_markers
from marker_excite.data.sample import TISSUE, Sample
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError
from marker_excite.presets import PRESETS, PhantomSize

#: Default voxel size (z, y, x) in micrometres: confocal stacks are coarser along the optical axis.
DEFAULT_SPACING: tuple[float, float, float] = (2.0, 1.0, 1.0)
#: Smallest sample side (y, x) the phantom accepts (the vessel network needs room).
MIN_SIDE = 32


@dataclass(frozen=True)
class SampleSpec:
    """Recipe of one preset sample (targets are volume fractions of the marrow tissue)."""

    name: str
    shape_zyx: tuple[int, int, int]
    region: str
    annotated_every: int
    sinusoid_fraction: float
    artery_fraction: float


# Supplementary Table 1 of the paper: (patches, sinusoid %, artery %) of samples s1..s8. Samples with
# the highest sinusoid share (s6, s8) are taken as metaphyseal; targets are clipped to the region range.
_TABLE = ((54, 9.71, 0.29), (12, 7.87, 0.99), (30, 11.97, 0.21), (12, 11.20, 0.98),
          (12, 10.93, 0.58), (48, 13.60, 0.24), (54, 11.23, 0.24), (8, 15.19, 0.27))  # fmt: skip
_METAPHYSEAL = {6, 8}


def _table_specs(size: PhantomSize) -> tuple[SampleSpec, ...]:
    """The sample recipes of a phantom size: the rows of the table in its shapes and annotation density."""
    specs = []
    for i, ((_, sin_pct, art_pct), shape, ev) in enumerate(zip(_TABLE, size.shapes_zyx, size.annotated_every), start=1):
        region = "metaphysis" if i in _METAPHYSEAL else "diaphysis"
        lo, hi = SINUSOID_FRACTION[region]
        specs.append(SampleSpec(f"s{i}", shape, region, ev, float(np.clip(sin_pct / 100, lo, hi)), art_pct / 100))
    return tuple(specs)


def annotated_slices(n_slices: int, every: int) -> np.ndarray:
    """(Z,) bool: slices ``every//2, every//2 + every, ...`` are annotated (one in ``every``)."""
    if every < 1:
        raise UserInputError(f"annotated_every must be >= 1, got {every}")
    z = np.arange(n_slices)
    return (z % every) == (every // 2 if n_slices > every // 2 else 0)


def _check_shape(shape_zyx: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape_zyx)
    if len(shape) != 3 or shape[0] < 1 or min(shape[1:]) < MIN_SIDE:
        raise UserInputError(f"phantom shape must be Z,Y,X with Z >= 1 and Y, X >= {MIN_SIDE}; got {tuple(shape_zyx)}")
    return shape  # type: ignore[return-value]


def _check_region(region: str) -> str:
    if region not in REGIONS:
        raise UserInputError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")
    return region


def generate_sample(
    name: str,
    shape_zyx: Sequence[int],
    *,
    region: str = "diaphysis",
    seed: int = 0,
    spacing: Sequence[float] = DEFAULT_SPACING,
    annotated_every: int = 3,
    sinusoid_fraction: float | None = None,
    artery_fraction: float | None = None,
) -> Sample:
    """One phantom sample, fully determined by its arguments (same seed -> identical arrays).

    Args:
        name: sample name.
        shape_zyx: volume shape (Z, Y, X) in voxels.
        region: ``"diaphysis"`` or ``"metaphysis"`` (sinusoid density; trabecular bone in the metaphysis).
        seed: random seed.
        spacing: voxel size (z, y, x) in micrometres.
        annotated_every: one slice in this many is marked annotated (:func:`annotated_slices`).
        sinusoid_fraction: target sinusoid volume fraction of the tissue (default: drawn from the
            region's range, :data:`~marker_excite.data.phantom.anatomy.SINUSOID_FRACTION`).
        artery_fraction: target artery volume fraction of the tissue (default: drawn from
            :data:`~marker_excite.data.phantom.anatomy.ARTERY_FRACTION`).

    Returns:
        A :class:`Sample` with the five paper markers (uint16, (5, Z, Y, X)), labels ``sinusoids``,
        ``arteries`` and ``tissue`` ((Z, Y, X) uint8, full 3D ground truth), ``annotated`` and ``region``.
    """
    shape = _check_shape(shape_zyx)
    region = _check_region(region)
    if int(seed) < 0:
        raise UserInputError(f"seed must be >= 0, got {seed}")
    given = tuple(spacing)
    spacing = tuple(float(s) for s in given)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise UserInputError(f"spacing must be 3 positive numbers (z, y, x) in um, got {given}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), REGIONS.index(region), *shape]))
    if sinusoid_fraction is None:
        sinusoid_fraction = float(rng.uniform(*SINUSOID_FRACTION[region]))
    if artery_fraction is None:
        artery_fraction = float(rng.uniform(*ARTERY_FRACTION))
    for label, value in (("sinusoid_fraction", sinusoid_fraction), ("artery_fraction", artery_fraction)):
        if not 0.0 < value < 0.5:
            raise UserInputError(f"{label} must be in (0, 0.5), got {value}")
    anatomy = make_anatomy(
        shape,
        spacing,  # type: ignore[arg-type]
        rng,
        region=region,
        sinusoid_fraction=sinusoid_fraction,
        artery_fraction=artery_fraction,
    )
    signals, auto = render_markers(anatomy, spacing, rng)  # type: ignore[arg-type]
    image, acq = acquire(signals, auto, spacing, rng)  # type: ignore[arg-type]
    del signals, auto
    labels = {
        "sinusoids": anatomy.sinusoids.view(np.uint8),
        "arteries": anatomy.arteries.view(np.uint8),
        TISSUE: anatomy.tissue.view(np.uint8),
    }
    attrs: dict[str, object] = {"phantom_seed": int(seed), **anatomy.attrs, **acq}
    attrs.update({f"fraction_{k}": round(v, 5) for k, v in anatomy.fractions().items()})
    return Sample(
        name=name,
        image=image,
        markers=PAPER_MARKERS,
        spacing=spacing,  # type: ignore[arg-type]
        labels=labels,
        annotated=annotated_slices(shape[0], annotated_every),
        region=region,
        attrs=attrs,
    )


def preset_specs(
    preset: str = "small",
    *,
    samples: int | None = None,
    shape: Sequence[int] | None = None,
    region: str | None = None,
) -> tuple[SampleSpec, ...]:
    """The sample recipes of a preset (its phantom size in :data:`marker_excite.presets.PRESETS`), optionally with ``samples`` of them (cycling through the
    preset's list when more are asked), one ``shape`` for all, or one ``region`` for all."""
    if preset not in PRESETS:
        raise UserInputError(f"unknown phantom preset {preset!r}; choose one of {', '.join(PRESETS)}")
    specs = _table_specs(PRESETS[preset].phantom)
    if samples is not None:
        if samples < 1:
            raise UserInputError(f"number of samples must be >= 1, got {samples}")
        specs = tuple(replace(specs[i % len(specs)], name=f"s{i + 1}") for i in range(samples))
    if shape is not None:
        shp = _check_shape(shape)
        specs = tuple(replace(s, shape_zyx=shp) for s in specs)
    if region is not None:
        reg = _check_region(region)
        lo, hi = SINUSOID_FRACTION[reg]
        specs = tuple(
            replace(s, region=reg, sinusoid_fraction=float(np.clip(s.sinusoid_fraction, lo, hi))) for s in specs
        )
    return specs


def _generate(spec: SampleSpec, seed: int) -> tuple[Sample, float]:
    """Sample ``spec`` with ``seed`` and the seconds it took (run in a worker process by :func:`_samples`)."""
    start = time.perf_counter()
    sample = generate_sample(
        spec.name,
        spec.shape_zyx,
        region=spec.region,
        seed=seed,
        annotated_every=spec.annotated_every,
        sinusoid_fraction=spec.sinusoid_fraction,
        artery_fraction=spec.artery_fraction,
    )
    return sample, time.perf_counter() - start


def _samples(specs: Sequence[SampleSpec], seed: int, workers: int) -> Iterator[tuple[Sample, float]]:
    """The samples of ``specs`` in order (sample ``i`` with seed ``seed * 1000 + i``) and their generation
    times, made in ``workers`` processes side by side; at most ``workers`` samples are generated ahead of the
    one the caller is writing, so memory stays bounded by ``workers + 1`` samples."""
    seeds = [seed * 1000 + i for i in range(len(specs))]
    if workers == 1:
        for spec, s in zip(specs, seeds):
            yield _generate(spec, s)
        return
    # spawn: a fresh interpreter per worker, safe whatever the caller has loaded (TensorFlow, open HDF5 files)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future] = deque()
        todo = iter(zip(specs, seeds))
        try:
            for spec, s in todo:
                pending.append(pool.submit(_generate, spec, s))
                if len(pending) == workers:
                    break
            while pending:
                result = pending.popleft().result()
                for spec, s in todo:  # keep the workers busy while the caller writes this one
                    pending.append(pool.submit(_generate, spec, s))
                    break
                yield result
        finally:
            for future in pending:
                future.cancel()


def write_dataset(
    out: str | os.PathLike,
    preset: str = "small",
    *,
    seed: int = 0,
    samples: int | None = None,
    shape: Sequence[int] | None = None,
    region: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> Path:
    """Generate a preset dataset into a new sample store at ``out`` (atomic).

    Sample ``i`` (0-based) uses seed ``seed * 1000 + i``. The samples are generated in ``workers``
    processes side by side and written in order as they come (streamed: one sample in memory with one
    worker, at most ``workers + 1`` with more); the store is the same for any ``workers``. Prints one
    progress line per sample unless ``progress`` is False. Raises :class:`UserInputError` if ``out``
    exists and ``overwrite`` is False, or ``workers`` is < 1.
    """
    if int(workers) < 1:
        raise UserInputError(f"workers must be >= 1, got {workers}")
    specs = preset_specs(preset, samples=samples, shape=shape, region=region)
    path = check_output_path(out, overwrite=overwrite)
    start = time.perf_counter()
    with SampleStore(path, "w") as store:
        for i, (spec, (sample, seconds)) in enumerate(zip(specs, _samples(specs, seed, min(int(workers), len(specs))))):
            store.write_sample(sample)
            if progress:
                fr = sample.attrs
                print(
                    f"synth {preset} [{i + 1}/{len(specs)}] {spec.name}: {spec.region}, "
                    f"{'x'.join(map(str, spec.shape_zyx))} voxels, {int(sample.annotated.sum())} annotated slices, "
                    f"sinusoids {100 * float(fr['fraction_sinusoids']):.1f}% arteries {100 * float(fr['fraction_arteries']):.2f}% "
                    f"of tissue ({seconds:.1f} s)",
                    flush=True,
                )
            del sample
    if progress:
        print(
            f"synth: wrote {len(specs)} samples to {path} in {time.perf_counter() - start:.1f} s"
            + (f" ({workers} workers)" if workers > 1 else ""),
            flush=True,
        )
    return path
