"""OME-Zarr (NGFF 0.4 and 0.5) images: a lazy slice reader and a streaming writer (a folder).

Reading (``ome-zarr`` parses the metadata, ``zarr`` / dask read the data): level 0 of the first
multiscale image; its axes (``t`` of size 1, ``c``, ``z``, ``y``, ``x``; any may be absent); channel
names from the ``omero`` channel labels; voxel size from level 0's ``scale`` transformation and the
axes' units. One slice is read at a time (the chunks that hold it), so large stacks stream. Chunk
files missing from the folder are refused (:func:`check_chunks`) unless :data:`MISSING_CHUNKS_ENV` is
``fill``: zarr reads them as the fill value, so a deleted chunk would import as zeros without a word.

Writing: an NGFF 0.4 image (zarr v2, the version most viewers read) with one level ``0``, axes
``c, z, y, x``, chunks of one slice (at most 2048 x 2048 pixels), every chunk stored (also those equal
to the fill value, which zarr would otherwise omit), ``scale`` in micrometres and the channel names as
``omero`` labels; written into a temporary folder renamed into place on commit.
Written to ``IMAGE.zarr/labels/NAME`` of an existing NGFF 0.4 image, it is an NGFF label image of it:
``image-label`` metadata (``source`` ``../../``) and ``NAME`` listed in ``IMAGE.zarr/labels``'s ``labels``
attribute once committed, so viewers (napari, ...) show it as labels over the image.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from marker_excite.atomic import write_text
from marker_excite.data.volume import (
    _UNIT_TO_UM,
    FormatWriter,
    VolumeError,
    VolumeReader,
    _AxesArray,
    _canonical_axes,
    _split_names,
)

ZARR_SUFFIXES = (".zarr",)
_UNITS = {**_UNIT_TO_UM, "nanometer": 1e-3, "millimeter": 1e3, "meter": 1e6}
_AXIS_LETTERS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
CHUNK_YX = 2048
#: set to ``fill`` to read chunks missing from a zarr folder as the array's declared fill value
MISSING_CHUNKS_ENV = "MARKER_EXCITE_ZARR_MISSING_CHUNKS"
#: files of an array folder that hold metadata, not chunks
_METADATA_FILES = {".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"}


def has_zarr_metadata(path: Path) -> bool:
    """A folder with zarr group metadata (``zarr.json`` for zarr v3, ``.zgroup`` for v2)."""
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def is_zarr(path: Path) -> bool:
    """A folder to read as OME-Zarr: named ``*.zarr`` or holding zarr group metadata."""
    return path.is_dir() and (path.name.lower().endswith(ZARR_SUFFIXES) or has_zarr_metadata(path))


def label_image_of(path: Path) -> Path | None:
    """The OME-Zarr image whose NGFF label ``path`` is (``IMAGE.zarr/labels/NAME``), else None.

    Raises :class:`VolumeError` for an NGFF 0.5 (zarr v3) image: its labels must be zarr v3 too.
    """
    image = Path(path).parent.parent
    if Path(path).parent.name != "labels":
        return None
    if (image / "zarr.json").is_file():
        raise VolumeError(
            f"{path}: labels inside the NGFF 0.5 image {image} are not supported (this writer writes NGFF 0.4); "
            "write them next to the image instead"
        )
    attrs = image / ".zattrs"
    return image if attrs.is_file() and "multiscales" in json.loads(attrs.read_text() or "{}") else None


class ZarrVolume(VolumeReader):
    """Level 0 of an OME-Zarr image, read one slice at a time."""

    def __init__(self, path, markers=None, spacing=None) -> None:
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Multiscales, Reader

        self.path = Path(path)
        logger = logging.getLogger("ome_zarr.io")  # warns when the file's NGFF version is not the newest
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            location = parse_url(str(self.path), mode="r")
            nodes = list(Reader(location)()) if location is not None else []
        except Exception as exc:  # noqa: BLE001 - zarr / ome-zarr raise many types for bad metadata
            raise VolumeError(f"{self.path}: not a readable OME-Zarr image: {exc}") from None
        finally:
            logger.setLevel(level)
        # a label image's reader also yields its source image: take the node of THIS folder first
        here = self.path.resolve()
        with_data = [n for n in nodes if n.data]
        node = next((n for n in with_data if Path(str(n.zarr.path)).resolve() == here), None)
        node = node or next(iter(with_data), None)
        if node is None:
            raise VolumeError(f"{self.path}: no OME-Zarr multiscale image found (NGFF 'multiscales' metadata)")
        meta = node.metadata
        array = node.data[0]
        level0 = Path(node.zarr.subpath(node.load(Multiscales).datasets[0]))
        axes = [a["name"] if isinstance(a, dict) else str(a) for a in (meta.get("axes") or [])]
        if len(axes) != array.ndim:
            axes = list("tczyx"[-array.ndim :])  # NGFF 0.1 / 0.2: always (t, c, z, y, x)
        letters = "".join(_AXIS_LETTERS.get(a.lower(), "?") for a in axes)
        if "T" in letters and array.shape[letters.index("T")] > 1:
            raise VolumeError(
                f"{self.path}: time series ({array.shape[letters.index('T')]} time points) are not supported"
            )
        n_user = len(_split_names(markers)) if markers is not None else None
        canon = _canonical_axes(self.path, letters.replace("T", "1"), array.shape, n_user)
        self._reader = _AxesArray(array, canon)
        self.shape_czyx = self._reader.shape_czyx  # type: ignore[assignment]
        self.dtype = np.dtype(array.dtype)
        self.mode = "zarr"
        self._check_data()
        check_chunks(self.path, level0)
        self._set_metadata(meta.get("channel_names"), _spacing(meta, axes), markers, spacing)

    def _read(self, z: int) -> np.ndarray:
        return self._reader.read(z)


def check_chunks(path: Path, array_dir: Path) -> None:
    """Refuse a zarr array (the folder ``array_dir``) with chunk files missing, as HDF5 datasets with
    unwritten chunks are refused: zarr reads a missing chunk as the fill value, so a deleted or never
    written chunk would read as zeros. Writers may omit chunks equal to the fill value on purpose
    (zarr-python 3 does so by default); such files are read only when :data:`MISSING_CHUNKS_ENV` is
    ``fill`` and the array declares a fill value, and a note says how many chunks were filled.

    Counted on the files in the folder (with sharding, a file is a shard): the expected count comes
    from the shape alone, so a tiny folder declaring a huge array fails without enumerating its keys.
    """
    import zarr

    try:
        array = zarr.open_array(str(array_dir), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for bad metadata
        raise VolumeError(f"{path}: not a readable zarr array {array_dir.name!r}: {exc}") from None
    grid = [math.ceil(n / c) for n, c in zip(array.shape, array.shards or array.chunks)]
    expected = math.prod(grid)
    files = {
        Path(root, name).relative_to(array_dir).as_posix()
        for root, _, names in os.walk(array_dir)
        for name in names
        if name not in _METADATA_FILES
    }
    stored = len(files) if len(files) < expected else _count_stored(array, grid, files)
    if stored == expected:
        return
    fill = array.metadata.fill_value
    missing = f"{path}: only {stored} of the {expected} chunk files of its zarr array {array_dir.name!r} exist"
    if os.environ.get(MISSING_CHUNKS_ENV, "").strip().lower() == "fill" and fill is not None:
        print(
            f"note: {missing}; the others are read as the fill value {fill} ({MISSING_CHUNKS_ENV}=fill)",
            file=sys.stderr,
        )
        return
    raise VolumeError(
        f"{missing}: missing chunks would read as the fill value ({fill}), i.e. deleted data as zeros. If the "
        "writer omitted chunks equal to the fill value on purpose, re-save with every chunk written "
        f"(zarr: write_empty_chunks=True) or set {MISSING_CHUNKS_ENV}=fill to read them as the fill value"
    )


def _count_stored(array, grid: Sequence[int], files: set[str]) -> int:
    """How many of the chunk (or shard) keys of ``array`` are among ``files``."""
    return sum(array.metadata.encode_chunk_key(index) in files for index in np.ndindex(*grid))


def _spacing(meta: dict, axes: Sequence[str]) -> tuple[float, float, float] | None:
    """(z, y, x) µm from level 0's scale transformation and the axes' units (z = 1 µm for 2D images)."""
    transforms = (meta.get("coordinateTransformations") or [None])[0] or []
    scale = next((t.get("scale") for t in transforms if t.get("type") == "scale"), None)
    if scale is None or len(scale) != len(axes):
        return None
    units = {a["name"]: a.get("unit") for a in meta.get("axes") or [] if isinstance(a, dict)}
    sizes = []
    for name in "zyx":
        factor = _UNITS.get(units.get(name) or "micrometer")
        sizes.append(float(scale[axes.index(name)]) * factor if name in axes and factor is not None else np.nan)
    z, y, x = sizes
    if not (np.isfinite(y) and np.isfinite(x)):
        return None
    return (z if np.isfinite(z) else 1.0, y, x)


class ZarrWriter(FormatWriter):
    """OME-Zarr (NGFF 0.4, zarr v2) written into the temporary folder ``tmp``."""

    folder = True

    @classmethod
    def check_target(cls, path: Path) -> None:
        """Replace only a zarr folder (never an unrelated file or folder of the same name)."""
        if path.exists() and not has_zarr_metadata(path):
            raise VolumeError(f"{path} exists and is not a zarr folder; refusing to replace it")
        label_image_of(path)  # refuses labels inside an image this writer cannot extend

    @classmethod
    def committed(cls, path: Path) -> None:
        """List a label image in its image's ``labels`` group (NGFF 0.4), once it is in place."""
        if label_image_of(path) is None:
            return
        group = path.parent
        attrs_file = group / ".zattrs"
        attrs = json.loads(attrs_file.read_text() or "{}") if attrs_file.is_file() else {}
        names = [n for n in attrs.get("labels", []) if (group / n).is_dir()]
        attrs["labels"] = [*names, path.name] if path.name not in names else names
        if not (group / ".zgroup").is_file():
            write_text(group / ".zgroup", json.dumps({"zarr_format": 2}))
        write_text(attrs_file, json.dumps(attrs, indent=2))

    def __init__(
        self,
        tmp: Path,
        shape_czyx: Sequence[int],
        dtype: np.dtype,
        spacing: Sequence[float],
        channel_names: Sequence[str],
    ) -> None:
        import zarr

        c, z, y, x = shape_czyx
        self.spacing, self.channel_names = tuple(spacing), list(channel_names)
        self.is_label = label_image_of(tmp) is not None  # tmp is a sibling of the final folder
        self.group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        self.array = self.group.create_array(
            "0",
            shape=tuple(shape_czyx),
            chunks=(1, 1, min(y, CHUNK_YX), min(x, CHUNK_YX)),
            dtype=dtype,
            fill_value=0,
            config={"write_empty_chunks": True},  # every chunk stored, so a missing one means lost data
        )

    def write_slice(self, z: int, data: np.ndarray) -> None:
        self.array[:, z] = np.asarray(data, dtype=self.array.dtype)

    def finish(self) -> None:
        """Write the NGFF 0.4 metadata (called once every slice is in)."""
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_multiscales_metadata

        sz, sy, sx = self.spacing
        axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
        datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, sz, sy, sx]}]}]
        omero = {"channels": [{"label": name, "active": True} for name in self.channel_names]}
        metadata = {} if self.is_label else {"omero": omero}
        write_multiscales_metadata(self.group, datasets, fmt=FormatV04(), axes=axes, name="image", metadata=metadata)
        if self.is_label:
            self.group.attrs["image-label"] = {"version": "0.4", "source": {"image": "../../"}}
