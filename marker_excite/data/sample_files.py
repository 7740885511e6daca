"""An image stack and its label files, validated against each other, for ``marker-excite import``."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from marker_excite.config import split_list
from marker_excite.data.io import VolumeError, VolumeReader, open_volume, source_file
from marker_excite.data.sample import Sample
from marker_excite.data.store import check_item_name


@dataclass
class LabelFile:
    """An opened label file: the mask of one class, or a label map giving several classes a value each.

    A mask holds 0 and one other value throughout (0/1, 0/255, ...; non-zero = the class); a second
    non-zero value is refused, since it means the file is a label map (or instance labels) whose
    classes would silently merge. A label map's voxels are 0 (background) or one of its classes'
    values; a value given no class is refused.

    Attributes:
        reader: the single-channel volume.
        values: class -> voxel value for a label map; ``{class: None}`` for a mask.
    """

    reader: VolumeReader
    values: dict[str, float | None]
    _foreground: float | None = None  # a mask's non-zero value, from the first slice holding one

    @property
    def is_map(self) -> bool:
        return any(v is not None for v in self.values.values())

    @property
    def role(self) -> str:
        """``label map PATH`` or ``label file PATH for 'CLASS'``, for messages."""
        return (
            f"label map {self.reader.path}"
            if self.is_map
            else f"label file {self.reader.path} for {next(iter(self.values))!r}"
        )

    def read_slice(self, z: int) -> dict[str, np.ndarray]:
        """``{class: [Y, X] uint8 0/1}`` of slice ``z``; :class:`VolumeError` for values outside the rule."""
        data = self.reader.read_slice(z)[0]
        if self.is_map:
            known = np.isin(data, [0.0, *self.values.values()])
            if not known.all():
                mapping = ",".join(f"{c}:{v:g}" for c, v in self.values.items())
                raise VolumeError(
                    f"{self.role} has the value {data[~known][0]:g} at slice {z}, which "
                    f"--label-map ...={mapping} gives no class (0 is background; give every value a class)"
                )
            return {c: (data == v).astype(np.uint8) for c, v in self.values.items()}
        (cls,) = self.values
        foreground = data[data != 0]
        if foreground.size:
            first = foreground[0] if self._foreground is None else self._foreground
            other = foreground[foreground != first]
            if other.size:
                raise VolumeError(
                    f"{self.role} is not a mask: it holds the non-zero values "
                    f"{first:g} and {other[0]:g} (by slice {z}); a class's label file holds 0 and one other value "
                    f"(e.g. 0/1 or 0/255). For a label map with one value per class (as predict --labels "
                    f"writes), use --label-map {self.reader.path}=CLASS:VALUE,... e.g. sinusoids:1,arteries:2"
                )
            self._foreground = first
        return {cls: (data != 0).astype(np.uint8)}


@dataclass
class SampleFiles:
    """An image volume with its label files, validated against each other, read slice by slice."""

    image: VolumeReader
    label_files: list[LabelFile] = field(default_factory=list)
    annotated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return self.image.shape_zyx

    @property
    def classes(self) -> tuple[str, ...]:
        """The label classes, in the order given (masks, then label maps' classes)."""
        return tuple(c for f in self.label_files for c in f.values)

    def read_labels(self, z: int) -> dict[str, np.ndarray]:
        """``{class: [Y, X] uint8 0/1}`` of slice ``z`` (checked by each :class:`LabelFile`)."""
        return {c: m for f in self.label_files for c, m in f.read_slice(z).items()}

    def read_slice(self, z: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(image [C, Y, X] float32, {class: [Y, X] uint8})`` of slice ``z``."""
        return self.image.read_slice(z), self.read_labels(z)

    def close(self) -> None:
        self.image.close()
        for f in self.label_files:
            f.reader.close()

    def __enter__(self) -> SampleFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_sample_files(
    image: str | os.PathLike,
    *,
    markers: Sequence[str] | str | None = None,
    labels: Mapping[str, str | os.PathLike] | None = None,
    label_maps: Mapping[str | os.PathLike, Mapping[str, float]] | None = None,
    annotated: str | Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    axes: str | None = None,
) -> SampleFiles:
    """Open an image file and its label files lazily: ``labels`` gives one mask file per class,
    ``label_maps`` label map files with a voxel value per class (``{"map.tif": {"sinusoids": 1,
    "arteries": 2}}``). A file serves one role only: the same file for two classes, or as a mask and
    a map, is refused.

    ``annotated``: ``"all"``, slice indices (``"0,3,5-8"`` or a list), or None = the slices where any
    label is non-zero. Raises :class:`VolumeError` when label shapes do not match the image.
    """
    wanted = [(path, {cls: None}) for cls, path in (labels or {}).items()]
    wanted += [
        (path, {c: _map_value(path, c, v) for c, v in mapping.items()}) for path, mapping in (label_maps or {}).items()
    ]
    _check_label_files(wanted)
    vol = open_volume(image, markers=markers, spacing=spacing, axes=axes)
    files = SampleFiles(vol)
    try:
        for lpath, values in wanted:
            label = LabelFile(open_volume(lpath), dict(values))
            files.label_files.append(label)
            shape = label.reader.shape_czyx
            if shape[0] != 1:
                raise VolumeError(f"{label.role} has {shape[0]} channels; expected one")
            if shape[1:] != vol.shape_zyx:
                raise VolumeError(
                    f"shape mismatch: {label.role} is {shape[1:]} (Z, Y, X) but image {vol.path} is {vol.shape_zyx}"
                )
        files.annotated = parse_annotated(annotated, vol.shape_zyx[0], files)
        return files
    except BaseException:
        files.close()
        raise


def _map_value(path, cls: str, value) -> float:
    """A label map's value for ``cls``: a positive number (0 is background)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and number > 0):
        raise VolumeError(
            f"label map {path}: value {value!r} of class {cls!r} must be a positive number (0 is background)"
        )
    return number


def _check_label_files(wanted: Sequence[tuple[str | os.PathLike, Mapping[str, float | None]]]) -> None:
    """Valid class names, each class once, each label file (or dataset of a file) in one role, each map
    value once: checked before any file is read."""
    seen_classes: set[str] = set()
    seen_files: dict[tuple, str] = {}
    for path, values in wanted:
        for cls in values:
            check_item_name(cls, "label class")
            if cls in seen_classes:
                raise VolumeError(f"label class {cls!r} given twice")
            seen_classes.add(cls)
        mapped = [v for v in values.values() if v is not None]
        if len(set(mapped)) < len(mapped):
            raise VolumeError(f"label map {path}: two classes have the same value ({values})")
        key = _file_key(path)
        names = ", ".join(repr(c) for c in values)
        if key is not None and key in seen_files:
            raise VolumeError(
                f"label file {path} is given twice (for {seen_files[key]} and {names}): a class's label file is "
                f"a mask of that class; for one label map holding several classes use --label-map {path}=CLASS:VALUE,... "
                "e.g. sinusoids:1,arteries:2"
            )
        if key is not None:
            seen_files[key] = names


def _file_key(path: str | os.PathLike) -> tuple | None:
    """What identifies a label input: the file (device, inode) and the dataset named inside it, if any
    (``a.h5:x`` and ``a.h5:y`` are two inputs); None when the file does not exist (reported on opening)."""
    file = source_file(path)
    try:
        st = os.stat(file)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, str(path)[len(str(file)) :])


def parse_annotated(spec: str | Sequence[int] | None, n_slices: int, files: SampleFiles | None = None) -> np.ndarray:
    """Annotated-slice mask ``(Z,)`` from ``"all"``, ``"0,3,5-8"``, a list of indices, or None (auto)."""
    mask = np.zeros(n_slices, dtype=bool)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        if files is None or not files.label_files:
            return mask
        for z in range(n_slices):
            mask[z] = any(m.any() for m in files.read_labels(z).values())
        return mask
    if isinstance(spec, str) and spec.strip().lower() == "all":
        mask[:] = True
        return mask
    items: list[int] = []
    parts = split_list(spec, what="annotated slices", error=VolumeError) if isinstance(spec, str) else list(spec)
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
    label_maps: Mapping[str | os.PathLike, Mapping[str, float]] | None = None,
    annotated: str | Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    region: str | None = None,
    axes: str | None = None,
) -> Sample:
    """Read an image and its label files into an in-memory :class:`Sample` (small data; large stacks:
    :func:`open_sample_files` + :meth:`SampleStore.create_sample`)."""
    with open_sample_files(
        image, markers=markers, labels=labels, label_maps=label_maps, annotated=annotated, spacing=spacing, axes=axes
    ) as files:
        vol = files.image
        img = np.empty(vol.shape_czyx, dtype=np.float32)
        labs = {c: np.zeros(vol.shape_zyx, dtype=np.uint8) for c in files.classes}
        for z in range(vol.shape_zyx[0]):
            img[:, z], slice_labels = files.read_slice(z)
            for c, lab in slice_labels.items():
                labs[c][z] = lab
        return Sample(name, img, vol.markers, vol.spacing, labs, files.annotated.copy(), region)
