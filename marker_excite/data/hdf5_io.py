"""HDF5 (plain datasets and samples of a marker_excite store) and Imaris ``.ims``: lazy slice readers,
and the streaming HDF5 writer.

Which samples a store holds and where they lie is the store's business
(:meth:`marker_excite.data.store.SampleStore.volume`); :class:`StoreVolume` only reads one sample's image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from marker_excite.data.volume import (
    FormatWriter,
    VolumeError,
    VolumeReader,
    _AxesArray,
    _canonical_axes,
    _decode,
    _split_names,
)

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
IMS_SUFFIXES = (".ims",)
#: The signature at the start of every HDF5 file (also of Imaris files).
HDF5_MAGIC = (b"\x89HDF\r\n\x1a\n",)


class H5Volume(VolumeReader):
    """A dataset of an HDF5 file: axes given or by dimension (``YX``, ``ZYX``, ``CZYX``); channel names
    from the attribute ``markers`` / ``channel_names``; spacing from ``spacing`` / ``element_size_um``
    (z, y, x). (A sample store opens as :class:`StoreVolume`.)
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
        spacing = next((ds.attrs[k] for k in ("spacing", "element_size_um") if k in ds.attrs), None)
        names = [_decode(m) for m in np.atleast_1d(names)] if names is not None else None
        spacing = tuple(float(s) for s in np.atleast_1d(spacing))[-3:] if spacing is not None else None
        if spacing is not None and len(spacing) == 2:
            spacing = (1.0, *spacing)
        return ds, names, spacing

    def _read(self, z: int) -> np.ndarray:
        return self._reader.read(z)

    def close(self) -> None:
        self._file.close()


class StoreVolume(VolumeReader):
    """One sample of a sample store as a volume: its image dataset ``[C, Z, Y, X]`` read one slice at a
    time, channel names and voxel size as stored (overridden by ``markers`` / ``spacing``).

    Made by :meth:`~marker_excite.data.store.SampleStore.volume`; :meth:`close` calls ``on_close`` (the
    store's close when the volume owns its store, as :func:`~marker_excite.data.io.open_volume`'s does).
    """

    def __init__(
        self,
        path: Path,
        image: h5py.Dataset,
        stored_markers: Sequence[str],
        stored_spacing: Sequence[float],
        markers: Sequence[str] | str | None = None,
        spacing: Sequence[float] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._image = image
        self._on_close = on_close
        self.dtype = np.dtype(image.dtype)
        self.shape_czyx = tuple(int(n) for n in image.shape)  # type: ignore[assignment]
        self._check_data()
        _check_stored(self.path, image)
        self._set_metadata(stored_markers, stored_spacing, markers, spacing)

    def _read(self, z: int) -> np.ndarray:
        return self._image[:, z]

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()


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
                    raise VolumeError(
                        f"{self.path}: {k} data has shape {ds.shape}, smaller than Z,Y,X = {(nz, ny, nx)}"
                    )
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


def is_ims(path: Path) -> bool:
    """An HDF5 file with the Imaris layout (``/DataSet/ResolutionLevel 0`` and ``/DataSetInfo``)."""
    try:
        with h5py.File(path, "r") as f:
            return "DataSet/ResolutionLevel 0" in f and "DataSetInfo" in f
    except OSError:
        return False


class H5Writer(FormatWriter):
    """HDF5: dataset ``data`` CZYX chunked by slice, attributes ``markers``, ``spacing``,
    ``element_size_um`` and ``axes``."""

    def __init__(
        self,
        tmp: Path,
        shape_czyx: Sequence[int],
        dtype: np.dtype,
        spacing: Sequence[float],
        channel_names: Sequence[str],
    ) -> None:
        _, _, y, x = shape_czyx
        self._h5 = h5py.File(tmp, "w")
        ds = self._h5.create_dataset(
            "data", shape=tuple(shape_czyx), dtype=dtype, chunks=(1, 1, min(y, 4096), min(x, 4096))
        )
        ds.attrs["markers"] = np.array(channel_names, dtype=h5py.string_dtype())
        ds.attrs["spacing"] = np.asarray(spacing, dtype=np.float64)
        ds.attrs["element_size_um"] = np.asarray(spacing, dtype=np.float64)
        ds.attrs["axes"] = "CZYX"
        self._ds = ds

    def write_slice(self, z: int, data: np.ndarray) -> None:
        self._ds[:, z] = data

    def finish(self) -> None:
        self._h5.close()

    def close(self) -> None:
        self._h5.close()
