"""The sample store: one HDF5 file, one group per sample, chunked by slice (schema in docs/data.md).

A whole-organ stack is never loaded whole: samples are written slice by slice through
:meth:`SampleStore.create_sample` (or all at once with :meth:`SampleStore.write_sample`) and read slice
by slice with :meth:`SampleStore.read_slice`. Per-channel mean/std (streaming, float64) and class
voxel counts on annotated slices are computed while writing and kept in the file.

New store files are written to a temporary sibling and renamed into place when closed without error;
in ``"a"`` mode a sample that fails half-way is deleted again, so existing samples are never harmed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import h5py
import numpy as np

from marker_excite.atomic import check_output_path, temporary_sibling
from marker_excite.atomic import commit as commit_file
from marker_excite.data.sample import Sample
from marker_excite.data.stats import RunningStats
from marker_excite.errors import UserInputError

#: Value of the root attribute ``format`` of every store file.
STORE_FORMAT = "marker_excite.SampleStore"
#: Schema version written by this code (root attribute ``version``).
SCHEMA_VERSION = 1
#: At most this many label classes per sample (counts are kept per combination of classes).
MAX_CLASSES = 8
_MAX_CHUNK_SIDE = 4096


class StoreError(UserInputError):
    """A store file, sample or slice that cannot be read or written as asked."""


@dataclass(frozen=True)
class SampleInfo:
    """Metadata and statistics of one stored sample (cheap: no voxel data).

    ``class_counts`` holds, over the voxels of the ANNOTATED slices: the voxel count of every stored
    label class, ``"background"`` (voxels with no label at all, counted per voxel), ``"annotated_voxels"``
    and ``"voxels"`` (all voxels of the sample). :meth:`counts_for` gives exact counts for a class
    selection (background = voxels with none of the selected classes).
    """

    name: str
    markers: tuple[str, ...]
    spacing: tuple[float, float, float]
    shape_zyx: tuple[int, int, int]
    region: str | None
    annotated: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    classes: tuple[str, ...]
    label_patterns: np.ndarray
    dtype: str
    attrs: dict = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return len(self.markers)

    @property
    def annotated_slices(self) -> list[int]:
        """Indices of the annotated slices."""
        return [int(z) for z in np.flatnonzero(self.annotated)]

    @property
    def class_counts(self) -> dict[str, int]:
        z, y, x = self.shape_zyx
        codes = np.arange(self.label_patterns.size)
        out = {c: int(self.label_patterns[(codes >> i) & 1 == 1].sum()) for i, c in enumerate(self.classes)}
        out["background"] = int(self.label_patterns[0])
        out["annotated_voxels"] = int(self.label_patterns.sum())
        out["voxels"] = int(z * y * x)
        return out

    def counts_for(self, classes: Sequence[str]) -> np.ndarray:
        """Voxel counts ``[1 + C]`` on annotated slices for a class selection (index 0 = background).

        Uses the same rule as the label maps: where selected classes overlap, the later one wins.
        """
        idx = [self.class_index(c) for c in classes]
        out = np.zeros(1 + len(idx), dtype=np.int64)
        for code, n in enumerate(self.label_patterns):
            target = 0
            for k, bit in enumerate(idx, start=1):
                if (code >> bit) & 1:
                    target = k
            out[target] += int(n)
        return out

    def class_index(self, cls: str) -> int:
        """Position of a label class in this sample; :class:`StoreError` if it has no such labels."""
        for i, c in enumerate(self.classes):
            if c.lower() == cls.lower():
                return i
        raise StoreError(
            f"sample {self.name!r} has no labels for class {cls!r}; it has {', '.join(self.classes) or 'no labels'}"
        )


class SampleWriter:
    """Writes one sample slice by slice; :meth:`finalize` stores statistics and marks it complete.

    Use as a context manager: on an exception the partial sample is deleted again.
    """

    def __init__(self, store: "SampleStore", group: h5py.Group, markers: tuple[str, ...], classes: tuple[str, ...]):
        self._store = store
        self._group = group
        self.name = group.name.strip("/")
        self.markers = markers
        self.classes = classes
        self._image = group["image"]
        self.shape_zyx: tuple[int, int, int] = tuple(self._image.shape[1:])  # type: ignore[assignment]
        self._written = np.zeros(self.shape_zyx[0], dtype=bool)
        self._annotated = np.zeros(self.shape_zyx[0], dtype=bool)
        self._stats = RunningStats(len(markers))
        self._patterns = np.zeros(2 ** len(classes), dtype=np.int64)
        self._done = False

    def write_slice(
        self,
        z: int,
        image: np.ndarray,
        labels: Mapping[str, np.ndarray] | None = None,
        annotated: bool | None = None,
    ) -> None:
        """Write slice ``z``: ``image [C, Y, X]`` and optional binary ``labels {class: [Y, X]}``.

        ``annotated`` (default: whether labels are given) says whether the slice was annotated; only
        annotated slices feed the class counts and, later, training and evaluation.
        """
        if self._done:
            raise StoreError(f"sample {self.name!r} is already finalised")
        nz, ny, nx = self.shape_zyx
        if not 0 <= z < nz:
            raise StoreError(f"sample {self.name!r}: slice {z} outside 0..{nz - 1}")
        if self._written[z]:
            raise StoreError(f"sample {self.name!r}: slice {z} written twice")
        image = np.asarray(image)
        expected = (len(self.markers), ny, nx)
        if image.shape != expected:
            raise StoreError(f"sample {self.name!r} slice {z}: image shape {image.shape}, expected {expected} (C, Y, X)")
        if np.issubdtype(image.dtype, np.floating):
            bad = ~np.isfinite(image).reshape(image.shape[0], -1).all(axis=1)
            if bad.any():
                names = ", ".join(m for m, b in zip(self.markers, bad) if b)
                raise StoreError(f"sample {self.name!r}: NaN/Inf voxels in marker(s) {names} at slice {z}")
        stored = image.astype(self._image.dtype, copy=False)
        self._image[:, z] = stored
        self._stats.update(stored)
        if annotated is None:
            annotated = labels is not None
        masks = self._check_labels(z, labels or {}, require_all=bool(annotated))
        for cls, mask in masks.items():
            self._group["labels"][cls][z] = mask
        if annotated:
            code = np.zeros((ny, nx), dtype=np.int64)
            for i, cls in enumerate(self.classes):
                code |= masks[cls].astype(np.int64) << i
            self._patterns += np.bincount(code.ravel(), minlength=self._patterns.size)
        self._annotated[z] = bool(annotated)
        self._written[z] = True

    def _check_labels(self, z: int, labels: Mapping[str, np.ndarray], require_all: bool) -> dict[str, np.ndarray]:
        known = {c.lower(): c for c in self.classes}
        out: dict[str, np.ndarray] = {}
        for cls, lab in labels.items():
            if cls.lower() not in known:
                raise StoreError(
                    f"sample {self.name!r}: label class {cls!r} was not declared (declared: {', '.join(self.classes) or 'none'})"
                )
            lab = np.asarray(lab)
            if lab.shape != self.shape_zyx[1:]:
                raise StoreError(
                    f"sample {self.name!r} slice {z}: label {cls!r} has shape {lab.shape}, image slice is {self.shape_zyx[1:]}"
                )
            out[known[cls.lower()]] = (lab != 0).astype(np.uint8)
        missing = [c for c in self.classes if c not in out]
        if require_all and missing:
            raise StoreError(f"sample {self.name!r}: annotated slice {z} has no label for class(es) {', '.join(missing)}")
        return out

    def finalize(self) -> SampleInfo:
        """Check that every slice was written, store statistics and mark the sample complete."""
        if self._done:
            return self._store.info(self.name)
        missing = np.flatnonzero(~self._written)
        if missing.size:
            shown = ", ".join(str(int(z)) for z in missing[:10])
            raise StoreError(f"sample {self.name!r}: slice(s) {shown} were never written ({missing.size} missing)")
        g = self._group
        g.create_dataset("annotated", data=self._annotated.astype(np.uint8))
        g.create_dataset("label_patterns", data=self._patterns)
        g.attrs["mean"] = self._stats.mean
        g.attrs["std"] = self._stats.std
        g.attrs["complete"] = True
        self._store._file.flush()
        self._done = True
        return self._store.info(self.name)

    def abort(self) -> None:
        """Delete the partial sample from the store."""
        if not self._done and self.name in self._store._file:
            del self._store._file[self.name]
            self._store._file.flush()
        self._done = True

    def __enter__(self) -> "SampleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.finalize()


class SampleStore:
    """HDF5 file holding samples (schema version :data:`SCHEMA_VERSION`, see docs/data.md).

    Modes: ``"r"`` read; ``"w"`` create a new file (replacing any existing one when closed without
    error); ``"a"`` add to an existing store (or create one). Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r") -> None:
        if mode not in ("r", "w", "a"):
            raise StoreError(f"store mode must be 'r', 'w' or 'a', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self._tmp: Path | None = None
        self._infos: dict[str, SampleInfo] = {}
        if mode == "r" or (mode == "a" and self.path.exists()):
            if not self.path.is_file():
                raise StoreError(f"store {self.path} does not exist")
            self._file = _open_h5(self.path, "r" if mode == "r" else "r+")
            self._check_format()
        else:
            final = check_output_path(self.path, overwrite=True)
            self._tmp = temporary_sibling(final)
            self._file = h5py.File(self._tmp, "w")
            self._file.attrs["format"] = STORE_FORMAT
            self._file.attrs["version"] = SCHEMA_VERSION

    def _check_format(self) -> None:
        fmt = _as_str(self._file.attrs.get("format", ""))
        if fmt != STORE_FORMAT:
            self._file.close()
            raise StoreError(f"{self.path} is an HDF5 file but not a marker_excite sample store (no format attribute)")
        version = int(self._file.attrs.get("version", 0))
        if version > SCHEMA_VERSION:
            self._file.close()
            raise StoreError(
                f"store {self.path} has schema version {version}; this marker_excite reads up to {SCHEMA_VERSION}"
            )

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self, commit: bool = True) -> None:
        """Close the file; a new store file is renamed into place only if ``commit``."""
        if not self._file.id.valid:
            return
        self._file.close()
        if self._tmp is not None:
            if commit:
                commit_file(self._tmp, self.path)
            elif self._tmp.exists():
                self._tmp.unlink()
            self._tmp = None

    def __enter__(self) -> "SampleStore":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)

    def __del__(self) -> None:
        try:
            if self._tmp is not None and self._file.id.valid:
                self.close(commit=False)
        except Exception:  # noqa: BLE001 - best effort at interpreter shutdown
            pass

    # -- writing -------------------------------------------------------------------------------
    def create_sample(
        self,
        name: str,
        *,
        markers: Sequence[str],
        shape_zyx: Sequence[int],
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        classes: Sequence[str] = (),
        region: str | None = None,
        dtype: np.dtype | str = np.float32,
        attrs: Mapping[str, object] | None = None,
        overwrite: bool = False,
        compression: str | None = None,
    ) -> SampleWriter:
        """Start writing a sample slice by slice; returns a :class:`SampleWriter`.

        The empty sample (validated metadata, chunked datasets) is created at once; write every slice
        with :meth:`SampleWriter.write_slice` and call :meth:`SampleWriter.finalize` (or use the writer
        as a context manager).
        """
        if self.mode == "r":
            raise StoreError(f"store {self.path} is open read-only")
        shape = tuple(int(s) for s in shape_zyx)
        markers = tuple(str(m) for m in markers)
        classes = tuple(str(c) for c in classes)
        # Sample's own validation of names, markers, spacing (on a 1-voxel stand-in image).
        Sample(name=name, image=np.zeros((len(markers), 1, 1, 1), np.float32), markers=markers, spacing=tuple(spacing))
        if len(shape) != 3 or min(shape) < 1:
            raise StoreError(f"sample {name!r}: shape must be 3 positive sizes (Z, Y, X), got {shape}")
        if len(classes) > MAX_CLASSES or len({c.lower() for c in classes}) != len(classes):
            raise StoreError(f"sample {name!r}: label classes must be unique and at most {MAX_CLASSES}, got {list(classes)}")
        if name in self._file:
            if overwrite or not self._file[name].attrs.get("complete", False):
                del self._file[name]
                self._infos.pop(name, None)
            else:
                raise StoreError(f"sample {name!r} already exists in store {self.path} (use overwrite to replace it)")
        _, ny, nx = shape
        g = self._file.create_group(name)
        try:
            g.attrs["markers"] = np.array(markers, dtype=h5py.string_dtype())
            g.attrs["spacing"] = np.asarray(spacing, dtype=np.float64)
            g.attrs["region"] = region or ""
            g.attrs["classes"] = np.array(classes, dtype=h5py.string_dtype())
            g.attrs["attrs"] = json.dumps(dict(attrs or {}), default=str)
            g.attrs["complete"] = False
            chunk_yx = (min(ny, _MAX_CHUNK_SIDE), min(nx, _MAX_CHUNK_SIDE))
            g.create_dataset(
                "image", shape=(len(markers), *shape), dtype=np.dtype(dtype), chunks=(1, 1, *chunk_yx), compression=compression
            )
            lg = g.create_group("labels")
            for cls in classes:
                lg.create_dataset(cls, shape=shape, dtype=np.uint8, chunks=(1, *chunk_yx), compression=compression or "gzip")
        except Exception:
            del self._file[name]
            raise
        return SampleWriter(self, g, markers, classes)

    def write_sample(self, sample: Sample, overwrite: bool = False, compression: str | None = None) -> SampleInfo:
        """Write an in-memory :class:`Sample` (slice by slice); returns its :class:`SampleInfo`."""
        sample.validate()
        classes = tuple(sample.labels)
        writer = self.create_sample(
            sample.name,
            markers=sample.markers,
            shape_zyx=sample.shape_zyx,
            spacing=sample.spacing,
            classes=classes,
            region=sample.region,
            dtype=sample.image.dtype,
            attrs=sample.attrs,
            overwrite=overwrite,
            compression=compression,
        )
        with writer:
            assert sample.annotated is not None
            for z in range(sample.shape_zyx[0]):
                labels = {c: sample.labels[c][z] for c in classes} if classes else None
                writer.write_slice(z, sample.image[:, z], labels, annotated=bool(sample.annotated[z]))
        return self.info(sample.name)

    def remove(self, name: str) -> None:
        """Delete a sample (mode ``"a"`` or ``"w"``)."""
        if self.mode == "r":
            raise StoreError(f"store {self.path} is open read-only")
        self._group(name)
        del self._file[name]
        self._infos.pop(name, None)

    # -- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names of the complete samples, sorted."""
        return sorted(k for k, g in self._file.items() if isinstance(g, h5py.Group) and g.attrs.get("complete", False))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def _group(self, name: str) -> h5py.Group:
        g = self._file.get(name)
        if not isinstance(g, h5py.Group) or not g.attrs.get("complete", False):
            have = ", ".join(self.names()) or "no samples"
            raise StoreError(f"sample {name!r} is not in store {self.path}; it has {have}")
        return g

    def info(self, name: str) -> SampleInfo:
        """Metadata and statistics of a sample (cached)."""
        if name not in self._infos:
            g = self._group(name)
            attrs_text = _as_str(g.attrs.get("attrs", "{}"))
            self._infos[name] = SampleInfo(
                name=name,
                markers=_str_tuple(g.attrs["markers"]),
                spacing=tuple(float(s) for s in g.attrs["spacing"]),  # type: ignore[arg-type]
                shape_zyx=tuple(int(s) for s in g["image"].shape[1:]),  # type: ignore[arg-type]
                region=_as_str(g.attrs.get("region", "")) or None,
                annotated=np.asarray(g["annotated"][()], dtype=bool),
                mean=np.asarray(g.attrs["mean"], dtype=np.float64),
                std=np.asarray(g.attrs["std"], dtype=np.float64),
                classes=_str_tuple(g.attrs["classes"]),
                label_patterns=np.asarray(g["label_patterns"][()], dtype=np.int64),
                dtype=str(g["image"].dtype),
                attrs=json.loads(attrs_text),
            )
        return self._infos[name]

    def read_slice(self, name: str, z: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Slice ``z`` of a sample: ``(image [C, Y, X] float32, {class: [Y, X] uint8})``."""
        g = self._group(name)
        nz = g["image"].shape[1]
        if not 0 <= int(z) < nz:
            raise StoreError(f"sample {name!r}: slice {z} outside 0..{nz - 1}")
        image = _read(g["image"], (slice(None), int(z)), self.path).astype(np.float32, copy=False)
        labels = {c: _read(ds, int(z), self.path) for c, ds in g["labels"].items()}
        return image, labels

    def read_sample(self, name: str) -> Sample:
        """The whole sample in memory (small samples only; large ones: :meth:`read_slice`)."""
        info = self.info(name)
        g = self._group(name)
        return Sample(
            name=name,
            image=_read(g["image"], (), self.path),
            markers=info.markers,
            spacing=info.spacing,
            labels={c: _read(g["labels"][c], (), self.path) for c in info.classes},
            annotated=info.annotated.copy(),
            region=info.region,
            attrs=dict(info.attrs),
        )

    def infos(self, names: Iterable[str] | None = None) -> list[SampleInfo]:
        """:class:`SampleInfo` of the given (default: all) samples."""
        return [self.info(n) for n in (self.names() if names is None else names)]


def _open_h5(path: Path, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise StoreError(f"cannot open {path} as HDF5 (corrupt, truncated or not HDF5): {exc}") from None


def _read(ds: h5py.Dataset, key, path: Path) -> np.ndarray:
    try:
        return ds[key]
    except OSError as exc:
        raise StoreError(f"cannot read {ds.name} from {path} (corrupt or truncated file): {exc}") from None


def _as_str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _str_tuple(values: Iterable[object]) -> tuple[str, ...]:
    return tuple(_as_str(v) for v in values)
