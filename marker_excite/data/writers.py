"""Atomic volume writers: streaming OME-TIFF or HDF5, slice by slice (``predict`` outputs, test data)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import tifffile

from marker_excite.atomic import check_output_path, commit, temporary_sibling
from marker_excite.data.io import HDF5_SUFFIXES, TIFF_SUFFIXES, VolumeError, check_marker_names, check_spacing
from marker_excite.errors import os_error_text


class VolumeWriter:
    """Streaming, atomic writer of a ``[C, Z, Y, X]`` (or ``[Z, Y, X]``) volume, slice by slice.

    OME-TIFF (``.ome.tif`` / ``.tif``; ZCYX pages, channel names and physical sizes in the OME-XML,
    uncompressed and contiguous so it is streamed back plane by plane) or HDF5 (``.h5``; dataset ``data`` CZYX chunked by
    slice, attributes ``markers``, ``spacing``, ``element_size_um``). Data go to a temporary sibling
    that is renamed into place by :meth:`close` once every slice is written; on an error (or
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
        else:
            raise VolumeError(f"{self.path}: output must end in .ome.tif/.tif (OME-TIFF) or .h5 (HDF5)")
        with self._failing_write():
            self._tmp = temporary_sibling(self.path)
        self._written = np.zeros(self.shape_czyx[1], dtype=bool)
        self._closed = self._finished = False
        try:
            with self._failing_write():
                self._open()
        except BaseException:
            self._tmp.unlink(missing_ok=True)
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
                self._tmp, shape=(z, c, y, x), dtype=self.dtype, ome=True, metadata=meta, returnoffset=True
            )
            self._offset = int(offset)
            self._fh = open(self._tmp, "r+b")
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
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            self._closed = True
            raise
        self._finished = True

    def close(self) -> Path:
        """Commit: :meth:`finish`, then rename the temporary file into place."""
        if self._closed:
            return self.path
        self.finish()
        try:
            with self._failing_write():
                commit(self._tmp, self.path)
        finally:
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
        self._tmp.unlink(missing_ok=True)
        self._closed = True

    def _release(self) -> None:
        if self.format == "tiff":
            self._fh.close()
        else:
            self._h5.close()

    def __enter__(self) -> "VolumeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


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
