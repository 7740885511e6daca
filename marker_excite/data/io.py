"""Volume files: :func:`open_volume` opens TIFF, OME-TIFF, HDF5, Imaris .ims or OME-Zarr lazily.

The format is chosen in :mod:`marker_excite.data.formats` (one entry per format); the readers are in
:mod:`~marker_excite.data.tiff_io`, :mod:`~marker_excite.data.hdf5_io` and :mod:`~marker_excite.data.zarr_io`,
their base class and checks in :mod:`~marker_excite.data.volume`. Writers are in
:mod:`marker_excite.data.writers`; image + label files for import in :mod:`marker_excite.data.sample_files`.

Every reader is a :class:`VolumeReader` that reads ONE slice at a time (``read_slice(z) -> [C, Y, X]``
float32), so a stack larger than memory streams: uncompressed contiguous TIFFs are memory-mapped,
other TIFFs are read page by page, HDF5 / .ims datasets by hyperslab. Channel names and voxel sizes
come from the file's metadata (OME-XML, ImageJ, Imaris, HDF5 attributes) or from the caller
(``markers=``, ``spacing=``); the caller's values win.

Input problems raise :class:`VolumeError` (a :class:`~marker_excite.errors.UserInputError`) naming the
file and the problem: unreadable/corrupt/truncated files (including corrupt compressed TIFF data and
HDF5 datasets whose declared shape was never written, OME-Zarr arrays with chunk files missing),
complex or non-numeric data, images of zero size, declared slices too large for memory (more than
``MARKER_EXCITE_MAX_SLICE_GIB``, default 4 GiB as float32), integer voxels beyond float32's exact
range (``|v| > 2**24``), NaN/Inf voxels (marker and slice), channel name counts that do not match,
duplicated or empty marker sets, label files that do not match the image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from marker_excite.data.formats import inner_path_suffixes, reading_format
from marker_excite.data.volume import VolumeError, VolumeReader, check_marker_names, check_spacing

__all__ = ["VolumeError", "VolumeReader", "check_marker_names", "check_spacing", "open_volume", "source_file"]


def open_volume(
    path: str | os.PathLike,
    markers: Sequence[str] | str | None = None,
    spacing: Sequence[float] | None = None,
    *,
    axes: str | None = None,
    dataset: str | None = None,
) -> VolumeReader:
    """Open a volume file lazily (format from :func:`~marker_excite.data.formats.reading_format`: a
    recognised folder, else the suffix, else the file's first bytes).

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
    return reading_format(p, dataset=dataset).open(p, markers, spacing, axes=axes, dataset=dataset)


def source_file(path: str | os.PathLike) -> Path:
    """The file an input path names (``store.h5:s1`` and ``file.h5:dataset`` name ``store.h5`` / ``file.h5``)."""
    return _split_h5_path(Path(path))[0]


def _split_h5_path(path: Path) -> tuple[Path, str | None]:
    text = str(path)
    if not path.exists():
        suffixes = "|".join(re.escape(s) for s in inner_path_suffixes())
        m = re.match(rf"^(.*(?:{suffixes})):(.+)$", text, re.I)
        if m:
            return Path(m.group(1)), m.group(2)
    return path, None
