"""The in-memory unit of data: one microscopy sample with its markers, spacing and labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from marker_excite.contract.markers import duplicated_names
from marker_excite.errors import UserInputError

#: Vessel classes of the paper, in the order used for class indices (background is index 0).
PAPER_CLASSES: tuple[str, ...] = ("sinusoids", "arteries")
#: Label name of the tissue mask (an extra class used for quantification, not a vessel class).
TISSUE = "tissue"


class SampleError(UserInputError):
    """A sample whose arrays or metadata are inconsistent."""


@dataclass
class Sample:
    """One sample: image (C, Z, Y, X), the marker name of each channel, spacing and labels.

    Attributes:
        name: unique identifier (used as the HDF5 group name).
        image: array (C, Z, Y, X); a 2D image is stored with Z = 1.
        markers: marker name of each channel, any subset of a panel, any order.
        spacing: voxel size (z, y, x) in micrometres.
        labels: class name -> (Z, Y, X) binary mask (``"sinusoids"``, ``"arteries"``, optionally ``"tissue"``).
        annotated: (Z,) bool, which slices carry labels (all False when ``labels`` is empty).
        region: optional anatomical region, e.g. ``"diaphysis"`` / ``"metaphysis"``.
        attrs: free-form extra metadata (strings / numbers), kept by the store.
    """

    name: str
    image: np.ndarray
    markers: tuple[str, ...]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    annotated: np.ndarray | None = None
    region: str | None = None
    attrs: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.markers = tuple(str(m) for m in self.markers)
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        if self.annotated is None:
            self.annotated = np.full(self.shape_zyx[0] if self.image.ndim == 4 else 0, bool(self.labels))
        self.annotated = np.asarray(self.annotated, dtype=bool)
        self.validate()

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape[1:])  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        return int(self.image.shape[0])

    def validate(self, check_finite: bool = True) -> None:
        """Raise :class:`SampleError` naming the problem if anything is inconsistent."""
        if not self.name or "/" in self.name:
            raise SampleError(f"sample name {self.name!r} must be non-empty and contain no '/'")
        if self.image.ndim != 4:
            raise SampleError(f"sample {self.name!r}: image must be (C, Z, Y, X), got shape {self.image.shape}")
        if len(self.markers) != self.image.shape[0]:
            raise SampleError(
                f"sample {self.name!r}: {self.image.shape[0]} channels but {len(self.markers)} marker names {list(self.markers)}"
            )
        if len(self.markers) == 0:
            raise SampleError(f"sample {self.name!r}: empty marker set")
        dups = duplicated_names(self.markers)
        if dups:
            raise SampleError(f"sample {self.name!r}: marker given twice: {', '.join(dups)}")
        if len(self.spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise SampleError(f"sample {self.name!r}: spacing must be 3 positive numbers (z, y, x), got {self.spacing}")
        if check_finite and np.issubdtype(self.image.dtype, np.floating) and not np.isfinite(self.image).all():
            bad = [self.markers[c] for c in range(self.n_channels) if not np.isfinite(self.image[c]).all()]
            raise SampleError(f"sample {self.name!r}: NaN/Inf voxels in marker(s) {', '.join(bad)}")
        for cls, lab in self.labels.items():
            if lab.shape != self.shape_zyx:
                raise SampleError(
                    f"sample {self.name!r}: label {cls!r} has shape {lab.shape}, image is {self.shape_zyx} (Z, Y, X)"
                )
        assert self.annotated is not None
        if self.annotated.shape != (self.shape_zyx[0],):
            raise SampleError(
                f"sample {self.name!r}: annotated mask has shape {self.annotated.shape}, expected ({self.shape_zyx[0]},)"
            )

    def with_markers(self, keep: Mapping[str, bool] | tuple[str, ...]) -> Sample:
        """A copy restricted to the given marker names (order of this sample kept)."""
        names = tuple(keep) if not isinstance(keep, Mapping) else tuple(k for k, v in keep.items() if v)
        low = [m.lower() for m in self.markers]
        missing = [n for n in names if n.lower() not in low]
        if missing:
            raise SampleError(
                f"sample {self.name!r} has no marker(s) {', '.join(missing)}; it has {', '.join(self.markers)}"
            )
        idx = [i for i, m in enumerate(self.markers) if m.lower() in {n.lower() for n in names}]
        return Sample(
            name=self.name,
            image=self.image[idx],
            markers=tuple(self.markers[i] for i in idx),
            spacing=self.spacing,
            labels=self.labels,
            annotated=self.annotated,
            region=self.region,
            attrs=dict(self.attrs),
        )
