"""What every volume format shares: the lazy reader base class, the writer base class, axes and
metadata helpers, and the checks of marker names and voxel sizes.

A format (:mod:`~marker_excite.data.tiff_io`, :mod:`~marker_excite.data.hdf5_io`,
:mod:`~marker_excite.data.zarr_io`) subclasses :class:`VolumeReader` (one slice at a time) and
:class:`FormatWriter` (one slice at a time into a temporary file or folder); the registry
:mod:`~marker_excite.data.formats` names them, and :func:`~marker_excite.data.io.open_volume` /
:class:`~marker_excite.data.writers.VolumeWriter` dispatch through it.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile

from marker_excite.config import split_list
from marker_excite.contract.markers import duplicated_names
from marker_excite.errors import UserInputError

#: a channel name that skips the channel (``--channel-names DAPI,-,collagen``)
SKIP = "-"
#: float32 holds every integer up to this magnitude exactly; integer voxels beyond it are refused.
FLOAT32_EXACT_INT = 2**24
#: the environment variable that changes :data:`DEFAULT_MAX_SLICE_GIB`
MAX_SLICE_GIB_ENV = "MARKER_EXCITE_MAX_SLICE_GIB"
#: readers refuse a file whose one slice (all channels, as float32) would need more GiB than this: a
#: file of a few MiB can declare a 40000 x 40000 slice whose reading would exhaust memory
DEFAULT_MAX_SLICE_GIB = 4.0
_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}


class VolumeError(UserInputError):
    """A volume file that cannot be read or written as asked; the message names the file."""


# ================================================================================================
# reading
# ================================================================================================
class VolumeReader:
    """A lazily read multi-channel volume.

    Attributes:
        path: the file.
        shape_czyx: (C, Z, Y, X).
        markers: marker name of each channel (from the file, the caller, or ``C0, C1, ...``); channels the
            caller named ``-`` are skipped (not read, not counted in ``shape_czyx``).
        spacing: voxel size (z, y, x) in µm (from the file, the caller, or ``(1, 1, 1)``).
        markers_source / spacing_source: ``"file"``, ``"user"`` or ``"default"``.
    """

    path: Path
    shape_czyx: tuple[int, int, int, int]
    markers: tuple[str, ...]
    spacing: tuple[float, float, float]
    markers_source: str
    spacing_source: str
    dtype: np.dtype
    _keep: list[int] | None = None  # file channels read (None: all)

    def _check_data(self) -> None:
        """Refuse data that cannot become float32 voxels faithfully (complex or non-numeric, zero size)
        or that would not fit in memory slice by slice (:func:`check_slice_size`)."""
        kind = self.dtype.kind
        if kind == "c":
            raise VolumeError(
                f"{self.path}: complex image data ({self.dtype}) is not supported (the imaginary part would be lost); "
                "save a real image, e.g. the magnitude"
            )
        if kind not in "biuf":
            raise VolumeError(f"{self.path}: data type {self.dtype} is not an image type (expected integers or floats)")
        if 0 in self.shape_czyx:
            c, z, y, x = self.shape_czyx
            raise VolumeError(f"{self.path}: image has zero size (channels {c}, Z {z}, Y {y}, X {x})")
        check_slice_size(self.path, self.shape_czyx)

    def _set_metadata(
        self,
        file_markers: Sequence[str] | None,
        file_spacing: Sequence[float] | None,
        markers: Sequence[str] | str | None,
        spacing: Sequence[float] | None,
    ) -> None:
        n = self.shape_czyx[0]
        if markers is not None:
            names = check_marker_names(_split_names(markers), where=str(self.path))
            if len(names) != n:
                raise VolumeError(
                    f"{self.path}: {len(names)} marker name(s) {list(names)} given but the file has {n} channel(s)"
                )
            if SKIP in names:
                self._keep = [i for i, m in enumerate(names) if m != SKIP]
                names = tuple(names[i] for i in self._keep)
                self.shape_czyx = (len(names), *self.shape_czyx[1:])  # type: ignore[assignment]
            self.markers, self.markers_source = names, "user"
        elif file_markers is not None and len(file_markers) == n and all(str(m).strip() for m in file_markers):
            self.markers, self.markers_source = tuple(str(m).strip() for m in file_markers), "file"
        else:
            self.markers, self.markers_source = tuple(f"C{i}" for i in range(n)), "default"
        check_marker_names(self.markers, where=str(self.path))
        if spacing is not None:
            self.spacing, self.spacing_source = check_spacing(spacing, where=str(self.path)), "user"
        elif file_spacing is not None and all(np.isfinite(s) and s > 0 for s in file_spacing):
            self.spacing, self.spacing_source = tuple(float(s) for s in file_spacing), "file"  # type: ignore[assignment]
        else:
            self.spacing, self.spacing_source = (1.0, 1.0, 1.0), "default"

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return self.shape_czyx[1:]  # type: ignore[return-value]

    def _read(self, z: int) -> np.ndarray:
        raise NotImplementedError

    def read_slice(self, z: int) -> np.ndarray:
        """Slice ``z`` as float32 ``[C, Y, X]``; :class:`VolumeError` on NaN/Inf (naming marker and slice)."""
        nz = self.shape_czyx[1]
        if not 0 <= int(z) < nz:
            raise VolumeError(f"{self.path}: slice {z} outside 0..{nz - 1}")
        try:
            data = np.asarray(self._read(int(z)))
            if self._keep is not None:
                data = data[self._keep]
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:
            raise VolumeError(f"{self.path}: cannot read slice {z} (corrupt or truncated file): {exc}") from None
        if data.dtype.kind in "iu" and data.dtype.itemsize >= 4 and data.size:
            self._check_exact(data, z)
        out = data.astype(np.float32, copy=False)
        if np.issubdtype(data.dtype, np.floating):
            bad = ~np.isfinite(out).reshape(out.shape[0], -1).all(axis=1)
            if bad.any():
                names = ", ".join(m for m, b in zip(self.markers, bad) if b)
                raise VolumeError(f"{self.path}: NaN/Inf voxels in marker(s) {names} at slice {z}")
        return out

    def _check_exact(self, data: np.ndarray, z: int) -> None:
        """Refuse integer voxels that float32 cannot hold exactly (naming marker, slice and value)."""
        for c, channel in enumerate(data):
            low, high = int(channel.min()), int(channel.max())
            if max(-low, high) > FLOAT32_EXACT_INT:
                value = high if high >= -low else low
                raise VolumeError(
                    f"{self.path}: integer voxel value {value} in marker {self.markers[c]} at slice {z} is beyond "
                    f"2^24 = {FLOAT32_EXACT_INT}, which float32 cannot hold exactly; convert the image to float32 "
                    "or scale it below 2^24"
                )

    def iter_slices(self) -> Iterator[np.ndarray]:
        """Every slice in order (streaming)."""
        for z in range(self.shape_czyx[1]):
            yield self.read_slice(z)

    def read_volume(self) -> np.ndarray:
        """The whole volume ``[C, Z, Y, X]`` float32 (small files only)."""
        out = np.empty(self.shape_czyx, dtype=np.float32)
        for z in range(self.shape_czyx[1]):
            out[:, z] = self.read_slice(z)
        return out

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> VolumeReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, shape_czyx={self.shape_czyx}, markers={list(self.markers)})"


class _AxesArray:
    """Reads slice z as [C, Y, X] from an array-like (memmap, h5py dataset, TIFF pages).

    ``axes`` names each dimension of the array with C, Z, Y, X, or ``1`` for a dropped size-1 axis;
    a missing C or Z axis means a single channel / a single slice.
    """

    def __init__(self, array, axes: str) -> None:
        self.array, self.axes = array, axes
        size = dict(zip(axes, array.shape))
        self.shape_czyx = tuple(int(size.get(a, 1)) for a in "CZYX")

    def read(self, z: int) -> np.ndarray:
        key = tuple(0 if a == "1" else (z if a == "Z" else slice(None)) for a in self.axes)
        data = np.asarray(self.array[key])
        rest = [a for a in self.axes if a in "CYX"]
        if "C" not in rest:
            data, rest = data[None], ["C", *rest]
        return np.transpose(data, [rest.index(a) for a in "CYX"])


def _canonical_axes(path: Path, axes: str, shape: Sequence[int], n_markers: int | None) -> str:
    """Map a file's axes letters onto C, Z, Y, X, 1 (generic page axes resolved with the marker count)."""
    axes = axes.upper()
    if len(axes) != len(shape):
        raise VolumeError(f"{path}: axes {axes!r} do not match the data's {len(shape)} dimensions {tuple(shape)}")
    out = list(axes)
    if axes.endswith("S") and "C" not in axes:
        out[-1] = "C"
    out = [a if (a in "CZYX" or shape[i] > 1) else "1" for i, a in enumerate(out)]
    generic = [i for i, a in enumerate(out) if a not in "CZYX1"]
    if len(generic) > 1 or (generic and "C" in out and "Z" in out):
        raise VolumeError(
            f"{path}: cannot tell channels from slices (axes {axes}, shape {tuple(shape)}); give the axes, e.g. axes='ZCYX'"
        )
    if generic:
        i = generic[0]
        if "Z" in out:
            out[i] = "C"
        elif "C" in out or not n_markers or n_markers == 1:
            out[i] = "Z"
        elif shape[i] == n_markers:
            out[i] = "C"
        else:
            raise VolumeError(
                f"{path}: {shape[i]} pages but {n_markers} markers: cannot tell channels from slices; "
                "give the axes, e.g. axes='ZCYX'"
            )
    for letter in "CZYX":
        if out.count(letter) > 1:
            raise VolumeError(f"{path}: axis {letter} appears twice in axes {axes!r}")
    if "Y" not in out or "X" not in out:
        raise VolumeError(f"{path}: data with axes {axes} and shape {tuple(shape)} has no Y and X axes")
    return "".join(out)


def _decode(value) -> str:
    """Attribute text: str, bytes, or Imaris' array of single bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            return b"".join(value.ravel().tolist()).decode("utf-8", "replace")
        if value.size == 1:
            return _decode(value.ravel()[0])
    return str(value)


# ================================================================================================
# writing
# ================================================================================================
class FormatWriter(abc.ABC):
    """Writes one ``[C, Z, Y, X]`` volume slice by slice into a temporary file (or folder, ``folder``).

    Constructed as ``Writer(tmp, shape_czyx, dtype, spacing, channel_names)``, which opens ``tmp``.
    Only the format: :class:`~marker_excite.data.writers.VolumeWriter` checks the arguments, creates
    the temporary path, turns write errors into one-line errors and commits or discards the result.
    """

    #: True when the format is a folder (committed as a whole with ``atomic_directory``).
    folder: bool = False

    @classmethod  # noqa: B027 - an optional hook, nothing to check by default
    def check_target(cls, path: Path) -> None:
        """Refuse an existing ``path`` that this format must not replace (nothing to check by default)."""

    @classmethod  # noqa: B027 - an optional hook, nothing to do by default
    def committed(cls, path: Path) -> None:
        """The volume is in place at ``path``: register it where the format says (nothing by default)."""

    @abc.abstractmethod
    def write_slice(self, z: int, data: np.ndarray) -> None:
        """Write slice ``z`` (``[C, Y, X]`` of the volume's shape and dtype)."""

    @abc.abstractmethod
    def finish(self) -> None:
        """Every slice is in: complete the volume, flush and close (a full disk shows here at the latest)."""

    def close(self) -> None:  # noqa: B027 - an optional hook, for formats that hold open files
        """Release open files without completing the volume (when writing is aborted)."""


# ================================================================================================
# validation helpers
# ================================================================================================
def _split_names(markers: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(markers, str):
        return split_list(markers, what="marker names", allow_empty=True, error=VolumeError)
    return tuple(str(m).strip() for m in markers)


def check_marker_names(names: Sequence[str], where: str = "") -> tuple[str, ...]:
    """Non-empty, duplicate-free (case-insensitive), no empty names; returns them as a tuple.

    ``-`` entries (skipped channels) are allowed as long as one channel keeps a name.
    """
    prefix = f"{where}: " if where else ""
    names = tuple(names)
    if not names:
        raise VolumeError(f"{prefix}empty marker set: give at least one marker name")
    if all(n == SKIP for n in names):
        raise VolumeError(f"{prefix}every channel is skipped ('-'): name at least one")
    if any(not n for n in names):
        raise VolumeError(f"{prefix}empty marker name in {list(names)}")
    dups = duplicated_names(n for n in names if n != SKIP)
    if dups:
        raise VolumeError(f"{prefix}marker given twice: {', '.join(dups)}")
    return names


def max_slice_gib() -> float:
    """The largest slice (all channels, float32) readers accept, in GiB: :data:`DEFAULT_MAX_SLICE_GIB`
    or the environment variable :data:`MAX_SLICE_GIB_ENV`."""
    text = os.environ.get(MAX_SLICE_GIB_ENV)
    if text is None:
        return DEFAULT_MAX_SLICE_GIB
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise UserInputError(f"{MAX_SLICE_GIB_ENV} must be a positive number of GiB, got {text!r}")
    return value


def check_slice_size(path: Path, shape_czyx: Sequence[int]) -> None:
    """Refuse a volume whose one slice ``[C, Y, X]`` as float32 would exceed :func:`max_slice_gib`.

    Readers hold one slice at a time, so this bounds their memory; it runs on the declared shape,
    before any data is read, so a tiny file declaring a huge image fails at once instead of
    exhausting memory (or running for hours) part way.
    """
    c, z, y, x = (int(n) for n in shape_czyx)
    need = c * y * x * np.dtype(np.float32).itemsize
    limit = max_slice_gib()
    if need > limit * 2**30:
        raise VolumeError(
            f"{path}: declares {c} channel(s) x {z} slice(s) of {y} x {x} px; one slice would need "
            f"{need / 2**30:.3g} GiB as float32, more than the limit of {limit:g} GiB per slice "
            f"(set {MAX_SLICE_GIB_ENV} to raise it if the file is real and this machine has the memory)"
        )


def check_spacing(spacing: Sequence[float] | str, where: str = "") -> tuple[float, float, float]:
    """Three positive finite numbers (z, y, x) in µm, from a sequence or text ``"2,0.5,0.5"``."""
    prefix = f"{where}: " if where else ""
    try:  # an empty entry is a UserInputError, a ValueError like a bad number's
        parts = split_list(spacing, what="spacing") if isinstance(spacing, str) else list(spacing)
        values = tuple(float(s) for s in parts)
    except (TypeError, ValueError):
        raise VolumeError(f"{prefix}spacing must be three numbers z,y,x in µm, got {spacing!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise VolumeError(f"{prefix}spacing must be three positive numbers z,y,x in µm, got {spacing!r}")
    return values  # type: ignore[return-value]
