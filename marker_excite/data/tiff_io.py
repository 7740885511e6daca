"""TIFF / OME-TIFF / ImageJ TIFF: the lazy slice reader and the streaming OME-TIFF writer."""

from __future__ import annotations

import logging
import lzma
import os
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from marker_excite.data.volume import (
    _UNIT_TO_UM,
    FormatWriter,
    VolumeError,
    VolumeReader,
    _AxesArray,
    _canonical_axes,
    _split_names,
)

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
#: The first bytes of a classic (``*``) or Big (``+``) TIFF, little- or big-endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


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
            file_markers, file_spacing = _tiff_metadata(self._tif, n_slices=self.shape_czyx[1])
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
        raise VolumeError(
            f"{path}: axes {axes!r} do not fit data of shape {shape}; give --channel-names with ZCYX / CZYX"
        )
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


def _tiff_metadata(tif: tifffile.TiffFile, n_slices: int) -> tuple[list[str] | None, tuple[float, float, float] | None]:
    """Channel names and (z, y, x) spacing in µm from OME-XML or ImageJ metadata (None when absent).

    ImageJ's ``spacing`` is the step between z slices: for an image of ``n_slices`` 1 it is meaningless
    (ImageJ keeps it from the stack the image was cut from) and z gets the 2D default of 1 µm.
    """
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
        sz = float(meta.get("spacing", np.nan)) * factor if n_slices > 1 else np.nan
        return None, _fill_spacing([sz, sy, sx])
    return None, None


def _fill_spacing(sizes: Sequence[float]) -> tuple[float, float, float] | None:
    """In-plane sizes known but z not (2D files): z = 1 µm; otherwise unknown."""
    z, y, x = sizes
    if np.isfinite(y) and np.isfinite(x):
        return (float(z) if np.isfinite(z) else 1.0, float(y), float(x))
    return None


class TiffWriter(FormatWriter):
    """OME-TIFF: ZCYX pages, channel names and physical sizes in the OME-XML, uncompressed and contiguous
    so it is streamed back plane by plane; also calibrated for readers without OME support
    (XResolution / YResolution in pixels per µm and a second ImageDescription with ImageJ hyperstack
    metadata, see :func:`add_imagej_description`). Slices are written in place into the data area."""

    def __init__(
        self,
        tmp: Path,
        shape_czyx: Sequence[int],
        dtype: np.dtype,
        spacing: Sequence[float],
        channel_names: Sequence[str],
    ) -> None:
        c, z, y, x = shape_czyx
        sz, sy, sx = spacing
        self.dtype = np.dtype(dtype)
        meta = {
            "axes": "ZCYX",
            "Channel": {"Name": list(channel_names)},
            "PhysicalSizeX": sx, "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": sy, "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZ": sz, "PhysicalSizeZUnit": "µm",
        }  # fmt: skip
        # header + sparse contiguous data area; slices are then written in place (no memory map, so
        # resident memory stays at one slice however large the volume)
        offset, _ = tifffile.imwrite(
            tmp, shape=(z, c, y, x), dtype=self.dtype, ome=True, metadata=meta, returnoffset=True,
            resolution=(1.0 / sx, 1.0 / sy), resolutionunit="NONE",
        )  # fmt: skip
        self._offset = int(offset)
        add_imagej_description(tmp, tifffile.imagej_description((z, c, y, x), "ZCYX", spacing=sz, unit="micron"))
        self._fh = open(tmp, "r+b")

    def write_slice(self, z: int, data: np.ndarray) -> None:
        self._fh.seek(self._offset + z * data.size * self.dtype.itemsize)
        self._fh.write(np.ascontiguousarray(data, dtype=self.dtype).tobytes())

    def finish(self) -> None:
        self._fh.close()

    def close(self) -> None:
        self._fh.close()


def add_imagej_description(path: str | os.PathLike, description: str) -> None:
    """Add ``description`` (ImageJ metadata) as a SECOND ImageDescription tag of the first page.

    The OME-XML stays the first ImageDescription (what OME readers, Bio-Formats and tifffile read);
    ImageJ reads the last one, so Fiji without Bio-Formats opens the file as a calibrated hyperstack
    (channels, slices, ``unit=micron``, z spacing; pixel size from X/YResolution). This is the layout
    of Micro-Manager's OME-TIFFs (tifffile: ``page.description1``). The first page's directory is
    rewritten, with the new entry, at the end of the file and the header pointed at it; pixel data
    and the other pages are untouched. Classic TIFF and BigTIFF.
    """
    with open(path, "r+b") as fh:
        head = fh.read(16)
        bo = {b"II": "<", b"MM": ">"}[head[:2]]
        big = struct.unpack(bo + "H", head[2:4])[0] == 43
        off_fmt, cnt_fmt, ptr_at = ("Q", "Q", 8) if big else ("I", "H", 4)
        entry_size = 20 if big else 12
        ifd_offset = struct.unpack(bo + off_fmt, head[ptr_at : ptr_at + struct.calcsize(off_fmt)])[0]
        fh.seek(ifd_offset)
        n = struct.unpack(bo + cnt_fmt, fh.read(struct.calcsize(cnt_fmt)))[0]
        entries = [fh.read(entry_size) for _ in range(n)]
        next_ifd = fh.read(struct.calcsize(off_fmt))
        text = description.encode("ascii") + b"\0"
        text_at = fh.seek(0, os.SEEK_END)
        text_at += text_at % 2  # word boundary
        ifd_at = text_at + len(text) + (text_at + len(text)) % 2
        entry = struct.pack(bo + ("HHQQ" if big else "HHII"), 270, 2, len(text), text_at)
        tags = [struct.unpack(bo + "H", e[:2])[0] for e in entries]
        entries.insert(max((i + 1 for i, t in enumerate(tags) if t <= 270), default=0), entry)
        fh.seek(text_at)
        fh.write(text)
        fh.seek(ifd_at)
        fh.write(struct.pack(bo + cnt_fmt, len(entries)) + b"".join(entries) + next_ifd)
        fh.seek(ptr_at)
        fh.write(struct.pack(bo + off_fmt, ifd_at))
