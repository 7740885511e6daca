"""Atomic volume writers: streaming OME-TIFF, HDF5 or OME-Zarr, slice by slice (``predict`` outputs, test data)."""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import tifffile

from marker_excite.atomic import atomic_directory, check_output_path, commit, temporary_sibling
from marker_excite.data.io import HDF5_SUFFIXES, TIFF_SUFFIXES, VolumeError, check_marker_names, check_spacing
from marker_excite.data.zarr_io import ZARR_SUFFIXES, ZarrImageWriter, has_zarr_metadata
from marker_excite.errors import os_error_text


class VolumeWriter:
    """Streaming, atomic writer of a ``[C, Z, Y, X]`` (or ``[Z, Y, X]``) volume, slice by slice.

    OME-TIFF (``.ome.tif`` / ``.tif``; ZCYX pages, channel names and physical sizes in the OME-XML,
    uncompressed and contiguous so it is streamed back plane by plane; also calibrated for readers
    without OME support: XResolution / YResolution in pixels per µm and a second ImageDescription with
    ImageJ hyperstack metadata, see :func:`add_imagej_description`), HDF5 (``.h5``; dataset ``data`` CZYX chunked by
    slice, attributes ``markers``, ``spacing``, ``element_size_um``) or OME-Zarr (``.zarr``, e.g.
    ``.ome.zarr``; NGFF 0.4, see :mod:`marker_excite.data.zarr_io`). Data go to a temporary sibling
    (file or folder) that is renamed into place by :meth:`close` once every slice is written; on an error (or
    :meth:`abort`) nothing appears under the final name. Refuses an existing output unless ``overwrite``.
    A failing write (e.g. a full disk) raises :class:`VolumeError` naming the output; the temporary
    file is removed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: Sequence[int],
        dtype: np.dtype | str = np.float32,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        channel_names: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = check_output_path(path, overwrite=overwrite)
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (3, 4) or min(shape) < 1:
            raise VolumeError(f"{self.path}: volume shape must be (Z, Y, X) or (C, Z, Y, X), got {shape}")
        self._squeezed = len(shape) == 3
        self.shape_czyx = (1, *shape) if self._squeezed else shape
        self.dtype = np.dtype(dtype)
        self.spacing = check_spacing(spacing, where=str(self.path))
        n = self.shape_czyx[0]
        names = tuple(channel_names) if channel_names is not None else tuple(f"C{i}" for i in range(n))
        if len(names) != n:
            raise VolumeError(f"{self.path}: {len(names)} channel name(s) for {n} channel(s)")
        self.channel_names = check_marker_names(names, where=str(self.path))
        lower = self.path.name.lower()
        if lower.endswith(TIFF_SUFFIXES):
            self.format = "tiff"
        elif lower.endswith(HDF5_SUFFIXES):
            self.format = "hdf5"
        elif lower.endswith(ZARR_SUFFIXES):
            self.format = "zarr"
            if self.path.exists() and not has_zarr_metadata(self.path):
                raise VolumeError(f"{self.path} exists and is not a zarr folder; refusing to replace it")
        else:
            raise VolumeError(f"{self.path}: output must end in .ome.tif/.tif (OME-TIFF), .h5 (HDF5) or .ome.zarr (OME-Zarr)")
        with self._failing_write():
            if self.format == "zarr":
                self._commit = atomic_directory(self.path)
                self._tmp = self._commit.__enter__()
            else:
                self._tmp = temporary_sibling(self.path)
        self._written = np.zeros(self.shape_czyx[1], dtype=bool)
        self._closed = self._finished = False
        try:
            with self._failing_write():
                self._open()
        except BaseException as exc:
            self._discard(exc)
            raise

    @contextlib.contextmanager
    def _failing_write(self) -> Iterator[None]:
        """Turn an OSError of the writing (disk full, quota, I/O error) into a one-line VolumeError."""
        try:
            yield
        except OSError as exc:
            raise VolumeError(f"cannot write {self.path}: {os_error_text(exc)}") from None

    def _open(self) -> None:
        c, z, y, x = self.shape_czyx
        sz, sy, sx = self.spacing
        if self.format == "tiff":
            meta = {
                "axes": "ZCYX",
                "Channel": {"Name": list(self.channel_names)},
                "PhysicalSizeX": sx, "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": sy, "PhysicalSizeYUnit": "µm",
                "PhysicalSizeZ": sz, "PhysicalSizeZUnit": "µm",
            }  # fmt: skip
            # header + sparse contiguous data area; slices are then written in place (no memory map, so
            # resident memory stays at one slice however large the volume)
            offset, _ = tifffile.imwrite(
                self._tmp, shape=(z, c, y, x), dtype=self.dtype, ome=True, metadata=meta, returnoffset=True,
                resolution=(1.0 / sx, 1.0 / sy), resolutionunit="NONE",
            )  # fmt: skip
            self._offset = int(offset)
            add_imagej_description(self._tmp, tifffile.imagej_description((z, c, y, x), "ZCYX", spacing=sz, unit="micron"))
            self._fh = open(self._tmp, "r+b")
        elif self.format == "zarr":
            self._zarr = ZarrImageWriter(self._tmp, self.shape_czyx, self.dtype, self.spacing, self.channel_names)
        else:
            self._h5 = h5py.File(self._tmp, "w")
            ds = self._h5.create_dataset(
                "data", shape=self.shape_czyx, dtype=self.dtype, chunks=(1, 1, min(y, 4096), min(x, 4096))
            )
            ds.attrs["markers"] = np.array(self.channel_names, dtype=h5py.string_dtype())
            ds.attrs["spacing"] = np.asarray(self.spacing, dtype=np.float64)
            ds.attrs["element_size_um"] = np.asarray(self.spacing, dtype=np.float64)
            ds.attrs["axes"] = "CZYX"
            self._ds = ds

    def write_slice(self, z: int, data: np.ndarray) -> None:
        """Write slice ``z``: ``[C, Y, X]`` (or ``[Y, X]`` for a single channel)."""
        if self._closed or self._finished:
            raise VolumeError(f"{self.path}: writer is closed")
        c, nz, y, x = self.shape_czyx
        data = np.asarray(data)
        if data.ndim == 2 and c == 1:
            data = data[None]
        if data.shape != (c, y, x):
            raise VolumeError(f"{self.path}: slice {z} has shape {data.shape}, expected {(c, y, x)}")
        if not 0 <= z < nz:
            raise VolumeError(f"{self.path}: slice {z} outside 0..{nz - 1}")
        with self._failing_write():
            if self.format == "tiff":
                self._fh.seek(self._offset + z * data.size * self.dtype.itemsize)
                self._fh.write(np.ascontiguousarray(data, dtype=self.dtype).tobytes())
            elif self.format == "zarr":
                self._zarr.write_slice(z, np.asarray(data, dtype=self.dtype))
            else:
                self._ds[:, z] = data
        self._written[z] = True

    def finish(self) -> None:
        """Check every slice was written and flush the temporary file (a full disk shows here at the
        latest); :meth:`close` then only renames. Lets a caller flush several outputs before committing any."""
        if self._closed or self._finished:
            return
        missing = np.flatnonzero(~self._written)
        if missing.size:
            self.abort()
            raise VolumeError(f"{self.path}: {missing.size} slice(s) never written (first: {int(missing[0])})")
        try:
            with self._failing_write():
                self._release()
                if self.format == "zarr":
                    self._zarr.finish()
        except BaseException as exc:
            self._discard(exc)
            self._closed = True
            raise
        self._finished = True

    def close(self) -> Path:
        """Commit: :meth:`finish`, then rename the temporary file (or folder) into place."""
        if self._closed:
            return self.path
        self.finish()
        try:
            with self._failing_write():
                if self.format == "zarr":
                    self._commit.__exit__(None, None, None)
                else:
                    commit(self._tmp, self.path)
        finally:
            if self.format != "zarr":
                self._tmp.unlink(missing_ok=True)
            self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written (the final path is left untouched)."""
        if self._closed:
            return
        if not self._finished:
            with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
                self._release()
        self._discard(VolumeError(f"{self.path}: writing aborted"))
        self._closed = True

    def _discard(self, exc: BaseException) -> None:
        """Remove the temporary file or folder."""
        if self.format == "zarr":
            self._commit.__exit__(type(exc), exc, None)  # removes the folder, leaves the final path alone
        else:
            self._tmp.unlink(missing_ok=True)

    def _release(self) -> None:
        if self.format == "tiff":
            self._fh.close()
        elif self.format == "hdf5":
            self._h5.close()

    def __enter__(self) -> "VolumeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


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


def write_volume(
    path: str | os.PathLike,
    array: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    channel_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Atomically write ``[Z, Y, X]`` or ``[C, Z, Y, X]`` as OME-TIFF or HDF5 (by suffix)."""
    array = np.asarray(array)
    with VolumeWriter(path, array.shape, array.dtype, spacing, channel_names, overwrite) as writer:
        data = array[None] if array.ndim == 3 else array
        for z in range(data.shape[1]):
            writer.write_slice(z, data[:, z])
    return writer.path
