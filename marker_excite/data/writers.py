"""Atomic volume writers: streaming OME-TIFF, HDF5 or OME-Zarr, slice by slice (``predict`` outputs, test data).

:class:`VolumeWriter` checks the arguments, writes through the format's
:class:`~marker_excite.data.volume.FormatWriter` (chosen by the output's suffix in
:mod:`marker_excite.data.formats`) into a temporary file or folder, and commits it atomically.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from marker_excite.atomic import atomic_directory, check_output_path, commit, temporary_sibling
from marker_excite.data.formats import writing_format
from marker_excite.data.volume import VolumeError, check_marker_names, check_spacing
from marker_excite.errors import os_error_text


class VolumeWriter:
    """Streaming, atomic writer of a ``[C, Z, Y, X]`` (or ``[Z, Y, X]``) volume, slice by slice.

    OME-TIFF (``.ome.tif`` / ``.tif``; ZCYX pages, channel names and physical sizes in the OME-XML,
    uncompressed and contiguous so it is streamed back plane by plane; also calibrated for readers
    without OME support, see :class:`~marker_excite.data.tiff_io.TiffWriter`), HDF5 (``.h5``; dataset
    ``data`` CZYX chunked by slice, attributes ``markers``, ``spacing``, ``element_size_um``) or OME-Zarr
    (``.zarr``, e.g. ``.ome.zarr``; NGFF 0.4, see :mod:`marker_excite.data.zarr_io`). Data go to a temporary sibling
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
        self.format = writing_format(self.path)
        self._writer_class = self.format.writer
        self._writer_class.check_target(self.path)
        with self._failing_write():
            if self._writer_class.folder:
                self._commit = atomic_directory(self.path)
                self._tmp = self._commit.__enter__()
            else:
                self._tmp = temporary_sibling(self.path)
        self._written = np.zeros(self.shape_czyx[1], dtype=bool)
        self._closed = self._finished = False
        try:
            with self._failing_write():
                self._writer = self._writer_class(
                    self._tmp, self.shape_czyx, self.dtype, self.spacing, self.channel_names
                )
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
            self._writer.write_slice(z, data)
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
                self._writer.finish()
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
                if self._writer_class.folder:
                    self._commit.__exit__(None, None, None)
                else:
                    commit(self._tmp, self.path)
                self._writer_class.committed(self.path)
        finally:
            if not self._writer_class.folder:
                self._tmp.unlink(missing_ok=True)
            self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written (the final path is left untouched)."""
        if self._closed:
            return
        if not self._finished:
            with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
                self._writer.close()
        self._discard(VolumeError(f"{self.path}: writing aborted"))
        self._closed = True

    def _discard(self, exc: BaseException) -> None:
        """Remove the temporary file or folder."""
        if self._writer_class.folder:
            self._commit.__exit__(type(exc), exc, None)  # removes the folder, leaves the final path alone
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VolumeWriter:
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
    """Atomically write ``[Z, Y, X]`` or ``[C, Z, Y, X]`` as OME-TIFF, HDF5 or OME-Zarr (by suffix)."""
    array = np.asarray(array)
    with VolumeWriter(path, array.shape, array.dtype, spacing, channel_names, overwrite) as writer:
        data = array[None] if array.ndim == 3 else array
        for z in range(data.shape[1]):
            writer.write_slice(z, data[:, z])
    return writer.path
