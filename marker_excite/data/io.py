"""Volume files: lazy readers (TIFF, OME-TIFF, HDF5, Imaris .ims; OME-Zarr in :mod:`marker_excite.data.zarr_io`).

Writers are in :mod:`marker_excite.data.writers`; image + label files for import in
:mod:`marker_excite.data.sample_files`.

Every reader is a :class:`VolumeReader` that reads ONE slice at a time (``read_slice(z) -> [C, Y, X]``
float32), so a stack larger than memory streams: uncompressed contiguous TIFFs are memory-mapped,
other TIFFs are read page by page, HDF5 / .ims datasets by hyperslab. Channel names and voxel sizes
come from the file's metadata (OME-XML, ImageJ, Imaris, HDF5 attributes) or from the caller
(``markers=``, ``spacing=``); the caller's values win.

Input problems raise :class:`VolumeError` (a :class:`~marker_excite.errors.UserInputError`) naming the
file and the problem: unreadable/corrupt/truncated files (including corrupt compressed TIFF data and
HDF5 datasets whose declared shape was never written), complex or non-numeric data, images of zero
size, integer voxels beyond float32's exact range (``|v| > 2**24``), NaN/Inf voxels (marker and slice),
channel name counts that do not match, duplicated or empty marker sets, label files that do not match
the image.
"""

from __future__ import annotations

import logging
import lzma
import math
import os
import re
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import tifffile

from marker_excite.errors import UserInputError
from marker_excite.markers import duplicated_names

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
IMS_SUFFIXES = (".ims",)
#: a channel name that skips the channel (``--channel-names DAPI,-,collagen``)
SKIP = "-"
#: float32 holds every integer up to this magnitude exactly; integer voxels beyond it are refused.
FLOAT32_EXACT_INT = 2**24
_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}


class VolumeError(UserInputError):
    """A volume file that cannot be read or written as asked; the message names the file."""


# ================================================================================================
# readers
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
        """Refuse data that cannot become float32 voxels faithfully: complex or non-numeric, or zero size."""
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

    def __enter__(self) -> "VolumeReader":
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


class TiffVolume(VolumeReader):
    """TIFF / OME-TIFF / ImageJ TIFF, read one slice at a time.

    ``mode``: ``"contiguous"`` (uncompressed contiguous data: positioned reads of whole planes, resident
    memory bounded by one slice), ``"pages"`` (compressed or scattered pages decoded by tifffile with
    ``imagecodecs``: LZW, Deflate, Zstd, PackBits, JPEG, ...) or ``"memmap"`` (uncompressed interleaved
    samples, e.g. RGB). ``compression``: the codec's name (``"NONE"``, ``"LZW"``, ...).
    """

    def __init__(self, path, markers=None, spacing=None, axes: str | None = None) -> None:
        self.path = Path(path)
        self._tif = _open_tiff(self.path)
        try:
            series = self._tif.series[0]
            n_user = len(_split_names(markers)) if markers is not None else None
            shape = _split_pages(self.path, tuple(series.shape), axes, n_user)
            canon = _canonical_axes(self.path, axes or series.axes, shape, n_user)
            self.dtype = np.dtype(series.dtype)
            file_markers, file_spacing = _tiff_metadata(self._tif)
            self._check_extent(series)
            self.compression = _check_codec(self.path, series.keyframe.compression)
            if canon[-2:] == "YX" and series.dataoffset is not None:
                self.mode = "contiguous"
                dtype = np.dtype(series.dtype).newbyteorder(self._tif.byteorder)
                array = _ContiguousPlanes(self.path, series.dataoffset, shape, dtype)
            elif canon[-2:] != "YX" and series.dataoffset is not None:  # interleaved samples (e.g. RGB)
                self.mode, array = "memmap", tifffile.memmap(self.path, series=0, mode="r").reshape(shape)
            else:  # compressed or scattered pages (also planar or interleaved samples, e.g. Fiji's LZW RGB)
                self.mode, array = "pages", _TiffPages(self.path, self._tif, series, shape)
            self._reader = _AxesArray(array, canon)
            self.shape_czyx = self._reader.shape_czyx  # type: ignore[assignment]
            self._check_data()
            self._set_metadata(file_markers, file_spacing, markers, spacing)
        except BaseException:
            self._tif.close()
            raise

    def _check_extent(self, series) -> None:
        size = self.path.stat().st_size
        if series.dataoffset is not None and series.dataoffset + series.nbytes > size:
            raise VolumeError(
                f"{self.path}: truncated file ({size} bytes, data needs {series.dataoffset + series.nbytes})"
            )

    def _read(self, z: int) -> np.ndarray:
        return self._reader.read(z)

    def close(self) -> None:
        if isinstance(self._reader.array, _ContiguousPlanes):
            self._reader.array.close()
        self._tif.close()


def _split_pages(path: Path, shape: tuple[int, ...], axes: str | None, n_markers: int | None) -> tuple[int, ...]:
    """Shape with a flat page axis split in two when the caller's axes name one more axis (e.g. ZCYX
    for a plain stack of Z*C pages); the channel count comes from the marker names."""
    if axes is None or len(axes) != len(shape) + 1 or len(shape) != 3:
        return shape
    lead = axes.upper()[:2]
    if sorted(lead) != ["C", "Z"] or not n_markers:
        raise VolumeError(f"{path}: axes {axes!r} do not fit data of shape {shape}; give --channel-names with ZCYX / CZYX")
    pages = shape[0]
    if pages % n_markers:
        raise VolumeError(f"{path}: {pages} pages cannot be split into {n_markers} channels")
    split = (pages // n_markers, n_markers) if lead == "ZC" else (n_markers, pages // n_markers)
    return (*split, *shape[1:])


class _PlaneArray:
    """Array-like ``[*lead, *plane]`` whose planes (``[Y, X]``; a TIFF page of samples: ``plane_ndim`` 3)
    are read on demand (subclasses: :meth:`_planes`)."""

    shape: tuple[int, ...]
    plane_ndim: int = 2

    def _planes(self, indices: list[int]) -> np.ndarray:
        """Planes by flat index -> ``[n, *plane]``."""
        raise NotImplementedError

    def __getitem__(self, key):
        lead = self.shape[: -self.plane_ndim]
        lead_key, yx_key = key[: len(lead)], key[len(lead) :]
        grids = [np.arange(n)[k] if isinstance(k, slice) else np.array([k]) for k, n in zip(lead_key, lead)]
        if grids:
            mesh = np.meshgrid(*grids, indexing="ij")
            flat = np.ravel_multi_index([m.ravel() for m in mesh], lead)
        else:
            flat = np.array([0])
        plane = self.shape[-self.plane_ndim :]
        data = self._planes([int(i) for i in flat]).reshape(*[len(g) for g in grids], *plane)
        squeeze = tuple(i for i, k in enumerate(lead_key) if not isinstance(k, slice))
        data = data.squeeze(axis=squeeze) if squeeze else data
        return data[(Ellipsis, *yx_key)]


class _ContiguousPlanes(_PlaneArray):
    """Uncompressed contiguous TIFF data read plane by plane with positioned reads.

    Unlike a memory map, nothing of the file stays mapped into the process, so resident memory is
    bounded by one slice however large the stack.
    """

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape, self.dtype, self.offset = tuple(shape), np.dtype(dtype), int(offset)
        self._plane_bytes = int(np.prod(self.shape[-2:])) * self.dtype.itemsize
        self._fh = open(path, "rb")

    def _planes(self, indices: list[int]) -> np.ndarray:
        out = np.empty((len(indices), *self.shape[-2:]), dtype=self.dtype)
        for i, p in enumerate(indices):
            self._fh.seek(self.offset + p * self._plane_bytes)
            if self._fh.readinto(memoryview(out[i]).cast("B")) != self._plane_bytes:
                raise OSError(f"plane {p} is truncated")
        return out

    def close(self) -> None:
        self._fh.close()


class _TiffPages(_PlaneArray):
    """Pages of a (compressed or scattered) TIFF series, decoded one by one by tifffile.

    A page is ``[Y, X]``, or holds several samples (``[S, Y, X]`` planar, ``[Y, X, S]`` interleaved, e.g.
    RGB); the series' shape ends with the page's shape.
    """

    def __init__(self, path: Path, tif: tifffile.TiffFile, series, shape: tuple[int, ...]) -> None:
        self.tif, self.series = tif, series
        self.shape = tuple(shape)
        page = tuple(series.keyframe.shape)
        if self.shape[-len(page) :] != page:
            raise VolumeError(f"{path}: TIFF pages of shape {page} do not tile the series of shape {self.shape}")
        self.plane_ndim = len(page)
        self._size = os.path.getsize(tif.filehandle.path)

    def _planes(self, indices: list[int]) -> np.ndarray:
        for p in indices:
            page = self.series.pages[p]
            if page is None:
                raise OSError(f"page {p} is missing")
            end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
            if end > self._size:
                raise OSError(f"page {p} extends past the end of the file ({end} > {self._size} bytes)")
        try:
            data = self.tif.asarray(key=indices, series=0)
        except Exception as exc:  # noqa: BLE001 - each codec raises its own error type
            if not _is_decode_error(exc):
                raise
            codec = _codec_name(self.series.pages[indices[0]].compression)
            raise OSError(f"corrupt compressed data ({codec} data cannot be decoded: {exc})") from None
        return data.reshape(len(indices), *self.shape[-self.plane_ndim :])


def _codec_name(code: int) -> str:
    """A TIFF compression code's name (``LZW``, ``ADOBE_DEFLATE``, ...), or ``code N`` when unknown."""
    try:
        return tifffile.COMPRESSION(int(code)).name
    except ValueError:
        return f"code {int(code)}"


def _check_codec(path: Path, code: int) -> str:
    """The name of a TIFF's compression; :class:`VolumeError` naming the codec when it cannot be decoded."""
    name = _codec_name(code)
    if int(code) == 1:
        return name
    try:
        tifffile.TIFF.DECOMPRESSORS[int(code)]
    except KeyError as exc:
        hint = "; install it with: pip install imagecodecs" if "imagecodecs" in str(exc) else ""
        label = name if name.startswith("code ") else f"{name} (code {int(code)})"
        raise VolumeError(
            f"{path}: TIFF compression {label} is not supported by this installation "
            f"({exc.args[0]}){hint}; save the file uncompressed or with LZW / Deflate / Zstd"
        ) from None
    return name


def _is_decode_error(exc: BaseException) -> bool:
    """An error of a decompressor on bad data: zlib / lzma (tifffile's fallback codecs) or imagecodecs'
    codec errors (RuntimeError subclasses; its ImportErrors for missing codecs are not decode errors)."""
    if isinstance(exc, (zlib.error, lzma.LZMAError)):
        return True
    return isinstance(exc, RuntimeError) and type(exc).__module__.partition(".")[0] == "imagecodecs"


class _TiffLogCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _open_tiff(path: Path) -> tifffile.TiffFile:
    catcher = _TiffLogCatcher()
    logger = logging.getLogger("tifffile")
    logger.addHandler(catcher)
    old_propagate = logger.propagate
    logger.propagate = False
    try:
        tif = tifffile.TiffFile(path)
        _ = tif.series
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as exc:
        raise VolumeError(f"{path}: not a readable TIFF file (corrupt or truncated?): {exc}") from None
    finally:
        logger.removeHandler(catcher)
        logger.propagate = old_propagate
    bad = [m for m in catcher.messages if re.search(r"invalid|raised|truncat|corrupt|error", m, re.I)]
    if bad:
        tif.close()
        raise VolumeError(f"{path}: corrupt or truncated TIFF file ({bad[0].splitlines()[0]})")
    if not tif.series:
        tif.close()
        raise VolumeError(f"{path}: TIFF file contains no image data")
    return tif


def _tiff_metadata(tif: tifffile.TiffFile) -> tuple[list[str] | None, tuple[float, float, float] | None]:
    """Channel names and (z, y, x) spacing in µm from OME-XML or ImageJ metadata (None when absent)."""
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
        except ET.ParseError:
            return None, None
        pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
        if pixels is None:
            return None, None
        names = [c.get("Name", "") for c in pixels if c.tag.endswith("Channel")]
        sizes = []
        for axis in "ZYX":
            value = pixels.get(f"PhysicalSize{axis}")
            unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
            factor = _UNIT_TO_UM.get(unit)
            sizes.append(float(value) * factor if value is not None and factor is not None else np.nan)
        spacing = tuple(sizes) if all(np.isfinite(sizes)) else _fill_spacing(sizes)
        return (names or None), spacing  # type: ignore[return-value]
    if tif.is_imagej and tif.imagej_metadata is not None:
        meta = tif.imagej_metadata
        factor = _UNIT_TO_UM.get(str(meta.get("unit", "")).replace("\\u00B5", "µ"))
        page = tif.pages.first
        try:
            xres = page.tags["XResolution"].value
            yres = page.tags["YResolution"].value
        except KeyError:
            return None, None
        if factor is None or not xres[0] or not yres[0]:
            return None, None
        sx, sy = xres[1] / xres[0] * factor, yres[1] / yres[0] * factor
        sz = float(meta.get("spacing", np.nan)) * factor
        return None, _fill_spacing([sz, sy, sx])
    return None, None


def _fill_spacing(sizes: Sequence[float]) -> tuple[float, float, float] | None:
    """In-plane sizes known but z not (2D files): z = 1 µm; otherwise unknown."""
    z, y, x = sizes
    if np.isfinite(y) and np.isfinite(x):
        return (float(z) if np.isfinite(z) else 1.0, float(y), float(x))
    return None


class H5Volume(VolumeReader):
    """A dataset of an HDF5 file (plain dataset or a sample of a marker_excite store).

    Plain datasets: axes given or by dimension (``YX``, ``ZYX``, ``CZYX``); channel names from the
    attribute ``markers`` / ``channel_names``; spacing from ``spacing`` / ``element_size_um`` (z, y, x).
    """

    def __init__(self, path, dataset: str | None = None, markers=None, spacing=None, axes: str | None = None) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise VolumeError(f"{self.path}: not a readable HDF5 file (corrupt or truncated?): {exc}") from None
        try:
            ds, file_markers, file_spacing = self._locate(dataset)
            default_axes = {2: "YX", 3: "ZYX", 4: "CZYX"}.get(ds.ndim)
            if axes is None and default_axes is None:
                raise VolumeError(f"{self.path}:{ds.name} has {ds.ndim} dimensions; give the axes, e.g. axes='TCZYX'")
            n_user = len(_split_names(markers)) if markers is not None else None
            canon = _canonical_axes(self.path, axes or default_axes, ds.shape, n_user)  # type: ignore[arg-type]
            self.dataset = ds.name
            self.dtype = np.dtype(ds.dtype)
            self._reader = _AxesArray(ds, canon)
            self.shape_czyx = self._reader.shape_czyx  # type: ignore[assignment]
            self._check_data()
            _check_stored(self.path, ds)
            self._set_metadata(file_markers, file_spacing, markers, spacing)
        except BaseException:
            self._file.close()
            raise

    def _locate(self, dataset: str | None):
        f = self._file
        if f.attrs.get("format") in ("marker_excite.SampleStore", b"marker_excite.SampleStore"):
            from marker_excite.data.store import index_entries

            entries = index_entries(f, self.path).entries
            names = sorted(entries)
            if dataset is None and len(names) == 1:
                dataset = names[0]
            if dataset not in names:
                raise VolumeError(f"{self.path}: sample store; name one of its samples: {', '.join(names)}")
            file, group = entries[dataset]
            if file != self.path:  # schema 2: the sample has a file of its own
                f.close()
                try:
                    self._file = f = h5py.File(file, "r")
                except OSError as exc:
                    raise VolumeError(f"{self.path}: cannot read the file {file} of sample {dataset!r}: {exc}") from None
            g = f[group]
            try:
                return g["image"], [_decode(m) for m in g.attrs["markers"]], tuple(g.attrs["spacing"])
            except KeyError as exc:
                raise VolumeError(f"{self.path}: sample {dataset!r} is damaged (missing {exc})") from None
        if dataset is None:
            found: list[str] = []
            f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim >= 2 else None)
            if len(found) != 1:
                listed = ", ".join(found) or "none"
                raise VolumeError(f"{self.path}: name the dataset to read (file.h5:path); image datasets: {listed}")
            dataset = found[0]
        ds = f.get(dataset)
        if not isinstance(ds, h5py.Dataset):
            raise VolumeError(f"{self.path}: no dataset {dataset!r}")
        names = next((ds.attrs[k] for k in ("markers", "channel_names") if k in ds.attrs), None)
        space = next((ds.attrs[k] for k in ("spacing", "element_size_um") if k in ds.attrs), None)
        names = [_decode(m) for m in np.atleast_1d(names)] if names is not None else None
        space = tuple(float(s) for s in np.atleast_1d(space))[-3:] if space is not None else None
        if space is not None and len(space) == 2:
            space = (1.0, *space)
        return ds, names, space

    def _read(self, z: int) -> np.ndarray:
        return self._reader.read(z)

    def close(self) -> None:
        self._file.close()


class ImsVolume(VolumeReader):
    """Imaris ``.ims`` (HDF5): full-resolution level, first time point, padded data cropped to X/Y/Z."""

    def __init__(self, path, markers=None, spacing=None) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise VolumeError(f"{self.path}: not a readable Imaris/HDF5 file (corrupt or truncated?): {exc}") from None
        try:
            base = self._file.get("DataSet/ResolutionLevel 0/TimePoint 0")
            image_info = self._file.get("DataSetInfo/Image")
            if base is None or image_info is None:
                raise VolumeError(f"{self.path}: not an Imaris file (no /DataSet/ResolutionLevel 0/TimePoint 0)")
            keys = sorted((k for k in base if re.fullmatch(r"Channel \d+", k)), key=lambda k: int(k.split()[1]))
            if not keys:
                raise VolumeError(f"{self.path}: Imaris file has no channels")
            info = image_info.attrs
            nx, ny, nz = (int(float(_decode(info[k]))) for k in ("X", "Y", "Z"))
            self._datasets = [base[k]["Data"] for k in keys]
            for k, ds in zip(keys, self._datasets):
                if ds.ndim != 3 or ds.shape[0] < nz or ds.shape[1] < ny or ds.shape[2] < nx:
                    raise VolumeError(f"{self.path}: {k} data has shape {ds.shape}, smaller than Z,Y,X = {(nz, ny, nx)}")
            self.shape_czyx = (len(keys), nz, ny, nx)
            self.dtype = np.dtype(self._datasets[0].dtype)
            self._check_data()
            for ds in self._datasets:
                _check_stored(self.path, ds)
            names = []
            for i in range(len(keys)):
                ch = self._file.get(f"DataSetInfo/Channel {int(keys[i].split()[1])}")
                names.append(_decode(ch.attrs["Name"]) if ch is not None and "Name" in ch.attrs else "")
            try:
                ext = [(float(_decode(info[f"ExtMax{i}"])) - float(_decode(info[f"ExtMin{i}"]))) for i in range(3)]
                file_spacing = (abs(ext[2]) / nz, abs(ext[1]) / ny, abs(ext[0]) / nx)
            except KeyError:
                file_spacing = None
            self._set_metadata(names, file_spacing, markers, spacing)
        except BaseException:
            self._file.close()
            raise

    def _read(self, z: int) -> np.ndarray:
        _, _, ny, nx = self.shape_czyx
        return np.stack([ds[z, :ny, :nx] for ds in self._datasets])

    def close(self) -> None:
        self._file.close()


def _check_stored(path: Path, ds: h5py.Dataset) -> None:
    """Refuse an HDF5 dataset whose declared data were never (completely) written.

    HDF5 reads unwritten storage as the fill value, so a tiny file can declare a huge shape and stream
    zeros for hours. A chunked dataset must hold every one of its chunks (whatever their compression);
    a contiguous one must have storage allocated. Virtual and external datasets are not checked.
    """
    if ds.is_virtual or ds.external or ds.size == 0:
        return
    declared = f"{path}:{ds.name} declares shape {tuple(ds.shape)} ({_human_bytes(ds.size * ds.dtype.itemsize)})"
    if ds.chunks is None:
        stored, expected = int(ds.id.get_storage_size() > 0), 1
    else:
        stored, expected = ds.id.get_num_chunks(), math.prod(-(-n // c) for n, c in zip(ds.shape, ds.chunks))
    if stored == 0:
        raise VolumeError(f"{declared} but holds no data (never written; it would read as the fill value)")
    if stored < expected:
        raise VolumeError(
            f"{declared} but only {stored} of its {expected} chunks hold data (the rest was never written and "
            "would read as the fill value); incompletely written file?"
        )


def _human_bytes(n: float) -> str:
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} bytes" if i == 0 else f"{n:.1f} {units[i]}"


def open_volume(
    path: str | os.PathLike,
    markers: Sequence[str] | str | None = None,
    spacing: Sequence[float] | None = None,
    *,
    axes: str | None = None,
    dataset: str | None = None,
) -> VolumeReader:
    """Open a volume file lazily (format from the suffix, else from the file's first bytes).

    Args:
        path: TIFF / OME-TIFF / HDF5 / .ims file, OME-Zarr folder, or CZI / ND2 / LIF file (``formats``
            extra); ``file.h5:inner/path`` names an HDF5 dataset (or a sample of a store file),
            ``file.lif:scene`` a scene.
        markers: channel names (list or comma-separated); override the file's names; count must match.
        spacing: (z, y, x) µm; overrides the file's voxel size.
        axes: the file's axes when they cannot be inferred, e.g. ``"ZCYX"``.
        dataset: HDF5 dataset path (alternative to ``file.h5:path``).
    """
    p, inner = _split_h5_path(Path(path))
    dataset = dataset or inner
    if not p.exists():
        raise VolumeError(f"input file {p} does not exist")
    from marker_excite.data.zarr_io import ZarrVolume, is_zarr

    if is_zarr(p):
        return ZarrVolume(p, markers=markers, spacing=spacing)
    if p.is_dir():
        raise VolumeError(f"input {p} is a folder, expected a file")
    from marker_excite.data.bioio_io import BioioVolume, is_bioio

    if is_bioio(p):  # CZI / ND2 / LIF: the optional 'formats' extra; ``file.lif:scene`` names a scene
        return BioioVolume(p, markers=markers, spacing=spacing, scene=dataset)
    kind = _kind(p)
    if kind == "tiff":
        return TiffVolume(p, markers=markers, spacing=spacing, axes=axes)
    if kind == "ims" or (kind == "hdf5" and dataset is None and _is_ims(p)):
        return ImsVolume(p, markers=markers, spacing=spacing)
    return H5Volume(p, dataset=dataset, markers=markers, spacing=spacing, axes=axes)


def source_file(path: str | os.PathLike) -> Path:
    """The file an input path names (``store.h5:s1`` and ``file.h5:dataset`` name ``store.h5`` / ``file.h5``)."""
    return _split_h5_path(Path(path))[0]


def _split_h5_path(path: Path) -> tuple[Path, str | None]:
    text = str(path)
    if not path.exists():
        m = re.match(r"^(.*\.(?:h5|hdf5|hdf|he5|ims|czi|nd2|lif)):(.+)$", text, re.I)  # dataset / scene
        if m:
            return Path(m.group(1)), m.group(2)
    return path, None


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(IMS_SUFFIXES):
        return "ims"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(HDF5_SUFFIXES):
        return "hdf5"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    raise VolumeError(
        f"{path}: unknown file format; supported: TIFF/OME-TIFF ({', '.join(TIFF_SUFFIXES)}), "
        f"HDF5 ({', '.join(HDF5_SUFFIXES)}), Imaris (.ims)"
    )


def _is_ims(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "DataSet/ResolutionLevel 0" in f and "DataSetInfo" in f
    except OSError:
        return False


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
# validation helpers
# ================================================================================================
def _split_names(markers: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(markers, str):
        return tuple(m.strip() for m in markers.split(",")) if markers.strip() else ()
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


def check_spacing(spacing: Sequence[float] | str, where: str = "") -> tuple[float, float, float]:
    """Three positive finite numbers (z, y, x) in µm, from a sequence or text ``"2,0.5,0.5"``."""
    prefix = f"{where}: " if where else ""
    parts = spacing.split(",") if isinstance(spacing, str) else list(spacing)
    try:
        values = tuple(float(s) for s in parts)
    except (TypeError, ValueError):
        raise VolumeError(f"{prefix}spacing must be three numbers z,y,x in µm, got {spacing!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise VolumeError(f"{prefix}spacing must be three positive numbers z,y,x in µm, got {spacing!r}")
    return values  # type: ignore[return-value]
