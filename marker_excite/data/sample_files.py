"""An image stack and its label files, validated against each other, for ``marker-excite import``."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from marker_excite.data.io import VolumeError, VolumeReader, open_volume
from marker_excite.data.sample import Sample


@dataclass
class SampleFiles:
    """An image volume with its label volumes, validated against each other, read slice by slice."""

    image: VolumeReader
    labels: dict[str, VolumeReader] = field(default_factory=dict)
    annotated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return self.image.shape_zyx

    def read_slice(self, z: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(image [C, Y, X] float32, {class: [Y, X] uint8})`` of slice ``z``."""
        return self.image.read_slice(z), {c: (r.read_slice(z)[0] != 0).astype(np.uint8) for c, r in self.labels.items()}

    def close(self) -> None:
        self.image.close()
        for r in self.labels.values():
            r.close()

    def __enter__(self) -> SampleFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_sample_files(
    image: str | os.PathLike,
    *,
    markers: Sequence[str] | str | None = None,
    labels: Mapping[str, str | os.PathLike] | None = None,
    annotated: str | Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    axes: str | None = None,
) -> SampleFiles:
    """Open an image file and its label files (one single-channel volume per class) lazily.

    ``annotated``: ``"all"``, slice indices (``"0,3,5-8"`` or a list), or None = the slices where any
    label is non-zero. Raises :class:`VolumeError` when label shapes do not match the image.
    """
    vol = open_volume(image, markers=markers, spacing=spacing, axes=axes)
    readers: dict[str, VolumeReader] = {}
    try:
        for cls, lpath in (labels or {}).items():
            r = open_volume(lpath)
            readers[cls] = r
            if r.shape_czyx[0] != 1:
                raise VolumeError(f"label file {r.path} for {cls!r} has {r.shape_czyx[0]} channels; expected one")
            if r.shape_zyx != vol.shape_zyx:
                raise VolumeError(
                    f"shape mismatch: label file {r.path} for {cls!r} is {r.shape_zyx} (Z, Y, X) "
                    f"but image {vol.path} is {vol.shape_zyx}"
                )
        files = SampleFiles(vol, readers)
        files.annotated = parse_annotated(annotated, vol.shape_zyx[0], files)
        return files
    except BaseException:
        vol.close()
        for r in readers.values():
            r.close()
        raise


def parse_annotated(spec: str | Sequence[int] | None, n_slices: int, files: SampleFiles | None = None) -> np.ndarray:
    """Annotated-slice mask ``(Z,)`` from ``"all"``, ``"0,3,5-8"``, a list of indices, or None (auto)."""
    mask = np.zeros(n_slices, dtype=bool)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        if files is None or not files.labels:
            return mask
        for z in range(n_slices):
            mask[z] = any(np.any(r.read_slice(z) != 0) for r in files.labels.values())
        return mask
    if isinstance(spec, str) and spec.strip().lower() == "all":
        mask[:] = True
        return mask
    items: list[int] = []
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    for part in parts:
        text = str(part).strip()
        try:
            if re.fullmatch(r"\d+\s*-\s*\d+", text):
                lo, hi = (int(v) for v in text.split("-"))
                items.extend(range(lo, hi + 1))
            else:
                lo = hi = int(text)
                items.append(lo)
        except ValueError:
            raise VolumeError(f"annotated slices: cannot read {text!r} (use 'all' or indices like 0,3,5-8)") from None
        if hi < lo:
            raise VolumeError(f"annotated slices: empty range {text!r} (write the lower slice first, e.g. {hi}-{lo})")
    bad = [z for z in items if not 0 <= z < n_slices]
    if bad:
        raise VolumeError(f"annotated slice {bad[0]} is outside 0..{n_slices - 1}")
    mask[items] = True
    return mask


def read_sample_files(
    name: str,
    image: str | os.PathLike,
    *,
    markers: Sequence[str] | str | None = None,
    labels: Mapping[str, str | os.PathLike] | None = None,
    annotated: str | Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    region: str | None = None,
    axes: str | None = None,
) -> Sample:
    """Read an image and its label files into an in-memory :class:`Sample` (small data; large stacks:
    :func:`open_sample_files` + :meth:`SampleStore.create_sample`)."""
    with open_sample_files(
        image, markers=markers, labels=labels, annotated=annotated, spacing=spacing, axes=axes
    ) as files:
        vol = files.image
        img = np.empty(vol.shape_czyx, dtype=np.float32)
        labs = {c: np.zeros(vol.shape_zyx, dtype=np.uint8) for c in files.labels}
        for z in range(vol.shape_zyx[0]):
            img[:, z], slice_labels = files.read_slice(z)
            for c, lab in slice_labels.items():
                labs[c][z] = lab
        return Sample(name, img, vol.markers, vol.spacing, labs, files.annotated.copy(), region)
