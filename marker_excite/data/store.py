"""The sample store: an HDF5 index file plus one HDF5 file per sample (schema in docs/data.md).

A whole-organ stack is never loaded whole: samples are written slice by slice through
:meth:`SampleStore.create_sample` (or all at once with :meth:`SampleStore.write_sample`) and read slice
by slice with :meth:`SampleStore.read_slice`, or as a volume like any image file with
:meth:`SampleStore.volume` (what :func:`~marker_excite.data.io.open_volume` returns for
``store.h5:sample``). Per-channel mean/std (streaming, float64) and class voxel counts on annotated
slices are computed while writing and kept with the sample.

Nothing already stored is ever at risk while writing: a sample is written completely into a temporary
file of its own and becomes visible only when a new index naming it replaces the old index by an
atomic rename (under an exclusive lock, so concurrent writers both land). A failure of any kind
(exception, disk full, kill) leaves the previous index and every sample it names untouched; an
overwrite replaces the old sample's file only once the new one is complete. Old single-file stores
(schema version 1) are read as they are and converted to an index on the first write (the old file
is kept, hard-linked into the sample folder, so nothing is copied).

A sample folder belongs to one store: the index records a store id (a UUID), the folder records the
id of the store that created (or claimed) it, and a writer deletes an unlisted file of the folder only
if the folder is its own AND no other index next to it (a copy or a renamed version) lists the file.
``sample_dir`` must be a plain folder name next to the index.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from marker_excite.atomic import (
    atomic_path,
    check_output_path,
    exclusive_lock,
    remove_stale_temporaries,
    temporary_sibling,
)
from marker_excite.atomic import commit as commit_file
from marker_excite.data.hdf5_io import StoreVolume
from marker_excite.data.sample import Sample
from marker_excite.data.stats import RunningStats
from marker_excite.data.volume import VolumeError
from marker_excite.errors import UserInputError, did_you_mean, os_error_text

#: Value of the root attribute ``format`` of every store index (and of every sample file).
STORE_FORMAT = "marker_excite.SampleStore"
#: Schema version written by this code (root attribute ``version`` of the index).
SCHEMA_VERSION = 2
#: Schema version of a sample file (and of old single-file stores): groups holding the samples.
SAMPLE_FILE_VERSION = 1
#: At most this many label classes per sample (counts are kept per combination of classes).
MAX_CLASSES = 8
#: Seconds a writer waits for another process to finish updating the index.
LOCK_TIMEOUT_S = 60.0
#: Name of the index dataset (JSON text) in a version-2 index file.
INDEX_DATASET = "index"
_LOCK_NAME = ".lock"
#: File in a sample folder naming the id of the store that owns the folder (see :func:`folder_owner`).
OWNER_FILE = ".store-id"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TEMP_BASE = "sample.h5"
_MAX_CHUNK_SIDE = 4096


class StoreError(UserInputError):
    """A store file, sample or slice that cannot be read or written as asked."""


def check_item_name(name: str, what: str) -> str:
    """Refuse sample / class names that cannot be HDF5 names: empty, ``.``, ``..``, ``/`` or control characters."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or name in (".", "..")
        or "/" in name
        or re.search(r"[\x00-\x1f]", name)
    ):
        raise StoreError(
            f"{what} name {name!r} must be non-empty, not '.' or '..', and contain no '/' or control characters"
        )
    return name


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
            f"sample {self.name!r} has no labels for class {cls!r}{did_you_mean(cls, self.classes)}; "
            f"it has {', '.join(self.classes) or 'no labels'}"
        )


class SampleWriter:
    """Writes one sample slice by slice into a temporary file of its own; :meth:`finalize` stores the
    statistics and adds the complete sample to the store.

    Use as a context manager: on an exception the temporary file is removed and the store is unchanged.
    """

    def __init__(
        self,
        store: SampleStore,
        tmp: Path,
        h5: h5py.File,
        name: str,
        markers: tuple[str, ...],
        classes: tuple[str, ...],
        overwrite: bool,
    ) -> None:
        self._store = store
        self._tmp = tmp
        self._h5 = h5
        self._group = h5[name]
        self._overwrite = overwrite
        self.name = name
        self.markers = markers
        self.classes = classes
        # every dataset handle is held until the file is flushed: HDF5 flushes a dataset when its last
        # handle goes, and a flush failing there (full disk) cannot be handled (see _discard_writes)
        self._image = self._group["image"]
        self._labels = {cls: self._group["labels"][cls] for cls in classes}
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
            raise StoreError(
                f"sample {self.name!r} slice {z}: image shape {image.shape}, expected {expected} (C, Y, X)"
            )
        if np.issubdtype(image.dtype, np.floating):
            bad = ~np.isfinite(image).reshape(image.shape[0], -1).all(axis=1)
            if bad.any():
                names = ", ".join(m for m, b in zip(self.markers, bad) if b)
                raise StoreError(f"sample {self.name!r}: NaN/Inf voxels in marker(s) {names} at slice {z}")
        if annotated is None:
            annotated = labels is not None
        masks = self._check_labels(z, labels or {}, require_all=bool(annotated))
        stored = image.astype(self._image.dtype, copy=False)
        with self._write_errors():
            self._image[:, z] = stored
            for cls, mask in masks.items():
                self._labels[cls][z] = mask
        self._stats.update(stored)
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
                    f"sample {self.name!r}: label class {cls!r}{did_you_mean(cls, self.classes)} was not declared "
                    f"(declared: {', '.join(self.classes) or 'none'})"
                )
            lab = np.asarray(lab)
            if lab.shape != self.shape_zyx[1:]:
                raise StoreError(
                    f"sample {self.name!r} slice {z}: label {cls!r} has shape {lab.shape}, image slice is {self.shape_zyx[1:]}"
                )
            out[known[cls.lower()]] = (lab != 0).astype(np.uint8)
        missing = [c for c in self.classes if c not in out]
        if require_all and missing:
            raise StoreError(
                f"sample {self.name!r}: annotated slice {z} has no label for class(es) {', '.join(missing)}"
            )
        return out

    @contextlib.contextmanager
    def _write_errors(self) -> Iterator[None]:
        """Turn a failing write (disk full, I/O error) into one :class:`StoreError`; the store is unchanged.

        h5py reports some failing flushes (a full disk included) as RuntimeError, with the errno in the text.
        """
        try:
            yield
        except (OSError, RuntimeError) as exc:
            self.abort()
            reason = os_error_text(exc if isinstance(exc, OSError) else OSError(str(exc)))
            raise StoreError(
                f"writing sample {self.name!r} to store {self._store.path} failed: {reason}; the store is unchanged"
            ) from None

    def finalize(self) -> SampleInfo:
        """Check that every slice was written, store statistics and add the complete sample to the store."""
        if self._done:
            return self._store.info(self.name)
        missing = np.flatnonzero(~self._written)
        if missing.size:
            shown = ", ".join(str(int(z)) for z in missing[:10])
            raise StoreError(f"sample {self.name!r}: slice(s) {shown} were never written ({missing.size} missing)")
        with self._write_errors():
            g = self._group
            written = [
                g.create_dataset("annotated", data=self._annotated.astype(np.uint8)),
                g.create_dataset("label_patterns", data=self._patterns),
            ]
            g.attrs["mean"] = self._stats.mean
            g.attrs["std"] = self._stats.std
            g.attrs["complete"] = True
            self._h5.flush()  # a full disk fails here, where the file can still be abandoned safely
            del written
            self._h5.close()
            _fsync(self._tmp)
        self._done = True
        self._store._writers.discard(self)
        try:
            self._store._add_sample(self.name, self._tmp, self._overwrite)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        return self._store.info(self.name)

    def abort(self) -> None:
        """Drop the partial sample (its temporary file); the store is unchanged."""
        if not self._done:
            _discard_writes(self._h5)
            self._image = self._group = self._labels = None
            with contextlib.suppress(Exception):
                self._h5.close()
            self._tmp.unlink(missing_ok=True)
        self._done = True
        self._store._writers.discard(self)

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.finalize()


@dataclass(frozen=True)
class StoreIndex:
    """What a store file lists: ``entries`` maps each complete sample to ``(file, group)``;
    ``store_id`` is the store's identity (None for stores written before ids existed)."""

    entries: dict[str, tuple[Path, str]]
    sample_dir: Path
    version: int
    store_id: str | None = None


def default_sample_dir(path: Path) -> Path:
    """The folder holding the sample files of a new store ``path`` (``data.h5`` -> ``data.h5.samples``)."""
    return path.parent / f"{path.name}.samples"


def index_entries(f: h5py.File, path: Path) -> StoreIndex:
    """The samples listed by an open store file of any supported schema version.

    Raises :class:`StoreError` for a file that is no store, of a newer or invalid version, or whose
    index is damaged.
    """
    if _as_str(f.attrs.get("format", "")) != STORE_FORMAT:
        raise StoreError(f"{path} is an HDF5 file but not a marker_excite sample store (no format attribute)")
    version = _schema_version(f.attrs.get("version", 0), path)
    if version > SCHEMA_VERSION:
        raise StoreError(f"store {path} has schema version {version}; this marker_excite reads up to {SCHEMA_VERSION}")
    if version <= SAMPLE_FILE_VERSION:
        entries = {k: (path, k) for k, g in f.items() if isinstance(g, h5py.Group) and g.attrs.get("complete", False)}
        return StoreIndex(entries, default_sample_dir(path), version)
    try:
        sample_dir = path.parent / _plain_name(_as_str(f.attrs["sample_dir"]), "sample folder")
        listed = json.loads(_as_str(f[INDEX_DATASET][()]))["samples"]
        entries = {
            str(n): (sample_dir / _plain_name(str(e["file"]), "sample file"), str(e["group"]))
            for n, e in listed.items()
        }
        store_id = _as_str(f.attrs["store_id"]) if "store_id" in f.attrs else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StoreError(f"store {path}: the sample index is damaged ({exc})") from None
    return StoreIndex(entries, sample_dir, version, store_id)


def _plain_name(name: str, what: str) -> str:
    """A file or folder name of an index, which must name an entry right next to it (no path)."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\x00" in name:
        raise ValueError(f"{what} {name!r} is not a plain name next to the index")
    return name


def folder_owner(sample_dir: Path) -> str | None:
    """The id of the store that owns ``sample_dir`` (its :data:`OWNER_FILE`), None if it records none."""
    try:
        return (sample_dir / OWNER_FILE).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _may_claim(sample_dir: Path, index_path: Path) -> bool:
    """Whether a store at ``index_path`` may take ownership of a folder that records no owner: only its
    default folder (``data.h5.samples`` of ``data.h5``) -- never a folder an index merely names."""
    return folder_owner(sample_dir) is None and sample_dir.name == default_sample_dir(index_path).name


def _claim(sample_dir: Path, store_id: str) -> None:
    """Record ``store_id`` as the owner of ``sample_dir`` unless it records one already: complete or
    absent (written aside, then hard-linked into place), and the first of two concurrent claims wins."""
    final = sample_dir / OWNER_FILE
    tmp = temporary_sibling(final)
    try:
        tmp.write_text(store_id + "\n")
        os.chmod(tmp, 0o644)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _new_store_location(path: Path) -> tuple[str, Path]:
    """Store id and sample folder of a store created (or replaced) at ``path``.

    A store replacing an index whose folder it owns (or may claim) keeps id and folder, so that its
    old samples are collected; otherwise a new id gets the default folder when that is free, else a
    folder of its own (``data.h5.<id>.samples``): an existing folder of another index is never reused.
    """
    with contextlib.suppress(StoreError):
        old = read_index(path) if path.is_file() else None
        if old is not None and old.version > SAMPLE_FILE_VERSION:
            owner = folder_owner(old.sample_dir)
            if old.store_id is not None and owner == old.store_id:
                return old.store_id, old.sample_dir
            if owner is None and _may_claim(old.sample_dir, path):
                return old.store_id or uuid.uuid4().hex, old.sample_dir
    store_id = uuid.uuid4().hex
    folder = default_sample_dir(path)
    if folder.exists() or folder.is_symlink():
        folder = path.parent / f"{path.name}.{store_id[:8]}.samples"
    return store_id, folder


def store_paths(path: str | os.PathLike) -> list[Path]:
    """What a store consists of: its index ``path`` and, for a readable version-2 index, its sample
    folder (any other file: just ``path``)."""
    path = Path(path)
    try:
        index = read_index(path)
    except StoreError:
        return [path]
    return [path] if index.version <= SAMPLE_FILE_VERSION else [path, index.sample_dir]


def _real_index_path(path: Path) -> Path:
    """The index file itself when ``path`` is a symbolic link to it: writes replace the target, so a
    link and its target never drift apart."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def is_store(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file marked as a store (or a sample file of one): root attribute
    ``format`` = :data:`STORE_FORMAT`. Whether it can be read is for :func:`read_index` to say."""
    try:
        with h5py.File(path, "r") as f:
            return _as_str(f.attrs.get("format", "")) == STORE_FORMAT
    except OSError:
        return False


def open_sample_volume(
    path: str | os.PathLike,
    markers: Sequence[str] | str | None = None,
    spacing: Sequence[float] | None = None,
    dataset: str | None = None,
) -> StoreVolume:
    """Sample ``dataset`` of the store file ``path`` (its only sample when None) as a volume that owns
    the store opened for it: closing the volume closes the store (the reader of the store format of
    :mod:`~marker_excite.data.formats`, for ``open_volume("store.h5:sample")``)."""
    store = SampleStore(path, "r")
    try:
        names = store.names()
        if dataset is None and len(names) == 1:
            dataset = names[0]
        if dataset not in names:
            raise VolumeError(f"{path}: sample store; name one of its samples: {', '.join(names)}")
        return store._volume(dataset, markers, spacing, path=Path(path), on_close=store.close)
    except BaseException:
        store.close()
        raise


def read_index(path: Path) -> StoreIndex:
    """:func:`index_entries` of the store file ``path`` (opened and closed again)."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"store {path} does not exist")
    if path.is_dir():
        raise StoreError(
            f"store {path} is a folder; a store is its index file (e.g. data.h5, next to data.h5.samples/)"
        )
    with _open_h5(path, "r") as f:
        return index_entries(f, path)


class SampleStore:
    """Sample store (schema version :data:`SCHEMA_VERSION`, see docs/data.md): an index file ``path``
    plus one HDF5 file per sample in the folder ``<path>.samples``.

    Modes: ``"r"`` read; ``"w"`` create a new store (replacing any existing one when closed without
    error); ``"a"`` add to an existing store (or create one): each finished sample is added at once.
    Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r") -> None:
        if mode not in ("r", "w", "a"):
            raise StoreError(f"store mode must be 'r', 'w' or 'a', got {mode!r}")
        self.path = _real_index_path(Path(path))
        self.mode = mode
        self._handles: dict[Path, h5py.File] = {}
        self._infos: dict[str, SampleInfo] = {}
        self._pending: dict[str, Path] = {}
        self._writers: set[SampleWriter] = set()
        self._closed = False
        if mode == "r" or (mode == "a" and self.path.exists()):
            index = read_index(self.path)
            self._entries, self._sample_dir = dict(index.entries), index.sample_dir
            self._store_id = index.store_id
            if index.version > SAMPLE_FILE_VERSION and index.entries and not self._sample_dir.is_dir():
                raise StoreError(
                    f"store {self.path}: its sample folder {self._sample_dir.name} is missing next to it "
                    "(an index copied or moved without its folder? keep the two together)"
                )
        else:
            check_output_path(self.path, overwrite=True)
            if self.path.is_dir():
                raise StoreError(f"store {self.path} is a folder; give the store's file name (e.g. data.h5)")
            self._entries = {}
            self._store_id, self._sample_dir = _new_store_location(self.path)
        if mode != "r":
            self._check_writable()

    def _check_writable(self) -> None:
        for folder in (self.path.parent, self._sample_dir):
            if folder.exists() and not os.access(folder, os.W_OK):
                raise StoreError(f"store {self.path} is read-only: cannot write to {folder}")

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self, commit: bool = True) -> None:
        """Close the store. In ``"w"`` mode the new store replaces the old one only if ``commit``."""
        if self._closed:
            return
        self._closed = True
        for writer in list(self._writers):
            writer.abort()
        self._close_handles()
        try:
            if commit and self.mode == "w":
                self._update(add=self._pending, overwrite=True, replace_all=True)
        finally:
            for tmp in self._pending.values():
                tmp.unlink(missing_ok=True)
            self._pending.clear()
            if self.mode != "r" and not self.path.exists():
                _remove_empty_sample_dir(self._sample_dir)

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)

    def __del__(self) -> None:
        try:
            if not self._closed and (self._pending or self._writers):
                self.close(commit=False)
        except Exception:  # noqa: BLE001 - best effort at interpreter shutdown
            pass

    def _close_handles(self, keep: Iterable[Path] = ()) -> None:
        kept = set(keep)
        for file in [f for f in self._handles if f not in kept]:
            with contextlib.suppress(Exception):
                self._handles.pop(file).close()

    # -- writing -------------------------------------------------------------------------------
    def _check_open_for_writing(self) -> None:
        if self.mode == "r":
            raise StoreError(f"store {self.path} is open read-only")
        if self._closed:
            raise StoreError(f"store {self.path} is closed")

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

        The sample goes to a temporary file of its own; write every slice with
        :meth:`SampleWriter.write_slice` and call :meth:`SampleWriter.finalize` (or use the writer as a
        context manager) to add it to the store. With ``overwrite`` an existing sample of the same name
        is replaced only then.
        """
        self._check_open_for_writing()
        check_item_name(name, "sample")
        shape = tuple(int(s) for s in shape_zyx)
        markers = tuple(str(m) for m in markers)
        classes = tuple(check_item_name(str(c), "label class") for c in classes)
        # Sample's own validation of names, markers, spacing (on a 1-voxel stand-in image).
        Sample(name=name, image=np.zeros((len(markers), 1, 1, 1), np.float32), markers=markers, spacing=tuple(spacing))
        if len(shape) != 3 or min(shape) < 1:
            raise StoreError(f"sample {name!r}: shape must be 3 positive sizes (Z, Y, X), got {shape}")
        if len(classes) > MAX_CLASSES or len({c.lower() for c in classes}) != len(classes):
            raise StoreError(
                f"sample {name!r}: label classes must be unique and at most {MAX_CLASSES}, got {list(classes)}"
            )
        if name in self._entries and not overwrite:
            raise StoreError(f"sample {name!r} already exists in store {self.path} (use --overwrite to replace it)")
        try:
            self._ensure_sample_dir()
            tmp = temporary_sibling(self._sample_dir / _TEMP_BASE)
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.path}: {os_error_text(exc)}") from None
        try:
            h5 = h5py.File(tmp, "w")
            h5.attrs["format"] = STORE_FORMAT
            h5.attrs["version"] = SAMPLE_FILE_VERSION
            _, ny, nx = shape
            g = h5.create_group(name)
            g.attrs["markers"] = np.array(markers, dtype=h5py.string_dtype())
            g.attrs["spacing"] = np.asarray(spacing, dtype=np.float64)
            g.attrs["region"] = region or ""
            g.attrs["classes"] = np.array(classes, dtype=h5py.string_dtype())
            g.attrs["attrs"] = json.dumps(dict(attrs or {}), default=str)
            g.attrs["complete"] = False
            chunk_yx = (min(ny, _MAX_CHUNK_SIDE), min(nx, _MAX_CHUNK_SIDE))
            g.create_dataset(
                "image",
                shape=(len(markers), *shape),
                dtype=np.dtype(dtype),
                chunks=(1, 1, *chunk_yx),
                compression=compression,
            )
            lg = g.create_group("labels")
            for cls in classes:
                lg.create_dataset(
                    cls, shape=shape, dtype=np.uint8, chunks=(1, *chunk_yx), compression=compression or "gzip"
                )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                h5.close()
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write sample {name!r} to store {self.path}: {os_error_text(exc)}") from None
            raise
        writer = SampleWriter(self, tmp, h5, name, markers, classes, overwrite)
        self._writers.add(writer)
        return writer

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

    def remove(self, *names: str) -> None:
        """Delete samples, all or none (mode ``"a"``: at once, one index update; mode ``"w"``: from the
        store being written). An unknown name raises :class:`StoreError` before anything is removed."""
        self._check_open_for_writing()
        for name in names:
            if name not in self._entries:
                have = ", ".join(self.names()) or "no samples"
                raise StoreError(
                    f"sample {name!r}{did_you_mean(name, self.names())} is not in store {self.path}; it has {have}"
                )
        if self.mode == "w":
            for name in names:
                self._forget(name)
                self._pending.pop(name).unlink(missing_ok=True)
                del self._entries[name]
        else:
            self._update(drop=names)

    def _add_sample(self, name: str, tmp: Path, overwrite: bool) -> None:
        """Make a finished sample file part of the store (``"w"``: at :meth:`close`)."""
        if self.mode == "w":
            self._forget(name)
            old = self._pending.pop(name, None)
            if old is not None:
                old.unlink(missing_ok=True)
            self._pending[name] = tmp
            self._entries[name] = (tmp, name)
        else:
            self._update(add={name: tmp}, overwrite=overwrite)

    def _forget(self, name: str) -> None:
        """``"w"`` mode: drop what is cached about a pending sample (each has a file of its own)."""
        self._infos.pop(name, None)
        entry = self._entries.get(name)
        if entry is not None and entry[0] in self._handles:
            self._handles.pop(entry[0]).close()

    def _update(
        self,
        add: Mapping[str, Path] | None = None,
        drop: Sequence[str] = (),
        overwrite: bool = False,
        replace_all: bool = False,
    ) -> None:
        """Under the store lock: re-read the index, rename finished sample files into the sample folder,
        write the new index atomically and remove the files that are provably this store's garbage.

        Until the index is renamed into place the store is unchanged; on any failure the files moved
        in for this update are removed again. An index without a store id gets one, and its default
        sample folder (if it records no owner yet) is claimed for it.
        """
        add = dict(add or {})
        moved: list[Path] = []
        committed = False
        try:
            with self._lock():
                if replace_all:
                    entries, sample_dir, store_id = {}, self._sample_dir, self._store_id
                else:
                    entries, sample_dir, store_id = self._current_entries(moved)
                store_id = store_id or uuid.uuid4().hex
                for name in add:
                    if name in entries and not overwrite:
                        raise StoreError(
                            f"sample {name!r} already exists in store {self.path} (added by another process; "
                            "use --overwrite to replace it)"
                        )
                for name in drop:
                    entries.pop(name, None)
                for name, tmp in add.items():
                    final = sample_dir / _sample_file_name(name)
                    commit_file(tmp, final)
                    moved.append(final)
                    entries[name] = (final, name)
                _write_index(self.path, entries, sample_dir, store_id)
                committed = True
                with contextlib.suppress(OSError):
                    if _may_claim(sample_dir, self.path):
                        _claim(sample_dir, store_id)
                    _collect_garbage(self.path, entries, sample_dir, store_id)
        except OSError as exc:
            raise StoreError(f"cannot update store {self.path}: {os_error_text(exc)}; the store is unchanged") from None
        finally:
            if not committed:
                for file in moved:
                    file.unlink(missing_ok=True)
        self._infos.clear()
        self._entries, self._sample_dir, self._store_id = entries, sample_dir, store_id
        self._close_handles(keep=[f for f, _ in entries.values()])

    def _current_entries(self, moved: list[Path]) -> tuple[dict[str, tuple[Path, str]], Path, str | None]:
        """Entries, sample folder and store id of the index on disk now; a version-1 store file is
        hard-linked into the sample folder (its samples stay where they are) so that the new index can
        take its name."""
        if not self.path.exists():
            return {}, self._sample_dir, self._store_id
        index = read_index(self.path)
        if index.version > SAMPLE_FILE_VERSION:
            return dict(index.entries), index.sample_dir, index.store_id
        legacy = index.sample_dir / f"store-v1-{secrets.token_hex(8)}.h5"
        try:
            os.link(self.path, legacy)
        except OSError:  # no hard links on this file system: copy
            shutil.copyfile(self.path, legacy)
        moved.append(legacy)
        return {n: (legacy, g) for n, (_, g) in index.entries.items()}, index.sample_dir, None

    def _ensure_sample_dir(self) -> None:
        """Create the sample folder of a new store, recording this store as its owner (a process creating
        the same new store at the same moment may have claimed it first: its id is then this store's)."""
        if not self._sample_dir.is_dir():
            self._sample_dir.mkdir(parents=True, exist_ok=True)
            if self._store_id is not None:
                _claim(self._sample_dir, self._store_id)
                self._store_id = folder_owner(self._sample_dir) or self._store_id

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Exclusive lock of the store (``<sample folder>/.lock``) while its index is updated."""
        self._ensure_sample_dir()
        lock = self._sample_dir / _LOCK_NAME

        def busy(_holder: str) -> StoreError:
            return StoreError(
                f"store {self.path} is in use by another process (waited {LOCK_TIMEOUT_S:g} s for {lock})"
            )

        with exclusive_lock(lock, busy, wait_s=LOCK_TIMEOUT_S):
            yield

    # -- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names of the complete samples, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def _handle(self, file: Path) -> h5py.File:
        if file not in self._handles:
            if not file.exists():
                raise StoreError(
                    f"sample file {file} of store {self.path} is missing (removed or replaced by another process? reopen the store)"
                )
            self._handles[file] = _open_h5(file, "r")
        return self._handles[file]

    def _group(self, name: str) -> h5py.Group:
        entry = self._entries.get(name)
        if entry is None:
            have = ", ".join(self.names()) or "no samples"
            raise StoreError(f"sample {name!r} is not in store {self.path}; it has {have}")
        file, group = entry
        g = self._handle(file).get(group)
        if not isinstance(g, h5py.Group) or not g.attrs.get("complete", False):
            raise StoreError(f"store {self.path}: {file} holds no complete sample {group!r} (damaged store)")
        return g

    def info(self, name: str) -> SampleInfo:
        """Metadata and statistics of a sample (cached)."""
        if name not in self._infos:
            g = self._group(name)
            try:
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
                    attrs=json.loads(_as_str(g.attrs.get("attrs", "{}"))),
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise StoreError(
                    f"sample {name!r} in store {self.path} is damaged (missing or invalid data: {exc})"
                ) from None
            except OSError as exc:
                raise StoreError(
                    f"cannot read sample {name!r} from {self.path} (corrupt or truncated file): {exc}"
                ) from None
        return self._infos[name]

    def read_slice(self, name: str, z: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Slice ``z`` of a sample: ``(image [C, Y, X] float32, {class: [Y, X] uint8})``."""
        info = self.info(name)
        g = self._group(name)
        nz = info.shape_zyx[0]
        if not 0 <= int(z) < nz:
            raise StoreError(f"sample {name!r}: slice {z} outside 0..{nz - 1}")
        image = _read(g["image"], (slice(None), int(z)), self.path).astype(np.float32, copy=False)
        labels = {c: _read(g["labels"][c], int(z), self.path) for c in info.classes}
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

    def volume(
        self, name: str, markers: Sequence[str] | str | None = None, spacing: Sequence[float] | None = None
    ) -> StoreVolume:
        """Sample ``name`` as a lazy volume, read one slice at a time like an image file (a
        :class:`~marker_excite.data.volume.VolumeReader`: ``shape_czyx``, ``markers``, ``spacing``,
        ``read_slice(z) -> [C, Y, X] float32``); ``markers`` / ``spacing`` override the stored ones as in
        :func:`~marker_excite.data.io.open_volume`. It reads through the store: use it while the store is open."""
        return self._volume(name, markers, spacing, path=self.path)

    def _volume(
        self,
        name: str,
        markers: Sequence[str] | str | None,
        spacing: Sequence[float] | None,
        *,
        path: Path,
        on_close: Callable[[], None] | None = None,
    ) -> StoreVolume:
        info = self.info(name)
        image = self._group(name)["image"]
        return StoreVolume(path, image, info.markers, info.spacing, markers, spacing, on_close=on_close)


def _sample_file_name(name: str) -> str:
    """A fresh file name for a sample (its name made file-safe, plus a random part)."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)[:64]}-{secrets.token_hex(8)}.h5"


def _write_index(path: Path, entries: Mapping[str, tuple[Path, str]], sample_dir: Path, store_id: str) -> None:
    """Write the index file atomically (temporary file, fsync, rename)."""
    listed = {n: {"file": os.path.relpath(f, sample_dir), "group": g} for n, (f, g) in sorted(entries.items())}
    with atomic_path(path, overwrite=True) as tmp:
        f = h5py.File(tmp, "w")
        try:
            f.attrs["format"] = STORE_FORMAT
            f.attrs["version"] = SCHEMA_VERSION
            f.attrs["sample_dir"] = os.path.relpath(sample_dir, path.parent)
            f.attrs["store_id"] = store_id
            index = f.create_dataset(INDEX_DATASET, data=json.dumps({"samples": listed}))  # held until flushed
            f.flush()  # a full disk fails here, where the file can still be abandoned safely
            del index
        except BaseException as exc:
            _discard_writes(f)
            with contextlib.suppress(Exception):
                f.close()
            if isinstance(exc, RuntimeError):  # h5py's failing flush (a full disk among them)
                raise OSError(str(exc)) from None
            raise
        f.close()
        _fsync(tmp)


def _discard_writes(f: h5py.File) -> None:
    """Point an HDF5 file being abandoned at an anonymous in-memory file, so that closing it writes
    nothing to disk.

    On a full disk HDF5's close (of the file, or of a dataset when its last handle goes) fails to
    flush, and the handles a failed close leaves behind crash the interpreter when released (SIGSEGV).
    Where the system has no anonymous files (not Linux) the close is left to HDF5.
    """
    with contextlib.suppress(Exception):
        if f.id.valid and hasattr(os, "memfd_create"):
            scratch = os.memfd_create("marker_excite-discarded")
            try:
                os.dup2(scratch, f.id.get_vfd_handle())
            finally:
                os.close(scratch)


def _collect_garbage(
    index_path: Path, entries: Mapping[str, tuple[Path, str]], sample_dir: Path, store_id: str
) -> None:
    """Remove temporaries of killed writers and the sample files that are provably garbage (lock held).

    A file is garbage only if the folder records ``store_id`` as its owner, and neither this index nor
    any other store index next to it that uses the same folder (a copy, a renamed or older version)
    lists it. When another index there cannot be read, nothing is removed.
    """
    remove_stale_temporaries(sample_dir / _TEMP_BASE)
    if folder_owner(sample_dir) != store_id:
        return
    keep = {f.name for f, _ in entries.values() if f.parent == sample_dir}
    others = _files_listed_by_other_indexes(index_path, sample_dir)
    if others is None:
        return
    keep |= others
    for child in sample_dir.iterdir():
        if child.suffix == ".h5" and not child.name.startswith(".") and child.name not in keep and child.is_file():
            child.unlink()


def _files_listed_by_other_indexes(index_path: Path, sample_dir: Path) -> set[str] | None:
    """Names of the files of ``sample_dir`` listed by the store indexes next to it other than
    ``index_path``; None when one of them is a store index that cannot be read."""
    folder = os.path.realpath(sample_dir)
    own = os.path.realpath(index_path)
    listed: set[str] = set()
    for entry in os.scandir(sample_dir.parent):
        real = os.path.realpath(entry.path)
        if real == own or not entry.is_file() or not _has_hdf5_signature(entry.path):
            continue
        try:
            with h5py.File(real, "r", locking=False) as f:  # never blocks a writer of that file
                if _as_str(f.attrs.get("format", "")) != STORE_FORMAT:
                    continue
                index = index_entries(f, Path(real))
        except OSError:  # not HDF5 after all, or half written: it cannot be an index of this folder
            continue
        except (StoreError, ValueError, TypeError, KeyError, AttributeError):  # an index that cannot be read
            return None
        if os.path.realpath(index.sample_dir) == folder:
            listed |= {file.name for file, _ in index.entries.values()}
    return listed


def _has_hdf5_signature(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
    except OSError:
        return False


def _remove_empty_sample_dir(sample_dir: Path) -> None:
    """After a new store failed: remove its sample folder if nothing but the lock and owner files are in it."""
    with contextlib.suppress(OSError):
        if {p.name for p in sample_dir.iterdir()} <= {_LOCK_NAME, OWNER_FILE}:
            for name in (_LOCK_NAME, OWNER_FILE):
                (sample_dir / name).unlink(missing_ok=True)
            sample_dir.rmdir()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _schema_version(value: object, path: Path) -> int:
    text = _as_str(value.item() if isinstance(value, np.generic) else value).strip()
    if not re.fullmatch(r"\d+", text):
        raise StoreError(f"store {path} has an invalid schema version {text!r} (expected a whole number)")
    return int(text)


def _open_h5(path: Path, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise StoreError(
                f"store file {path} is in use by another process (locked): {text.splitlines()[0]}"
            ) from None
        if isinstance(exc, PermissionError) or "errno = 13" in text:
            raise StoreError(f"store file {path} is not readable: permission denied") from None
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
